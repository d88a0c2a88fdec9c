#!/usr/bin/env bash
# Controller scale: N simulated stations (fleet-sim) against private Mosquittos and the release
# controller, N = 10,000 first, then larger until the controller falls behind.
#
# Per N, everything is fresh: Mosquitto on free ports (anonymous, no connection limit,
# persistence and queue limits as config/mosquitto/stationwatch.conf), the controller with an
# empty SQLite database (or PostgreSQL with DB=postgres) and a bootstrap admin, then `fleet-sim`:
# connects the N stations at CONNECT_RATE per second, warms up one interval + 5 s after the last
# connect, measures DURATION seconds (publish → visible probes, stations list timings,
# /api/metrics every 5 s, CPU and RSS of controller and brokers from /proc) and prints its
# figures. The loop stops at the first N where fleet-sim reports the controller falling behind
# or missing a goal (exit status 3).
#
# Every station connection is a file descriptor in its broker and in its fleet-sim process. Up
# to PER_PROC stations (the open-files limit minus 2000, at most 18,000) one broker takes them
# all; above that, the stations go to regional brokers of PER_PROC stations each, bridged to the
# central broker the controller uses (the design's "bridged regional Mosquittos"), one fleet-sim
# process per region: the first measures, the others only publish. (A container without
# CAP_SYS_RESOURCE cannot raise the hard limit, typically 20,000.) A single broker with more than
# ~28,000 stations listens on several loopback addresses 127.0.0.1..K: one source/destination
# address pair has only ~28,000 ephemeral ports.
#
# Usage: benches/controller-scale.sh       (env: STATIONS="10000 20000 40000 80000 160000"
#        INTERVAL=15 DURATION=60 CONNECT_RATE=2000 EVENTS_PER_HOUR=1 DEGRADED=0.05
#        DB=sqlite|postgres CONTROLLER_BIN=path (compare another build) KEEP_GOING=1 (do not stop at the first failure) KEEP=1 (keep logs)
#        CARGO_TARGET_DIR (default: target))
# Needs: cargo, mosquitto, curl, python3 (free ports); PostgreSQL's initdb/pg_ctl for DB=postgres.
set -euo pipefail

PROFILE=release
# SMOKE=1: 200 stations for 5 s on SQLite with the debug build (no release build in CI):
# figures printed, no thresholds, not results. CI runs it so the script cannot rot.
if [ "${SMOKE:-0}" = 1 ]; then
    STATIONS=${STATIONS:-200}
    INTERVAL=${INTERVAL:-2}
    DURATION=${DURATION:-5}
    PROFILE=debug
fi
STATIONS=${STATIONS:-"10000 20000 40000 80000 160000"}
INTERVAL=${INTERVAL:-15}
DURATION=${DURATION:-60}
CONNECT_RATE=${CONNECT_RATE:-2000}
EVENTS_PER_HOUR=${EVENTS_PER_HOUR:-1}
DEGRADED=${DEGRADED:-0.05}
DB=${DB:-sqlite}
KEEP_GOING=${KEEP_GOING:-0}
KEEP=${KEEP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac

for tool in mosquitto curl; do
    command -v "$tool" >/dev/null || "$ROOT/scripts/install-deps"
done
for tool in cargo mosquitto curl python3; do
    command -v "$tool" >/dev/null || { echo "controller-scale.sh: $tool not found" >&2; exit 1; }
done
case "$DB" in sqlite | postgres) ;; *) echo "controller-scale.sh: DB must be sqlite or postgres" >&2; exit 2 ;; esac

ulimit -Hn 200000 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -Sn)
[ "$FD_LIMIT" = unlimited ] && FD_LIMIT=1048576
PER_PROC=$((FD_LIMIT - 2000))
((PER_PROC > 18000)) && PER_PROC=18000

if [ "$PROFILE" = release ]; then
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --locked -q --workspace --bin station-controller --bin fleet-sim)
else
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --locked -q --workspace --bin station-controller --bin fleet-sim)
fi
# CONTROLLER_BIN: another controller build to measure with the same simulator (before/after).
CONTROLLER=${CONTROLLER_BIN:-$TARGET/$PROFILE/station-controller}
SIM=$TARGET/$PROFILE/fleet-sim

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stationwatch-scale.XXXXXX")
BROKER_PIDS=()
SIM_PIDS=()
CONTROLLER_PID=""
PG_DIR=""
stop_pid() { # pid signal
    [ -n "$1" ] || return 0
    kill -"$2" "$1" 2>/dev/null || return 0
    for _ in $(seq 150); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}
stop_run() {
    local p
    for p in "${SIM_PIDS[@]}"; do stop_pid "$p" TERM; done
    SIM_PIDS=()
    stop_pid "$CONTROLLER_PID" TERM
    CONTROLLER_PID=""
    for p in "${BROKER_PIDS[@]}"; do stop_pid "$p" TERM; done
    BROKER_PIDS=()
}
cleanup() {
    stop_run
    if [ -n "$PG_DIR" ]; then
        su postgres -c "PATH='$PATH' pg_ctl -D '$PG_DIR/data' -m fast stop" >/dev/null 2>&1 || true
    fi
    if [ "$KEEP" = 1 ]; then echo "kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 50); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
}

# broker_conf DIR PORT ADDRS [CENTRAL_PORT NAME]: a Mosquitto config listening on PORT at
# 127.0.0.1..ADDRS; with CENTRAL_PORT, a regional broker bridging the stations' topics to the
# central broker (and commands back).
broker_conf() {
    local dir=$1 port=$2 addrs=$3 central=${4:-} name=${5:-}
    mkdir -p "$dir/data"
    {
        echo "per_listener_settings false"
        echo "allow_anonymous true"
        echo "user root"
        echo "persistence true"
        echo "persistence_location $dir/data/"
        echo "autosave_interval 30"
        echo "max_packet_size 2097152"
        echo "max_queued_messages 20000"
        echo "max_queued_bytes 536870912"
        echo "log_dest file $dir/mosquitto.log"
        echo "log_type error"
        echo "log_type warning"
        echo "connection_messages false"
        for a in $(seq 1 "$addrs"); do
            echo "listener $port 127.0.0.$a"
            echo "max_connections -1"
        done
        if [ -n "$central" ]; then
            echo "connection $name"
            echo "address 127.0.0.1:$central"
            echo "clientid $name"
            echo "cleansession true"
            echo "bridge_protocol_version mqttv311"
            echo "topic stationwatch/v1/+/status out 1"
            echo "topic stationwatch/v1/+/health out 0"
            echo "topic stationwatch/v1/+/events out 1"
            echo "topic stationwatch/v1/+/ack out 1"
            echo "topic stationwatch/v1/+/snapshot/+ out 1"
            echo "topic stationwatch/v1/+/cmd in 1"
        fi
    } >"$dir/mosquitto.conf"
}

if [ "$DB" = postgres ]; then
    # A throw-away cluster on a free port, owned by the postgres user.
    PG_DIR=$WORK/pg
    PG_PORT=$(free_port)
    # (mktemp -d makes $WORK 0700: the postgres user must be able to reach its folder.)
    chmod 755 "$WORK"
    mkdir -p "$PG_DIR" && chown postgres "$PG_DIR"
    PATH="$PATH:$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    export PATH
    su postgres -c "PATH='$PATH' initdb -D '$PG_DIR/data' -A trust -U postgres >/dev/null"
    su postgres -c "PATH='$PATH' pg_ctl -D '$PG_DIR/data' -l '$PG_DIR/log' -o '-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1' -w start >/dev/null"
fi

PASSWORD=bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$PASSWORD" >"$WORK/admin-password"
ROWS=$WORK/rows.md
: >"$ROWS"

echo "controller-scale: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), DB $DB, open files $FD_LIMIT (≤ $PER_PROC stations per broker); load $(cut -d' ' -f1-3 /proc/loadavg); logs in $WORK"

verdict=""
for N in $STATIONS; do
    RUN=$WORK/n$N
    mkdir -p "$RUN"
    MQTT_PORT=$(free_port)
    HTTP_PORT=$(free_port)
    REGIONS=1
    ((N > PER_PROC)) && REGIONS=$(((N + PER_PROC - 1) / PER_PROC))
    ADDRS=1
    ((REGIONS == 1)) && ADDRS=$(((N + 19999) / 20000))
    broker_conf "$RUN/central" "$MQTT_PORT" "$ADDRS"
    mosquitto -c "$RUN/central/mosquitto.conf" >>"$RUN/central/mosquitto.log" 2>&1 &
    BROKER_PIDS=("$!")
    wait_port "$MQTT_PORT"
    REGION_PORTS=("$MQTT_PORT")
    if ((REGIONS > 1)); then
        REGION_PORTS=()
        for r in $(seq 1 "$REGIONS"); do
            port=$(free_port)
            broker_conf "$RUN/region$r" "$port" 1 "$MQTT_PORT" "region-$r"
            mosquitto -c "$RUN/region$r/mosquitto.conf" >>"$RUN/region$r/mosquitto.log" 2>&1 &
            BROKER_PIDS+=("$!")
            REGION_PORTS+=("$port")
            wait_port "$port"
        done
    fi

    if [ "$DB" = postgres ]; then
        DBNAME=scale_$N
        psql -h "$PG_DIR" -p "$PG_PORT" -U postgres -qc "CREATE DATABASE $DBNAME" >/dev/null
        DB_URL="postgres://postgres@127.0.0.1:$PG_PORT/$DBNAME"
    else
        DB_URL="sqlite://$RUN/controller.db"
    fi
    {
        echo "[http]"
        echo "listen = \"127.0.0.1:$HTTP_PORT\""
        echo "cookie_secure = false"
        echo "[database]"
        echo "url = \"$DB_URL\""
        echo "[mqtt]"
        echo "url = \"mqtt://127.0.0.1:$MQTT_PORT\""
        echo "client_id = \"controller-scale\""
        echo "[auth]"
        echo "bootstrap_admin = \"admin\""
        echo "bootstrap_password_file = \"$WORK/admin-password\""
    } >"$RUN/controller.toml"
    RUST_LOG=${RUST_LOG:-info} "$CONTROLLER" run --config "$RUN/controller.toml" >"$RUN/controller.log" 2>&1 &
    CONTROLLER_PID=$!
    for _ in $(seq 100); do
        curl -fs -o /dev/null "http://127.0.0.1:$HTTP_PORT/login" && break
        sleep 0.1
    done

    echo
    echo "controller-scale: N=$N: $REGIONS broker(s) of ≤ $PER_PROC stations (pids ${BROKER_PIDS[*]}), controller pid $CONTROLLER_PID; load $(cut -d' ' -f1-3 /proc/loadavg)"
    per=$((N / REGIONS))
    rate=$((CONNECT_RATE / REGIONS + 1))
    # Regions 2..: publishing only, started together with the measuring process.
    for r in $(seq 2 "$REGIONS"); do
        n=$per
        ((r == REGIONS)) && n=$((N - per * (REGIONS - 1)))
        "$SIM" --broker "127.0.0.1:${REGION_PORTS[$((r - 1))]}" --stations "$n" --prefix "r$r" \
            --interval-s "$INTERVAL" --connect-rate "$rate" \
            --events-per-hour "$EVENTS_PER_HOUR" --degraded-fraction "$DEGRADED" \
            >"$RUN/sim-region$r.log" 2>&1 &
        SIM_PIDS+=("$!")
    done
    broker_args=()
    for p in "${BROKER_PIDS[@]}"; do broker_args+=(--broker-pid "$p"); done
    label=$DB
    ((REGIONS > 1)) && label="$DB, $REGIONS regional brokers"
    rc=0
    FLEET_SIM_PASSWORD=$PASSWORD "$SIM" \
        --broker "127.0.0.1:${REGION_PORTS[0]}" --broker-addrs "$ADDRS" \
        --stations "$per" --fleet-total "$N" --prefix "r1" \
        --interval-s "$INTERVAL" --duration-s "$DURATION" \
        --connect-rate "$rate" --events-per-hour "$EVENTS_PER_HOUR" \
        --degraded-fraction "$DEGRADED" \
        --controller "http://127.0.0.1:$HTTP_PORT" --user admin \
        --controller-pid "$CONTROLLER_PID" "${broker_args[@]}" \
        --row-file "$ROWS" --label "$label" || rc=$?
    ((REGIONS > 1)) && { grep -h "connected in" "$RUN"/sim-region*.log || true; }
    grep -iE " (WARN|ERROR) " "$RUN/controller.log" | sed -E 's/^[^ ]+ +//' | cut -c1-160 | sort | uniq -c | sort -rn | head -5 || true
    cat "$RUN"/*/mosquitto.log | grep -v "should not be run as root" | grep -v "^$" | tail -3 || true
    stop_run
    if [ "$rc" = 1 ]; then
        echo "controller-scale: fleet-sim failed at N=$N" >&2
        exit 1
    fi
    if [ "$rc" = 3 ]; then
        verdict="falls behind or misses a goal at N=$N"
        [ "$KEEP_GOING" = 1 ] || break
    fi
done

echo
echo "| stations | interval s | published msg/s | ingested msg/s | write backlog first / last / max | probe delay p50 / p99 / max ms | controller delay p50 / p99 ms | list p50 / p99 / max ms | controller CPU % / peak RSS MiB | broker(s) CPU % / peak RSS MiB | fleet-sim CPU % | machine busy % | load 1m | keeps up |"
echo "|---:|---:|---:|---:|---|---|---|---|---|---|---:|---:|---:|---|"
cat "$ROWS"
echo
echo "controller-scale: ${verdict:-kept up at every N}"
