"""Failures: the one dead-letter mechanism of every step, the retry rule, and the
run's dead-letter file.

One bad scene or tile never stops the others: each step's DoFn is a
:class:`GuardedStep`, whose failures become an :class:`ErrorRecord` on the ``errors``
output, collected into ``OUTPUT/errors.jsonl`` by :class:`WriteErrors`. Which
failures are worth a retry is said once, by type (:data:`PERMANENT_ERRORS`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Callable, Iterable, List, Mapping, Optional, Tuple, TypeVar

import apache_beam as beam

from transforms.io import storage
from transforms.metrics import StepMetrics
from transforms.records import ErrorRecord

ATTEMPTS = 3  # tries of a tile's read or write before it becomes an error record
RETRY_DELAY_SECONDS = 0.5
ERRORS_TAG = "errors"  # the tagged output every step sends its records to
# Failures that say the input itself is wrong (a corrupt file, a missing band, bad
# parameters: RasterError and ParameterError are ValueErrors): a retry cannot help.
# Anything else (OSError, a storage client's 5xx...) may pass: retried.
PERMANENT_ERRORS: Tuple[type, ...] = (ValueError,)
T = TypeVar("T")


def tagged(record: ErrorRecord):
    """``record`` as the ``errors`` output of a DoFn."""
    return beam.pvalue.TaggedOutput(ERRORS_TAG, record)


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` says the input is wrong (:data:`PERMANENT_ERRORS`)."""
    return isinstance(exc, PERMANENT_ERRORS)


class GuardedStep(beam.DoFn):
    """The DoFn of a step: :meth:`run` is the step's work for one element; whatever
    it raises becomes one :class:`ErrorRecord` (stage :attr:`STAGE`, the element's
    input and scene from :meth:`where`) on the ``errors`` output, and the step's time
    and elements are counted (:class:`~transforms.metrics.StepMetrics`).

    Subclasses set STEP (metrics) and STAGE (the record's stage) and define ``run``
    (a generator of outputs) and ``where``.
    """

    STEP = ""
    STAGE = ""

    def __init__(self):
        self.metrics = StepMetrics(self.STEP)

    def run(self, element) -> Iterable[Any]:
        raise NotImplementedError

    def where(self, element) -> Tuple[str, Optional[str]]:
        """(input URI, scene id or None) of ``element``, for its error record."""
        raise NotImplementedError

    def process(self, element):
        try:
            with self.metrics.timed():
                outputs = list(self.run(element))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            uri, scene_id = self.where(element)
            yield tagged(ErrorRecord.from_exception(uri, scene_id, self.STAGE, exc))
            return
        yield from outputs


def with_retries(action: Callable[[], T]) -> T:
    """Runs ``action`` up to ATTEMPTS times: I/O can fail once and work the next time
    (a dropped connection, a busy disk). Permanent failures (:func:`is_permanent`)
    are raised at once."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except PERMANENT_ERRORS:
            raise
        except Exception:  # noqa: BLE001 - the last failure is raised below
            if attempt == ATTEMPTS:
                raise
            time.sleep(RETRY_DELAY_SECONDS * attempt)
    raise AssertionError("unreachable")


def write_errors(records: Iterable[ErrorRecord], uri: str) -> List[ErrorRecord]:
    """The run's dead-letter file, one JSON object per line, sorted (committed whole;
    empty when nothing failed).

    Returns:
      the records written, so that a step that depends on them (the job's failure
      with --fail-on-error) runs only once the file exists.
    """
    records = list(records)
    lines = sorted(json.dumps(r.to_json(), sort_keys=True) for r in records)
    storage.write_bytes(uri, "".join(line + "\n" for line in lines).encode())
    return records


def read_errors(uri: str) -> List[ErrorRecord]:
    """The records of a dead-letter file written by :func:`write_errors`."""
    text = storage.read_bytes(uri).decode()
    return [ErrorRecord(**json.loads(line)) for line in text.splitlines() if line.strip()]


def _fail_if_any(records: List[ErrorRecord]) -> None:
    if records:
        raise RuntimeError(f"{len(records)} scene(s) or tile(s) failed; see errors.jsonl")


def named(message: str, parameter: Optional[str], names: Mapping[str, str]) -> str:
    """``message`` with the caller's name of ``parameter`` before it (``--bands: ...``
    for the command line), once; unchanged when there is no such name."""
    name = names.get(parameter) if parameter else None
    if not name or message.startswith(f"{name}: "):
        return message
    return f"{name}: {message}"


def spelled(records: Iterable[ErrorRecord], names: Mapping[str, str]) -> List[ErrorRecord]:
    """``records`` with the caller's name of their parameter before the message
    (:func:`named`)."""
    return [dataclasses.replace(r, message=named(r.message, r.parameter, names))
            for r in records]


class WriteErrors(beam.PTransform):
    """Collects every error record into ``uri`` (``errors.jsonl``); with
    ``fail_job``, the pipeline then fails if there was any (on Dataflow, where no
    process exit code reaches the user).

    Args:
      parameter_names: how the caller names each parameter (the command line: its
        flags), put before the message of records about a parameter.
    """

    def __init__(self, uri: str, fail_job: bool = False,
                 parameter_names: Optional[Mapping[str, str]] = None):
        super().__init__()
        self.uri, self.fail_job = uri, fail_job
        self.parameter_names = dict(parameter_names or {})

    def expand(self, records):
        collected = (records | "Collect" >> beam.combiners.ToList()
                     | "Spell" >> beam.Map(spelled, self.parameter_names))
        written = collected | "Write" >> beam.Map(write_errors, self.uri)
        if self.fail_job:
            # Downstream of the write, never beside it: in a fused stage a sibling may
            # run first, and the job would fail before errors.jsonl exists.
            _ = written | "FailOnError" >> beam.Map(_fail_if_any)
        return written
