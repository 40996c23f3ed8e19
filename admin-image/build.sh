#!/usr/bin/env bash
# Build the admin image from admin-image/Dockerfile on a machine without a Docker
# engine and without access to a container registry (CI: Debian bookworm, root, network
# only to the Debian mirror and crates.io).
#
# Where there is an engine, the usual build still works and needs none of this:
#   docker build -f admin-image/Dockerfile --build-arg GIT_REVISION="$(git rev-parse HEAD)" .
#
# What this script does instead, every step skipped when its result already exists:
#   1. installs buildah and debootstrap (apt) when missing;
#   2. makes the two base images the Dockerfile takes as build args, because neither
#      rust:*-slim-bookworm nor debian:bookworm-slim can be pulled:
#        RUNTIME_IMAGE  localhost/everruns-bookworm:base          debootstrap minbase
#        RUST_IMAGE     localhost/everruns-rust:<rustc>-bookworm-slim  the same plus
#                       gcc, libc6-dev, make, pkg-config, ca-certificates and this
#                       machine's own Rust toolchain (rustup cannot download one here);
#                       like rust:*-slim-bookworm, no libclang: the Dockerfile installs
#                       it, and .ci/clean-root-setup.sh uses this base as a fresh machine
#   3. runs `buildah bud` with chroot isolation (no runtime daemon, host network, so
#      cargo reaches crates.io and apt reaches the mirror) and cached layers, tagging
#      everruns-admin:<short rev> and everruns-admin:dev.
#
# Usage: admin-image/build.sh [--tag NAME]... [--rebuild-bases] [--bases-only]
#   --tag NAME       one more tag for the image (repeatable)
#   --bases-only     make the base images only, and print `RUST_IMAGE=<its name>`
#   --rebuild-bases  make the base images again (e.g. for Debian updates); the old ones
#                    stay, untagged, as long as cached layers use them
# Environment:
#   GIT_REVISION     revision recorded in the image label (default: git rev-parse HEAD;
#                    required when the source tree is not a git checkout)
#   SOURCE_URL       value of the org.opencontainers.image.source label (default empty)
#   STORAGE_DRIVER   buildah storage driver (default vfs: works on any filesystem and
#                    kernel, no fuse-overlayfs or overlay-on-overlay needed)
#   DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR   apt mirrors (default deb.debian.org)
#   IMAGE_CACHE_DIR  where debootstrap keeps downloaded .debs between runs
#                    (default /var/cache/everruns-admin-image)
#   HOST_CA_BUNDLE   CA bundle the build stage trusts for crates.io (default: this
#                    machine's, $SSL_CERT_FILE or /etc/ssl/certs/ca-certificates.crt, so
#                    a TLS-inspecting egress proxy's CA works; the final image does not
#                    get it, its CAs come from Debian's ca-certificates)
#   NICENESS         niceness of the heavy steps (default 19: CI cores are shared)
#
# Disk: vfs stores every layer as a full copy: the build stage's are 1-2 GB each, ~10 GB
# in all after one build. `buildah --storage-driver vfs rmi --prune` frees dangling ones (and
# with them the layer cache that makes the next build fast).
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

extra_tags=()
rebuild_bases=false
bases_only=false
while (($#)); do
    case $1 in
        --tag) extra_tags+=("${2:?--tag needs a name}"); shift 2 ;;
        --tag=*) extra_tags+=("${1#--tag=}"); shift ;;
        --rebuild-bases) rebuild_bases=true; shift ;;
        --bases-only) bases_only=true; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

# The repository root, wherever the script is called from.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Discover, before any sudo, what comes from the invoking user's environment: the
# revision and the Rust toolchain (rustup's lives in the user's home, off root's PATH).
if [[ -z ${GIT_REVISION:-} ]]; then
    GIT_REVISION=$(git rev-parse HEAD 2>/dev/null) || {
        echo "build.sh: not a git checkout; set GIT_REVISION" >&2
        exit 2
    }
fi
if [[ -z ${RUST_SYSROOT:-} ]] && command -v rustc >/dev/null; then
    RUST_SYSROOT=$(rustc --print sysroot)
fi
HOST_CA_BUNDLE=${HOST_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}

# debootstrap, chroot isolation and writing into mounted images need root.
if ((EUID != 0)); then
    exec sudo env GIT_REVISION="$GIT_REVISION" RUST_SYSROOT="${RUST_SYSROOT:-}" HOST_CA_BUNDLE="$HOST_CA_BUNDLE" \
        SOURCE_URL="${SOURCE_URL:-}" STORAGE_DRIVER="${STORAGE_DRIVER:-}" \
        DEBIAN_MIRROR="${DEBIAN_MIRROR:-}" DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-}" \
        IMAGE_CACHE_DIR="${IMAGE_CACHE_DIR:-}" NICENESS="${NICENESS:-}" \
        bash "${BASH_SOURCE[0]}" "$@"
fi

BUILDAH=(buildah --storage-driver "${STORAGE_DRIVER:-vfs}")
NICE=(nice -n "${NICENESS:-19}")
SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
IMAGE_CACHE_DIR=${IMAGE_CACHE_DIR:-/var/cache/everruns-admin-image}
RUNTIME_BASE=localhost/everruns-bookworm:base
BUILD_CA_BUNDLE=/usr/local/share/everruns-build/ca-bundle.crt
BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SHORT_REV=${GIT_REVISION:0:12}

# Timing: every step is recorded and listed on exit (also after a failure).
timings=()
step() {
    local name=$1 start=$SECONDS
    shift
    echo "==> $name"
    "$@"
    timings+=("$(printf '%5ds  %s' $((SECONDS - start)) "$name")")
}

install_tools() {
    local missing=()
    command -v buildah >/dev/null || missing+=(buildah)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    ((${#missing[@]})) || { echo "buildah and debootstrap present"; return; }
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

image_exists() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }

# A minimal bookworm root filesystem in $1, with packages $2 (comma separated) added.
# Shaped like debian:bookworm-slim: deb822 sources with updates and security (the
# runtime stage runs apt-get), no docs, man pages or locales, empty apt lists.
make_rootfs() {
    local dir=$1 include=${2:-}
    mkdir -p "$IMAGE_CACHE_DIR/debs"
    "${NICE[@]}" debootstrap --variant=minbase --cache-dir="$IMAGE_CACHE_DIR/debs" \
        ${include:+--include="$include"} "$SUITE" "$dir" "$DEBIAN_MIRROR"

    rm -f "$dir/etc/apt/sources.list"
    cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # What debian's slim images leave out, also for packages installed later.
    cat >"$dir/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
    find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$dir"/usr/share/{man,groff,info,lintian,locale}/*
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/log/*.log \
        "$dir"/var/cache/apt/archives/*.deb
    # debootstrap copies the host's; the container runtime provides its own.
    : >"$dir/etc/resolv.conf"
    : >"$dir/etc/hostname"
}

# Removed on exit, also when a step fails, so a failed run leaves no half-made base.
tmp_dirs=() work_ctrs=()
cleanup() {
    local c
    for c in "${work_ctrs[@]}"; do "${BUILDAH[@]}" rm "$c" >/dev/null 2>&1 || true; done
    ((${#tmp_dirs[@]} == 0)) || rm -rf "${tmp_dirs[@]}"
    ((${#timings[@]} == 0)) || { echo "time:"; printf '  %s\n' "${timings[@]}"; }
}
trap cleanup EXIT

# Commit root filesystem $1 as image $2 once command $3 (if not empty) succeeds in it;
# the rest are `buildah config` options.
commit_rootfs() {
    local dir=$1 name=$2 smoke=$3 ctr mnt
    shift 3
    ctr=$("${BUILDAH[@]}" from --pull=never scratch)
    work_ctrs+=("$ctr")
    mnt=$("${BUILDAH[@]}" mount "$ctr")
    "${NICE[@]}" cp -a "$dir/." "$mnt/"
    "${BUILDAH[@]}" umount "$ctr" >/dev/null
    "${BUILDAH[@]}" config --os linux --arch "$(dpkg --print-architecture)" "$@" "$ctr"
    if [[ -n $smoke ]]; then "${BUILDAH[@]}" run --isolation chroot "$ctr" -- sh -c "$smoke"; fi
    "${BUILDAH[@]}" commit --rm "$ctr" "$name"
}

# Sets $dir (not echoed: a $(...) subshell would lose the cleanup entry).
new_tmp_dir() {
    dir=$(mktemp -d "${TMPDIR:-/var/tmp}/everruns-rootfs.XXXXXX")
    tmp_dirs+=("$dir")
}

make_runtime_base() {
    local dir
    new_tmp_dir
    make_rootfs "$dir"
    commit_rootfs "$dir" "$RUNTIME_BASE" 'apt-get --version | head -n1' \
        --env PATH="$BASE_PATH" --cmd bash \
        --label org.opencontainers.image.description="debootstrap --variant=minbase $SUITE"
    rm -rf "$dir"
}

# The toolchain goes to /usr/local (its binaries find their libraries relative to
# themselves), without its HTML docs (~800 MB); CARGO_HOME as in the rust images.
# It must run in there, not only here: checked before the commit.
make_build_base() {
    local dir ca_env=()
    new_tmp_dir
    make_rootfs "$dir" ca-certificates,gcc,libc6-dev,make,pkg-config
    "${NICE[@]}" tar -C "$RUST_SYSROOT" --exclude=./share/doc -cf - . | tar -C "$dir/usr/local" -xf -
    mkdir -p "$dir/usr/local/cargo"
    # ENV of the build base reaches the build stage only, never the runtime stage.
    if [[ -s $HOST_CA_BUNDLE ]]; then
        install -D -m 644 "$HOST_CA_BUNDLE" "$dir/$BUILD_CA_BUNDLE"
        ca_env=(--env CARGO_HTTP_CAINFO="$BUILD_CA_BUNDLE" --env SSL_CERT_FILE="$BUILD_CA_BUNDLE")
    fi
    commit_rootfs "$dir" "$BUILD_BASE" \
        'cargo --version && rustc --version && cc --version | head -n1' \
        --env PATH="/usr/local/cargo/bin:$BASE_PATH" --env CARGO_HOME=/usr/local/cargo \
        "${ca_env[@]}" \
        --cmd bash --label org.opencontainers.image.description="$RUST_VERSION on $SUITE"
    rm -rf "$dir"
}

build_image() {
    local tags=(-t "everruns-admin:$SHORT_REV" -t everruns-admin:dev) t
    for t in "${extra_tags[@]}"; do tags+=(-t "$t"); done
    # --layers: reuse the dependency layer when only src/ or migrations/ change.
    # --pull=never: the bases exist only in the local store.
    # --label again for the two labels set from build args: buildah (1.28) keys a cached
    # LABEL step on its unexpanded text, so a new GIT_REVISION would get the previous
    # build's label. A --label step carries its value, so it misses the cache.
    "${NICE[@]}" "${BUILDAH[@]}" bud --isolation chroot --layers --pull=never --force-rm \
        --build-arg RUST_IMAGE="$BUILD_BASE" \
        --build-arg RUNTIME_IMAGE="$RUNTIME_BASE" \
        --build-arg GIT_REVISION="$GIT_REVISION" \
        --build-arg SOURCE_URL="${SOURCE_URL:-}" \
        --label org.opencontainers.image.revision="$GIT_REVISION" \
        --label org.opencontainers.image.source="${SOURCE_URL:-}" \
        -f admin-image/Dockerfile "${tags[@]}" .
    local got
    got=$("${BUILDAH[@]}" inspect --type image \
        --format '{{index .OCIv1.Config.Labels "org.opencontainers.image.revision"}}' \
        "everruns-admin:$SHORT_REV")
    if [[ $got != "$GIT_REVISION" ]]; then
        echo "build.sh: the image's revision label is '$got', not $GIT_REVISION" >&2
        return 1
    fi
}

step "install buildah and debootstrap if missing" install_tools

if [[ -z ${RUST_SYSROOT:-} || ! -x $RUST_SYSROOT/bin/cargo ]]; then
    echo "build.sh: no Rust toolchain with cargo found (rustc --print sysroot); set RUST_SYSROOT" >&2
    exit 2
fi
RUST_VERSION=$("$RUST_SYSROOT/bin/rustc" --version) # rustc 1.95.0 (59807616e 2026-04-14)
BUILD_BASE=localhost/everruns-rust:$(cut -d' ' -f2 <<<"$RUST_VERSION")-$SUITE-slim

for base in "$RUNTIME_BASE" "$BUILD_BASE"; do
    if $rebuild_bases && image_exists "$base"; then "${BUILDAH[@]}" rmi "$base"; fi
done
if image_exists "$RUNTIME_BASE"; then
    echo "runtime base $RUNTIME_BASE present"
else
    step "runtime base $RUNTIME_BASE" make_runtime_base
fi
if image_exists "$BUILD_BASE"; then
    echo "build base $BUILD_BASE present"
else
    step "build base $BUILD_BASE (toolchain from $RUST_SYSROOT)" make_build_base
fi

if $bases_only; then
    echo "RUST_IMAGE=$BUILD_BASE"
    exit 0
fi

step "image everruns-admin:$SHORT_REV (revision $GIT_REVISION)" build_image

echo
"${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}}  {{.ID}}  {{.Size}}' everruns-admin:dev
echo "layers: $("${BUILDAH[@]}" inspect --type image --format '{{len .OCIv1.RootFS.DiffIDs}}' everruns-admin:dev)"
