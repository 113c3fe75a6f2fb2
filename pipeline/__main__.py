"""``python -m pipeline``: run the texture pipeline (see ``--help``)."""

import sys

from pipeline.run import main

if __name__ == "__main__":
    sys.exit(main().exit_code)
