"""Beam steps of the texture pipeline and the Beam-free code they wrap.

One module per step, each a plain function plus a thin DoFn or PTransform:
:mod:`~transforms.plan` (skip finished scenes, quantization ranges, tile tasks),
:mod:`~transforms.read` (read and quantize a tile), :mod:`~transforms.compute`
(RunInference model handlers), :mod:`~transforms.save_tile` (keep a tile's core),
:mod:`~transforms.finish` (COG mosaic, quicklook, manifest) and
:mod:`~transforms.errors` (error records, retries, the dead-letter file). Under them:
:mod:`~transforms.storage` (local and ``gs://``), :mod:`~transforms.scenes`,
:mod:`~transforms.raster`, :mod:`~transforms.tiling`, :mod:`~transforms.write`,
:mod:`~transforms.manifest`, :mod:`~transforms.params`.

GLCM math comes from :mod:`glcm` only; nothing here changes the environment.
"""
