"""``python -m oddjob bench``: the benchmark harness (see oddjob._bench)."""

import sys

from ._bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
