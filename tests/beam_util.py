"""Runs one step on Beam's TestPipeline (in this process) and returns what each of
its outputs emitted."""

import functools

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from pipeline.run import local_runner

# What the matchers saw. Module level: the runner pickles the matchers, and a
# module-level name travels by reference, so they write here, in this process.
_FOUND = {}


def _keep(name, elements):
    _FOUND[name] = list(elements)


def local_pipeline():
    """Beam's TestPipeline on the runner a local run of the pipeline uses (Beam's
    FnApiRunner; never a Prism binary fetched from the network)."""
    return TestPipeline(runner=local_runner(PipelineOptions([])))


def run_step(elements, step, outputs=("main",)):
    """``beam.Create(elements) | step``; ``step`` a PTransform (or a DoFn, applied
    with ParDo and ``outputs`` as its tagged outputs, the first the main one).

    Returns:
      {output name: [elements]}.
    """
    _FOUND.clear()
    with local_pipeline() as p:
        created = p | beam.Create(list(elements), reshuffle=False)
        if isinstance(step, beam.DoFn):
            main, *tags = outputs
            result = created | beam.ParDo(step).with_outputs(*tags, main=main)
            produced = {name: result[name] for name in outputs}
        else:
            out = created | step
            produced = out if isinstance(out, dict) else {"main": out}
        for name, pcoll in produced.items():
            assert_that(pcoll, functools.partial(_keep, name), label=f"Keep_{name}")
    return dict(_FOUND)
