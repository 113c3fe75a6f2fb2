"""Failures: one error-record type, retries of I/O, and the run's dead-letter file.

One bad scene or tile never stops the others: each failure becomes an
:class:`ErrorRecord` in ``OUTPUT/errors.jsonl``.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Iterable, List, TypeVar

import apache_beam as beam

from transforms.io import storage
from transforms.records import ErrorRecord

ATTEMPTS = 3  # tries of a tile's read or write before it becomes an error record
RETRY_DELAY_SECONDS = 0.5
ERRORS_TAG = "errors"  # the tagged output every step sends its records to
T = TypeVar("T")


def tagged(record: ErrorRecord):
    """``record`` as the ``errors`` output of a DoFn."""
    return beam.pvalue.TaggedOutput(ERRORS_TAG, record)


def with_retries(action: Callable[[], T]) -> T:
    """Runs ``action`` up to ATTEMPTS times: I/O can fail once and work the next time
    (a dropped connection, a busy disk). A ValueError means bad input: not retried."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except ValueError:
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
        raise RuntimeError(f"{len(records)} scene(s) or tile(s) failed (--fail-on-error); "
                           f"see errors.jsonl")


class WriteErrors(beam.PTransform):
    """Collects every error record into ``uri`` (``errors.jsonl``); with
    ``fail_job``, the pipeline then fails if there was any (on Dataflow, where no
    process exit code reaches the user)."""

    def __init__(self, uri: str, fail_job: bool = False):
        super().__init__()
        self.uri, self.fail_job = uri, fail_job

    def expand(self, records):
        collected = records | "Collect" >> beam.combiners.ToList()
        written = collected | "Write" >> beam.Map(write_errors, self.uri)
        if self.fail_job:
            # Downstream of the write, never beside it: in a fused stage a sibling may
            # run first, and the job would fail before errors.jsonl exists.
            _ = written | "FailOnError" >> beam.Map(_fail_if_any)
        return written
