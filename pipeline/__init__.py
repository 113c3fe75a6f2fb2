"""The Beam pipeline: options, graph wiring, entry point (``python -m pipeline``)."""
