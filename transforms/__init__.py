"""Beam-free building blocks of the pipeline: storage, scenes, rasters, tiles, compute,
outputs.

Importing this package keeps TensorFlow's default CPU allocator, where ``import glcm``
alone would switch to the caching one (see glcm's module docstring): a pipeline worker
holds tiles, GDAL's cache and the model at once, and the memory the caching allocator
keeps on top raised the pipeline's peak RSS from 2.23 to 2.46 GiB on a 4096x4096 scene
and from 2.69 to 2.89 GiB on 16384x16384, for no gain in pixels/s. A value the user
set is kept; glcm's default, also when inherited from a parent process that imported
glcm, is replaced. TensorFlow reads the variable at its first allocation, so this
must run before it.
"""

import os

if ("TF_CPU_ALLOCATOR_USE_BFC" not in os.environ
        or os.environ.pop("GLCM_DEFAULT_TF_ALLOCATOR", None)):
    os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "false"
