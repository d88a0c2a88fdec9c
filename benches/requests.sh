#!/usr/bin/env bash
# Requests for recordings: the time from filing a request to `ready` for a window of two
# cameras on an unshaped and on a 2 Mbit/s link (and the 10-minute figure), the time to the
# first frame on the request's page in headless Chromium, the controller's CPU and memory while
# 20 observers play at once, and the time to build, stream and verify the evidence bundle of
# an hour of two cameras.
#
# Setup: tests/tests/requests_bench.rs (the archive tests' rig: the agent in its own network
# namespace behind a veth pair shaped with `tc ... tbf`, the controller and Mosquitto on the
# host; two RTSP test cameras sending noise at 2000 kbit/s in 4 s segments; the hour for the
# bundle is signed and uploaded through the archive's HTTP API as a station does).
#
# Usage: sudo benches/requests.sh   (env: BENCH_WINDOW_S=120, BENCH_LINKS=unshaped,2000,
#        BENCH_OBSERVERS=20, BENCH_PLAY_S=60, BENCH_BUNDLE_MIN=60; release builds of agent and
#        controller; SMOKE=1: a few seconds of each part, debug builds, as CI runs it so the
#        script cannot rot)
# Needs: root (network namespaces), iproute2, mosquitto, x264enc, chromium + chromedriver.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "requests.sh: needs root (network namespaces)" >&2; exit 1; }
if [ "${SMOKE:-0}" != 1 ]; then
    export STATIONWATCH_RELEASE=1
fi
exec cargo test -q --workspace --test requests_bench -- --ignored --nocapture --test-threads=1
