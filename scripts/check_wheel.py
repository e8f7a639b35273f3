"""Check an installed oddjob wheel: run it with the interpreter the wheel was installed into.

    python scripts/check_wheel.py [--core compiled|python] [--version X.Y.Z]

Fails (exit 1, one line per problem) unless:
- oddjob is imported from site-packages, not from a source tree;
- the core that oddjob chose by default is the expected one (compiled by default);
- the installed distribution's version is oddjob.__version__ (and --version, if given);
- on a free-threaded CPython, importing the compiled core left the GIL disabled (a Cython
  module without the `freethreading_compatible` directive silently re-enables it).

Used by cibuildwheel's test-command (pyproject.toml) and by scripts/release_check.sh.
Runs on every platform and Python the wheels are built for: standard library only.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import sysconfig
import warnings
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", choices=["compiled", "python"], default="compiled")
    parser.add_argument("--version", help="the version the wheel must carry")
    args = parser.parse_args()

    problems: list[str] = []
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

    # A GIL re-enabled by an import is announced by a RuntimeWarning: record it.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import oddjob
        import oddjob._backend as backend
        from oddjob import _version

    # 1. Imported from the installed wheel, not from a checkout on sys.path.
    installed = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    location = Path(oddjob.__file__).resolve().parent
    if location.parent not in installed:
        problems.append(f"oddjob imported from {location}, not from site-packages {installed}")

    # 2. The default core.
    core = backend.core
    if args.core != core.IMPLEMENTATION:
        problems.append(f"default core is {core.IMPLEMENTATION!r}, expected {args.core!r}")
    compiled = backend.compiled()
    if args.core == "compiled" and compiled is None:
        problems.append("oddjob._core (the compiled core) is not importable")
    if args.core == "python" and compiled is not None:
        problems.append(f"a pure-Python wheel must not ship a compiled core: {compiled.__file__}")

    # 3. One version everywhere: the metadata, the package and what the caller expects.
    dist_version = importlib.metadata.version("oddjob")
    versions = {
        "distribution metadata": dist_version,
        "oddjob.__version__": oddjob.__version__,
        "oddjob._version.__version__": _version.__version__,
    }
    if args.version:
        versions["expected"] = args.version
    if len(set(versions.values())) != 1:
        problems.append(f"versions disagree: {versions}")

    # 4. Free-threaded CPython: the GIL must stay off (unless the user forced it on).
    gil = "n/a"
    if free_threaded:
        gil_enabled = sys._is_gil_enabled()  # type: ignore[attr-defined]  # 3.13+
        gil = "enabled" if gil_enabled else "disabled"
        forced = os.environ.get("PYTHON_GIL", "") == "1"
        if gil_enabled and not forced:
            messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
            problems.append(
                "importing oddjob re-enabled the GIL on this free-threaded CPython "
                "(declare `# cython: freethreading_compatible=True` in _core.pyx): "
                + "; ".join(messages)
            )

    where = compiled.__file__ if compiled is not None else "-"
    print(
        f"oddjob {dist_version}: core={core.IMPLEMENTATION} ({where}); "
        f"python {sys.version.split()[0]}{' free-threaded' if free_threaded else ''}; "
        f"gil={gil}"
    )
    for problem in problems:
        print(f"check_wheel: FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
