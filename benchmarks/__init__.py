"""Benchmarks (``python -m benchmarks.bench_glcm``, ``bench_texture``, ``bench_pipeline``).

Each benchmark is a process start, the place to choose TensorFlow's CPU allocator:
the caching (BFC) one, unless the caller set ``TF_CPU_ALLOCATOR_USE_BFC``. TensorFlow
reads the variable at its first allocation, which comes after this import. The
pipelines the benchmarks start get it too, as ``run_local.sh`` and the worker image
give it (docs/python.md, "CPU allocator").
"""

import os

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
