#!/usr/bin/env bash
# Glass-to-glass delay of live video through the gateway: see tests/tests/live_delay_bench.rs
# (a publisher paints the wall clock into each frame; headless Chromium reads it back from each
# displayed frame of the gateway's HLS, played with hls.js as the station page plays it).
#
# Usage: benches/live-delay.sh   (env: BENCH_SECONDS=40, SEGMENT_SECONDS=2 (the gateway's
#        default; try 1), SMOKE=1 for 8 s)
# Needs: chromium and chromium-driver, GStreamer x264enc/srtsink, python3, libsrt.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -q --workspace --test live_delay_bench -- --ignored --nocapture 2>&1 |
    grep -E "glass-to-glass|panicked|FAILED|error" || { echo "live-delay.sh: no figure" >&2; exit 1; }
