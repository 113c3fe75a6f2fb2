"""``python -m pipeline``: run the texture pipeline (see ``--help``)."""

import gc
import sys

# Importing TensorFlow, Keras and Beam makes millions of long-lived objects, and
# Python's collector walks them again and again while they arrive: 1.2-1.7 of a
# 6-7 CPU-s start-up (docs/performance.md). Frozen afterwards, later collections
# skip them.
gc.disable()
from pipeline.run import main  # noqa: E402

gc.enable()
gc.freeze()

if __name__ == "__main__":
    code = main().exit_code
    # Everything is written and committed by now; Python's last collection at exit
    # would walk every object the run made (1.9-2.1 s after a run): frozen, it does not.
    gc.freeze()
    sys.exit(code)
