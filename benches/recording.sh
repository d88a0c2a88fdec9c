#!/usr/bin/env bash
# Recording cost: station-agent against ffmpeg, on the same RTSP test camera, in one run.
#
# Every camera is `test-camera` (videotestsrc 1280x720@15, x264 2000 kbit/s, keyframe every 1 s,
# served over RTSP; a shared stream, so several clients get the same packets).
#
#   case a  1 camera:  station-agent, `ffmpeg -f segment` into MPEG-TS (the agent's container)
#                      and ffmpeg with Frigate's record arguments (MP4 segments), all three at
#                      the same time on the same camera.
#   case b  4 cameras: one station-agent recording 4 cameras against 4 ffmpeg processes (TS),
#                      each camera its own test-camera process. Run at the same time; if the
#                      test cameras and recorders together left less than MIN_HEADROOM % of the
#                      machine's CPU during that run (they would starve each other), case b is
#                      run again sequentially (agent, then ffmpeg) and both results are printed.
#
# Per recorder: CPU seconds = utime+stime of the process (all its threads) from /proc/PID/stat,
# read just before it is stopped, so from its start to the end of the run (start-up included,
# shut-down not); peak RSS = VmHWM from /proc/PID/status at the same moment; anon = RssAnon
# (private memory, without the shared libraries' file pages). For 4 ffmpeg processes the sums.
# CPU s per minute of video = CPU s / (DURATION / 60). The test cameras are not counted.
# Stop: SIGTERM to the agent, SIGINT to ffmpeg (both finish and close their files).
# Output check, per recorder, with ffprobe on every file: H.264 stream found, frames decoded
# (-count_frames), decoder errors, sum of the files' durations.
#
# Usage: benches/recording.sh     (env: DURATION=60 seconds per run; CASE_B=auto|parallel|
#        sequential; MIN_HEADROOM=20 percent; SEGMENT=10 seconds; KEEP=1 keeps the files;
#        VIEW=off: agents without view analysis, which decodes a keyframe every 2 s and which
#        ffmpeg does not do; BASELINE_AGENT=PATH: a second station-agent binary, e.g. built
#        from an older commit, recording the same cameras in the same run)
# Needs: cargo, ffmpeg, ffprobe, awk; GStreamer with rtsp-server, x264 (test-camera).
set -euo pipefail

PROFILE=release
WARMUP=5 # seconds left out of the steady-state CPU figure
# SMOKE=1: 6 s per run, both cases in parallel once, the debug build (no release build in CI):
# figures printed, no thresholds, not results. CI runs it so the script cannot rot.
if [ "${SMOKE:-0}" = 1 ]; then
    DURATION=${DURATION:-6}
    CASE_B=${CASE_B:-parallel}
    SEGMENT=${SEGMENT:-2}
    WARMUP=2
    PROFILE=debug
fi
DURATION=${DURATION:-60}
CASE_B=${CASE_B:-auto}
MIN_HEADROOM=${MIN_HEADROOM:-20}
SEGMENT=${SEGMENT:-10}
# Another station-agent binary measured in the same run (e.g. one built from an older commit).
BASELINE_AGENT=${BASELINE_AGENT:-}
FPS=15
CLK_TCK=$(getconf CLK_TCK)

if [ "${SMOKE:-0}" != 1 ] && [ "$DURATION" -lt 15 ]; then
    echo "recording.sh: DURATION must be at least 15 seconds" >&2
    exit 2
fi
case "$CASE_B" in auto | parallel | sequential) ;; *)
    echo "recording.sh: CASE_B must be auto, parallel or sequential" >&2
    exit 2
    ;;
esac
for tool in cargo ffmpeg ffprobe awk; do
    command -v "$tool" >/dev/null || { echo "recording.sh: $tool not found" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AGENT=$ROOT/target/$PROFILE/station-agent
CAMERA=$ROOT/target/$PROFILE/test-camera

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stationwatch-recording.XXXXXX")
ALL_PIDS=()
cleanup() {
    local pid
    for pid in "${ALL_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${ALL_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "files kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Processes

# start_camera NAME: starts a test camera on a free port; sets CAM_PID and CAM_URL.
start_camera() {
    local name=$1 out=$WORK/$1.out i
    : >"$out" # exists before the camera's shell opens it, or awk below may find no file
    "$CAMERA" --port 0 --width 1280 --height 720 --fps $FPS --bitrate-kbps 2000 \
        >"$out" 2>"$WORK/$name.err" &
    CAM_PID=$!
    ALL_PIDS+=("$CAM_PID")
    for i in $(seq 100); do
        CAM_URL=$(awk '/^READY /{print $2; exit}' "$out")
        if [ -n "$CAM_URL" ]; then return 0; fi
        kill -0 "$CAM_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "recording.sh: test camera $name did not become ready:" >&2
    cat "$WORK/$name.err" >&2
    exit 1
}

# start_agent NAME BINARY URL...: one station-agent recording the given cameras; sets REC_PID.
start_agent() {
    local name=$1 bin=$2 conf=$WORK/$1.toml n=0 url
    shift 2
    mkdir -p "$WORK/out/$name"
    {
        printf '[station]\nid = "BENCH-0001"\n\n[storage]\npath = "%s"\nsegment_seconds = %d\n' \
            "$WORK/out/$name" "$SEGMENT"
        # VIEW=off: no view analysis (it decodes a keyframe every 2 s, which ffmpeg does not).
        if [ "${VIEW:-on}" = off ]; then printf '\n[view]\nanalysis = false\n'; fi
        for url in "$@"; do
            n=$((n + 1))
            printf '\n[[camera]]\nid = "cam%d"\nsource = "%s"\n' "$n" "$url"
        done
    } >"$conf"
    "$bin" run --config "$conf" </dev/null >"$WORK/$name.log" 2>&1 &
    REC_PID=$!
    ALL_PIDS+=("$REC_PID")
}

# start_ffmpeg NAME URL ts|frigate OUTDIR: one ffmpeg recording one camera; sets REC_PID.
start_ffmpeg() {
    local name=$1 url=$2 kind=$3 out=$4
    local -a args
    mkdir -p "$out"
    if [ "$kind" = ts ]; then
        args=(-c copy -f segment -segment_time "$SEGMENT" -segment_format mpegts "$out/%03d.ts")
    else
        # Frigate's default record output arguments (ffmpeg.output_args.record).
        args=(-f segment -segment_time "$SEGMENT" -segment_format mp4 -reset_timestamps 1
            -strftime 1 -c copy -an "$out/%Y%m%d%H%M%S.mp4")
    fi
    ffmpeg -nostdin -hide_banner -loglevel warning -rtsp_transport tcp -i "$url" "${args[@]}" \
        >"$WORK/$name.log" 2>&1 &
    REC_PID=$!
    ALL_PIDS+=("$REC_PID")
}

# wait_output DIR...: waits (at most 15 s) until each recorder's output folder holds a file, i.e.
# its client plays the test camera's shared media. Only then may the next client of the same
# camera connect: gst-rtsp-server 1.22 aborts (`gst_rtsp_media_get_rates: assertion failed`)
# when a second client PLAYs a shared media that is still starting, and a fixed sleep was not
# enough on a busy machine (seen once in CI).
wait_output() {
    local dir i
    for dir in "$@"; do
        for i in $(seq 150); do
            if [ -n "$(find "$dir" -type f -print -quit 2>/dev/null)" ]; then break; fi
            sleep 0.1
        done
    done
}

# cpu_ticks PID...: summed utime+stime (clock ticks) of the processes.
cpu_ticks() {
    local pid sum=0 t
    for pid in "$@"; do
        # Field 2 (comm) may hold spaces: drop everything up to ") "; utime, stime are then 12, 13.
        t=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
        sum=$((sum + t))
    done
    echo "$sum"
}

# status_kb FIELD PID...: summed /proc/PID/status FIELD (kB).
status_kb() {
    local field=$1 pid sum=0 v
    shift
    for pid in "$@"; do
        v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status")
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# Machine-wide CPU counters: "busy total" in ticks (idle = idle + iowait).
machine_ticks() {
    awk '$1 == "cpu" {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t; exit}' /proc/stat
}

# stop_and_wait SIGNAL PID...: signals the processes, then wait_for_exit.
stop_and_wait() {
    local sig=$1 pid
    shift
    for pid in "$@"; do kill -"$sig" "$pid" 2>/dev/null || true; done
    wait_for_exit "$@"
}

# wait_for_exit PID...: waits up to 20 s for each process, then SIGKILLs it; sets STOP_RC (the
# worst exit status; 137 when one had to be killed).
wait_for_exit() {
    local pid i rc
    STOP_RC=0
    for pid in "$@"; do
        for i in $(seq 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid still running 20 s after the stop signal: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rc=0
        wait "$pid" || rc=$?
        if [ "$rc" -gt "$STOP_RC" ]; then STOP_RC=$rc; fi
    done
}

# ---------------------------------------------------------------------------------------------
# One measured run

# A recorder group is "label|signal|pid pid ...|output dir".
# measure RUN_NAME GROUP...: lets the already started groups record for DURATION s, samples
# them, stops them, verifies their files and appends one result line per group to RESULTS.
# CAM_PIDS must hold the test cameras serving them.
RESULTS=$WORK/results
NOTES=$WORK/notes
measure() {
    local run=$1 g label sig pids dir pid m0 mt0 m1 mt1 cam0 cam1 idle cam_pct rec rec_pct other_pct headroom
    shift
    read -r m0 mt0 < <(machine_ticks)
    cam0=$(cpu_ticks "${CAM_PIDS[@]}")
    log "$run: recording for $DURATION s"
    # CPU at +WARMUP s too: what comes after it is the steady cost, without start-up (loading
    # libraries and plugins, RTSP negotiation, first segment).
    local -A cpu hwm anon cpu_warm
    sleep "$WARMUP"
    for g in "$@"; do
        IFS='|' read -r label _ pids _ <<<"$g"
        # shellcheck disable=SC2086
        cpu_warm[$label]=$(cpu_ticks $pids)
    done
    sleep "$((DURATION - WARMUP))"

    # Sample everything first (all groups at the same moment), then stop.
    for g in "$@"; do
        IFS='|' read -r label _ pids _ <<<"$g"
        # shellcheck disable=SC2086  # pids is a space-separated list
        for pid in $pids; do
            kill -0 "$pid" 2>/dev/null || {
                echo "recording.sh: $label (pid $pid) died during the run; its log:" >&2
                tail -n 20 "$WORK"/*.log >&2 || true
                # The test cameras' own output (a camera that died takes its clients with it).
                tail -n 20 "$WORK"/*.err >&2 || true
                exit 1
            }
        done
        # shellcheck disable=SC2086
        cpu[$label]=$(cpu_ticks $pids)
        # shellcheck disable=SC2086
        hwm[$label]=$(status_kb VmHWM $pids)
        # shellcheck disable=SC2086
        anon[$label]=$(status_kb RssAnon $pids)
    done
    read -r m1 mt1 < <(machine_ticks)
    cam1=$(cpu_ticks "${CAM_PIDS[@]}")
    rec=0
    for g in "$@"; do
        IFS='|' read -r label _ _ _ <<<"$g"
        rec=$((rec + cpu[$label]))
    done
    # Machine CPU over the run, in % of all CPUs: idle, and who was busy.
    # Headroom = what the cameras and recorders left of the machine, whatever else ran.
    read -r idle cam_pct rec_pct other_pct headroom < <(awk -v b="$((m1 - m0))" -v t="$((mt1 - mt0))" \
        -v c="$((cam1 - cam0))" -v r="$rec" 'BEGIN {
            printf "%.0f %.0f %.0f %.0f %.0f\n", 100 * (1 - b / t), 100 * c / t, 100 * r / t,
                100 * (b - c - r) / t, 100 * (1 - (c + r) / t) }')
    LAST_HEADROOM=$headroom
    echo "$run: machine CPU over the run ($(nproc) CPUs = 100%): test cameras ${cam_pct}%," \
        "recorders ${rec_pct}%, other processes ${other_pct}%, idle ${idle}%" >>"$NOTES"
    if [ "$idle" -lt 10 ]; then
        echo "  warning: other processes left the machine less than 10% idle during this run;" \
            "CPU seconds are per process and still comparable, but check the frame counts" >>"$NOTES"
    fi

    # Stop every recorder at the same moment, then collect them and check their files.
    for g in "$@"; do
        IFS='|' read -r label sig pids _ <<<"$g"
        # shellcheck disable=SC2086
        kill -"$sig" $pids
    done
    for g in "$@"; do
        IFS='|' read -r label sig pids dir <<<"$g"
        # shellcheck disable=SC2086
        wait_for_exit $pids
        verify "$dir"
        # run|label|procs|cpu ticks|hwm kB|anon kB|exit|files|frames|seconds|errors|playable|
        # cpu ticks after warm-up
        echo "$run|$label|$(wc -w <<<"$pids")|${cpu[$label]}|${hwm[$label]}|${anon[$label]}|$STOP_RC|$VERIFY|$((cpu[$label] - cpu_warm[$label]))" \
            >>"$RESULTS"
    done
}

# verify DIR: ffprobe every segment under DIR; sets VERIFY="files|frames|seconds|errors|playable"
# (playable = files with an H.264 stream and at least one decoded frame).
verify() {
    local dir=$1 f files=0 frames=0 secs=0 errors=0 playable=0 out err n d codec
    while IFS= read -r f; do
        files=$((files + 1))
        err=$WORK/ffprobe.err
        out=$(ffprobe -v error -select_streams v:0 -count_frames \
            -show_entries stream=codec_name,nb_read_frames:format=duration \
            -of default=noprint_wrappers=1 "$f" 2>"$err") || true
        # MPEG-TS files list the stream twice (under its program too): first value wins.
        codec=$(awk -F= '$1 == "codec_name" {print $2; exit}' <<<"$out")
        n=$(awk -F= '$1 == "nb_read_frames" {print int($2); exit}' <<<"$out")
        d=$(awk -F= '$1 == "duration" {print $2 + 0; exit}' <<<"$out")
        frames=$((frames + ${n:-0}))
        secs=$(awk -v a="$secs" -v b="${d:-0}" 'BEGIN {printf "%.3f", a + b}')
        errors=$((errors + $(wc -l <"$err")))
        if [ "$codec" = h264 ] && [ "${n:-0}" -gt 0 ]; then playable=$((playable + 1)); fi
    done < <(find "$dir" -type f \( -name '*.ts' -o -name '*.mp4' \) | sort)
    VERIFY="$files|$frames|$secs|$errors|$playable"
}

# ---------------------------------------------------------------------------------------------

log "building $PROFILE binaries"
if [ "$PROFILE" = release ]; then
    (cd "$ROOT" && cargo build --release --quiet --workspace --bin station-agent --bin test-camera)
else
    (cd "$ROOT" && cargo build --quiet --workspace --bin station-agent --bin test-camera)
fi
: >"$RESULTS"
: >"$NOTES"

# Case a: one camera, three recorders at once.
log "case a: 1 test camera; agent, ffmpeg (TS) and ffmpeg (Frigate args) on it at once"
start_camera cam-a
CAM_PIDS=("$CAM_PID")
# One client first: the test camera's shared media is prepared once, before the others connect
# (gst-rtsp-server answers 503 to clients that arrive while a shared media is torn down, and
# aborts on a second PLAY while it starts: wait_output). ffmpeg thus starts ~1 s before the
# agent; its CPU figure includes that second (~2 % of it), which slightly favours the agent.
start_ffmpeg a-ffmpeg "$CAM_URL" ts "$WORK/out/a-ffmpeg"
A_FFMPEG=$REC_PID
wait_output "$WORK/out/a-ffmpeg"
start_ffmpeg a-frigate "$CAM_URL" frigate "$WORK/out/a-frigate"
A_FRIGATE=$REC_PID
start_agent a-agent "$AGENT" "$CAM_URL"
A_GROUPS=("station-agent|TERM|$REC_PID|$WORK/out/a-agent")
if [ -n "$BASELINE_AGENT" ]; then
    start_agent a-baseline "$BASELINE_AGENT" "$CAM_URL"
    A_GROUPS+=("baseline station-agent|TERM|$REC_PID|$WORK/out/a-baseline")
fi
measure "a: 1 camera" "${A_GROUPS[@]}" \
    "ffmpeg -f segment (TS)|INT|$A_FFMPEG|$WORK/out/a-ffmpeg" \
    "ffmpeg, Frigate args (MP4)|INT|$A_FRIGATE|$WORK/out/a-frigate"
stop_and_wait TERM "${CAM_PIDS[@]}"

# Case b: four cameras, each its own test-camera process.
log "case b: 4 test cameras"
URLS=()
CAM_PIDS=()
for i in 1 2 3 4; do
    start_camera "cam-b$i"
    CAM_PIDS+=("$CAM_PID")
    URLS+=("$CAM_URL")
done

# start_b_agent SUFFIX / start_b_ffmpeg SUFFIX: case b's recorders; set B_AGENT / B_FFMPEG.
start_b_agent() {
    start_agent "b-agent$1" "$AGENT" "${URLS[@]}"
    B_AGENTS=("station-agent, 4 cameras|TERM|$REC_PID|$WORK/out/b-agent$1")
    if [ -n "$BASELINE_AGENT" ]; then
        start_agent "b-baseline$1" "$BASELINE_AGENT" "${URLS[@]}"
        B_AGENTS+=("baseline agent, 4 cameras|TERM|$REC_PID|$WORK/out/b-baseline$1")
    fi
}
start_b_ffmpeg() {
    local i pids=() dir=$WORK/out/b-ffmpeg$1
    for i in 1 2 3 4; do
        start_ffmpeg "b-ffmpeg$1-$i" "${URLS[$((i - 1))]}" ts "$dir/cam$i"
        pids+=("$REC_PID")
    done
    B_FFMPEG="4 x ffmpeg -f segment (TS)|INT|${pids[*]}|$dir"
}

if [ "$CASE_B" != sequential ]; then
    log "case b: one agent (4 cameras) and 4 ffmpeg at once"
    start_b_ffmpeg ""
    wait_output "$WORK/out/b-ffmpeg/cam"{1,2,3,4}
    start_b_agent ""
    measure "b: 4 cameras, simultaneous" "${B_AGENTS[@]}" "$B_FFMPEG"
fi
if [ "$CASE_B" = auto ]; then
    if [ "$LAST_HEADROOM" -lt "$MIN_HEADROOM" ]; then
        echo "b: the cameras and recorders left only ${LAST_HEADROOM}% of the machine (< ${MIN_HEADROOM}%):" \
            "case b repeated sequentially (agent, then ffmpeg) on the same 4 cameras" >>"$NOTES"
    else
        echo "b: the cameras and recorders left ${LAST_HEADROOM}% of the machine (>= MIN_HEADROOM" \
            "${MIN_HEADROOM}%): the simultaneous run stands, no sequential run" >>"$NOTES"
    fi
fi
if [ "$CASE_B" = sequential ] || { [ "$CASE_B" = auto ] && [ "$LAST_HEADROOM" -lt "$MIN_HEADROOM" ]; }; then
    log "case b, sequential: the agent alone"
    start_b_agent -seq
    measure "b: 4 cameras, agent alone" "${B_AGENTS[@]}"
    log "case b, sequential: 4 ffmpeg alone"
    start_b_ffmpeg -seq
    measure "b: 4 cameras, ffmpeg alone" "$B_FFMPEG"
fi
stop_and_wait TERM "${CAM_PIDS[@]}"

# ---------------------------------------------------------------------------------------------
# Report

echo
echo "Recording cost, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs ($(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}')),"
echo "$(ffmpeg -version | awk 'NR == 1 {print "ffmpeg " $3}'), GStreamer $(gst-launch-1.0 --version 2>/dev/null | awk '/GStreamer/ && !v {v = $2} END {print v}')," \
    "DURATION=${DURATION} s, segments of ${SEGMENT} s, camera 1280x720@${FPS} x264 2000 kbit/s, expected frames per camera ~ $((DURATION * FPS))"
echo
awk -F'|' -v hz="$CLK_TCK" -v dur="$DURATION" -v warm="$WARMUP" '
BEGIN {
    printf "| %-26s | %-26s | %5s | %6s | %13s | %13s | %12s | %12s | %5s | %6s | %7s | %8s | %6s | %4s |\n", \
        "run", "recorder", "procs", "CPU s", "CPU s/vid-min", "steady s/min", "peak RSS MiB", \
        "anon RSS MiB", "files", "frames", "video s", "playable", "errors", "exit"
    printf "|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", dash(28), dash(28), dash(7), dash(8), \
        dash(15), dash(15), dash(14), dash(14), dash(7), dash(8), dash(9), dash(10), dash(8), dash(6)
}
function dash(n,  s) { s = ""; while (n-- > 0) s = s "-"; return s }
{
    cpu = $4 / hz
    printf "| %-26s | %-26s | %5d | %6.2f | %13.2f | %13.2f | %12.1f | %12.1f | %5d | %6d | %7.1f | %8s | %6d | %4d |\n", \
        $1, $2, $3, cpu, cpu / (dur / 60), $13 / hz / ((dur - warm) / 60), $5 / 1024, $6 / 1024, \
        $8, $9, $10, $12 "/" $8, $11, $7
}' "$RESULTS"
echo
cat <<EOF
CPU s         utime+stime of the recorder process(es), all threads, from start to the stop signal
CPU s/vid-min CPU s / (DURATION / 60)
steady s/min  the same without the first $WARMUP s (start-up: libraries, plugins, RTSP set-up)
peak RSS      VmHWM, summed over the processes; anon RSS = RssAnon (private memory) at the stop
frames        frames decoded by ffprobe in all the files (4 cameras: all four together)
video s       sum of the files' durations (ffprobe); playable = files with H.264 that decode
errors        decoder messages; exit = worst exit status after SIGTERM (agent) / SIGINT
              (ffmpeg: 255 is its normal status after a signal)
The test cameras are not counted. ffmpeg: ffmpeg -nostdin -rtsp_transport tcp -i URL
  TS:      -c copy -f segment -segment_time $SEGMENT -segment_format mpegts %03d.ts
  Frigate: -f segment -segment_time $SEGMENT -segment_format mp4 -reset_timestamps 1 -strftime 1 -c copy -an
EOF
cat "$NOTES"
