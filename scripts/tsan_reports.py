"""Read ThreadSanitizer's report files (TSAN_OPTIONS log_path=DIR/report) and fail on any
report with a frame in oddjob's own code; reports wholly inside CPython are counted only.

Usage: python scripts/tsan_reports.py DIR
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# A stack frame of oddjob's: its C source, its .pyx, or its extension module.
OURS = re.compile(r"oddjob/_core\.(c|pyx)\b|/oddjob/_core\.cpython-[^ )]*\.so")


def reports(directory: Path) -> list[str]:
    found = []
    for path in sorted(directory.glob("report*")):
        text = path.read_text(errors="replace")
        for block in text.split("==================\n"):
            if "WARNING: ThreadSanitizer:" in block:
                found.append(block.strip())
    return found


def main() -> int:
    directory = Path(sys.argv[1])
    every = reports(directory)
    ours = [r for r in every if OURS.search(r)]
    for report in ours:
        print(report, end="\n\n")
    print(
        f"ThreadSanitizer: {len(every)} reports, {len(ours)} in oddjob's code"
        f" ({len(every) - len(ours)} inside CPython alone, not oddjob's to fix)"
    )
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main())
