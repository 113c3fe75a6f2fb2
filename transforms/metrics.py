"""Beam metrics of the pipeline: one namespace; per step, the elements it handled,
the bytes it read or wrote and the milliseconds it spent (in the spirit of
xarray-beam's ``inc_counter`` / ``inc_timer_msec``)."""

from __future__ import annotations

import contextlib
import time
from typing import Dict

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

NAMESPACE = "glcm_texture"
# The steps that keep time, in pipeline order (the run summary's "steps:" line).
STEPS = ("discover", "plan", "read", "texture", "save", "finish")
# Of the texture step's milliseconds, those its tiles waited for the process's one
# model call at a time (transforms.texture.model_turn).
WAIT_COUNTER = "texture_wait_msec"


def counter(name: str):
    """The pipeline's Beam counter ``name`` (create it in a DoFn's ``__init__``)."""
    return Metrics.counter(NAMESPACE, name)


class StepMetrics:
    """Counters of one step: ``<step>_elements``, ``<step>_bytes``, ``<step>_msec``."""

    def __init__(self, step: str):
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")
        self.step = step
        self.elements = counter(f"{step}_elements")
        self.bytes = counter(f"{step}_bytes")
        self.msec = counter(f"{step}_msec")

    @contextlib.contextmanager
    def timed(self, elements: int = 1):
        """Counts ``elements`` and the time spent inside the ``with`` block (also when
        it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.msec.inc(int(round((time.perf_counter() - start) * 1000)))
            self.elements.inc(elements)


def counter_value(result, name: str) -> int:
    """The committed value of counter ``name`` in a finished pipeline's ``result``."""
    found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE)
                                   .with_name(name))["counters"]
    return int(sum(c.committed or 0 for c in found))


def step_seconds(result) -> Dict[str, float]:
    """Seconds each step spent, summed over workers and threads."""
    return {step: counter_value(result, f"{step}_msec") / 1000.0 for step in STEPS}


def texture_wait_seconds(result) -> float:
    """Of the texture step's seconds, those its tiles waited for the model (one call
    at a time per process), summed over workers and threads."""
    return counter_value(result, WAIT_COUNTER) / 1000.0
