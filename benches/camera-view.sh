#!/usr/bin/env bash
# The camera view analysis's CPU: the agent recording one 1280x720 15 fps H.264 RTSP camera
# (pass-through) with the analysis off and every 2 s, 1 s and 0.5 s; CPU-s per minute of the
# agent's process and the difference to "off" (tests/tests/camera_view.rs, view_analysis_cpu).
#
# Then false alarms: an hour of the normal scene with the lights going down and up every minute,
# the view approved, default [view] settings; view_problem events and view alerts counted
# (false_alarms_in_an_hour_of_lighting_changes).
#
# Usage: benches/camera-view.sh   (env: BENCH_SECONDS=60 per setting, BENCH_FALSE_ALARM_S=3600; release build of the
#        agent; SMOKE=1: a few seconds, debug build, as CI runs it so the script cannot rot)
# Needs: GStreamer with x264enc, gaussianblur (gstreamer1.0-plugins-bad), the RTSP server,
#        mosquitto (the false-alarm run reports to a real controller).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SMOKE:-0}" != 1 ]; then
    export STATIONWATCH_RELEASE=1
fi
exec cargo test -q --workspace --test camera_view -- --ignored --nocapture --test-threads=1
