#!/usr/bin/env bash
# Which container should the agent record into?  A measured answer.
#
# One live H.264 stream (videotestsrc 1280x720@15, x264enc 2000 kbit/s, keyframe every second)
# is recorded at the same time, through a tee, by splitmuxsink with several muxers, as the
# agent records: `h264parse config-interval=-1 ! splitmuxsink max-size-time=60s`.
# After DURATION seconds the recorder is killed with SIGKILL (a crash, an OOM kill, a watchdog)
# while every file is still open. For every file we then measure with ffprobe/ffmpeg:
#   playable  - ffprobe finds the video stream and decodes frames from it
#   frames    - decodable frames; covers_s = frames / fps
#   lost_s    - wall time from the first encoded frame to the kill, minus covers_s
#   errors    - lines ffmpeg prints on stderr while decoding the whole file
#   overhead  - (file bytes - H.264 packet bytes inside it) / H.264 packet bytes
#
# SIGKILL loses what the process had not yet handed to the kernel; the page cache survives.
# A power cut additionally loses what the kernel had not yet written to disk (a matter of
# fsync, not of the container; not measured here).
#
# Usage: benches/container.sh     (env: DURATION=10 RUNS=2; KEEP=1 keeps the files)
# Needs: gst-launch-1.0 (plugins base, good, bad, ugly), ffprobe, ffmpeg, awk.
set -euo pipefail

# SMOKE=1: a few seconds (DURATION=2, RUNS=1), figures printed, no thresholds: CI runs it so
# the script cannot rot (scripts/test). The figures of a smoke run are not results.
if [ "${SMOKE:-0}" = 1 ]; then
    DURATION=${DURATION:-2}
    RUNS=${RUNS:-1}
fi
DURATION=${DURATION:-10}
RUNS=${RUNS:-2}
WIDTH=1280 HEIGHT=720 FPS=15 BITRATE=2000
SEGMENT_NS=60000000000 # max-size-time=60s: the kill always hits an open segment

for tool in gst-launch-1.0 gst-inspect-1.0 ffprobe ffmpeg awk; do
    command -v "$tool" >/dev/null || { echo "container.sh: $tool not found" >&2; exit 1; }
done
for element in videotestsrc timeoverlay x264enc h264parse tee splitmuxsink mpegtsmux mp4mux matroskamux; do
    gst-inspect-1.0 --exists "$element" || { echo "container.sh: GStreamer element $element missing" >&2; exit 1; }
done

OUT=$(mktemp -d /tmp/stationwatch-container.XXXXXX)
GST_PID=
cleanup() {
    if [ -n "$GST_PID" ]; then kill -9 "$GST_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "files kept in $OUT"; else rm -rf "$OUT"; fi
}
trap cleanup EXIT

# name | file extension | muxer factory | muxer-properties | sink-properties | what it is
VARIANTS=(
    "ts|ts|mpegtsmux|||MPEG-TS"
    "ts-unbuf|ts|mpegtsmux||properties,buffer-mode=2|MPEG-TS, filesink unbuffered"
    "fmp4|mp4|mp4mux|properties,fragment-duration=1000||fragmented MP4, 1 s fragments"
    "mp4-robust|mp4|mp4mux|properties,reserved-max-duration=(guint64)120000000000,reserved-moov-update-period=(guint64)1000000000||MP4, moov reserved for 120 s, updated every 1 s"
    "mp4|mp4|mp4mux|||plain MP4 (moov written at the end)"
    "mkv|mkv|matroskamux|||Matroska"
)

now() { date +%s.%N; }

# One recording: all containers at once from one encoder, SIGKILL after DURATION s, one table.
run_once() {
    local dir=$1 v name ext muxer mprops sprops desc
    local -a pipeline
    mkdir -p "$dir"
    pipeline=(
        videotestsrc is-live=true pattern=ball
        ! "video/x-raw,width=$WIDTH,height=$HEIGHT,framerate=$FPS/1" ! timeoverlay
        ! x264enc tune=zerolatency speed-preset=ultrafast "bitrate=$BITRATE" "key-int-max=$FPS"
        ! tee name=t
        # Reference branch: the raw H.264 as it leaves the encoder, written unbuffered. Its
        # first byte marks the start of recording.
        t. ! queue ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream
        ! filesink "location=$dir/raw.h264" buffer-mode=2
    )
    for v in "${VARIANTS[@]}"; do
        IFS='|' read -r name ext muxer mprops sprops _ <<<"$v"
        pipeline+=(
            t. ! queue ! h264parse config-interval=-1
            ! splitmuxsink async-finalize=true "max-size-time=$SEGMENT_NS"
            "location=$dir/${name}_%03d.$ext" "muxer-factory=$muxer"
        )
        if [ -n "$mprops" ]; then pipeline+=("muxer-properties=\"$mprops\""); fi
        if [ -n "$sprops" ]; then pipeline+=("sink-properties=\"$sprops\""); fi
    done

    gst-launch-1.0 -q "${pipeline[@]}" >"$dir/gst.log" 2>&1 &
    GST_PID=$!
    local deadline=$(($(date +%s) + 20)) t_start=
    while [ -z "$t_start" ]; do
        if ! kill -0 "$GST_PID" 2>/dev/null; then
            echo "gst-launch-1.0 exited early:" >&2
            cat "$dir/gst.log" >&2
            exit 1
        fi
        if [ -s "$dir/raw.h264" ]; then t_start=$(now); fi
        if [ "$(date +%s)" -gt "$deadline" ]; then
            echo "no data after 20 s:" >&2
            cat "$dir/gst.log" >&2
            exit 1
        fi
        if [ -z "$t_start" ]; then sleep 0.01; fi
    done
    sleep "$DURATION"
    local t_kill wall raw_bytes
    t_kill=$(now)
    kill -9 "$GST_PID"
    wait "$GST_PID" 2>/dev/null || true
    GST_PID=
    wall=$(awk -v a="$t_start" -v b="$t_kill" 'BEGIN { printf "%.2f", b - a }')
    raw_bytes=$(stat -c %s "$dir/raw.h264")

    echo "Killed after ${wall} s of recording (wall clock from the first encoded frame);" \
        "raw H.264 written by then: ${raw_bytes} bytes."
    printf '%-11s %-8s %6s %8s %7s %6s %10s %10s %8s  %s\n' \
        container playable frames covers_s lost_s errors file_bytes h264_bytes overhead description
    local f size frames payload errors covers lost overhead playable
    for v in "${VARIANTS[@]}"; do
        IFS='|' read -r name ext _ _ _ desc <<<"$v"
        f=$(find "$dir" -maxdepth 1 -name "${name}_*.$ext" | sort | sed -n 1p)
        if [ -z "$f" ]; then
            printf '%-11s %-8s\n' "$name" "no file"
            continue
        fi
        size=$(stat -c %s "$f")
        frames=$(ffprobe -v error -count_frames -select_streams v:0 \
            -show_entries stream=nb_read_frames -of csv=p=0 "$f" 2>/dev/null |
            tr -d ',' | awk 'NF { print; exit }' || true)
        case "$frames" in '' | *[!0-9]*) frames=0 ;; esac
        if [ "$frames" -gt 0 ]; then
            playable=yes
            payload=$(ffprobe -v error -select_streams v:0 -show_entries packet=size \
                -of csv=p=0 "$f" | awk -F, '{ s += $1 } END { print s + 0 }')
            errors=$(ffmpeg -nostdin -v error -i "$f" -f null - 2>&1 | wc -l)
            covers=$(awk -v n="$frames" -v fps="$FPS" 'BEGIN { printf "%.2f", n / fps }')
            lost=$(awk -v w="$wall" -v c="$covers" 'BEGIN { printf "%.2f", w - c }')
            overhead=$(awk -v s="$size" -v p="$payload" \
                'BEGIN { printf "%.2f%%", (p > 0 ? 100 * (s - p) / p : 0) }')
        else
            playable=NO payload=- errors=- covers=0.00 lost=$wall overhead=-
        fi
        printf '%-11s %-8s %6s %8s %7s %6s %10s %10s %8s  %s\n' "$name" "$playable" "$frames" \
            "$covers" "$lost" "$errors" "$size" "$payload" "$overhead" "$desc"
    done
}

echo "Recording ${WIDTH}x${HEIGHT}@${FPS} H.264 ${BITRATE} kbit/s (keyframe every ${FPS} frames)" \
    "into ${#VARIANTS[@]} containers at once; SIGKILL after ${DURATION} s; ${RUNS} runs."
for run in $(seq 1 "$RUNS"); do
    echo
    echo "== run $run/$RUNS"
    run_once "$OUT/run$run"
done
cat <<'NOTES'

covers_s = decodable frames / fps.  lost_s = wall clock - covers_s: what a crash at that
moment costs (muxer fragment or cluster not yet written, the filesink's 64 KiB stdio buffer,
and for plain MP4 the whole open segment).  errors = ffmpeg complaints about the cut-off tail.
overhead = container bytes beyond the H.264 packets in this short file (fixed costs such as
mp4-robust's reserved moov weigh more here than in a full 60 s segment).
NOTES
