"""Benchmarks (``python -m benchmarks.bench_glcm``, ``bench_texture``, ``bench_pipeline``).

Each benchmark is a process start, the place to choose TensorFlow's CPU allocator:
the caching (BFC) one, unless the caller set ``TF_CPU_ALLOCATOR_USE_BFC``. TensorFlow
reads the variable at its first allocation, which comes after this import. The
pipeline that ``bench_pipeline`` starts gets the default allocator, as
``run_local.sh`` and the worker image give it (README, "CPU allocator").
"""

import os

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
