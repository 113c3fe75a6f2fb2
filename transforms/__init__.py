"""Beam steps of the texture pipeline, and the Beam-free code they use.

One module per step, each a plain function plus a thin DoFn or PTransform:
:mod:`~transforms.discover` (inputs -> named scenes), :mod:`~transforms.plan` (skip
finished scenes, quantization ranges, tile tasks), :mod:`~transforms.read` (read and
quantize a tile), :mod:`~transforms.texture` (RunInference model handlers),
:mod:`~transforms.save` (keep a tile's core), :mod:`~transforms.finish` (COG mosaic,
quicklook, manifest: after a scene's last tile, and at the end of the run) and
:mod:`~transforms.errors` (retries, the dead-letter file).

Beside them: :mod:`~transforms.records` (every record that travels between steps; no
I/O import), :mod:`~transforms.layout` (every name under the output, the scratch and
claim protocol, the manifest), :mod:`~transforms.metrics` (counters), and
:mod:`transforms.io`, Beam-free I/O: ``storage`` (local and ``gs://``), ``raster``
(reading), ``cog`` (writing the mosaic and quicklook), ``stac``, ``listing``.

GLCM math comes from :mod:`glcm` only; nothing here changes the environment.
"""
