"""Listing inputs: globs, directories and ``@file`` lists, local or ``gs://``.

Everything goes through :mod:`transforms.io.storage`, so local paths and Cloud
Storage take one code path. The discovery step (:mod:`transforms.discover`) runs
these on the workers.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from transforms.io import storage

RASTER_SUFFIXES = (".tif", ".tiff", ".TIF", ".TIFF")


def list_entries(listing: str) -> List[str]:
    """The URIs or patterns an ``@file`` list names: one per line, blank lines and
    ``#`` comments skipped.

    Raises:
      ValueError: the list cannot be read.
    """
    try:
        lines = storage.read_bytes(listing).decode("utf-8").splitlines()
    except Exception as exc:  # noqa: BLE001 - report any I/O failure by name
        raise ValueError(f"cannot read the input list {listing!r}: {exc}") from exc
    entries = (line.strip() for line in lines)
    return [entry for entry in entries if entry and not entry.startswith("#")]


def match_pattern(pattern: str) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]:
    """Matches one glob, directory or file (not an ``@`` list).

    Returns:
      ([(uri, fingerprint)], [(uri, problem)]): a named file that does not exist is a
      problem; a glob or directory that matches nothing is not.
    """
    if storage.is_glob(pattern):
        return storage.match(pattern), []
    if not pattern.endswith("/"):
        found = storage.match(pattern)
        if found:
            return found, []
        if not storage.is_directory(pattern):
            return [], [(storage.normalize(pattern), "file not found")]
    # a directory (or gs:// prefix): its GeoTIFFs
    found = [m for suffix in RASTER_SUFFIXES
             for m in storage.match(storage.join(pattern.rstrip("/"), "*" + suffix))]
    return found, []


def expand_lists(pattern: str) -> List[str]:
    """``pattern`` itself, or the entries of an ``@list`` (lists in lists expanded)."""
    if not pattern.startswith("@"):
        return [pattern]
    return [p for entry in list_entries(pattern[1:]) for p in expand_lists(entry)]


def no_match_message(patterns: Sequence[str]) -> str:
    return (f"no raster matched {', '.join(patterns)}; check the paths, or give a "
            f"directory of .tif files")
