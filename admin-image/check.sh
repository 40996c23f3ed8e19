#!/usr/bin/env bash
# Check a built admin image (admin-image/build.sh) without a Docker engine:
#   a. its config: ENTRYPOINT, USER 10001:10001, the revision label;
#   b. it runs as 10001 on a read-only root filesystem: `help`, `--version`;
#   c. nothing of the build (cargo, rustc, sqlx-cli, a toolchain) is left in it;
#   d. with DATABASE_URL set: migrate-info --check (3: pending), migrate,
#      migrate-info --check (0). DATABASE_URL must name an EMPTY database, reachable
#      from this machine (the container shares the host's network, so 127.0.0.1 works).
# Every check prints `ok: ...` or `FAIL: ...`; the exit status is 1 if any failed.
#
# Usage: admin-image/check.sh [IMAGE]   (default everruns-admin:dev)
# Environment: GIT_REVISION (expected label; default git rev-parse HEAD),
#   STORAGE_DRIVER (default vfs, as build.sh), DATABASE_URL (enables d).
#
# How the image is run: no runtime daemon is needed (nor is one reachable on CI). The
# image is mounted with `buildah mount` and run_image does by hand what
# `docker run --read-only` does: a private mount and PID namespace (unshare), the rootfs
# bind-mounted read-only, fresh /proc, a minimal /dev, a tmpfs /tmp, the host's
# resolv.conf and hosts; then chroot, the image's WorkingDir, its USER with no
# supplementary groups, its Env plus HOME from its /etc/passwd, and exec.
# (`buildah run` has no read-only root.) Needs root, as build.sh does.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z ${GIT_REVISION:-} ]]; then
    GIT_REVISION=$(git rev-parse HEAD 2>/dev/null) || {
        echo "check.sh: not a git checkout; set GIT_REVISION" >&2
        exit 2
    }
fi
if ((EUID != 0)); then
    exec sudo env GIT_REVISION="$GIT_REVISION" STORAGE_DRIVER="${STORAGE_DRIVER:-}" \
        ${DATABASE_URL:+DATABASE_URL="$DATABASE_URL"} bash "${BASH_SOURCE[0]}" "$@"
fi

IMAGE=${1:-everruns-admin:dev}
BUILDAH=(buildah --storage-driver "${STORAGE_DRIVER:-vfs}")

failures=0
ok() { echo "ok: $*"; }
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

work=$(mktemp -d)
ctr=
cleanup() {
    [[ -z $ctr ]] || "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"${BUILDAH[@]}" inspect --type image "$IMAGE" >"$work/inspect.json" || {
    echo "FAIL: no image $IMAGE in buildah's store (${BUILDAH[*]} images)"
    exit 1
}
# The OCI config ({Entrypoint, User, Env, WorkingDir, Labels, ...}), for run_image too.
python3 -c 'import json,sys; json.dump(json.load(sys.stdin)["OCIv1"]["config"], sys.stdout)' \
    <"$work/inspect.json" >"$work/config.json"
# config KEY: a string as is, anything else as compact JSON, missing as "null".
config() {
    python3 -c 'import json,sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v, separators=(",", ":")))' "$work/config.json" "$1"
}
label() {
    python3 -c 'import json,sys
print((json.load(open(sys.argv[1])).get("Labels") or {}).get(sys.argv[2], ""))' "$work/config.json" "$1"
}

echo "checking $IMAGE"

# --- a. config ---------------------------------------------------------------------
entrypoint=$(config Entrypoint)
if [[ $entrypoint == '["/usr/local/bin/everruns-admin"]' ]]; then
    ok "ENTRYPOINT is $entrypoint"
else
    fail "ENTRYPOINT is $entrypoint, expected [\"/usr/local/bin/everruns-admin\"]"
fi
user=$(config User)
if [[ $user == 10001:10001 ]]; then ok "USER is $user"; else fail "USER is '$user', expected 10001:10001"; fi
revision=$(label org.opencontainers.image.revision)
if [[ $revision == "$GIT_REVISION" ]]; then
    ok "label org.opencontainers.image.revision is $revision"
else
    fail "label org.opencontainers.image.revision is '$revision', expected $GIT_REVISION"
fi

# --- the image's root filesystem -----------------------------------------------------
ctr=$("${BUILDAH[@]}" from --pull=never "$IMAGE")
rootfs=$("${BUILDAH[@]}" mount "$ctr")
mkdir "$work/root"

# The last step of run_image, in python3 because chroot(8) can neither change to the
# WorkingDir nor clear the supplementary groups: become the image's process.
# argv: ROOT CONFIG_JSON PASS_ENV(comma separated names) COMMAND...
RUNNER='
import json, os, sys
root, config, passed, argv = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4:]
uid, _, gid = config["User"].partition(":")
uid, gid = int(uid), int(gid or uid)   # numeric USER only (the image promises that)
env = dict(e.split("=", 1) for e in config.get("Env") or [])
for line in open(os.path.join(root, "etc/passwd")):
    f = line.rstrip("\n").split(":")
    if len(f) > 5 and f[2] == str(uid):
        env.setdefault("HOME", f[5])
        break
env.setdefault("HOME", "/")
for name in filter(None, passed.split(",")):
    env[name] = os.environ[name]
os.chroot(root)
os.chdir(config.get("WorkingDir") or "/")
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
os.execvpe(argv[0], argv, env)
'
# Mounts inside the new namespaces; they vanish with them.
# argv: ROOTFS ROOT CONFIG_JSON PASS_ENV COMMAND...
SETUP='
set -eu
rootfs=$1 root=$2; shift 2
mount --bind "$rootfs" "$root"
mount -o remount,bind,ro "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o nosuid,mode=755,size=1m tmpfs "$root/dev"
for d in null zero full random urandom tty; do
    touch "$root/dev/$d" && mount --bind "/dev/$d" "$root/dev/$d"
done
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m tmpfs "$root/tmp"
for f in resolv.conf hosts; do   # only over regular files: a symlink would resolve here
    if [ -f "$root/etc/$f" ] && [ ! -L "$root/etc/$f" ]; then
        mount --bind "/etc/$f" "$root/etc/$f"
        mount -o remount,bind,ro "$root/etc/$f"
    fi
done
exec python3 -c "$RUNNER" "$root" "$@"
'
# run_in_image COMMAND...: COMMAND in the image as its USER, read-only root.
# RUN_ENV: names of variables passed from here into the container (like docker -e NAME).
run_in_image() {
    RUNNER=$RUNNER unshare --mount --propagation private --pid --fork --kill-child \
        sh -c "$SETUP" sh "$rootfs" "$work/root" "$work/config.json" "${RUN_ENV:-}" "$@"
}
# run_image ARGS...: the image's ENTRYPOINT with ARGS.
run_image() {
    local entrypoint=()
    mapfile -t entrypoint < <(python3 -c 'import json,sys
print("\n".join(json.load(open(sys.argv[1]))["Entrypoint"]))' "$work/config.json")
    run_in_image "${entrypoint[@]}" "$@"
}

# expect_exit WANT DESCRIPTION COMMAND...: run, print ok/FAIL with the output on failure.
expect_exit() {
    local want=$1 what=$2 status=0
    shift 2
    "$@" >"$work/out" 2>&1 || status=$?
    if ((status == want)); then
        ok "$what: exit $status"
    else
        fail "$what: exit $status, expected $want; output:"
        sed 's/^/    /' "$work/out" | tail -n 20
    fi
}

# --- b. runs as 10001 on a read-only root --------------------------------------------
ids=$(run_in_image sh -c 'echo "$(id -u):$(id -g):$(id -G)"' 2>&1) || true
if [[ $ids == 10001:10001:10001 ]]; then
    ok "runs as uid:gid:groups $ids"
else
    fail "runs as '$ids', expected 10001:10001:10001"
fi
# /home/everruns belongs to 10001, so only a read-only root can stop this write.
home_owner=$(stat -c %u:%g "$rootfs/home/everruns" 2>/dev/null || echo missing)
probe=$(run_in_image sh -c 'touch "$HOME/.rw-probe" 2>&1 && echo WROTE' 2>&1) || true
if [[ $home_owner == 10001:10001 && $probe == *"Read-only file system"* && ! -e $rootfs/home/everruns/.rw-probe ]]; then
    ok "root filesystem is read-only (a write to \$HOME=/home/everruns, owned by $home_owner: ${probe##*: })"
else
    fail "root filesystem not proven read-only: /home/everruns owned by $home_owner, write gave '$probe'"
fi
expect_exit 0 "a write to the tmpfs /tmp (control: the user can write where it may)" \
    run_in_image sh -c 'echo x >/tmp/probe'

expect_exit 0 "everruns-admin help" run_image help
version_out=$(run_image --version 2>/dev/null) || true
want_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml 2>/dev/null | head -n1)
if [[ $version_out =~ ^everruns-admin\ [0-9]+\.[0-9]+\.[0-9]+ ]] &&
    [[ -z $want_version || $version_out == "everruns-admin $want_version" ]]; then
    ok "--version prints '$version_out'"
else
    fail "--version prints '$version_out', expected 'everruns-admin ${want_version:-<version>}'"
fi

# --- c. nothing of the build stage ---------------------------------------------------
leftovers=$(cd "$rootfs" && find . -xdev \( -name cargo -o -name 'cargo-*' -o -name rustc \
    -o -name rustdoc -o -name rustup -o -name sqlx -o -name 'sqlx-*' -o -name .rustup \
    -o -name .cargo -o -name rustlib -o -name 'librustc_driver*' -o -name 'libLLVM*rust*' \) \
    -print | sed 's/^\.//' | sort)
for p in /usr/local/lib/rustlib /usr/local/cargo /usr/local/share/everruns-build /build; do
    [[ -e $rootfs$p ]] && leftovers+=$'\n'$p
done
leftovers=$(sed '/^$/d' <<<"$leftovers" | sort -u)
if [[ -z $leftovers ]]; then
    ok "no cargo, rustc, sqlx(-cli), .cargo, .rustup, rustlib or build tree in the image"
else
    fail "build leftovers in the image: $(tr '\n' ' ' <<<"$leftovers")"
fi
local_bin=$(ls -A "$rootfs/usr/local/bin")
if [[ $local_bin == everruns-admin ]]; then
    ok "/usr/local/bin holds only everruns-admin"
else
    fail "/usr/local/bin holds: $(tr '\n' ' ' <<<"$local_bin")"
fi

# --- d. migrations against a real PostgreSQL -----------------------------------------
if [[ -n ${DATABASE_URL:-} ]]; then
    export DATABASE_URL
    RUN_ENV=DATABASE_URL
    expect_exit 3 "migrate-info --check on the empty database (3: pending)" \
        run_image migrate-info --check
    expect_exit 0 "migrate" run_image migrate
    expect_exit 0 "migrate-info --check after migrate" run_image migrate-info --check
    RUN_ENV=
else
    echo "skip: migrations (set DATABASE_URL to an empty PostgreSQL database)"
fi

if ((failures)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
