#!/usr/bin/env bash
# oddjob on free-threaded CPython, for CI: the whole suite and the slow stress tests on a
# --disable-gil build, then the stress tests under ThreadSanitizer on a TSan build, failing
# on any report that has a frame in oddjob's own code.
#
# Usage: scripts/freethreaded_check.sh [suite|tsan|all]   (default: all)
# Both interpreters come from scripts/build-freethreaded-python.sh, which caches them
# (about 2 and 6 minutes to build the first time, instant after).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
here=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# hypothesis's newest releases ship only as sources that need Rust and crates.io for the
# free-threaded build; its binary wheels (pure Python) serve every interpreter.
PIP_INSTALL=(python -m pip install -q --only-binary=hypothesis)
PYTEST=(python -m pytest -q -p no:cacheprovider --import-mode=importlib)

venv_for() {  # venv_for INTERPRETER DIR: a venv with oddjob and its test extra installed
    "$1" -m venv "$2"
    # shellcheck disable=SC1091
    source "$2/bin/activate"
    python -m pip install -q --upgrade pip
    # A copy of the tree: pip's build must not leave artefacts in the checkout.
    rm -rf "$work/src" && mkdir "$work/src" && git -C "$here" archive HEAD | tar -x -C "$work/src"
    ODDJOB_REQUIRE_EXTENSIONS=1 "${PIP_INSTALL[@]}" "$work/src[test]"
}

check_gil_off() {
    (cd / && python -c "
import sys, oddjob, oddjob._backend as b
assert b.core.IMPLEMENTATION == 'compiled', b.core
oddjob.await_(oddjob.async_perform('job', abs, -1), 10)
print('free-threaded:', sys.version.split()[0], 'GIL enabled:', sys._is_gil_enabled())
sys.exit(1 if sys._is_gil_enabled() else 0)
")
}

if [[ $what == suite || $what == all ]]; then
    echo "== free-threaded CPython: build (cached)"
    ftpy=$(bash scripts/build-freethreaded-python.sh | tail -n 1)
    venv_for "$ftpy" "$work/ft"
    check_gil_off
    echo "== free-threaded: the whole suite (both cores)"
    (cd "$work/src" && "${PYTEST[@]}" tests)
    echo "== free-threaded: the slow stress tests"
    # Not the two that draw PNGs: matplotlib does not build on 3.13t (tried, pip, Dec 2026).
    (cd "$work/src" && "${PYTEST[@]}" -m slow tests --deselect tests/test_bench_harness.py \
        --deselect tests/test_examples.py)
    deactivate
fi

if [[ $what == tsan || $what == all ]]; then
    echo "== ThreadSanitizer: CPython --disable-gil --with-thread-sanitizer (cached)"
    tsanpy=$(bash scripts/build-freethreaded-python.sh --tsan | tail -n 1)
    prefix=$(dirname "$(dirname "$tsanpy")")
    base_options=$(cat "$prefix/share/oddjob/tsan-options")
    # The TSan interpreter's sysconfig builds the extension with clang -fsanitize=thread.
    TSAN_OPTIONS=$base_options venv_for "$tsanpy" "$work/tsan"
    reports=$work/tsan-reports
    mkdir -p "$reports"
    # Reports go to files, and exitcode=0 leaves the verdict to tsan_reports.py (TSan
    # would fail the run for races inside CPython itself too). On the compiled core,
    # whose C is what TSan instruments; the twin is Python code,
    # whose races would be CPython's own (and it runs some 20x slower under TSan).
    echo "== ThreadSanitizer: the stress and bounded-queue tests on the compiled core, slow ones included"
    (cd "$work/src" && TSAN_OPTIONS="$base_options halt_on_error=0 exitcode=0 log_path=$reports/report" \
        "${PYTEST[@]}" -m "slow or not slow" -k compiled --timeout 1200 \
        tests/test_stress.py tests/test_scheduler_stress.py tests/test_bounded_queue.py)
    echo "== ThreadSanitizer: stats, telemetry, rate limits, retries and deadlines (default tests)"
    (cd "$work/src" && TSAN_OPTIONS="$base_options halt_on_error=0 exitcode=0 log_path=$reports/report" \
        "${PYTEST[@]}" -k compiled --timeout 1200 tests/test_core_stats.py tests/test_core_events.py \
        tests/test_rate_limit.py tests/test_retry.py tests/test_max_queue_time.py)
    python "$here/scripts/tsan_reports.py" "$reports"
    deactivate
fi
