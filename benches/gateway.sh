#!/usr/bin/env bash
# The live gateway's capacity: how many incoming ~2 Mbit/s SRT streams one `live-gateway`
# repackages into HLS on this machine, its CPU and memory per stream, and the cost of one
# masked public copy (decode, mask, encode).
#
# Setup: a 2 Mbit/s H.264 TS (640x360@15 noise, x264 CBR, keyframe every second) is encoded
# once; ONE `gst-launch-1.0` process sends it at real time to N SRT callers (filesrc ->
# tsparse set-timestamps -> identity sync -> tee -> N x srtsink, each its own station id and
# passphrase). The gateway reads its station list from a static file served over HTTP (what the
# controller's GET /api/live/gateway answers), so the controller's cost is not in the figures.
# For each N in STREAMS: wait WARM_S, then utime+stime and RSS of the gateway process
# (/proc/PID) over MEASURE_S seconds; also the sender's CPU (it shares the 2 cores: a gateway
# machine would not run it) and how many streams produced a fresh playlist.
# Masked copy: N=1 with that station's camera public (one mask), CPU compared with N=1 plain.
#
# Usage: benches/gateway.sh   (env: STREAMS="25 50 100" MEASURE_S=20 WARM_S=8 KEEP=1)
# Needs: gst-launch-1.0 with x264enc, mpegtsmux, tsparse, srtsink; python3 (HTTP server);
# libsrt (the gateway links it).
set -euo pipefail
export LC_ALL=C

STREAMS=${STREAMS:-"25 50 100"}
MEASURE_S=${MEASURE_S:-20}
WARM_S=${WARM_S:-8}
# The clip covers the warm-up and the measurement (it is sent once, not looped).
CLIP_S=${CLIP_S:-$((WARM_S + MEASURE_S + 8))}
PROFILE=release
# SMOKE=1: 2 streams, a few seconds, the debug build (no release build in CI): figures printed,
# no thresholds, not results. CI runs it so the script cannot rot.
if [ "${SMOKE:-0}" = 1 ]; then
    STREAMS="2" MEASURE_S=3 WARM_S=4 CLIP_S=10 PROFILE=debug
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
GW=$TARGET/$PROFILE/live-gateway
if [ "$PROFILE" = release ]; then
    (cd "$ROOT" && cargo build -q --release --workspace --bin live-gateway)
else
    (cd "$ROOT" && cargo build -q --workspace --bin live-gateway)
fi
for e in x264enc mpegtsmux tsparse srtsink; do
    gst-inspect-1.0 "$e" >/dev/null 2>&1 || { echo "gateway.sh: GStreamer element $e missing" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stationwatch-gateway.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "files kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

echo "gateway.sh: encoding a ${CLIP_S} s 2 Mbit/s clip" >&2
gst-launch-1.0 -q videotestsrc pattern=snow num-buffers=$((CLIP_S * 15)) \
    ! video/x-raw,width=640,height=360,framerate=15/1 \
    ! x264enc bitrate=2000 vbv-buf-capacity=1000 key-int-max=15 speed-preset=ultrafast tune=zerolatency \
    ! h264parse config-interval=-1 ! mpegtsmux alignment=7 ! filesink location="$WORK/clip.ts"
clip_kbps=$(( $(stat -c %s "$WORK/clip.ts") * 8 / CLIP_S / 1000 ))

MAX=0
for n in $STREAMS; do [ "$n" -gt "$MAX" ] && MAX=$n; done
# The station list: BENCH-0001.. with a passphrase each; BENCH-0001's camera public when asked.
station_list() { # public(0/1)
    python3 - "$MAX" "$1" <<'PY'
import json, sys
n, public = int(sys.argv[1]), sys.argv[2] == "1"
st = []
for i in range(1, n + 1):
    s = {"station": f"BENCH-{i:04d}", "passphrase": f"bench-passphrase-{i:04d}"}
    if public and i == 1:
        s["public"] = [{"camera": "cam", "masks": [[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]]}]
    st.append(s)
print(json.dumps({"stations": st}))
PY
}
http_port=$(free_port)
mkdir -p "$WORK/www/api/live"
(cd "$WORK/www" && exec python3 -m http.server "$http_port" --bind 127.0.0.1 >/dev/null 2>&1) &
PIDS+=($!)
echo token > "$WORK/token"

# run N PUBLIC -> one line of figures
run() {
    local n=$1 public=$2 srt_port gw sender t0 t1 s0 s1 rss fresh
    station_list "$public" > "$WORK/www/api/live/gateway"
    srt_port=$(free_port)
    rm -rf "$WORK/hls" "$WORK/state"
    cat > "$WORK/gateway.toml" <<TOML
name = "bench"
[srt]
listen = "127.0.0.1:$srt_port"
[hls]
dir = "$WORK/hls"
state_dir = "$WORK/state"
segment_seconds = 2
[controller]
url = "http://127.0.0.1:$http_port/"
token_file = "$WORK/token"
TOML
    RUST_LOG=warn "$GW" run --config "$WORK/gateway.toml" 2>"$WORK/gateway.log" &
    gw=$!
    PIDS+=("$gw")
    sleep 2
    local sinks=()
    for ((i = 1; i <= n; i++)); do
        local id
        id=$(printf 'BENCH-%04d' "$i")
        sinks+=(t. ! queue max-size-buffers=64 leaky=downstream ! srtsink
            "uri=srt://127.0.0.1:$srt_port?streamid=$id/cam&passphrase=bench-passphrase-$(printf %04d "$i")"
            mode=caller wait-for-connection=false sync=false async=false latency=250)
    done
    gst-launch-1.0 -q filesrc location="$WORK/clip.ts" ! tsparse set-timestamps=true \
        ! identity sync=true ! tee name=t "${sinks[@]}" >"$WORK/sender.log" 2>&1 &
    sender=$!
    PIDS+=("$sender")
    sleep "$WARM_S"
    t0=$(cpu_ticks "$gw"); s0=$(cpu_ticks "$sender")
    sleep "$MEASURE_S"
    t1=$(cpu_ticks "$gw"); s1=$(cpu_ticks "$sender")
    rss=$(rss_kib "$gw")
    # Streams whose playlist changed in the last 5 s.
    fresh=$(find "$WORK/hls/private" -name index.m3u8 -newermt "-5 seconds" 2>/dev/null | wc -l)
    local pub=""
    if [ "$public" = 1 ]; then
        pub=$(find "$WORK/hls/public" -name index.m3u8 -newermt "-8 seconds" 2>/dev/null | wc -l)
    fi
    kill "$sender" "$gw" 2>/dev/null || true
    wait "$sender" "$gw" 2>/dev/null || true
    awk -v n="$n" -v p="$public" -v g=$((t1 - t0)) -v s=$((s1 - s0)) -v hz="$CLK_TCK" -v m="$MEASURE_S" \
        -v rss="$rss" -v fresh="$fresh" -v pub="$pub" 'BEGIN {
        gcpu = g / hz / m * 100; scpu = s / hz / m * 100;
        printf "| %d%s | %.1f %% | %.2f %% | %.1f MiB | %.2f MiB | %d/%d%s | %.1f %% |\n",
            n, p == 1 ? " (1 public, masked)" : "", gcpu, gcpu / n, rss / 1024, rss / 1024 / n,
            fresh, n, pub != "" ? sprintf(", public playlist %s", pub) : "", scpu }'
}

echo
echo "machine: $(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2 }'), $(nproc) CPUs; clip ${clip_kbps} kbit/s; build $PROFILE"
echo "date:    $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| streams | gateway CPU (100 % = one core) | per stream | gateway RSS | RSS per stream | playlists fresh | sender CPU |"
echo "|---|---:|---:|---:|---:|---|---:|"
for n in $STREAMS; do run "$n" 0; done
run 1 0
run 1 1
