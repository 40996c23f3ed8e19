#!/usr/bin/env bash
# The whole flow on this machine, no AWS account: a throwaway PostgreSQL, the local
# emulator of ECS / CloudWatch Logs / Secrets Manager whose agent runs the real
# companion as the admin container, and the real launcher driving it:
#   run-admin-task migrate-info, migrate, reencrypt --dry-run.
# Everything it starts is stopped and removed when it exits.
set -euo pipefail
cd "$(dirname "$0")/../.."

examples/local/setup.sh
cargo build --locked --bins
bin=target/debug

. examples/local/postgres.sh
work=$(mktemp -d -t everruns-demo-XXXXXX)

cleanup() {
    set +e
    [ -n "${EMU_PID:-}" ] && { exec {EMU[1]}>&-; wait "$EMU_PID"; } 2>/dev/null
    stop_postgres "$work"
}
trap cleanup EXIT

start_postgres "$work"
database_url=$DATABASE_URL

# Two keys, as after a rotation: kek-v2 is current, kek-v1 the previous one.
new_key="kek-v2:$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
old_key="kek-v1:$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"

coproc EMU { exec python3 tests/emulator/stack.py --port 0 --companion "$bin/everruns-admin" \
    --database-url "$database_url" --encryption-key "$new_key" --encryption-key-previous "$old_key" \
    2>"$work/emulator.log"; }
EMU_PID=$!
read -r ready <&"${EMU[0]}" || { cat "$work/emulator.log" >&2; exit 1; }
field() { python3 -c 'import json, sys; v = json.loads(sys.argv[1])[sys.argv[2]]; print(",".join(v) if isinstance(v, list) else v)' "$ready" "$1"; }

export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_EC2_METADATA_DISABLED=true
export AWS_REGION=$(field region) AWS_ENDPOINT_URL=$(field endpoint)
export ECS_CLUSTER=everruns ECS_SUBNETS=$(field subnets) ECS_SECURITY_GROUP=$(field security_group)

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
step run-admin-task migrate-info
"$bin/run-admin-task" migrate-info
step run-admin-task migrate
"$bin/run-admin-task" migrate
# Rows written by the application before the rotation, under the previous key.
python3 examples/local/seed.py "$old_key" | psql -X -q -d "$database_url"
step run-admin-task reencrypt --dry-run
"$bin/run-admin-task" reencrypt --dry-run
