#!/usr/bin/env bash
# Uploads into the archive: goodput as a share of a shaped uplink (live off), the time a
# 10-minute, 2-camera window takes at 2, 10 and 50 Mbit/s, the controller's CPU per Mbit/s
# received, and the live rung's bitrate with and without a concurrent backfill.
#
# Setup (tests/tests/archive_bench.rs, the archive tests' rig): the controller and Mosquitto
# run on the host behind a relay on the far side of a veth pair; the agent runs in its own
# network namespace, its uplink shaped with `tc ... tbf`; the archive is a local folder. Two
# RTSP test cameras (640x360 noise, x264 2000 kbit/s, 4 s segments) record one window per
# rate first; each window is then requested and timed from the command to the job's `done`.
#
# Usage: sudo benches/upload.sh   (env: BENCH_RATES=2000,10000,50000 kbit/s, BENCH_WINDOW_S=60,
#        BENCH_LIVE_S=30; release builds of agent and controller; SMOKE=1: one rate, a few
#        seconds, debug builds, as CI runs it so the script cannot rot)
# Needs: root (network namespaces), iproute2, mosquitto, srt-live-transmit, x264enc.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "upload.sh: needs root (network namespaces)" >&2; exit 1; }
if [ "${SMOKE:-0}" != 1 ]; then
    export STATIONWATCH_RELEASE=1
fi
exec cargo test -q --workspace --test archive_bench -- --ignored --nocapture --test-threads=1
