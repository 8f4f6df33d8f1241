#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/Targets and runs each for a bounded time
# on its corpus in Fuzz/Corpus/<target> (plus the inputs that once failed, in
# Fuzz/Regressions/<target>); exits non-zero on the first crash, printing the
# input that crashed (also kept in .build/fuzz/artifacts/).
#
#   scripts/fuzz.sh [--time SECONDS] [--only TARGET] [--merge] [--jobs N]
#
# --time     seconds per target (default 30)
# --only     run one target: event_body, partitioning, redis_reply, corpus_reader
# --merge    afterwards, merge what the run found into Fuzz/Corpus/<target>
#            (minimised: only inputs that add coverage are kept)
#
# Each target is the harness compiled with `swiftc -sanitize=fuzzer,address`
# together with the sources of the code under test, so that code is
# instrumented (coverage + AddressSanitizer) and its internal API reachable;
# its dependencies (swift-log, swift-crypto) are linked uninstrumented from
# the debug build, which is built first if needed. Cheap: no second build of
# the package or its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH

seconds=30
only=""
merge=0
while [ $# -gt 0 ]; do
    case "$1" in
        --time) seconds=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --merge) merge=1; shift ;;
        *) echo "usage: $0 [--time SECONDS] [--only TARGET] [--merge]" >&2; exit 2 ;;
    esac
done

targets=(event_body partitioning redis_reply corpus_reader)
[ -n "$only" ] && targets=("$only")

# The debug build provides the dependency modules and objects: the same build
# as scripts/test.sh's, so after it this is a no-op.
swift build --build-tests >/dev/null 2>&1 || swift build --build-tests
bin=$(swift build --show-bin-path)
out=.build/fuzz
mkdir -p "$out/artifacts"

objects() {  # the object files of SwiftPM targets, for linking
    for t in "$@"; do find "$bin/$t.build" -name '*.o'; done
}

common=(-sanitize=fuzzer,address -parse-as-library -g -Onone -I "$bin/Modules" -use-ld=lld)

build() {
    local target=$1
    local exe="$out/$target"
    local args=()
    case "$target" in
        event_body)
            args=(-module-name FuzzEventBody Sources/FIServerKit/EventBody.swift Fuzz/Targets/EventBodyFuzz.swift) ;;
        partitioning)
            args=(-module-name FuzzPartitioning Sources/FIPartitioning/*.swift Fuzz/Targets/PartitioningFuzz.swift
                $(objects Crypto CryptoBoringWrapper CCryptoBoringSSL CCryptoBoringSSLShims) -lstdc++) ;;
        redis_reply)
            args=(-module-name FuzzRedisReply -I Sources/CHiredis $(pkg-config --cflags-only-I hiredis | sed 's/-I/-Xcc -I/g')
                Sources/FIQueue/EventQueue.swift Sources/FIQueue/Redis/{RedisReplyDecoder,RedisReplies,ClusterSlots,RedisClusterRouter}.swift
                Fuzz/Targets/RedisReplyFuzz.swift $(objects FIStreamID) $(pkg-config --libs hiredis)) ;;
        corpus_reader)
            args=(-module-name FuzzCorpusReader -I Sources/CHDF5 $(pkg-config --cflags-only-I hdf5 | sed 's/-I/-Xcc -I/g')
                Sources/FIStorage/*.swift Fuzz/Targets/CorpusReaderFuzz.swift $(objects Logging FILocking FIStreamID)
                $(objects Crypto CryptoBoringWrapper CCryptoBoringSSL CCryptoBoringSSLShims) -lstdc++
                $(pkg-config --libs-only-L hdf5 | sed 's/-L/-L /g') $(pkg-config --libs-only-l hdf5)) ;;
        *) echo "unknown target $target" >&2; exit 2 ;;
    esac
    swiftc "${common[@]}" "${args[@]}" -o "$exe" 2>&1 | grep -v -E "warning: Cannot export local symbol|^$" || true
    [ -x "$exe" ] || { echo "fuzz: building $target failed" >&2; exit 1; }
}

run() {
    local target=$1
    local corpus=Fuzz/Corpus/$target
    local found
    found=$(mktemp -d "/tmp/fi-fuzz-$target.XXXXXX")
    local max_len=4096 extra=()
    [ "$target" = corpus_reader ] && max_len=65536
    [ "$target" = event_body ] && extra=(-dict=Fuzz/Dictionaries/json.dict)
    [ "$target" = redis_reply ] && extra=(-dict=Fuzz/Dictionaries/resp.dict)
    local log="$out/$target.log"
    # Inputs that once crashed or hung a target are replayed first, every run.
    local regressions=()
    [ -d "Fuzz/Regressions/$target" ] && regressions=("Fuzz/Regressions/$target")
    local status=0
    # detect_leaks: HDF5 and hiredis keep process-lifetime allocations that
    # LeakSanitizer would report at exit; leaks in our code show up as growth
    # under the soak test instead.
    ASAN_OPTIONS=detect_leaks=0 "$out/$target" "$found" "$corpus" "${regressions[@]}" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=$max_len \
        -artifact_prefix="$out/artifacts/$target-" -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || status=$?
    local runs cov
    runs=$(grep -E "stat::number_of_executed_units" "$log" | awk '{print $2}')
    cov=$(grep -E "^#[0-9]+.*(DONE|pulse|NEW|REDUCE|INITED).*cov:" "$log" | tail -1 | sed -E 's/.*cov: ([0-9]+).*/\1/')
    echo "fuzz: $target: ${runs:-?} runs in ${seconds}s, coverage ${cov:-?} edges, corpus $(ls "$corpus" | wc -l) + $(ls "$found" | wc -l) new, exit $status"
    if [ $status -ne 0 ]; then
        grep -E "ERROR|Fatal error|Assertion|Precondition|SUMMARY|==[0-9]+==|#[0-9]+ 0x" "$log" | head -40 >&2
        for crash in "$out/artifacts/$target-"*; do
            [ -f "$crash" ] || continue
            echo "fuzz: crashing input $crash ($(stat -c %s "$crash") bytes), base64:" >&2
            head -c 4096 "$crash" | base64 -w 0 >&2
            echo >&2
        done
        rm -rf "$found"
        return 1
    fi
    if [ $merge -eq 1 ] && [ -n "$(ls "$found")" ]; then
        local merged
        merged=$(mktemp -d "/tmp/fi-fuzz-merged.XXXXXX")
        ASAN_OPTIONS=detect_leaks=0 "$out/$target" -merge=1 -max_len=$max_len "$merged" "$corpus" "$found" >/dev/null 2>&1
        rm -f "$corpus"/*
        cp "$merged"/* "$corpus"/
        rm -rf "$merged"
        echo "fuzz: $target: corpus merged, now $(ls "$corpus" | wc -l) inputs"
    fi
    rm -rf "$found"
}

start=$(date +%s)
for target in "${targets[@]}"; do
    t0=$(date +%s)
    build "$target"
    echo "fuzz: $target built in $(( $(date +%s) - t0 ))s"
done
failed=0
for target in "${targets[@]}"; do
    run "$target" || failed=1
done
echo "fuzz: done in $(( $(date +%s) - start ))s"
exit $failed
