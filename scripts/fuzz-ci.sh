#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time; fails on any crash.
#
#   scripts/fuzz-ci.sh SECONDS [TARGET...]      (default: every target in fuzz/Cargo.toml)
#
# Steps: installs cargo-fuzz if missing (`cargo install cargo-fuzz --locked`), builds the seed
# corpora (scripts/fuzz-corpus.sh), builds the targets, runs each one for SECONDS
# (`-max_total_time`), one after the other (one core each, the machine is shared), and prints a
# summary line per target: executions, coverage (libFuzzer's `cov:` edges and `ft:` features),
# corpus size and wall time. Exit status: 0 only if every target ran its time without a crash,
# timeout (10 s for one input) or out-of-memory (2 GiB); crashing inputs are written to
# fuzz/artifacts/<target>/ (reproduce: `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none TARGET FILE`).
#
# Toolchain: cargo-fuzz passes nightly-only rustc flags (-Zsanitizer, -Cpasses=sancov-module...);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. Built with `--sanitizer none`: the
# crate has no unsafe code, AddressSanitizer would only watch the unsafe code of dependencies, and
# on this 2-core machine it tripled the cold build (8m40s vs 2m20s-2m45s) and halves executions
# per second. The build keeps cargo-fuzz's defaults otherwise: release optimizations with
# debug assertions and overflow checks on (arithmetic overflow on untrusted input panics), and
# comparison tracing (`-C llvm-args=-sanitizer-coverage-trace-compares`).
#
# Environment: FUZZ_LOG_DIR (default fuzz/target/fuzz-ci-logs) keeps each run's full log;
# FUZZ_EXTRA_ARGS adds libFuzzer flags (e.g. "-jobs=1 -workers=1").
set -euo pipefail

seconds="${1:-}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
shift

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export RUSTC_BOOTSTRAP=1
CARGO_FUZZ_VERSION=0.13.2
build_flags=(--sanitizer none)
logs="${FUZZ_LOG_DIR:-$root/fuzz/target/fuzz-ci-logs}"
t0=$SECONDS

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-ci: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
t_install=$((SECONDS - t0))

bash "$root/scripts/fuzz-corpus.sh"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

t1=$SECONDS
cargo fuzz build "${build_flags[@]}"
t_build=$((SECONDS - t1))

mkdir -p "$logs"
failed=()
summaries=()
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    echo "fuzz-ci: running $t for ${seconds}s (log: $log)"
    start=$SECONDS
    rc=0
    # shellcheck disable=SC2086 # FUZZ_EXTRA_ARGS is a list of flags
    cargo fuzz run "${build_flags[@]}" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 ${FUZZ_EXTRA_ARGS:-} >"$log" 2>&1 || rc=$?
    took=$((SECONDS - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.*corp: \([^ ]*\).*/\1/p' <<<"$last")
    if [ "$rc" -eq 0 ]; then
        status=ok
    else
        status="FAILED (exit $rc)"
        failed+=("$t")
        echo "---- $t: last lines of $log"
        { grep -m1 -A4 'panicked at' "$log" || true
          grep -E 'ERROR: libFuzzer|SUMMARY: libFuzzer|Test unit written|^Base64' "$log" || true
          tail -3 "$log"; } | cut -c1-300
        echo "----"
    fi
    summary=$(printf '%-14s %-18s execs=%s cov=%s ft=%s corpus=%s time=%ss' \
        "$t" "$status" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$took")
    summaries+=("$summary")
    echo "fuzz-ci: $summary"
done

echo "fuzz-ci: summary (install ${t_install}s, build ${t_build}s, total $((SECONDS - t0))s)"
for s in "${summaries[@]}"; do
    echo "  $s"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz-ci: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "fuzz-ci: ok, ${#targets[@]} targets, 0 crashes"
