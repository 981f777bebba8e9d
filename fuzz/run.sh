#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) on the kept
# corpus (fuzz/corpus/<target>, read only); new inputs that reach new coverage
# go to fuzz/target/corpus/<target> (not committed; copy good ones over).
# Not part of CI. cargo-fuzz wants nightly; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept its -Z flags. Usage: fuzz/run.sh [seconds per target]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
export RUSTC_BOOTSTRAP=1
status=0
for t in request_decode validate_batches compressed_records; do
    mkdir -p "corpus/$t" "target/corpus/$t"
    echo "== $t for ${secs}s"
    # -s none: the broker is safe Rust; we hunt panics, so skip ASan's slower runs.
    if ! cargo fuzz run -s none -O "$t" "target/corpus/$t" "corpus/$t" -- -max_total_time="$secs" -max_len=4096 -rss_limit_mb=1024 2>&1 | tee "/tmp/fjord-fuzz-$t.log" | grep -E "^#[0-9]+.*(DONE|pulse)|ERROR|panicked|Done [0-9]+ runs"; then
        :
    fi
    if grep -qE "ERROR|panicked" "/tmp/fjord-fuzz-$t.log"; then
        echo "!! $t found a crash: see /tmp/fjord-fuzz-$t.log and fuzz/artifacts/$t"
        status=1
    fi
done
exit $status
