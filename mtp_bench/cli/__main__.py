"""``python -m mtp_bench.cli``: the same as ``mtp-bench``."""

import sys

from mtp_bench.cli.entry import main

if __name__ == "__main__":
    sys.exit(main())
