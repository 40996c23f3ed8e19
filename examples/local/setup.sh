#!/usr/bin/env bash
# Installs, idempotently, what the local demo and the tests need besides Rust (cargo,
# rustc and a C compiler for linking), on Debian:
#   postgresql, postgresql-contrib  server binaries: the demo and the tests make a
#                                   throwaway cluster with initdb
#   libclang-dev                    the pg_query crate's build runs bindgen over
#                                   PostgreSQL's parser, and bindgen loads libclang
#   python3, python3-pip            only when there is no python3 with pip at all
#   moto[server] 5.2 (pip)          the local emulator of ECS, CloudWatch Logs and
#                                   Secrets Manager
# Each is decided from what is really there: the package manager's own record for
# Debian packages, an import for the Python ones. Nothing is printed when all is present.
set -euo pipefail

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# dpkg's record, not a file glob: libclang-cpp14 (a different library, present on many
# machines) matches `libclang*.so*` but is not what bindgen loads.
installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=() why=()
need() {
    installed "$1" || { missing+=("$1"); why+=("  $1: $2"); }
}
need postgresql "PostgreSQL's server (initdb, pg_ctl) for the throwaway clusters"
need postgresql-contrib "PostgreSQL's contrib modules"
need libclang-dev "libclang, loaded by bindgen when the pg_query crate builds"
if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    need python3 "the local emulator and the demo's helpers are Python"
    need python3-pip "to install moto"
fi

if ((${#missing[@]})); then
    echo "setup: installing Debian packages ${missing[*]}:" >&2
    printf '%s\n' "${why[@]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import moto.server, flask, flask_cors, cryptography' >/dev/null 2>&1; then
    echo "setup: installing moto[server] 5.2 with pip: the local AWS emulator" >&2
    # Debian's own python3 refuses a plain `pip install` (PEP 668); a python3 of one's
    # own (pyenv, a venv) takes it.
    python3 -m pip install -q 'moto[server]>=5.2,<5.3' 2>/dev/null \
        || python3 -m pip install -q --break-system-packages 'moto[server]>=5.2,<5.3'
fi
