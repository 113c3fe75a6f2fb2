"""Beam metrics of the pipeline: one namespace, counters by name."""

from __future__ import annotations

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

NAMESPACE = "glcm_texture"


def counter(name: str):
    """The pipeline's Beam counter ``name`` (create it in a DoFn's ``__init__``)."""
    return Metrics.counter(NAMESPACE, name)


def counter_value(result, name: str) -> int:
    """The committed value of counter ``name`` in a finished pipeline's ``result``."""
    found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE)
                                   .with_name(name))["counters"]
    return int(sum(c.committed or 0 for c in found))
