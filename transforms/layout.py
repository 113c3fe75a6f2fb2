"""The output layout: every name under OUTPUT, the scratch and claim protocol, and
the manifest that says a scene is finished. The reliability guarantees (atomic
commits, reruns, concurrent runs, killed runs) rest on what is here.

::

    OUTPUT/
      errors.jsonl                 the run's dead letter (ERRORS_FILE)
      <scene_id>/                  scene_id_for / unique_scene_ids
        features.tif quicklook.png OUTPUTS, committed whole (with a model:
                                   predictions.tif [classes.tif] quicklook.png)
        manifest.json              committed last: the scene is finished
        .tiles-<run_id>/           one run's tile results (tiles_folder)
          r<row>_c<col>_i<band>.npy  a tile's core features (tile_path)
          r<row>_c<col>_i<band>.result  its TileResult, written after it
          finishing                 the claim of the writer that finishes the scene
        .work-*/ .tmp-*            scratch of files being built
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Iterable, List, Optional, Sequence, Tuple

from transforms.io import storage
from transforms.records import BandSource, Manifest, Scene, TextureParams

ERRORS_FILE = "errors.jsonl"
MANIFEST_NAME = "manifest.json"
MOSAIC_NAME = "features.tif"
QUICKLOOK_NAME = "quicklook.png"
OUTPUTS = (MOSAIC_NAME, QUICKLOOK_NAME)
# With a model: its outputs, and the arg-max when the outputs are named classes.
PREDICTIONS_NAME = "predictions.tif"
CLASSES_NAME = "classes.tif"
# --mode objects: one row per polygon (GeoParquet)
OBJECTS_NAME = "objects.parquet"
TILES_PREFIX = ".tiles-"
# A saved tile's record: written after the tile itself, so the records in a tile
# folder name the tiles that are complete.
RESULT_SUFFIX = ".result"
# Created (exclusively) in a run's tile folder by the writer that finishes the scene.
FINISH_CLAIM = "finishing"
# Scratch that killed runs left in a scene folder is removed when the scene is next
# finished, once untouched this long (a run still at work keeps touching its own).
STALE_SCRATCH_SECONDS = 6 * 3600
SCRATCH_PREFIXES = (TILES_PREFIX, storage.WORKDIR_PREFIX, storage.TEMPORARY_PREFIX)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


# -- scene folders -------------------------------------------------------------------
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


def scenes_for(found: Iterable[Scene]) -> List[Scene]:
    """The scenes found, named: duplicates (same URI) dropped, ids unique, sorted by
    URI."""
    by_uri = {}
    for scene in found:
        by_uri.setdefault(scene.uri, scene)
    uris = sorted(by_uri)
    return [dataclasses.replace(by_uri[uri], scene_id=sid)
            for sid, uri in zip(unique_scene_ids(uris), uris)]


def outputs_for(params: TextureParams) -> Tuple[str, ...]:
    """The files of a finished scene, the raster the others derive from first:
    :data:`OUTPUTS`, or with a model ``predictions.tif``, ``classes.tif`` when the
    outputs are named classes, and the quicklook; with polygons, ``objects.parquet``."""
    if params.objects is not None:
        return (OBJECTS_NAME,)
    if params.model is None:
        return OUTPUTS
    return (PREDICTIONS_NAME,) + ((CLASSES_NAME,) if params.classes else ()) + (
        QUICKLOOK_NAME,)


def band_names(sources: Sequence[BandSource], features: Sequence[str]) -> List[str]:
    """Output band names, ``<source>_<feature>``: ``b1_contrast``, ``nir_contrast``."""
    return [f"{s.name}_{f}" for s in sources for f in features]


# -- a run's tile scratch ------------------------------------------------------------
def tiles_folder(output: str, scene_id: str, run_id: str) -> str:
    """Where one run keeps a scene's tile results until the mosaic is built; one
    folder per run, so two runs on the same output never remove each other's."""
    return storage.join(output, scene_id, TILES_PREFIX + run_id)


def tile_path(output: str, scene_id: str, run_id: str, row: int, col: int,
              band_index: int) -> str:
    return storage.join(tiles_folder(output, scene_id, run_id),
                        f"r{row}_c{col}_i{band_index}.npy")


def result_path(tile_uri: str) -> str:
    """Where a saved tile's :class:`~transforms.records.TileResult` is kept, beside
    the tile (``r0_c1_i0.npy`` -> ``r0_c1_i0.result``)."""
    return tile_uri.rsplit(".", 1)[0] + RESULT_SUFFIX


def saved_results(output: str, scene_id: str, run_id: str) -> List[str]:
    """The result records of the tiles this run has saved for the scene."""
    return storage.list_files(tiles_folder(output, scene_id, run_id), RESULT_SUFFIX)


def claim_scene(output: str, scene_id: str, run_id: str) -> bool:
    """Creates the scene's claim in this run's tile folder; True for exactly one of
    several writers trying at once."""
    return storage.create_exclusive(storage.join(tiles_folder(output, scene_id, run_id),
                                                 FINISH_CLAIM))


def remove_scratch(output: str, scene_id: str, run_id: str) -> List[str]:
    """Deletes this run's tile folder of the scene, and what killed runs left there
    (older than :data:`STALE_SCRATCH_SECONDS`); returns the names of the latter."""
    own = tiles_folder(output, scene_id, run_id)
    storage.delete_tree(own)
    return storage.remove_stale(storage.join(output, scene_id), SCRATCH_PREFIXES,
                                keep=own.rsplit("/", 1)[-1],
                                older_than_seconds=STALE_SCRATCH_SECONDS)


# -- the manifest --------------------------------------------------------------------
def manifest_uri(output: str, scene_id: str) -> str:
    return storage.join(output, scene_id, MANIFEST_NAME)


def errors_uri(output: str) -> str:
    return storage.join(output, ERRORS_FILE)


def read_manifest(output: str, scene_id: str) -> Optional[Manifest]:
    """The scene's manifest; None if there is none, or it is unreadable or of another
    layout (the scene is then computed again)."""
    try:
        return Manifest.from_json(json.loads(storage.read_bytes(
            manifest_uri(output, scene_id))))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_manifest(manifest: Manifest, output: str) -> None:
    """Commits the manifest atomically (local rename or one upload): the scene is
    finished from now on."""
    storage.write_bytes(manifest_uri(output, manifest.scene_id),
                        json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode())


def finished_state(output: str, scene_id: str, fingerprint: str,
                   params_digest: str) -> Tuple[Optional[Manifest], bool]:
    """(the scene's manifest or None, whether it says the scene is finished)."""
    manifest = read_manifest(output, scene_id)
    return manifest, manifest is not None and manifest.is_finished(fingerprint,
                                                                   params_digest)
