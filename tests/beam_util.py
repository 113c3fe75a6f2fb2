"""Runs one step on Beam's TestPipeline (in this process) and returns what each of
its outputs emitted; reads the resource hints of the pipeline's graph."""

import functools
import shutil

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.common_urns import resource_hints
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from pipeline.build import build
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


def leaf_accelerators(graph):
    """{leaf transform name: its accelerator resource hint or None} of a portable
    pipeline proto (leaves that run in an environment; a runner's own primitives,
    as GroupByKey, have none)."""
    out = {}
    for t in graph.components.transforms.values():
        if not t.subtransforms and t.environment_id:
            hints = graph.components.environments[t.environment_id].resource_hints
            value = hints.get(resource_hints.ACCELERATOR.urn)
            out[t.unique_name] = value.decode() if value else None
    return out


def hints_under(hints, step):
    """The entries of ``hints`` for ``step`` and the transforms inside it."""
    return {name: hint for name, hint in hints.items()
            if name == step or name.startswith(step + "/")}


def graph_of(options):
    """The graph ``build`` makes for ``options``, in Beam's portable form (as runners
    receive it)."""
    p = beam.Pipeline(options=options)
    try:
        build(p, options)
        return p.to_runner_api()
    finally:
        # Beam removes the folder it made for the pipeline only when it runs
        shutil.rmtree(p.local_tempdir, ignore_errors=True)


def accelerator_of_leaves(options):
    """:func:`leaf_accelerators` of the graph ``build`` makes for ``options``."""
    return leaf_accelerators(graph_of(options))
