"""Entry point: validate flags, run the pipeline, report a summary."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
import time
from typing import Dict, List, Optional, Tuple

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions

from pipeline.build import Seams, build
from pipeline.options import TextureOptions, flag_names, is_dataflow, params_from
from transforms.discover import NO_MATCH_ERROR
from transforms.errors import named, read_errors
from transforms.io import storage
from transforms.layout import MANIFEST_NAME, errors_uri, outputs_for
from transforms.metrics import counter_value, step_seconds, texture_wait_seconds
from transforms.records import ErrorRecord
from transforms.texture import AcceleratorError, compute_device

log = logging.getLogger("glcm")
# Libraries whose start-up chatter a user should not see unless they ask (-v).
NOISY_LOGGERS = ("apache_beam", "absl", "tensorflow", "keras", "jax", "rasterio",
                 "google", "urllib3")


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What a run did; ``exit_code`` is what ``python -m pipeline`` exits with.

    Attributes:
      exit_code: 0; 1 with --fail-on-error and a failure; 2 for bad flags or an
        input that matched no raster.
      error: why (exit code 2), else None.
      done, new, changed, skipped: scenes finished by this run (new + changed +
        forced = done), and scenes skipped as already finished.
      failures: the run's error records (also in ``OUTPUT/errors.jsonl``).
      pixels, seconds: input pixels (x bands) of the finished scenes, wall time.
      output: the output folder or prefix.
      job_id: on Dataflow, the submitted job (None when only a job graph or a
        template was written); the counts are then unknown (zero).
      step_seconds: seconds each step spent (discover, plan, read, texture, save,
        finish), summed over workers and threads: they can exceed the wall time.
      texture_wait_seconds: of the texture step's seconds, those its tiles waited
        for the model (one call at a time per process; summed likewise).
      peak_memory: the most resident memory this process held, in bytes (Linux's
        VmHWM; None where the OS does not say). On the DirectRunner in its threaded
        mode that is the whole run's; SDK worker processes
        (``--direct_running_mode=multi_processing``) are not counted.
    """

    exit_code: int
    error: Optional[str] = None
    done: int = 0
    new: int = 0
    changed: int = 0
    skipped: int = 0
    failures: Tuple[ErrorRecord, ...] = ()
    pixels: int = 0
    seconds: float = 0.0
    output: str = ""
    job_id: Optional[str] = None
    step_seconds: Dict[str, float] = dataclasses.field(default_factory=dict)
    texture_wait_seconds: float = 0.0
    peak_memory: Optional[int] = None

    def describe(self) -> str:
        """The summary printed at the end of a local run: the scenes, where the time
        went, step by step, and the process's peak memory."""
        rate = self.pixels / max(self.seconds, 1e-9)
        waited = (f" ({self.texture_wait_seconds:.1f} of them waiting for the model)"
                  if self.texture_wait_seconds else "")
        steps = ", ".join(f"{step} {seconds:.1f} s" + (waited if step == "texture" else "")
                          for step, seconds in self.step_seconds.items())
        return (f"scenes done: {self.done} (new: {self.new}, changed: {self.changed}), "
                f"skipped (already finished): {self.skipped}, failure records: "
                f"{len(self.failures)}; {rate:,.0f} pixels/s over {self.seconds:.1f} s"
                + (f"\nsteps: {steps} (seconds summed over workers)" if steps else "")
                + (f"\npeak memory (this process): {self.peak_memory / 2 ** 30:.2f} GiB"
                   if self.peak_memory is not None else ""))


def peak_memory() -> Optional[int]:
    """The most resident memory this process has held, in bytes: Linux's VmHWM, which
    exec resets (unlike ``getrusage``'s maximum, which can be a forking parent's).
    None where ``/proc`` does not say."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


class ElapsedFormatter(logging.Formatter):
    """``[glcm +S s] message``: S the seconds since ``start`` (a ``time.time()``), so
    that a run's progress lines show when each scene's tiles and mosaic came, and
    where a long run's time went between them. The message still follows "] ", as
    before the seconds were added."""

    def __init__(self, start: float):
        super().__init__("[glcm +%(elapsed).1f s] %(message)s")
        self.start = start

    def format(self, record: logging.LogRecord) -> str:
        record.elapsed = max(0.0, record.created - self.start)
        return super().format(record)


def configure_logging(verbose: bool, start: float) -> None:
    """``[glcm +S s] ...`` progress lines on stderr, S the seconds since ``start`` (a
    ``time.time()``); other libraries' INFO and WARNING lines only with ``verbose``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ElapsedFormatter(start))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    # Some libraries log to the root logger (Beam's RunInference memory warning).
    for name in ("",) + NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)


# --runner values that mean Beam's DirectRunner (case aside; None: no --runner).
DIRECT_RUNNER_NAMES = (None, "direct", "directrunner")


def local_runner(options):
    """The runner object for a run on this machine, or None to let Beam make the one
    ``--runner`` names.

    With no ``--runner`` (or ``--runner=DirectRunner``) Beam's DirectRunner has, since
    Beam 2.68, first tried its Prism runner: a Go binary it downloads from GitHub at
    run time, which names metrics differently (this pipeline's summary reads them);
    without network access it falls back to the FnApiRunner. A local run here always
    uses the FnApiRunner, so it behaves the same online and offline, and downloads
    nothing. ``--runner=PrismRunner`` still asks for Prism.
    """
    name = options.view_as(StandardOptions).runner
    if (name.lower() if isinstance(name, str) else name) not in DIRECT_RUNNER_NAMES:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    # As Beam's DirectRunner builds it: the options travel to SDK worker processes
    # (--direct_running_mode=multi_processing) in the provision info.
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def print_help() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="GLCM texture features for a raster collection (Apache Beam). Any "
                    "Beam pipeline option (--runner, --direct_num_workers, ...) is "
                    "accepted too.")
    TextureOptions._add_argparse_args(parser)
    parser.print_help()


def main(argv: Optional[List[str]] = None, seams: Seams = Seams()) -> RunSummary:
    """Runs the pipeline with the command line ``argv`` (default: sys.argv[1:]).

    Args:
      seams: what the graph calls to read tiles and make its model
        (:class:`pipeline.build.Seams`; tests inject faults there).

    Returns:
      a :class:`RunSummary`; its summary is printed on stdout.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print_help()
        return RunSummary(exit_code=0)
    options = TextureOptions(argv)
    o = options.view_as(TextureOptions)
    started = time.time()  # the progress lines' clock and the summary's
    configure_logging(o.verbose, started)
    try:
        params = params_from(options)  # every flag checked before any work
        if not is_dataflow(options):
            compute_device(o.accelerator)  # this machine computes: is its GPU there?
        pipeline = beam.Pipeline(runner=local_runner(options), options=options)
        try:
            build(pipeline, options, params, seams)
        except BaseException:
            # Beam removes the folder it made for the pipeline only when it runs
            shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
            raise
    except (ValueError, AcceleratorError) as exc:
        message = named(str(exc), getattr(exc, "parameter", None), flag_names())
        print(f"error: {message}", file=sys.stderr)
        return RunSummary(exit_code=2, error=message)
    output = storage.normalize(o.output)
    result = pipeline.run()
    if is_dataflow(options):
        return _submitted(result, output)
    result.wait_until_finish()
    failures = tuple(read_errors(errors_uri(output)))
    nothing = [f for f in failures if f.error == NO_MATCH_ERROR]
    if nothing:
        print(f"error: {nothing[0].message}", file=sys.stderr)
    summary = RunSummary(
        exit_code=2 if nothing else (1 if (o.fail_on_error and failures) else 0),
        error=nothing[0].message if nothing else None,
        done=counter_value(result, "scenes_done"), new=counter_value(result, "scenes_new"),
        changed=counter_value(result, "scenes_changed"),
        skipped=counter_value(result, "scenes_skipped"), failures=failures,
        pixels=counter_value(result, "pixels"), seconds=time.time() - started,
        output=output, step_seconds=step_seconds(result),
        texture_wait_seconds=texture_wait_seconds(result), peak_memory=peak_memory())
    print(summary.describe())
    files = ", ".join(outputs_for(params) + (MANIFEST_NAME,))
    print(f"outputs: {storage.join(output, '<scene_id>')}/{files}; failures: "
          f"{errors_uri(output)}")
    return summary


def _submitted(result, output: str) -> RunSummary:
    """On Dataflow the launcher returns once the job is submitted (or, in template
    mode, once the job graph is written); the job's counters and errors.jsonl then
    tell the rest."""
    where = (f"outputs: {storage.join(output, '<scene_id>')}/, failures: "
             f"{errors_uri(output)}")
    if not getattr(result, "has_job", True):
        print(f"job graph written for Dataflow (template mode): no job started; {where}")
        return RunSummary(exit_code=0, output=output)
    job_id = result.job_id()
    print(f"submitted Dataflow job {job_id}; {where}")
    return RunSummary(exit_code=0, output=output, job_id=job_id)
