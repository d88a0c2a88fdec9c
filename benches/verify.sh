#!/usr/bin/env bash
# Verify throughput: `station-agent verify` on 72 h of one camera against `sha256sum` on the
# same files.
#
# Fixture (target/release/verify-fixture): SEGMENTS consecutive one-minute segment files of
# SEGMENT_BYTES pseudo-random bytes each (not video: verify only reads and hashes bytes), in day
# folders as the agent names them, plus a valid signed manifest (start, SEGMENTS segments,
# stop) signed with a fresh key. Default 4320 x 1 MiB = 4.5 GB. A real 2 Mbit/s camera writes
# ~15 MB a minute; 4320 x 15 MB = 64.8 GB is extrapolated from the measured rates, not written.
# Before writing, free disk space is checked and SEGMENT_BYTES is scaled down (with a message)
# when the disk lacks room.
#
# Cases, all on the same files:
#   a  station-agent verify CAM --public-key KEY  (must exit 0, verdict OK): manifest, chain,
#      signatures, SHA-256 and size of every file, unlisted files, coverage. Single-threaded.
#   w  station-agent verify CAM --witness WITNESS (must exit 0): the same, with the trusted key
#      taken from a controller witness file that also holds one witnessed head per segment
#      (4,320 heads for 72 h), each checked against the manifest (verify-fixture --witness).
#   b  find CAM -name '*.ts' -print0 | xargs -0 sha256sum >/dev/null  (one process at a time)
#   c  the same with xargs -P2 -n 100 (two sha256sum processes, 100 files each): what 2 cores can hash; verify
#      does not use a second core today, so (a) compares with (b), (c) is the 2-core ceiling.
#   d  (if openssl is installed) the same files through `openssl dgst -sha256`, for reference:
#      an SHA-256 that uses the CPU's SHA instructions, as the agent's sha2 crate does.
#   e  the same files through `cat >/dev/null`: reading alone, no hashing (the I/O ceiling).
#   fixed cost: the same 4320 files at 188 bytes (one TS packet): what verify and sha256sum
#      spend apart from hashing bytes (manifest, signatures, opening files, processes).
# Warm page cache: one untimed run, then the best wall time of RUNS runs. Cold: best of RUNS runs,
# each after `sync` and `echo 3 > /proc/sys/vm/drop_caches` (root); without that, per-file
# eviction with `dd iflag=nocache count=0`; otherwise cold runs are skipped. In a VM the host
# may still cache the disk, so "cold" is an upper bound on what a real disk delivers.
# "(cached)" = share of the segment files in the page cache just before the run (fincore).
# MB = 10^6 bytes (as verify prints). CPU s = user + sys of the case, children included.
# others' CPU % = how busy the machine's CPUs were with other processes during that run (from
# /proc/stat; 0 on a quiet machine): a wall time with a high figure there is not comparable.
#
# Usage: benches/verify.sh   (env: SEGMENTS=4320 SEGMENT_BYTES=1048576 RUNS=3 COLD=1
#        FIXTURE_PARENT=${TMPDIR:-/tmp} RESERVE_MB=2048 WAIT_QUIET=120 seconds to wait, before
#        each case, for a quiet machine; KEEP=1 keeps the fixture)
# Needs: cargo, find, xargs, sha256sum, awk; root for drop_caches.
set -euo pipefail
export LC_ALL=C

PROFILE=release
# SMOKE=1: 60 small segments, one warm run, no waiting for a quiet machine, no cold cache, the
# debug build (no release build in CI): figures printed, no thresholds, not results. CI runs
# it so the script cannot rot.
if [ "${SMOKE:-0}" = 1 ]; then
    SEGMENTS=${SEGMENTS:-60}
    SEGMENT_BYTES=${SEGMENT_BYTES:-65536}
    RUNS=${RUNS:-1}
    WAIT_QUIET=${WAIT_QUIET:-0}
    COLD=${COLD:-0}
    RESERVE_MB=${RESERVE_MB:-100}
    PROFILE=debug
fi
SEGMENTS=${SEGMENTS:-4320}
USER_BYTES=${SEGMENT_BYTES:-}
SEGMENT_BYTES=${SEGMENT_BYTES:-1048576}
RUNS=${RUNS:-3}
WAIT_QUIET=${WAIT_QUIET:-120}
COLD=${COLD:-1}
FIXTURE_PARENT=${FIXTURE_PARENT:-${TMPDIR:-/tmp}}
RESERVE_MB=${RESERVE_MB:-2048} # left free on the disk after the fixture
REAL_SEGMENT_BYTES=15000000    # one minute at 2 Mbit/s
SMALL_BYTES=188

for tool in cargo find xargs sha256sum awk df; do
    command -v "$tool" >/dev/null || { echo "verify.sh: $tool not found" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
AGENT=$TARGET/$PROFILE/station-agent
FIXTURE=$TARGET/$PROFILE/verify-fixture

# --- room on the disk --------------------------------------------------------------------------
mkdir -p "$FIXTURE_PARENT"
avail=$(df -P -B1 "$FIXTURE_PARENT" | awk 'NR == 2 { print $4 }')
# Files take whole 4 KiB blocks; the manifest is ~650 bytes an entry; plus the fixed-cost fixture.
blocks() { echo $(( ($1 + 4095) / 4096 * 4096 )); }
need() { echo $(( SEGMENTS * $(blocks "$1") + SEGMENTS * 650 + SEGMENTS * 4096 + SEGMENTS * 650 )); }
reserve=$(( RESERVE_MB * 1000000 ))
if [ $(( $(need "$SEGMENT_BYTES") + reserve )) -gt "$avail" ]; then
    fit=$(( (avail - reserve - SEGMENTS * 5396) / SEGMENTS / 65536 * 65536 ))
    if [ "$fit" -lt 65536 ]; then
        echo "verify.sh: only $(( avail / 1000000 )) MB free on $FIXTURE_PARENT; not enough for $SEGMENTS segments of even 64 KiB with $RESERVE_MB MB left free" >&2
        exit 1
    fi
    echo "verify.sh: $SEGMENTS x $SEGMENT_BYTES bytes needs $(( $(need "$SEGMENT_BYTES") / 1000000 )) MB but $FIXTURE_PARENT has $(( avail / 1000000 )) MB free (keeping $RESERVE_MB MB): scaling segments down to $fit bytes${USER_BYTES:+ (SEGMENT_BYTES=$USER_BYTES asked)}" >&2
    SEGMENT_BYTES=$fit
fi
TOTAL=$(( SEGMENTS * SEGMENT_BYTES ))
mem_avail=$(awk '/^MemAvailable:/ { printf "%.0f", $2 * 1024 }' /proc/meminfo)
if [ "$TOTAL" -gt $(( mem_avail * 8 / 10 )) ]; then
    echo "verify.sh: WARNING the fixture ($(( TOTAL / 1000000 )) MB) does not fit in the page cache ($(( mem_avail / 1000000 )) MB available): the warm runs read from disk too" >&2
fi
fstype=$(stat -f -c %T "$FIXTURE_PARENT")
if [ "$fstype" = tmpfs ]; then
    echo "verify.sh: note: $FIXTURE_PARENT is tmpfs; cold-cache runs are meaningless there (set FIXTURE_PARENT)" >&2
    COLD=0
fi

# --- build ---------------------------------------------------------------------------------------
if [ "$PROFILE" = release ]; then
    (cd "$ROOT" && cargo build --release --workspace --bin station-agent --bin verify-fixture)
else
    (cd "$ROOT" && cargo build -q --workspace --bin station-agent --bin verify-fixture)
fi

WORK=$(mktemp -d "$FIXTURE_PARENT/stationwatch-verify.XXXXXX")
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then echo "fixture kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "verify.sh: writing $SEGMENTS x $SEGMENT_BYTES bytes ($(( TOTAL / 1000000 )) MB) to $WORK/big" >&2
KEY=$("$FIXTURE" --out "$WORK/big" --segments "$SEGMENTS" --segment-bytes "$SEGMENT_BYTES" --witness "$WORK/witness.json")
"$FIXTURE" --out "$WORK/small" --segments "$SEGMENTS" --segment-bytes "$SMALL_BYTES" --seed 2 >"$WORK/small.key"
SMALL_KEY=$(cat "$WORK/small.key")
sync

# --- how to measure ------------------------------------------------------------------------------
# Each case is a function taking the camera folder and key; it leaves its output in $WORK/out.
case_verify() { "$AGENT" verify "$1" --public-key "$2" >"$WORK/out" 2>&1; }
case_verify_witness() { "$AGENT" verify "$1" --witness "$WORK/witness.json" >"$WORK/out" 2>&1; }
case_sha() { find "$1" -name '*.ts' -print0 | xargs -0 sha256sum >"$WORK/out"; }
# 100 files a process (fewer for small fixtures) so that the two processes share the work.
XARGS_N=$(( SEGMENTS / 8 < 1 ? 1 : SEGMENTS / 8 > 100 ? 100 : SEGMENTS / 8 ))
case_sha_p2() { find "$1" -name '*.ts' -print0 | xargs -0 -P2 -n "$XARGS_N" sha256sum >"$WORK/out"; }
case_cat() { find "$1" -name '*.ts' -print0 | xargs -0 cat >/dev/null; : >"$WORK/out"; }
case_openssl() { find "$1" -name '*.ts' -print0 | xargs -0 openssl dgst -sha256 >"$WORK/out"; }

CLK_TCK=$(getconf CLK_TCK)
# cached_pct CAM: how much of the segment files is in the page cache, in % (fincore).
cached_pct() {
    if ! command -v fincore >/dev/null; then echo "?"; return; fi
    find "$1" -name '*.ts' -print0 | xargs -0 fincore --bytes --noheadings --output RES,SIZE |
        awk '{ r += $1; s += int(($2 + 4095) / 4096) * 4096 } END { printf "%.0f", s ? 100 * r / s : 0 }'
}
NCPU=$(nproc)
# (awk printf %.0f: mawk prints large numbers as 3e+09 with print and clamps %d to 2^31-1.)
busy_ticks() { awk '/^cpu / { printf "%.0f\n", $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# timed FUNC CAM KEY: runs it once; sets T_REAL, T_CPU (seconds), T_RC, T_CACHED (share of the
# files in the page cache just before, %) and T_OTHERS: the share of the machine's CPUs busy
# with other processes meanwhile (from /proc/stat), in %.
timed() {
    local TIMEFORMAT='%R %U %S' t b0 b1
    T_RC=0
    T_CACHED=$(cached_pct "$2")
    b0=$(busy_ticks)
    { time "$@" 2>"$WORK/err" || T_RC=$?; } 2>"$WORK/time"
    b1=$(busy_ticks)
    t=$(tail -n 1 "$WORK/time")
    T_REAL=$(awk '{ print $1 }' <<<"$t")
    T_CPU=$(awk '{ printf "%.2f", $2 + $3 }' <<<"$t")
    T_OTHERS=$(awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" -v n="$NCPU" -v w="$T_REAL" -v c="$T_CPU" \
        'BEGIN { o = (d / hz - c) / (n * (w > 0 ? w : 1)) * 100; printf "%.0f", o < 0 ? 0 : o }')
}

check_rc() { # what
    if [ "$T_RC" != 0 ]; then
        echo "verify.sh: $1 exited with status $T_RC:" >&2
        cat "$WORK/out" "$WORK/err" >&2
        exit 1
    fi
}

# wait_quiet: waits (at most WAIT_QUIET seconds) for 5 s in which other processes use under
# 25 % of the CPUs. The machine may be shared; the others' CPU % column says how it went.
wait_quiet() {
    local start=$SECONDS b0 b1 pct
    while [ $((SECONDS - start)) -lt "$WAIT_QUIET" ]; do
        b0=$(busy_ticks); sleep 5; b1=$(busy_ticks)
        pct=$(( (b1 - b0) * 100 / (5 * CLK_TCK * NCPU) ))
        if [ "$pct" -lt 25 ]; then return 0; fi
        echo "verify.sh: the machine is busy ($pct % of the CPUs); waiting" >&2
    done
}

# warm FUNC CAM KEY -> W_REAL W_CPU (best of RUNS after one untimed run)
warm() {
    local i
    wait_quiet
    timed "$@"; check_rc "$1"
    W_REAL=
    for ((i = 0; i < RUNS; i++)); do
        timed "$@"; check_rc "$1"
        if [ -z "$W_REAL" ] || awk -v a="$T_REAL" -v b="$W_REAL" 'BEGIN { exit !(a < b) }'; then
            W_REAL=$T_REAL W_CPU=$T_CPU W_OTHERS=$T_OTHERS W_CACHED=$T_CACHED
            cp "$WORK/out" "$WORK/best.out"
        fi
    done
}

COLD_HOW=
drop_caches() { # CAM
    sync
    if [ "$COLD" = 1 ] && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        COLD_HOW="echo 3 > /proc/sys/vm/drop_caches"
        return 0
    fi
    if [ "$COLD" = 1 ] && dd if=/dev/null of=/dev/null iflag=nocache count=0 2>/dev/null; then
        find "$1" -type f -exec sh -c 'for f; do dd if="$f" iflag=nocache count=0 status=none; done' sh {} +
        COLD_HOW="dd iflag=nocache count=0 on every file (drop_caches not writable)"
        return 0
    fi
    return 1
}

# cold FUNC CAM KEY -> C_REAL C_CPU, or C_REAL empty when caches cannot be dropped
# (best of RUNS runs, the caches dropped before each)
cold() {
    local i
    C_REAL='' C_CPU='' C_OTHERS='' C_CACHED=''
    wait_quiet
    for ((i = 0; i < RUNS; i++)); do
        drop_caches "$2" || return 0
        timed "$@"; check_rc "$1"
        if [ -z "$C_REAL" ] || awk -v a="$T_REAL" -v b="$C_REAL" 'BEGIN { exit !(a < b) }'; then
            C_REAL=$T_REAL C_CPU=$T_CPU C_OTHERS=$T_OTHERS C_CACHED=$T_CACHED
            cp "$WORK/out" "$WORK/best.out"
        fi
    done
}

mbs() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / 1e6 / t }'; }
ROWS=()
row() { # case cache wall cpu bytes others% cached%
    ROWS+=("$(printf '| %s | %s (%s %%) | %.2f | %s | %.2f | %s | %s |' "$1" "$2" "$7" "$3" \
        "$(mbs "$5" "$3")" "$4" "$(mbs "$5" "$4")" "$6")")
}

BIG=$WORK/big/cam1
SMALL=$WORK/small/cam1
HAVE_OPENSSL=0
command -v openssl >/dev/null && HAVE_OPENSSL=1

CASES=("a|station-agent verify --public-key|case_verify"
    "w|station-agent verify --witness (one head per segment)|case_verify_witness"
    "b|sha256sum (xargs, 1 process)|case_sha"
    "c|sha256sum (xargs -P2 -n $XARGS_N)|case_sha_p2")
if [ "$HAVE_OPENSSL" = 1 ]; then CASES+=("d|openssl dgst -sha256 (xargs)|case_openssl"); fi
CASES+=("e|cat >/dev/null (xargs): reading only|case_cat")

echo "verify.sh: measuring (warm: best of $RUNS after one warm-up run)" >&2
VERIFY_LINE=
for c in "${CASES[@]}"; do
    IFS='|' read -r id name fn <<<"$c"
    warm "$fn" "$BIG" "$KEY"
    row "$id $name" warm "$W_REAL" "$W_CPU" "$TOTAL" "$W_OTHERS" "$W_CACHED"
    if [ "$id" = a ]; then
        VERIFY_LINE=$(grep -m1 'files hashed' "$WORK/best.out" || true)
        VERIFY_WARM=$W_REAL
    fi
    if [ "$id" = w ]; then
        WITNESS_LINE=$(grep -m1 'witness ' "$WORK/best.out" || true)
        VERIFY_WITNESS_WARM=$W_REAL
    fi
    if [ "$id" = b ]; then SHA_WARM=$W_REAL; fi
done
for c in "${CASES[@]}"; do
    IFS='|' read -r id name fn <<<"$c"
    cold "$fn" "$BIG" "$KEY"
    if [ -n "$C_REAL" ]; then
        row "$id $name" cold "$C_REAL" "$C_CPU" "$TOTAL" "$C_OTHERS" "$C_CACHED"
        if [ "$id" = a ]; then
            VERIFY_COLD=$C_REAL
            VERIFY_COLD_LINE=$(grep -m1 'files hashed' "$WORK/best.out" || true)
        fi
        if [ "$id" = b ]; then SHA_COLD=$C_REAL; fi
    fi
done
warm case_verify "$SMALL" "$SMALL_KEY"
row "a station-agent verify, ${SMALL_BYTES} B files" warm "$W_REAL" "$W_CPU" $(( SEGMENTS * SMALL_BYTES )) "$W_OTHERS" "$W_CACHED"
VERIFY_FIXED=$W_REAL
SMALL_LINE=$(grep -m1 'files hashed' "$WORK/best.out" || true)
warm case_sha "$SMALL" "$SMALL_KEY"
row "b sha256sum, ${SMALL_BYTES} B files" warm "$W_REAL" "$W_CPU" $(( SEGMENTS * SMALL_BYTES )) "$W_OTHERS" "$W_CACHED"
SHA_FIXED=$W_REAL

# --- report --------------------------------------------------------------------------------------
echo
tools="$(sha256sum --version | sed -n 1p)" # (sed reads it all: head may SIGPIPE the writer under pipefail)
if [ "$HAVE_OPENSSL" = 1 ]; then tools="$tools; $(openssl version)"; fi
echo "machine: $(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2 }'), $(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo) GiB RAM; $tools"
echo "date:    $(date -u +%Y-%m-%dT%H:%MZ)"
echo "fixture: $SEGMENTS segments x $SEGMENT_BYTES bytes = $(awk -v b="$TOTAL" 'BEGIN { printf "%.1f", b / 1e6 }') MB on $fstype ($FIXTURE_PARENT); manifest $(( $(stat -c %s "$BIG/manifest.jsonl") / 1000 )) kB"
echo "cold:    ${COLD_HOW:-not measured (COLD=0, or caches cannot be dropped)}"
echo
echo "| case | page cache (cached) | wall s | MB/s | CPU s | MB per CPU s | others' CPU % |"
echo "|---|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "verify's own line (warm, best run): ${VERIFY_LINE# }"
if [ -n "${VERIFY_COLD_LINE:-}" ]; then echo "verify's own line (cold, best run): ${VERIFY_COLD_LINE# }"; fi
echo "verify's own line (${SMALL_BYTES} B files): ${SMALL_LINE# }"
echo "with the witness file ($(( $(stat -c %s "$WORK/witness.json") / 1000 )) kB): ${WITNESS_LINE# }; warm ${VERIFY_WITNESS_WARM} s against ${VERIFY_WARM} s with --public-key"

# Extrapolation to a real archive: fixed cost (measured on the small files) + bytes / byte rate
# (the big run minus the fixed cost).
extrapolate() { # name big_wall fixed_wall
    awk -v n="$1" -v w="$2" -v f="$3" -v tb="$TOTAL" -v rb=$(( SEGMENTS * REAL_SEGMENT_BYTES )) 'BEGIN {
        rate = tb / (w - f); t = f + rb / rate
        printf "  %-28s %.0f MB/s on the bytes + %.2f s fixed -> %.0f s (%.1f min)\n", n, rate / 1e6, f, t, t / 60 }'
}
echo
echo "extrapolated to $SEGMENTS x 15 MB (2 Mbit/s, $(awk -v b=$(( SEGMENTS * REAL_SEGMENT_BYTES )) 'BEGIN { printf "%.1f", b / 1e9 }') GB):"
extrapolate "verify, warm rate" "$VERIFY_WARM" "$VERIFY_FIXED"
extrapolate "sha256sum, warm rate" "$SHA_WARM" "$SHA_FIXED"
if [ -n "${VERIFY_COLD:-}" ]; then
    extrapolate "verify, cold rate" "$VERIFY_COLD" "$VERIFY_FIXED"
    extrapolate "sha256sum, cold rate" "$SHA_COLD" "$SHA_FIXED"
fi
if [ $(( SEGMENTS * REAL_SEGMENT_BYTES / 1024 )) -gt "$(awk '/^MemTotal:/ { printf "%.0f", $2 }' /proc/meminfo)" ]; then
    echo "  (that is more than this machine's RAM: the cold rates are the realistic ones)"
fi
