#!/usr/bin/env bash
# Runs one fuzz target for SECONDS (default 600) on a working corpus outside the tree,
# seeded from fuzz/seeds/TARGET and fuzz/corpus/TARGET, then minimises what it found back
# into fuzz/corpus/TARGET (kept small: only inputs that add an edge).
#   fuzz/run.sh TARGET [SECONDS]      targets: identifier record_decode dns_handler handle_json
# Needs cargo-fuzz (`cargo install cargo-fuzz`); stable Rust via RUSTC_BOOTSTRAP=1.
set -euo pipefail
target=$1
seconds=${2:-600}
here=$(cd "$(dirname "$0")" && pwd)
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-/var/tmp/idnode-fuzz-target}
work=${FUZZ_WORK_DIR:-/var/tmp/idnode-fuzz}/$target
mkdir -p "$work" "$here/corpus/$target" "$here/artifacts/$target"
cp -n "$here/seeds/$target"/* "$here/corpus/$target"/* "$work"/ 2>/dev/null || true
cd "$here"
cargo fuzz run -O "$target" "$work" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    -max_len=4096 -print_final_stats=1 -artifact_prefix="$here/artifacts/$target/"
# Keep the committed corpus minimal: merge the working corpus into an empty directory.
rm -rf "$work.min" && mkdir -p "$work.min"
cargo fuzz run -O "$target" "$work.min" "$work" -- -merge=1 -use_counters=0 >/dev/null 2>&1
rm -rf "$here/corpus/$target" && mv "$work.min" "$here/corpus/$target"
echo "$target: $(ls "$here/corpus/$target" | wc -l) corpus files kept"
