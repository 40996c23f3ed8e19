#!/usr/bin/env bash
# The README's first command on a fresh machine, proven on a clean root rather than on
# this one (whatever was installed here by hand would hide a missing install step).
#
# The root is admin-image/build.sh's RUST_IMAGE base: a debootstrapped Debian 12 with
# gcc, ca-certificates and the Rust toolchain, nothing else. Into a throwaway container
# of it go the files a fresh clone has (tracked and new, not ignored ones); there it
# checks that the root really lacks what setup installs, then runs
# `examples/local/demo.sh`, which runs setup.sh, builds both binaries (pg_query's
# build script included) and drives the launcher through the emulator against a
# throwaway PostgreSQL. Any failure fails this script; the container is removed on exit.
#
# Usage: .ci/clean-root-setup.sh   (as root, or it re-runs itself with sudo)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ((EUID != 0)); then exec sudo bash "${BASH_SOURCE[0]}" "$@"; fi

BUILDAH=(buildah --storage-driver "${STORAGE_DRIVER:-vfs}")
start=$SECONDS

base=$(admin-image/build.sh --bases-only | tee /dev/stderr | sed -n 's/^RUST_IMAGE=//p')
[[ -n $base ]] || { echo "clean-root-setup: admin-image/build.sh named no RUST_IMAGE base" >&2; exit 1; }

ctr=$("${BUILDAH[@]}" from --pull=never "$base")
trap '"${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$("${BUILDAH[@]}" mount "$ctr")
mkdir -p "$mnt/src"
# What a fresh clone of this work tree holds; a file deleted but not yet committed is
# skipped rather than failing the copy.
git ls-files -z --cached --others --exclude-standard \
    | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null \
    | tar -C "$mnt/src" -xf -
"${BUILDAH[@]}" umount "$ctr" >/dev/null

# shellcheck disable=SC2016 # expanded inside the container
"${BUILDAH[@]}" run --isolation chroot "$ctr" -- bash -euo pipefail -c '
    for pkg in libclang-dev postgresql python3; do
        if [ "$(dpkg-query -W -f="\${Status}" "$pkg" 2>/dev/null)" = "install ok installed" ]; then
            echo "clean-root-setup: the root is not clean: $pkg is already installed" >&2
            exit 1
        fi
    done
    # The machine trusts its CA bundle for every client (an inspecting egress proxy);
    # the base carries that bundle as SSL_CERT_FILE, which pip does not read by itself.
    if [ -n "${SSL_CERT_FILE:-}" ]; then export PIP_CERT=$SSL_CERT_FILE; fi
    cd /src
    examples/local/demo.sh
'
echo "clean-root-setup: passed in $((SECONDS - start)) s"
