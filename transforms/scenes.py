"""Scene discovery: globs, directories and ``@file`` lists, local or ``gs://``.

Everything goes through :mod:`transforms.storage`, so local paths and Cloud Storage
take one code path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Iterable, List, Sequence, Tuple

from transforms import storage

RASTER_SUFFIXES = (".tif", ".tiff", ".TIF", ".TIFF")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclasses.dataclass(frozen=True)
class Scene:
    """One input: a raster, or a STAC item whose assets are read as its bands.

    Attributes:
      scene_id: output folder name, safe and unique within the run.
      uri: local path or ``gs://`` URI of the raster; for a STAC item, the JSON
        file's URI and ``#`` and the item id.
      fingerprint: size and modification time of a local input, size and
        generation of a Cloud Storage object (of every asset for an item); a rerun
        recomputes a scene whose fingerprint changed.
      assets: for a STAC item, (asset name, href) of the assets to read, in order.
      item: for a STAC item, ("id", ...), ("datetime", ...), ("collection", ...).
    """

    scene_id: str
    uri: str
    fingerprint: str
    assets: Tuple[Tuple[str, str], ...] = ()
    item: Tuple[Tuple[str, str], ...] = ()


def scene_id_for(uri: str) -> str:
    """The file name without its last extension (a STAC item: its id, after the
    ``#``), made safe for a folder name.

    Every character other than letters, digits, ``.``, ``-``, ``_`` becomes ``_``;
    leading dots are dropped (no hidden folders, no ``..``).
    ``RGB.byte.tif`` -> ``RGB.byte``; ``items.json#S2B_T33UUP`` -> ``S2B_T33UUP``.
    """
    uri, hash_sign, item_id = uri.partition("#")
    if hash_sign:
        base = item_id
    else:
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        stem, dot, _ = name.rpartition(".")
        base = stem if dot else name
    safe = _UNSAFE.sub("_", base).lstrip(".")
    return safe or "scene"


def unique_scene_ids(uris: Sequence[str]) -> List[str]:
    """Scene ids for ``uris`` (same order), unique and deterministic.

    Where several inputs share an id, the first in sorted URI order keeps it and the
    others get ``-`` and the first 8 hex digits of the SHA-1 of their URI, so the
    same set of inputs always maps to the same folders.
    """
    ids = {}
    taken = set()
    for uri in sorted(set(uris)):
        base = scene_id_for(uri)
        sid = base
        if sid in taken:
            sid = f"{base}-{hashlib.sha1(uri.encode()).hexdigest()[:8]}"
        taken.add(sid)
        ids[uri] = sid
    return [ids[u] for u in uris]


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


def scenes_for(found: Iterable[Scene]) -> List[Scene]:
    """The scenes found, named: duplicates (same URI) dropped, ids unique, sorted by
    URI."""
    by_uri = {}
    for scene in found:
        by_uri.setdefault(scene.uri, scene)
    uris = sorted(by_uri)
    return [dataclasses.replace(by_uri[uri], scene_id=sid)
            for sid, uri in zip(unique_scene_ids(uris), uris)]


def no_match_message(patterns: Sequence[str], problems=()) -> str:
    detail = f" ({'; '.join(f'{u}: {p}' for u, p in problems)})" if problems else ""
    return (f"no raster matched --input {', '.join(patterns)}{detail}; check the paths, "
            f"or give a directory of .tif files")


def discover(patterns: Iterable[str]) -> Tuple[List[Scene], List[Tuple[str, str]]]:
    """Finds the scenes named by ``patterns``, here and now (the pipeline does the
    same on its workers, see :class:`transforms.discover.DiscoverScenes`).

    Args:
      patterns: globs (``data/*.tif``, ``gs://b/in/*.tif``), directories (their
        ``.tif``/``.tiff`` files), single files, or ``@list`` files naming one URI per
        line (blank lines and ``#`` comments skipped).

    Returns:
      (scenes sorted by URI without duplicates, [(uri, problem)] for named files that
      do not exist, so they can be reported without stopping the others).

    Raises:
      ValueError: no pattern was given, or nothing matched at all.
    """
    patterns = [p for p in patterns if p]
    if not patterns:
        raise ValueError("no input given: pass --input with a glob, directory or @list")
    matches, problems = [], []
    for entry in (e for p in patterns for e in expand_lists(p)):
        found, missing = match_pattern(entry)
        matches += [Scene("", uri, fingerprint) for uri, fingerprint in found]
        problems += missing
    if not matches:
        raise ValueError(no_match_message(patterns, problems))
    return scenes_for(matches), problems
