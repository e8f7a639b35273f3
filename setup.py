"""Build the compiled core (src/oddjob/_core.pyx) unless told not to.

ODDJOB_NO_EXTENSIONS=1 builds a pure-Python package (the core's Python twin runs).
ODDJOB_CYTHON_TRACE=1 builds with line tracing for coverage (never for release wheels).
A failed compile falls back to the pure-Python package with a warning, so that
`pip install oddjob` works wherever Python does; CI checks the compiled core loads.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXTENSIONS = os.environ.get("ODDJOB_NO_EXTENSIONS", "") not in ("", "0")
TRACE = os.environ.get("ODDJOB_CYTHON_TRACE", "") not in ("", "0")
# A failed compile is an error when ODDJOB_REQUIRE_EXTENSIONS is set (CI, release builds).
REQUIRE = os.environ.get("ODDJOB_REQUIRE_EXTENSIONS", "") not in ("", "0")

if sys.implementation.name != "cpython":
    NO_EXTENSIONS = True


class OptionalBuildExt(build_ext):
    """Build extensions, but install the pure-Python twin if the compiler fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means "go pure"
            if REQUIRE:
                raise
            print(f"WARNING: oddjob's compiled core failed to build ({exc}); "
                  "installing the pure-Python core.", file=sys.stderr)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            if REQUIRE:
                raise
            print(f"WARNING: building {ext.name} failed ({exc}); "
                  "installing the pure-Python core.", file=sys.stderr)


def extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize

    macros = [("CYTHON_TRACE_NOGIL", "1")] if TRACE else []
    ext = Extension(
        "oddjob._core",
        ["src/oddjob/_core.pyx"],
        include_dirs=["src/oddjob"],  # _lock.h
        define_macros=macros,
    )
    return cythonize(
        [ext],
        compiler_directives={
            "language_level": "3",
            "embedsignature": True,
            "linetrace": TRACE,
            "profile": False,
        },
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
