"""``python -m bench.demo``: the same as ``python -m bench demo``."""

import sys

from bench.demo.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
