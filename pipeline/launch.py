"""The Dataflow launcher: ``./run_dataflow.sh`` arguments -> a plan of exact commands.

:func:`plan` is a pure function from the command line to a :class:`LaunchPlan`: the
``gcloud`` commands and request bodies, in order, validated before anything runs.
Launcher flags are checked by their own parser (an unknown flag is refused by name,
with the closest known one); pipeline flags by the pipeline's own parser and
:mod:`glcm.validation`, exactly as the workers will parse them. ``--dry-run`` prints
the plan; otherwise :func:`execute` runs it step by step and names the step that
failed.

Values only known once an earlier step has run (the launcher base image release,
the digest of the image just built) appear in later commands as ``${NAME}``; a step's
``sets`` says which step provides them.

The GPU table (:data:`GPU_MACHINES`) is the one place that says which machine types
carry which GPUs on demand.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import difflib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import DATAFLOW_EXPERIMENTS, TextureOptions, params_from

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# -- machines ------------------------------------------------------------------------
N1_DEFAULT = "n1-standard-8"
# GPU type -> {GPUs per worker: machine types that carry them on demand, the default
# first}. "n1-*" stands for any N1 type (N1 GPUs attach to any N1 shape, within
# Compute Engine's vCPU limits per GPU count). Accelerator-optimized families have a
# fixed GPU count per machine type.
GPU_MACHINES: Dict[str, Dict[int, Tuple[str, ...]]] = {
    "nvidia-tesla-t4": {n: (N1_DEFAULT, "n1-*") for n in (1, 2, 4)},
    "nvidia-tesla-p4": {n: (N1_DEFAULT, "n1-*") for n in (1, 2, 4)},
    "nvidia-tesla-p100": {n: (N1_DEFAULT, "n1-*") for n in (1, 2, 4)},
    "nvidia-tesla-v100": {n: (N1_DEFAULT, "n1-*") for n in (1, 2, 4, 8)},
    "nvidia-l4": {1: ("g2-standard-8", "g2-standard-4", "g2-standard-12", "g2-standard-16",
                      "g2-standard-32"),
                  2: ("g2-standard-24",), 4: ("g2-standard-48",), 8: ("g2-standard-96",)},
    "nvidia-tesla-a100": {**{n: (f"a2-highgpu-{n}g",) for n in (1, 2, 4, 8)},
                          16: ("a2-megagpu-16g",)},
    "nvidia-a100-80gb": {n: (f"a2-ultragpu-{n}g",) for n in (1, 2, 4, 8)},
    # a3-highgpu-1g/2g/4g exist, but Compute Engine offers them only as Spot or
    # Flex-start capacity, never on demand: a job asking for them gets no worker.
    "nvidia-h100-80gb": {8: ("a3-highgpu-8g",)},
    "nvidia-h100-mega-80gb": {8: ("a3-megagpu-8g",)},
}
NOT_ON_DEMAND = {("nvidia-h100-80gb", n): f"a3-highgpu-{n}g" for n in (1, 2, 4)}
CPU_ONLY = "none"

# -- defaults ------------------------------------------------------------------------
DEFAULT_GPU = "nvidia-tesla-t4"
DEFAULT_MAX_WORKERS = 10
# Worker boot disk. Sizing rule (docs/cloud.md): about 25 GB for the image while it
# is pulled (~10 GB unpacked plus its compressed layers), plus, for each scene being
# finished at once (up to --harness-threads), its raw mosaic and its COG:
# ~2.1 x height x width x bands x features x 4 bytes (8 features of a 10980² band:
# ~8.5 GB).
DEFAULT_DISK_GB = 100
MIN_DISK_GB = 40
DEFAULT_HARNESS_THREADS = 4
# The Flex Template launcher VM pulls the whole worker image and imports TensorFlow
# and Beam to build the job graph: the service's default (n1-standard-1) is slow at it.
DEFAULT_LAUNCHER_MACHINE = "n1-standard-4"
SCHEDULED_JOB_NAME = "glcm-texture"
REPOSITORY = "glcm"
IMAGE_NAME = "glcm-worker"
# Paths whose changes make a different image (an uncommitted change gets its own tag).
IMAGE_SOURCES = ("glcm", "transforms", "pipeline", "dataflow", "setup.py", "Dockerfile")

# Google's Flex Template launcher base images, and the tag forms of their releases
# (flex_templates_base_image_release_20260112_RC00, 20251030-rc00, 20230622_RC00).
LAUNCHER_BASE = "gcr.io/dataflow-templates-base/python{tag}-template-launcher-base"
RELEASE_TAG = re.compile(r"(?:flex_templates_base_image_release_)?(\d{8})[-_](?:RC|rc)(\d\d)")

# Options the launcher sets itself, and the launcher flag to use instead.
RESERVED = {"sdk_container_image": "--image", "disk_size_gb": "--disk-size-gb",
            "number_of_worker_harness_threads": "--harness-threads",
            "accelerator": "--gpu-type", "dataflow_service_options": "--gpu-type",
            "experiments": "--gpu-type", "worker_machine_type": "--machine-type",
            "machine_type": "--machine-type", "max_num_workers": "--max-workers",
            "tile_accelerator": "--mosaic-machine-type"}
# Tiles per model call on GPU workers, unless --tiles-per-call says otherwise: on an
# H200 (JAX) 4 tiles per call ran at 1.2-1.3 times the pixel rate of one at a time,
# copies to and from the host included, 1.7-2.0 times on the device alone
# (docs/performance.md, "On a GPU"); its memory is a few hundred MB more.
GPU_TILES_PER_CALL = 4
# Machine families that come with GPUs attached: not for the CPU workers of
# --mosaic-machine-type.
GPU_FAMILIES = ("a2-", "a3-", "a4-", "g2-", "g4-")
MACHINE_TYPE = re.compile(r"[a-z][a-z0-9]*-[a-z0-9-]+")
PROJECT_ID = re.compile(r"[a-z][-a-z0-9:.]{4,61}[a-z0-9]")
JOB_NAME = re.compile(r"[a-z]([-a-z0-9]{0,1022}[a-z0-9])?")
REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")


class LaunchError(ValueError):
    """Arguments that cannot make a job; the message says what to change."""


class StepFailed(RuntimeError):
    """A step of the plan failed while it ran; the message names it and why."""


@dataclasses.dataclass(frozen=True)
class Step:
    """One command of a plan.

    Attributes:
      name: short name, used in errors (``image``, ``template``, ...).
      purpose: one line saying what it does, printed above the command.
      argv: the command; ``${NAME}`` is replaced by a value an earlier step set.
      sets: names of the values this step's standard output provides (read by
        ``reader``).
      probe: a command whose exit status decides whether the step runs (see
        ``when``); a probe's failure is an answer, not an error.
      when: ``always``, ``probe_fails`` or ``probe_succeeds``.
      hint: what to do when the step fails.
    """

    name: str
    purpose: str
    argv: Tuple[str, ...]
    sets: Tuple[str, ...] = ()
    reader: Optional[Callable[[str], Dict[str, str]]] = None
    probe: Optional[Tuple[str, ...]] = None
    when: str = "always"
    hint: str = ""


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """What a launch does: its steps in order, plus what they were made from."""

    command: str  # run or schedule
    steps: Tuple[Step, ...]
    image: str  # the worker image as built or given (a tag, or a digest reference)
    template: str  # the Flex Template spec path (may hold ${WORKER_DIGEST})
    machine_type: str
    experiments: Tuple[str, ...]
    parameters: Dict[str, str]  # pipeline parameters, as the template receives them
    scheduler_body: Optional[dict] = None

    def describe(self) -> str:
        """The plan as text: each step's purpose, its probe, its command."""
        lines = []
        for step in self.steps:
            lines.append(f"# {step.purpose}")
            if step.probe:
                lines.append("? " + shlex.join(step.probe))
                lines.append(f"  (the next command runs only if this one "
                             f"{'fails' if step.when == 'probe_fails' else 'succeeds'})")
            lines.append("+ " + shlex.join(step.argv))
            if step.sets:
                lines.append(f"  (sets {', '.join('${' + s + '}' for s in step.sets)})")
        return "\n".join(lines)


# -- argument parsing ----------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse that raises LaunchError instead of exiting."""

    def error(self, message):
        raise LaunchError(message)


def launcher_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run_dataflow.sh", add_help=False, allow_abbrev=False)
    add = parser.add_argument
    add("--project", help="Google Cloud project id (required)")
    add("--region", help="region of the job, the image repository and the schedule "
                         "(required)")
    add("--bucket", help="gs://BUCKET[/prefix] for templates, staging and temp files "
                         "(required)")
    add("--gpu-type", default=DEFAULT_GPU,
        help=f"{', '.join(GPU_MACHINES)}, or {CPU_ONLY} (CPU workers); default "
             f"{DEFAULT_GPU}")
    add("--gpu-count", type=_positive("--gpu-count"), default=1,
        help="GPUs per worker (default 1)")
    add("--machine-type", help="worker machine type (default: the smallest that "
                               "carries the GPUs on demand)")
    add("--mosaic-machine-type",
        help="right fitting: the GPU workers (--gpu-type, --machine-type) only read, "
             "compute and save tiles; workers of this type, without GPU, plan the "
             "scenes and write the mosaics once every tile is saved (e.g. "
             "n2-standard-8; default: none, every step on the GPU workers; "
             "docs/cloud.md)")
    add("--launcher-machine-type", default=DEFAULT_LAUNCHER_MACHINE,
        help=f"machine of the Flex Template launcher VM, which pulls the worker image "
             f"(default {DEFAULT_LAUNCHER_MACHINE})")
    add("--service-account", help="worker (and launcher) service account e-mail; also "
                                  "the identity Cloud Scheduler calls Dataflow with")
    add("--worker-zone", help="zone for the workers (one that has the GPU type)")
    add("--max-workers", type=_positive("--max-workers"), default=DEFAULT_MAX_WORKERS,
        help=f"autoscaling limit (default {DEFAULT_MAX_WORKERS})")
    add("--disk-size-gb", type=_positive("--disk-size-gb"), default=DEFAULT_DISK_GB,
        help=f"worker boot disk in GB (default {DEFAULT_DISK_GB}; at least "
             f"{MIN_DISK_GB}: see docs/cloud.md for the sizing rule)")
    add("--harness-threads", type=_positive("--harness-threads"),
        default=DEFAULT_HARNESS_THREADS,
        help=f"worker harness threads sharing the GPU (default {DEFAULT_HARNESS_THREADS})")
    add("--image", help="worker image (default REGION-docker.pkg.dev/PROJECT/glcm/"
                        "glcm-worker:TAG, TAG the git commit)")
    add("--launcher-tag", help="release tag of Google's launcher base image to build "
                               "with (default: its newest release, looked up)")
    add("--skip-build", action="store_true",
        help="build nothing: launch the image given by --image and its template")
    add("--job-name", help="Dataflow job name (default glcm-texture-<UTC time>; the "
                           "scheduled job is always glcm-texture)")
    add("--dry-run", action="store_true", help="print every command and run none")
    add("-h", "--help", action="store_true", help="this text")
    add("--cron", help="schedule: cron expression (required with schedule)")
    add("--time-zone", default="Etc/UTC", help="schedule: time zone (default Etc/UTC)")
    add("--scheduler-job", default=SCHEDULED_JOB_NAME,
        help=f"schedule: Cloud Scheduler job name (default {SCHEDULED_JOB_NAME})")
    add("--scheduler-service-account",
        help="schedule: identity the scheduler calls Dataflow with (default "
             "--service-account)")
    return parser


def pipeline_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The pipeline's own flags (:class:`~pipeline.options.TextureOptions`); with
    ``suppress_defaults``, only the flags given appear in the result."""
    parser = _Parser(prog="python -m pipeline", add_help=False, allow_abbrev=False)
    TextureOptions._add_argparse_args(parser)
    if suppress_defaults:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
    return parser


def _positive(flag):
    def check(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive integer, got "
                                             f"{text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive integer, got "
                                             f"{value}")
        return value
    return check


def _flags(parser: argparse.ArgumentParser) -> List[str]:
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--")]


def help_text() -> str:
    usage = ("Usage:\n"
             "  ./run_dataflow.sh --project P --region R --bucket gs://B [options] "
             "--input gs://... [pipeline flags]\n"
             "  ./run_dataflow.sh schedule --cron '0 3 * * *' --service-account SA "
             "--project P --region R --bucket gs://B [options] [pipeline flags]\n\n"
             "Builds the worker image with Cloud Build (on the newest release of "
             "Google's Flex Template\nlauncher base, by digest), a Flex Template for "
             "that image digest, then launches the job\n(or creates/updates a Cloud "
             "Scheduler job that launches it on the cron schedule).\n")
    return (usage + "\nLauncher options:\n" + _options_help(launcher_parser())
            + "\nPipeline flags (as python -m pipeline; the job reads them):\n"
            + _options_help(pipeline_parser()))


def _options_help(parser) -> str:
    formatter = argparse.HelpFormatter("run_dataflow.sh", max_help_position=32, width=92)
    formatter.add_arguments([a for a in parser._actions if a.option_strings])
    return formatter.format_help()


# -- the plan --------------------------------------------------------------------------
def plan(argv: Sequence[str], *, root: str = ROOT, commit: Optional[str] = None,
         dirty: bool = False, now: Optional[datetime.datetime] = None) -> LaunchPlan:
    """The launch plan for the command line ``argv`` (without the program name).

    Args:
      root: the checkout the image is built from (its Dockerfile, dataflow/).
      commit, dirty: the checkout's git commit and whether :data:`IMAGE_SOURCES`
        have uncommitted changes (the image tag); needed only without --image.
      now: the time for default names (default: now, UTC).

    Raises:
      LaunchError: any argument that would fail later, naming the flag and what to
        do; nothing has run.
    """
    argv = list(argv)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    command = "run"
    if argv and argv[0] in ("run", "schedule"):
        command = argv.pop(0)
    _refuse_reserved(argv)
    argv = _attach_dash_values(argv)
    known, rest = launcher_parser().parse_known_args(argv)
    given, unknown = pipeline_parser(suppress_defaults=True).parse_known_args(rest)
    if unknown:
        _refuse_unknown(unknown)
    o = known
    _require(o.project, "--project is required (see --help)")
    _require(PROJECT_ID.fullmatch(o.project),
             f"--project {o.project!r} is not a project id (lower-case letters, digits "
             f"and dashes, 6-30 characters; not the project number or name)")
    _require(o.region, "--region is required, e.g. --region us-central1")
    _require(REGION.fullmatch(o.region), f"--region {o.region!r} is not a region name, "
                                         f"e.g. us-central1 or europe-west4")
    _require(o.bucket and re.fullmatch(r"gs://[^/]+(/.*)?", o.bucket),
             f"--bucket must be gs://BUCKET[/prefix], got {o.bucket!r}")
    bucket = o.bucket.rstrip("/")
    machine_type = machine_for(o.gpu_type, o.gpu_count, o.machine_type)
    _require(o.disk_size_gb >= MIN_DISK_GB,
             f"--disk-size-gb {o.disk_size_gb} is too small: the worker image alone "
             f"needs about 25 GB while it is pulled; give at least {MIN_DISK_GB} "
             f"(default {DEFAULT_DISK_GB}, sizing rule in docs/cloud.md)")
    if o.job_name is not None:
        _require(JOB_NAME.fullmatch(o.job_name),
                 f"--job-name {o.job_name!r}: Dataflow job names are lower-case letters, "
                 f"digits and dashes, starting with a letter")
    parameters = pipeline_parameters(given, bucket)
    accelerator = "none" if o.gpu_type == CPU_ONLY else "required"
    if o.gpu_type != CPU_ONLY:
        parameters.setdefault("tiles_per_call", str(GPU_TILES_PER_CALL))
    experiments = tuple(DATAFLOW_EXPERIMENTS)
    gpus = f"type:{o.gpu_type};count:{o.gpu_count};install-nvidia-driver"
    job_machine = machine_type
    if o.mosaic_machine_type is not None:
        _check_mosaic_machine(o.mosaic_machine_type, o.gpu_type)
        # Right fitting: the GPUs as the tile steps' resource hint, never also as the
        # job's worker_accelerator (Google's right-fitting guide says not to combine
        # them); the job's own workers are the CPU ones.
        parameters["tile_accelerator"] = f"{gpus};machine_type:{machine_type}"
        job_machine = o.mosaic_machine_type
    elif o.gpu_type != CPU_ONLY:
        experiments += (f"worker_accelerator={gpus}",)
    if command == "schedule":
        _require(o.cron, "schedule needs --cron, e.g. --cron '0 3 * * *'")
        _require(len(o.cron.split()) == 5,
                 f"--cron {o.cron!r} must have 5 fields: minute hour day month weekday")
        _require(o.scheduler_service_account or o.service_account,
                 "schedule needs --service-account or --scheduler-service-account (the "
                 "identity Cloud Scheduler calls Dataflow with; see docs/cloud.md)")

    if o.launcher_tag is not None:
        _require(RELEASE_TAG.fullmatch(o.launcher_tag),
                 f"--launcher-tag {o.launcher_tag!r} is not a release tag of the launcher "
                 f"base image (e.g. flex_templates_base_image_release_20260112_RC00 or "
                 f"20251030-rc00)")
    if o.skip_build:
        _require(o.image, "--skip-build needs --image URI:TAG (or URI@sha256:...), the "
                          "image built earlier")

    steps: List[Step] = []
    image, tag, digest_known = _image(o, commit, dirty, now)
    if not o.skip_build:
        steps += _build_steps(o, image, root)
    worker, worker_digest = (image, image.rsplit("@sha256:", 1)[1][:12]) if digest_known \
        else ("${WORKER_IMAGE}", "${WORKER_DIGEST}")
    if not digest_known:
        steps.append(Step(
            "digest", "the digest of the worker image: the template and the job use it, "
                      "never the tag (a tag can be pushed again)",
            ("gcloud", "artifacts", "docker", "images", "describe", image,
             f"--project={o.project}", "--format=value(image_summary.digest)"),
            sets=("WORKER_IMAGE", "WORKER_DIGEST"),
            reader=lambda out, repo=image.rsplit(":", 1)[0]: digest_values(repo, out),
            hint="check that the image exists (run without --skip-build to build it)"))
    template = f"{bucket}/templates/glcm-texture-{tag}-{worker_digest}.json"
    if o.skip_build:
        steps.append(Step(
            "template-exists", "the Flex Template built earlier for this image digest",
            ("gcloud", "storage", "objects", "describe", template, f"--project={o.project}"),
            hint=f"no template for image {image}: build it first (run without "
                 f"--skip-build)"))
    else:
        steps.append(Step(
            "template", "the Flex Template of this image digest (one per digest: a later "
                        "build never changes what it launches)",
            ("gcloud", "dataflow", "flex-template", "build", template,
             f"--project={o.project}", f"--image={worker}", "--sdk-language=PYTHON",
             f"--metadata-file={os.path.join(root, 'dataflow', 'metadata.json')}")))
    parameters = dict(parameters, sdk_container_image=worker,
                      disk_size_gb=str(o.disk_size_gb),
                      number_of_worker_harness_threads=str(o.harness_threads),
                      accelerator=accelerator)
    body = None
    if command == "run":
        job = o.job_name or f"glcm-texture-{now:%Y%m%d-%H%M%S}"
        optional = []
        if o.service_account:
            optional.append(f"--service-account-email={o.service_account}")
        if o.worker_zone:
            optional.append(f"--worker-zone={o.worker_zone}")
        if o.mosaic_machine_type is not None:
            workers = (f"{machine_type} workers with {o.gpu_count} x {o.gpu_type} for "
                       f"the tiles, {job_machine} workers without GPU for planning and "
                       f"the mosaics")
        else:
            workers = f"{machine_type} workers" + (
                f" with {o.gpu_count} x {o.gpu_type}" if o.gpu_type != CPU_ONLY
                else ", no GPU")
        steps.append(Step(
            "job", f"the job: {workers}",
            ("gcloud", "dataflow", "flex-template", "run", job, f"--project={o.project}",
             f"--region={o.region}", f"--template-file-gcs-location={template}",
             f"--worker-machine-type={job_machine}", f"--max-workers={o.max_workers}",
             f"--launcher-machine-type={o.launcher_machine_type}",
             f"--additional-experiments={','.join(experiments)}",
             f"--staging-location={bucket}/staging", f"--temp-location={bucket}/temp",
             *optional, *parameter_flags(parameters))))
    else:
        body = scheduler_body(template, job_machine, o, experiments, parameters, bucket)
        steps += _schedule_steps(o, body)
    return LaunchPlan(command, tuple(steps), image, template, machine_type, experiments,
                      parameters, body)


def _check_mosaic_machine(machine: str, gpu_type: str) -> None:
    """--mosaic-machine-type: a machine type without GPU, beside GPU workers."""
    _require(gpu_type != CPU_ONLY,
             "--mosaic-machine-type splits the work between GPU and CPU workers: give "
             "a --gpu-type too (or drop it: with --gpu-type none every worker is a CPU "
             "worker)")
    _require(MACHINE_TYPE.fullmatch(machine),
             f"--mosaic-machine-type {machine!r} is not a machine type name, e.g. "
             f"n2-standard-8")
    _require(not machine.startswith(GPU_FAMILIES),
             f"--mosaic-machine-type {machine} comes with GPUs attached; the mosaics "
             f"need none: choose a CPU machine type such as n2-standard-8")


def _require(condition, message: str) -> None:
    if not condition:
        raise LaunchError(message)


def _refuse_reserved(argv: Sequence[str]) -> None:
    # A pipeline flag by its destination (--tile-accelerator is tile_accelerator);
    # Beam's own options by their name, with underscores.
    dests = {s[2:]: a.dest for a in pipeline_parser()._actions for s in a.option_strings
             if s.startswith("--")}
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0]
            option = dests.get(name, name)
            if option in RESERVED:
                raise LaunchError(f"--{name} is set by the launcher; use "
                                  f"{RESERVED[option]} instead")


def _attach_dash_values(argv: Sequence[str]) -> List[str]:
    """``--angles -45,0`` as ``--angles=-45,0``: argparse takes a value that starts
    with a dash for a flag, and refuses the command line."""
    takes_value = {s for parser in (launcher_parser(), pipeline_parser())
                   for a in parser._actions if a.nargs is None and a.option_strings
                   and not isinstance(a, (argparse._StoreTrueAction,))
                   for s in a.option_strings}
    flags = set(_flags(launcher_parser()) + _flags(pipeline_parser()))
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if (token in takes_value and nxt is not None and nxt.startswith("-")
                and nxt.split("=", 1)[0] not in flags):
            out.append(f"{token}={nxt}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def _refuse_unknown(unknown: Sequence[str]) -> None:
    flag = next((u for u in unknown if u.startswith("-")), None)
    if flag is None:
        raise LaunchError(f"unexpected argument {unknown[0]!r} (flags take the form "
                          f"--name value; see --help)")
    name = flag.split("=", 1)[0]
    known = _flags(launcher_parser()) + _flags(pipeline_parser())
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else "; see --help"
    raise LaunchError(f"unknown flag {name}{hint}")


def machine_for(gpu_type: str, count: int, machine_type: Optional[str]) -> str:
    """The worker machine type: ``machine_type`` checked against :data:`GPU_MACHINES`,
    or the default for ``count`` x ``gpu_type``.

    Raises:
      LaunchError: an unknown GPU type, a count no on-demand machine carries, or a
        machine type that does not carry the GPUs; the message lists the choices.
    """
    if gpu_type == CPU_ONLY:
        return machine_type or N1_DEFAULT
    if gpu_type not in GPU_MACHINES:
        close = difflib.get_close_matches(gpu_type, list(GPU_MACHINES), n=1)
        raise LaunchError(f"unknown --gpu-type {gpu_type!r}"
                          + (f"; did you mean {close[0]}?" if close else "")
                          + f" (choose from {', '.join(GPU_MACHINES)}, or {CPU_ONLY})")
    if (gpu_type, count) in NOT_ON_DEMAND:
        raise LaunchError(
            f"{count} x {gpu_type} needs {NOT_ON_DEMAND[gpu_type, count]}, which Compute "
            f"Engine offers only as Spot or Flex-start capacity, not on demand: workers "
            f"would never start. Use --gpu-count 8 (a3-highgpu-8g), or "
            f"nvidia-a100-80gb / nvidia-l4 for fewer GPUs per worker (docs/cloud.md)")
    shapes = GPU_MACHINES[gpu_type]
    if count not in shapes:
        raise LaunchError(f"--gpu-type {gpu_type} cannot have --gpu-count {count}: choose "
                          + ", ".join(f"{n} ({'/'.join(m for m in shapes[n] if '*' not in m)})"
                                      for n in sorted(shapes)))
    choices = shapes[count]
    if machine_type is None:
        return choices[0]
    if any(machine_type == c or ("*" in c and re.fullmatch(c.replace("*", ".+"),
                                                           machine_type)) for c in choices):
        return machine_type
    valid = ", ".join("other n1 types" if "*" in c else c for c in choices)
    raise LaunchError(f"--machine-type {machine_type} cannot carry {count} x {gpu_type}; "
                      f"valid: {valid}")


def pipeline_parameters(given: argparse.Namespace, bucket: str) -> Dict[str, str]:
    """The pipeline flags given, as Flex Template parameters (name=value, names with
    underscores), after checking them exactly as the job will.

    Raises:
      LaunchError: a flag the pipeline refuses (the pipeline's own message), an
        input or output not on Cloud Storage, or a flag given twice.
    """
    values = vars(given)
    out: Dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, list):
            if name == "input" and len(value) > 1:
                raise LaunchError("--input given twice; a Flex Template takes one value per "
                                  "parameter (for several inputs use --input "
                                  "@gs://BUCKET/list.txt)")
            value = ",".join(value)
        out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    _require("input" in out, "--input is required: a gs:// glob, folder, @gs://list or "
                             "STAC JSON")
    _require(out["input"].lstrip("@").startswith("gs://"),
             f"--input must be on Cloud Storage for Dataflow, got {out['input']!r}")
    out.setdefault("output", f"{bucket}/glcm-output")
    _require(out["output"].startswith("gs://"),
             f"--output must be gs:// for Dataflow, got {out['output']!r}")
    if "model" in out:
        _require(out["model"].startswith("gs://"),
                 f"--model must be on Cloud Storage for Dataflow, got {out['model']!r}")
    if "objects" in out:
        _require(out["objects"].startswith("gs://"),
                 f"--objects must be on Cloud Storage for Dataflow, got {out['objects']!r}")
    _require("classes" not in out or "model" in out,
             "--classes: classes name the outputs of a model: give --model too")
    try:  # what the workers will parse, with the same checks (the model's and the
        # polygons' own checks run when the job starts: read with its credentials)
        params_from(PipelineOptions([f"--{k}={v}" for k, v in out.items()]),
                    read_inputs=False)
    except ValueError as exc:
        raise LaunchError(str(exc)) from None
    return out


def parameter_flags(parameters: Mapping[str, str]) -> List[str]:
    """``--parameters`` flags for gcloud; gcloud splits values on commas unless the
    flag starts with ``^~^``, which makes ``~`` the separator."""
    return [f"--parameters=^~^{k}={v}" if "," in v else f"--parameters={k}={v}"
            for k, v in parameters.items()]


def _image(o, commit, dirty, now) -> Tuple[str, str, bool]:
    """(image, tag for names, whether the image is already a digest reference)."""
    if o.image:
        if "@sha256:" in o.image:
            return o.image, o.image.rsplit("@sha256:", 1)[1][:12], True
        _require(re.search(r":[A-Za-z0-9_.-]+$", o.image.rsplit("/", 1)[-1]),
                 f"--image {o.image!r} needs a tag (URI:TAG) or a digest (URI@sha256:...)")
        return o.image, o.image.rsplit(":", 1)[1], False
    _require(commit, "not a git checkout: give --image URI:TAG")
    tag = commit + (f"-dirty-{now:%Y%m%d%H%M%S}" if dirty else "")
    return f"{o.region}-docker.pkg.dev/{o.project}/{REPOSITORY}/{IMAGE_NAME}:{tag}", tag, False


def _build_steps(o, image: str, root: str) -> List[Step]:
    steps = []
    if image.startswith(f"{o.region}-docker.pkg.dev/{o.project}/{REPOSITORY}/"):
        steps.append(Step(
            "repository", f"the Artifact Registry repository '{REPOSITORY}', created when "
                          f"missing",
            ("gcloud", "artifacts", "repositories", "create", REPOSITORY,
             f"--project={o.project}", f"--location={o.region}", "--repository-format=docker",
             "--description=glcm-texture worker images"),
            probe=("gcloud", "artifacts", "repositories", "describe", REPOSITORY,
                   f"--project={o.project}", f"--location={o.region}"),
            when="probe_fails"))
    base = LAUNCHER_BASE.format(tag=dockerfile_args(root)["PYTHON_TAG"])
    wanted = o.launcher_tag
    release = f"release {wanted}" if wanted else "its newest release"
    steps.append(Step(
        "launcher-base", f"the launcher base image: {release}, by digest",
        ("gcloud", "container", "images", "list-tags", base, "--format=json",
         "--sort-by=~timestamp", "--limit=500"),
        sets=("LAUNCHER_IMAGE",),
        reader=lambda out: {"LAUNCHER_IMAGE": choose_launcher_image(base, out, wanted)},
        hint="gcloud must reach gcr.io/dataflow-templates-base (public); give "
             "--launcher-tag to pick a release by name"))
    steps.append(Step(
        "image", "the worker image (Dockerfile), built by Cloud Build",
        ("gcloud", "builds", "submit", root, f"--project={o.project}",
         f"--region={o.region}",
         f"--config={os.path.join(root, 'dataflow', 'cloudbuild.yaml')}",
         f"--substitutions=_IMAGE={image},_LAUNCHER_IMAGE=${{LAUNCHER_IMAGE}}"),
        hint="the Cloud Build log (its URL is printed above) says which Dockerfile step "
             "failed"))
    return steps


def _schedule_steps(o, body: dict) -> List[Step]:
    uri = (f"https://dataflow.googleapis.com/v1b3/projects/{o.project}/locations/"
           f"{o.region}/flexTemplates:launch")
    account = o.scheduler_service_account or o.service_account
    common = (f"--project={o.project}", f"--location={o.region}", f"--schedule={o.cron}",
              f"--time-zone={o.time_zone}", f"--uri={uri}", "--http-method=POST",
              f"--oauth-service-account-email={account}",
              "--oauth-token-scope=https://www.googleapis.com/auth/cloud-platform",
              f"--message-body={json.dumps(body, sort_keys=True)}")
    probe = ("gcloud", "scheduler", "jobs", "describe", o.scheduler_job,
             f"--project={o.project}", f"--location={o.region}")
    return [
        Step("schedule-update", f"the Cloud Scheduler job '{o.scheduler_job}', if it "
                                f"exists: updated",
             ("gcloud", "scheduler", "jobs", "update", "http", o.scheduler_job, *common,
              "--update-headers=Content-Type=application/json"),
             probe=probe, when="probe_succeeds"),
        Step("schedule-create", f"the Cloud Scheduler job '{o.scheduler_job}', if it "
                                f"does not: created",
             ("gcloud", "scheduler", "jobs", "create", "http", o.scheduler_job, *common,
              "--headers=Content-Type=application/json"),
             probe=probe, when="probe_fails"),
    ]


def scheduler_body(template: str, machine_type: str, o, experiments: Sequence[str],
                   parameters: Mapping[str, str], bucket: str) -> dict:
    """The Flex Template launch request Cloud Scheduler posts (Dataflow's
    ``flexTemplates:launch``): the same template, image, machines and parameters as a
    run. The job name is fixed, so a launch while the last run is still going is
    refused (HTTP 409) instead of starting a second job on the same output."""
    environment = {"machineType": machine_type, "maxWorkers": o.max_workers,
                   "additionalExperiments": list(experiments),
                   "launcherMachineType": o.launcher_machine_type,
                   "stagingLocation": f"{bucket}/staging", "tempLocation": f"{bucket}/temp"}
    if o.service_account:
        environment["serviceAccountEmail"] = o.service_account
    if o.worker_zone:
        environment["workerZone"] = o.worker_zone
    return {"launchParameter": {"jobName": SCHEDULED_JOB_NAME,
                                "containerSpecGcsPath": template,
                                "parameters": dict(parameters),
                                "environment": environment}}


# -- values read from earlier steps ---------------------------------------------------
def choose_launcher_image(repository: str, listing: str,
                          wanted: Optional[str] = None) -> str:
    """``repository@sha256:...`` of the newest release in ``gcloud container images
    list-tags --format=json`` output (by the date and RC number in its tag), or of
    the release tagged ``wanted``.

    Raises:
      StepFailed: no release tag in the listing, or none named ``wanted``.
    """
    releases = []
    for entry in json.loads(listing or "[]"):
        for tag in entry.get("tags") or ():
            found = RELEASE_TAG.fullmatch(tag)
            if found and entry.get("digest"):
                releases.append(((found.group(1), found.group(2)), tag, entry["digest"]))
    if wanted:
        chosen = [r for r in releases if r[1] == wanted]
        if not chosen:
            newest = ", ".join(t for _, t, _ in sorted(releases, reverse=True)[:3])
            raise StepFailed(f"{repository} has no release tagged {wanted!r}; the newest: "
                             f"{newest or 'none'}")
    else:
        chosen = sorted(releases, reverse=True)
        if not chosen:
            raise StepFailed(f"{repository}: no release tag found in its listing")
    return f"{repository}@{chosen[0][2]}"


def digest_values(repository: str, output: str) -> Dict[str, str]:
    """WORKER_IMAGE (``repository@sha256:...``) and WORKER_DIGEST (its first 12 hex
    digits, for file names) from ``gcloud artifacts docker images describe``."""
    digest = output.strip()
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise StepFailed(f"expected an image digest (sha256:...), got {digest!r}")
    return {"WORKER_IMAGE": f"{repository}@{digest}", "WORKER_DIGEST": digest[7:19]}


def dockerfile_args(root: str) -> Dict[str, str]:
    """The ``ARG NAME=value`` defaults of the Dockerfile (versions, base images)."""
    with open(os.path.join(root, "Dockerfile")) as f:
        return dict(re.findall(r"^ARG (\w+)=(\S+)$", f.read(), re.M))


# -- running a plan ------------------------------------------------------------------
Runner = Callable[[Sequence[str], bool], "subprocess.CompletedProcess"]


def subprocess_runner(argv: Sequence[str], capture: bool) -> subprocess.CompletedProcess:
    """Runs a command; with ``capture`` its output is returned, else shown."""
    if capture:
        return subprocess.run(list(argv), capture_output=True, text=True)
    return subprocess.run(list(argv), stderr=subprocess.PIPE, text=True)


def execute(launch: LaunchPlan, run: Runner = subprocess_runner,
            say: Callable[[str], None] = print) -> Dict[str, str]:
    """Runs the plan's steps in order, filling in ``${NAME}`` from earlier steps.

    Args:
      run: ``run(argv, capture)`` -> CompletedProcess (the seam tests replace).
      say: where progress lines go.

    Returns:
      the values the steps set.

    Raises:
      StepFailed: naming the step, its exit status and the end of its error output.
    """
    values: Dict[str, str] = {}
    for step in launch.steps:
        if step.probe:
            found = run(_fill(step.probe, values), True).returncode == 0
            if found != (step.when == "probe_succeeds"):
                continue
        argv = _fill(step.argv, values)
        say(f"# {step.purpose}\n+ {shlex.join(argv)}")
        done = run(argv, bool(step.sets))
        if done.returncode != 0:
            tail = (done.stderr or "").strip()[-2000:]
            raise StepFailed(f"step '{step.name}' ({step.purpose}) failed with exit status "
                             f"{done.returncode}" + (f":\n{tail}" if tail else "")
                             + (f"\n{step.hint}" if step.hint else ""))
        if step.sets:
            try:
                values.update(step.reader(done.stdout))
            except StepFailed as exc:
                raise StepFailed(f"step '{step.name}' ({step.purpose}): {exc}"
                                 + (f"\n{step.hint}" if step.hint else "")) from None
    return values


def _fill(argv: Sequence[str], values: Mapping[str, str]) -> List[str]:
    def one(text):
        return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)
    return [one(a) for a in argv]


def source_state(root: str) -> Tuple[Optional[str], bool]:
    """(short git commit of ``root``, whether :data:`IMAGE_SOURCES` have uncommitted
    changes); (None, False) outside a git checkout."""
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--",
                                 *IMAGE_SOURCES], capture_output=True, text=True,
                                check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, False
    return commit, bool(status.strip())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``./run_dataflow.sh``: prints the plan (``--dry-run``) or runs it.

    Returns:
      0 when done; 2 for arguments refused before anything ran; 1 when a step failed.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(help_text())
        return 0
    commit, dirty = source_state(ROOT)
    try:
        launch = plan(argv, commit=commit, dirty=dirty)
    except LaunchError as exc:
        print(f"run_dataflow.sh: error: {exc}", file=sys.stderr)
        return 2
    if "--dry-run" in argv:
        print(launch.describe())
        return 0
    if shutil.which("gcloud") is None:
        print("run_dataflow.sh: error: gcloud is not installed (Google Cloud SDK); "
              "--dry-run prints the commands without it", file=sys.stderr)
        return 2
    try:
        execute(launch)
    except StepFailed as exc:
        print(f"run_dataflow.sh: error: {exc}", file=sys.stderr)
        return 1
    print("done: " + ("job submitted; watch it in the Dataflow console" if
                      launch.command == "run" else "schedule created or updated"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
