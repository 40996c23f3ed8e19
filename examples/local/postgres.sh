# Sourced, not run: a throwaway PostgreSQL cluster for the demo and CI.
#   start_postgres DIR   initdb + start in DIR (empty, removed by stop_postgres) on a free
#                        loopback port, with a random password and a database `everruns`;
#                        sets DATABASE_URL (and POSTGRES_ADMIN_URL for the `postgres` db)
#   stop_postgres DIR    stop it and remove DIR
# initdb and postgres refuse to run as root, so as root they run as the `postgres` user.

postgres_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
    local dir=$1 bin port password
    bin=$(postgres_bin)
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')
    echo "$password" >"$dir/pw"
    as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth-host=scram-sha-256 \
        --auth-local=trust --pwfile="$dir/pw" --no-sync >/dev/null
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    POSTGRES_ADMIN_URL="postgres://postgres:$password@127.0.0.1:$port/postgres"
    DATABASE_URL="postgres://postgres:$password@127.0.0.1:$port/everruns"
    psql -X -q -d "$POSTGRES_ADMIN_URL" -c 'CREATE DATABASE everruns'
}

stop_postgres() {
    local dir=$1
    as_postgres "$(postgres_bin)/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
