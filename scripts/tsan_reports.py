"""Read ThreadSanitizer's report files (TSAN_OPTIONS log_path=DIR/report) and fail on any
report whose racing accesses are in oddjob's own code.

A report is oddjob's when one of the top frames of either racing access (the
"Read/Write of size N ... by thread" stacks, not the "created by" ones) is oddjob's C,
.pyx or extension module: the access itself, or a CPython function oddjob called on
the racing memory. Reports where oddjob appears only deeper down (a worker thread that
runs a job, which runs CPython code that races inside CPython) are listed, not failed.

Every report is printed in full, then a digest of each, one block per report, so that
the end of a CI log names the racing frames.

Usage: python scripts/tsan_reports.py DIR
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

# A stack frame of oddjob's: its C source, its .pyx, or its extension module.
OURS = re.compile(r"oddjob/_core\.(c|pyx)\b|/oddjob/_core\.cpython-[^ )]*\.so")
# The first line of one racing access's stack.
ACCESS = re.compile(r"^  (Previous )?(Atomic )?(read|write|Read|Write)\b.* of size \d+")
FRAME = re.compile(r"^\s+#(\d+) (\S+) (\S+)")
# How deep into an access's stack a frame of oddjob's makes the race oddjob's.
TOP_FRAMES = 3


@dataclass
class Report:
    text: str
    title: str
    accesses: list[tuple[str, list[str]]]  # (heading, frame lines)

    def ours_at_top(self) -> bool:
        return any(OURS.search(f) for _, frames in self.accesses for f in frames[:TOP_FRAMES])

    def ours_anywhere(self) -> bool:
        return bool(OURS.search(self.text))

    def digest(self) -> str:
        lines = [self.title]
        for heading, frames in self.accesses:
            lines.append(f"  {heading.strip()}")
            for frame in frames[: TOP_FRAMES + 1]:
                match = FRAME.match(frame)
                lines.append(f"    #{match[1]} {match[2]} {match[3]}" if match else frame)
        return "\n".join(lines)


def parse(block: str) -> Report:
    lines = block.strip().splitlines()
    title = next((line for line in lines if "WARNING: ThreadSanitizer:" in line), lines[0])
    accesses: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in lines:
        if ACCESS.match(line):
            current = []
            accesses.append((line, current))
        elif current is not None and FRAME.match(line):
            current.append(line)
        else:
            current = None
    return Report(block.strip(), title.strip(), accesses)


def reports(directory: Path) -> list[Report]:
    found = []
    for path in sorted(directory.glob("report*")):
        text = path.read_text(errors="replace")
        for block in text.split("==================\n"):
            if "WARNING: ThreadSanitizer:" in block:
                found.append(parse(block))
    return found


def main() -> int:
    every = reports(Path(sys.argv[1]))
    ours = [r for r in every if r.ours_at_top()]
    through = [r for r in every if not r.ours_at_top() and r.ours_anywhere()]
    for report in ours + through:
        print(report.text, end="\n\n")
    for label, group in (("ODDJOB'S", ours), ("reached through oddjob, CPython's", through)):
        for i, report in enumerate(group, 1):
            print(f"-- {label} report {i} of {len(group)}:\n{report.digest()}\n")
    print(
        f"ThreadSanitizer: {len(every)} reports, {len(ours)} in oddjob's code,"
        f" {len(through)} inside CPython on paths through oddjob,"
        f" {len(every) - len(ours) - len(through)} inside CPython alone"
    )
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main())
