"""Beam-free I/O of the pipeline: storage (local paths and ``gs://``), raster reading,
COG and quicklook writing, STAC items and input listing. Nothing here imports Beam."""
