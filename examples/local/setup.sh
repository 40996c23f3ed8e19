#!/usr/bin/env bash
# Installs, idempotently, what the local demo and the tests need besides Rust:
# PostgreSQL server binaries (a throwaway cluster is made with initdb), libclang (the
# pg_query crate's build runs bindgen over PostgreSQL's parser) and moto's server (the
# local emulator of ECS, CloudWatch Logs and Secrets Manager).
set -euo pipefail

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
    echo "setup: installing PostgreSQL (Debian packages postgresql, postgresql-contrib)" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends postgresql postgresql-contrib >/dev/null
fi

if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && ! ls /usr/lib/*/libclang*.so* >/dev/null 2>&1; then
    echo "setup: installing libclang (Debian package libclang-dev) for the pg_query crate" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends libclang-dev >/dev/null
fi

if ! python3 -c 'import moto.server, flask, flask_cors, cryptography' >/dev/null 2>&1; then
    echo "setup: installing moto[server] 5.2 (the local AWS emulator)" >&2
    python3 -m pip install -q 'moto[server]>=5.2,<5.3' \
        || python3 -m pip install -q --break-system-packages 'moto[server]>=5.2,<5.3'
fi
