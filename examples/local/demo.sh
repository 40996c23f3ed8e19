#!/usr/bin/env bash
# The whole flow on this machine, no AWS account: a throwaway PostgreSQL, the local
# emulator of ECS / CloudWatch Logs / Secrets Manager whose agent runs the real
# companion as the admin container, and the real launcher driving it:
#   run-admin-task migrate-info, migrate, reencrypt --dry-run.
#
#   examples/local/demo.sh              run it, print a summary, stop and remove everything
#   examples/local/demo.sh --keep       run it and leave PostgreSQL and the emulator up,
#                                       printing the `export` lines to use them
#   examples/local/demo.sh --stop DIR   stop what a --keep run left in DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
. examples/local/postgres.sh

keep=false
case "${1:-}" in
    --keep) keep=true ;;
    --stop)
        dir=${2:?usage: demo.sh --stop DIR (the directory a --keep run printed)}
        [ -f "$dir/emulator.pid" ] || { echo "demo.sh: $dir holds no kept demo" >&2; exit 2; }
        kill "$(cat "$dir/emulator.pid")" 2>/dev/null || true
        stop_postgres "$dir"
        echo "stopped the emulator and PostgreSQL, removed $dir"
        exit 0 ;;
    "") ;;
    *) echo "usage: demo.sh [--keep | --stop DIR]" >&2; exit 2 ;;
esac

examples/local/setup.sh
cargo build --locked --bins
bin=target/debug
work=$(mktemp -d -t everruns-demo-XXXXXX)

cleanup() {
    set +e
    [ -f "$work/emulator.pid" ] && { kill "$(cat "$work/emulator.pid")"; wait; } 2>/dev/null
    stop_postgres "$work"
}
trap cleanup EXIT

start_postgres "$work"
database_url=$DATABASE_URL

# Two keys, as after a rotation: kek-v2 is current, kek-v1 the previous one.
new_key="kek-v2:$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
old_key="kek-v1:$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"

# Started in its own session with --ignore-stdin, so that with --keep it outlives this
# script; SIGTERM stops it.
setsid python3 tests/emulator/stack.py --port 0 --ignore-stdin --companion "$PWD/$bin/everruns-admin" \
    --database-url "$database_url" --encryption-key "$new_key" --encryption-key-previous "$old_key" \
    >"$work/ready.json" 2>"$work/emulator.log" </dev/null &
echo $! >"$work/emulator.pid"
for _ in $(seq 300); do
    [ -s "$work/ready.json" ] && break
    kill -0 "$(cat "$work/emulator.pid")" 2>/dev/null || { cat "$work/emulator.log" >&2; exit 1; }
    sleep 0.1
done
ready=$(head -n 1 "$work/ready.json")
field() { python3 -c 'import json, sys; v = json.loads(sys.argv[1])[sys.argv[2]]; print(",".join(v) if isinstance(v, list) else v)' "$ready" "$1"; }

export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_EC2_METADATA_DISABLED=true
export AWS_REGION=$(field region) AWS_ENDPOINT_URL=$(field endpoint)
export ECS_CLUSTER=everruns ECS_SUBNETS=$(field subnets) ECS_SECURITY_GROUP=$(field security_group)

# Bold only on a terminal: in a pipe or a CI log the escape codes are noise.
bold='' plain=''
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; fi
summary=() failed=0
step() {
    printf '\n%s$ run-admin-task %s%s\n' "$bold" "$*" "$plain"
    local code=0
    "$bin/run-admin-task" "$@" || code=$?
    ((code == 0)) || failed=$((failed + 1))
    summary+=("$(printf '  %-26s exit %s' "$*" "$code")")
}
step migrate-info
step migrate
# Rows written by the application before the rotation, under the previous key.
python3 examples/local/seed.py "$old_key" | psql -X -q -d "$database_url"
step reencrypt --dry-run

printf '\n%sdemo summary%s (exit 0 is success; see the README for the codes)\n' "$bold" "$plain"
printf '%s\n' "${summary[@]}"
if $keep; then
    trap - EXIT
    cat <<KEPT

PostgreSQL and the emulator are still running. To point run-admin-task at them:

export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_EC2_METADATA_DISABLED=true
export AWS_REGION=$AWS_REGION AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
export ECS_CLUSTER=$ECS_CLUSTER ECS_SUBNETS=$ECS_SUBNETS ECS_SECURITY_GROUP=$ECS_SECURITY_GROUP
export PATH="\$PWD/$bin:\$PATH"    # from the repository's root

then try: run-admin-task list; run-admin-task status TASK_ID; run-admin-task logs TASK_ID
(or --from-service everruns-api instead of ECS_SUBNETS and ECS_SECURITY_GROUP)
To stop them: examples/local/demo.sh --stop $work
KEPT
else
    echo "  everything the demo started is stopped and removed"
fi
# The demo is also the fresh-machine check (.ci/clean-root-setup.sh): a step that did
# not succeed fails it.
if ((failed)); then
    echo "demo: $failed step(s) did not exit 0" >&2
    exit 1
fi
