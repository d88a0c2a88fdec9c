#!/usr/bin/env bash
# The controller's HTTP side under a siege: a real operator's request latency (p50/p99/max) with
# nothing else open, then while 1,000 idle sockets and 100 server-sent event streams of 13 other
# users are open, then after the header timeout has cut the idle ones
# (tests/tests/http_bench.rs; figures in docs/benchmarks.md).
#
# Usage: benches/http-siege.sh   (env: BENCH_REQUESTS=300, BENCH_IDLE=1000, BENCH_SSE=100;
#        release build of the controller; SMOKE=1: 20 requests, 50 sockets, 10 streams, debug
#        build, as CI runs it so the script cannot rot)
# Needs: mosquitto.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SMOKE:-0}" != 1 ]; then
    export STATIONWATCH_RELEASE=1
fi
exec cargo test -q --workspace --test http_bench -- --ignored --nocapture --test-threads=1
