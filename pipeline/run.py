"""Entry point: validate flags, run the pipeline, print a summary."""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import apache_beam as beam

from pipeline.build import NAMESPACE, build
from pipeline.options import TextureOptions, is_dataflow, params_from
from transforms import storage


def _counter(result, name) -> int:
    from apache_beam.metrics.metric import MetricsFilter

    found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE)
                                   .with_name(name))["counters"]
    return int(sum(c.committed or 0 for c in found))


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        parser = argparse.ArgumentParser(
            prog="python -m pipeline",
            description="GLCM texture features for a raster collection (Apache Beam). "
                        "Any Beam pipeline option (--runner, --direct_num_workers, ...) "
                        "is accepted too.")
        TextureOptions._add_argparse_args(parser)
        parser.print_help()
        return 0
    options = TextureOptions(argv)
    try:
        params = params_from(options)  # every flag checked before any work
        started = time.time()
        pipeline = beam.Pipeline(options=options)
        build(pipeline, options, params)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = pipeline.run()
    if is_dataflow(options):
        # The launcher (Flex Template or shell) returns once the job is submitted;
        # the summary is the job's counters and OUTPUT/errors.jsonl.
        output = storage.normalize(options.view_as(TextureOptions).output)
        print(f"submitted Dataflow job {result.job_id()}; outputs: "
              f"{storage.join(output, '<scene_id>')}/, failures: "
              f"{storage.join(output, 'errors.jsonl')}")
        return 0
    result.wait_until_finish()
    seconds = time.time() - started
    output = storage.normalize(options.view_as(TextureOptions).output)
    errors_file = storage.join(output, "errors.jsonl")
    failures = [line for line in storage.read_bytes(errors_file).decode().splitlines()
                if line.strip()]
    done, skipped = _counter(result, "scenes_done"), _counter(result, "scenes_skipped")
    new, changed = _counter(result, "scenes_new"), _counter(result, "scenes_changed")
    pixels = _counter(result, "pixels")
    print(f"scenes done: {done} (new: {new}, changed: {changed}), skipped (already "
          f"finished): {skipped}, failure records: {len(failures)}; "
          f"{pixels / max(seconds, 1e-9):,.0f} pixels/s over {seconds:.1f} s")
    print(f"outputs: {storage.join(output, '<scene_id>')}/features.tif, quicklook.png, "
          f"manifest.json; failures: {errors_file}")
    fail = options.view_as(TextureOptions).fail_on_error
    return 1 if (fail and failures) else 0
