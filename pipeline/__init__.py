"""The Beam pipeline: options, graph, entry point (``python -m pipeline``)."""

# Imported first: it chooses TensorFlow's CPU allocator, before glcm is imported.
import transforms  # noqa: F401
