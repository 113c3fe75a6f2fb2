"""``python -m pipeline``: run the texture pipeline (see ``--help``)."""

import gc
import sys

from pipeline.run import main

if __name__ == "__main__":
    code = main().exit_code
    # Everything is written and committed by now. Python's last garbage collection
    # at exit walks every object TensorFlow and Beam made (about 1 CPU-s and 1 s of
    # wall time per run, docs/performance.md); frozen objects are not walked.
    gc.freeze()
    sys.exit(code)
