"""Texture per object (``--mode objects``): each tile counts the pixel pairs of the
polygons over it, the counts are summed per (scene, band, block of polygons), the
features computed per block, and each scene's rows written as GeoParquet.

A polygon's matrix counts the pairs whose two pixel centres lie inside it (GDAL's
rasterization rule, the polygon rasterized on its own) and are valid. A tile counts
the pairs whose reference pixel is in its core, reading a halo of the largest
distance for the neighbours: the sums over tiles are exact, whatever the seams.
Overlapping polygons go to separate layers, so each keeps all of its pixels.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from typing import Dict, List, Sequence, Tuple

import apache_beam as beam
import numpy as np

import glcm
from transforms.errors import GuardedStep
from transforms.layout import OBJECTS_NAME, band_names, manifest_uri, write_manifest
from transforms.metrics import counter
from transforms.records import Manifest, ObjectsRef, TextureParams, TileTask

TILES_TAG = "tiles"
log = logging.getLogger("glcm")


class PolygonIndex:
    """The polygons of one file, read once per worker process, with their geometry
    reprojected to each scene CRS met (cached) and a spatial index per CRS."""

    def __init__(self, ref: ObjectsRef, frame):
        self.ref, self.frame = ref, frame
        self._by_crs: Dict[str, Tuple[np.ndarray, object]] = {}
        self._lock = threading.Lock()

    def in_crs(self, crs: str):
        """(geometries in ``crs``, their STRtree)."""
        with self._lock:
            found = self._by_crs.get(crs)
            if found is None:
                import shapely

                geometry = self.frame.geometry.to_crs(crs).to_numpy()
                found = self._by_crs[crs] = (geometry, shapely.STRtree(geometry))
            return found


_INDEXES: Dict[Tuple[str, str], PolygonIndex] = {}
_INDEXES_LOCK = threading.Lock()


def polygon_index(ref: ObjectsRef) -> PolygonIndex:
    """The process's :class:`PolygonIndex` of ``ref`` (read on first use; the file's
    digest must still be the one planned)."""
    key = (ref.uri, ref.digest)
    with _INDEXES_LOCK:
        index = _INDEXES.get(key)
        if index is None:
            from transforms.io.vector import load_objects

            now, frame = load_objects(ref.uri, ref.id_field)
            if now.digest != ref.digest:
                raise ValueError(f"objects file {ref.uri} changed since the run started "
                                 f"(digest {now.digest}, planned {ref.digest}); rerun")
            index = _INDEXES[key] = PolygonIndex(ref, frame)
        return index


def overlap_layers(geometries: np.ndarray) -> List[np.ndarray]:
    """Splits polygons into layers in which no two overlap (touching is not
    overlapping), greedily: one rasterization per layer gives every polygon all of
    its pixels. Returns positions into ``geometries``."""
    import shapely

    n = len(geometries)
    if n == 0:
        return []
    tree = shapely.STRtree(geometries)
    a, b = tree.query(geometries, predicate="intersects")
    pairs = a < b
    a, b = a[pairs], b[pairs]
    overlapping = ~shapely.touches(geometries[a], geometries[b])
    a, b = a[overlapping], b[overlapping]
    layer = np.zeros(n, np.int64)
    if a.size:
        neighbours = collections.defaultdict(list)
        for i, j in zip(a.tolist(), b.tolist()):
            neighbours[i].append(j)
            neighbours[j].append(i)
        for i in sorted(neighbours):  # polygons with overlaps only
            taken = {int(layer[j]) for j in neighbours[i] if j < i}
            layer[i] = next(k for k in range(len(taken) + 1) if k not in taken)
    return [np.flatnonzero(layer == k) for k in range(int(layer.max()) + 1)]


# Polygons travel in blocks of this many file rows: a tile emits one element per
# (band, block) it touches, not one per polygon (Beam's per-element cost dominated:
# 100,000 polygons took 65 of 84 s that way), and a block's summed counts stay small.
BLOCK_ROWS = 4096
# Polygons densified at once to compute features (x levels² x offsets int32).
FEATURE_CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class ObjectCounts:
    """Pair counts of a block of polygons over some tiles, in coordinate form.

    Attributes:
      rows: the polygons (file rows) that touch these tiles' cores, increasing.
      pixels: their pixel centres in the cores; valid: of those, the valid ones.
      entry_row, entry_index, entry_count: the nonzero entries of the polygons'
        (levels, levels, distances, angles) int32 matrices (flat index), not yet
        symmetric.
    """

    rows: np.ndarray
    pixels: np.ndarray
    valid: np.ndarray
    entry_row: np.ndarray
    entry_index: np.ndarray
    entry_count: np.ndarray

    @classmethod
    def empty(cls) -> "ObjectCounts":
        none = np.zeros(0, np.int64)
        return cls(none, none, none, none, none.astype(np.int32), none.astype(np.int32))

    @classmethod
    def sum(cls, parts: Sequence["ObjectCounts"]) -> "ObjectCounts":
        """The counts of several parts added (per polygon and entry)."""
        parts = list(parts)
        if len(parts) == 1:
            return parts[0]
        rows, position = np.unique(np.concatenate([p.rows for p in parts]),
                                   return_inverse=True)

        def per_row(values):
            return np.bincount(position, weights=np.concatenate(values),
                               minlength=len(rows)).astype(np.int64)

        size = int(max((int(p.entry_index.max(initial=0)) for p in parts), default=0)) + 1
        keys = np.concatenate([p.entry_row * size + p.entry_index for p in parts])
        unique, where = np.unique(keys, return_inverse=True)
        counts = np.bincount(where, weights=np.concatenate([p.entry_count for p in parts]),
                             minlength=len(unique))
        return cls(rows, per_row([p.pixels for p in parts]), per_row([p.valid for p in parts]),
                   unique // size, (unique % size).astype(np.int32), counts.astype(np.int32))

    def dense(self, rows: np.ndarray, size: int) -> np.ndarray:
        """int32 (len(rows), size): the matrices of ``rows`` (a sorted subset)."""
        out = np.zeros((len(rows), size), np.int32)
        chosen = np.isin(self.entry_row, rows)
        out[np.searchsorted(rows, self.entry_row[chosen]), self.entry_index[chosen]] = \
            self.entry_count[chosen]
        return out


def tile_object_counts(task: TileTask, example: Dict[str, np.ndarray],
                       params: TextureParams, index: PolygonIndex):
    """The pair counts of every polygon over ``task``'s tile core, for its band.

    Returns:
      [((scene_id, band_index, block), ObjectCounts)], one per block of
      :data:`BLOCK_ROWS` polygons (file rows) present.
    """
    import shapely
    from rasterio import features as rio_features
    from rasterio.transform import Affine

    tile, info, halo = task.tile, task.info, params.halo
    codes, valid = example["codes"], example["valid"]
    to_scene = Affine(*info.transform)
    corners = [to_scene @ (c, r) for r, c in (
        (tile.core_row, tile.core_col), (tile.core_row, tile.core_col + tile.core_width),
        (tile.core_row + tile.core_height, tile.core_col + tile.core_width),
        (tile.core_row + tile.core_height, tile.core_col))]
    geometry, tree = index.in_crs(info.crs)
    rows = np.sort(tree.query(shapely.Polygon(corners), predicate="intersects"))
    if rows.size == 0:
        return []
    grid = to_scene @ Affine.translation(tile.core_col - halo, tile.core_row - halo)
    core = (halo, halo + tile.core_height, halo, halo + tile.core_width)
    inside = (slice(core[0], core[1]), slice(core[2], core[3]))
    parts = []
    for layer in overlap_layers(geometry[rows]):
        members = rows[layer]
        labels = rio_features.rasterize(
            zip(geometry[members], (members + 1).tolist()), out_shape=codes.shape,
            transform=grid, fill=0, dtype="int32")
        ids, P = glcm.object_glcm(codes, labels, params.distances, params.angles,
                                  params.levels, symmetric=False, mask=valid, core=core,
                                  ids=members + 1)
        core_labels = labels[inside].ravel()
        size = int(members.max()) + 2
        pixels = np.bincount(core_labels, minlength=size)[ids]
        valid_pixels = np.bincount(core_labels[valid[inside].ravel()], minlength=size)[ids]
        flat = P.reshape(len(ids), -1)
        which, entry = np.nonzero(flat)
        parts.append(ObjectCounts(ids - 1, pixels, valid_pixels, (ids - 1)[which],
                                  entry.astype(np.int32), flat[which, entry]))
    counts = ObjectCounts.sum(parts)
    out = []
    block_of_row, block_of_entry = counts.rows // BLOCK_ROWS, counts.entry_row // BLOCK_ROWS
    for block in np.unique(block_of_row).tolist():
        mine, entries = block_of_row == block, block_of_entry == block
        out.append(((task.scene.scene_id, task.band_index, block), ObjectCounts(
            counts.rows[mine], counts.pixels[mine], counts.valid[mine],
            counts.entry_row[entries], counts.entry_index[entries],
            counts.entry_count[entries])))
    return out


class CountObjectPairs(GuardedStep):
    """:func:`tile_object_counts` for each (task, example): keyed counts out, the task
    itself to ``tiles`` (the scene's writer checks that every tile arrived);
    failures to ``errors`` (stage ``texture``)."""

    STEP, STAGE = "texture", "texture"

    def __init__(self, params: TextureParams):
        super().__init__()
        self.params = params
        self.polygons = counter("object_tile_polygons")

    def where(self, element):
        task, _ = element
        return task.scene.uri, task.scene.scene_id

    def run(self, element):
        task, example = element
        counts = tile_object_counts(task, example, self.params,
                                    polygon_index(self.params.objects))
        self.polygons.inc(sum(len(c.rows) for _, c in counts))
        yield from counts
        yield beam.pvalue.TaggedOutput(TILES_TAG, (task.scene.scene_id, task))


class SumObjectCounts(beam.CombineFn):
    """Sums the counts of one (scene, band, block of polygons) over its tiles, in
    coordinate form: memory is the nonzero entries, not levels² x offsets."""

    def create_accumulator(self):
        return ObjectCounts.empty()

    def add_input(self, accumulator, element):
        return ObjectCounts.sum([accumulator, element])

    def merge_accumulators(self, accumulators):
        return ObjectCounts.sum(accumulators)

    def extract_output(self, accumulator):
        return accumulator


class ObjectFeatures(beam.DoFn):
    """Features of a block's summed counts, :data:`FEATURE_CHUNK` polygons per
    compiled call. Outputs (scene_id, (band_index, rows, pixels, valid, values
    (n, F)))."""

    def __init__(self, params: TextureParams):
        self.params = params

    def process(self, element):
        (scene_id, band_index, _), counts = element
        p = self.params
        shape = (p.levels, p.levels, len(p.distances), len(p.angles))
        values = []
        for start in range(0, len(counts.rows), FEATURE_CHUNK):
            rows = counts.rows[start:start + FEATURE_CHUNK]
            P = counts.dense(rows, int(np.prod(shape))).reshape((len(rows),) + shape)
            P = P + np.swapaxes(P, 1, 2)  # symmetric: both orders of every pair
            values.append(glcm.object_glcm_features(P, p.features, average=True))
        values = (np.concatenate(values) if values
                  else np.zeros((0, len(p.features)), np.float32))
        yield scene_id, (band_index, counts.rows, counts.pixels, counts.valid, values)


def object_table(blocks: Sequence[tuple], n_bands: int, n_features: int):
    """(polygon rows, pixels, valid pixels (n, bands), values (n, bands, F)) from the
    feature blocks of one scene."""
    polygons = np.unique(np.concatenate([b[1] for b in blocks])) if blocks else \
        np.zeros(0, np.int64)
    pixels = np.zeros(len(polygons), np.int64)
    valid = np.zeros((len(polygons), n_bands), np.int64)
    values = np.full((len(polygons), n_bands, n_features), np.nan, np.float32)
    for band_index, rows, count, valid_count, vectors in blocks:
        k = np.searchsorted(polygons, rows)
        pixels[k] = count
        valid[k, band_index] = valid_count
        values[k, band_index] = vectors
    return polygons, pixels, valid, values


def finish_object_scene(scene_id: str, blocks: Sequence[tuple], tasks: Sequence[TileTask],
                        params: TextureParams, output: str, run_id: str) -> Manifest:
    """Writes ``OUTPUT/<scene_id>/objects.parquet`` (GeoParquet: the polygon, its id,
    ``pixels``, ``<band>_valid_pixels`` and ``<band>_<feature>``) from the scene's
    feature blocks (:class:`ObjectFeatures`), then the manifest.

    Raises:
      RuntimeError: some of the scene's tiles failed (their records say why):
        nothing is written, so a rerun recomputes the scene.
    """
    from transforms.finish import versions
    from transforms.io import storage
    from transforms.io.vector import write_geoparquet

    task = tasks[0]
    if len(tasks) != task.n_tasks:
        raise RuntimeError(f"{task.n_tasks - len(tasks)} of {task.n_tasks} tiles failed "
                           f"(see their records); no objects table written")
    started = time.time()
    ref, sources = params.objects, task.sources
    frame = polygon_index(ref).frame
    polygons, pixels, valid, values = object_table(blocks, len(sources),
                                                   len(params.features))
    table = frame.iloc[polygons][[ref.id_field, frame.geometry.name]].reset_index(drop=True)
    table["pixels"] = pixels
    for b, source in enumerate(sources):
        table[f"{source.name}_valid_pixels"] = valid[:, b]
    names = band_names(sources, params.features)
    flat = values.reshape(len(polygons), -1)
    for k, name in enumerate(names):
        table[name] = flat[:, k]
    folder = storage.join(output, scene_id)
    write_geoparquet(table, storage.join(folder, OBJECTS_NAME))
    ranges = {t.source.label: [t.vmin, t.vmax] for t in tasks}
    info = task.info
    manifest = Manifest(
        scene_id=scene_id, input=task.scene.uri, fingerprint=task.scene.fingerprint,
        params=params.to_json(), params_digest=params.digest(),
        bands=[s.band for s in sources], quantization=ranges, band_names=names,
        size=[info.height, info.width], pixels=info.height * info.width, crs=info.crs,
        transform=list(info.transform), warnings=info.warnings,
        tiles=len({t.tile.key for t in tasks}), outputs=[OBJECTS_NAME],
        versions=versions(),
        item=dict(task.scene.item, assets=dict(task.scene.assets)) if task.scene.assets
        else {}, run_id=run_id,
        objects=dict(dataclasses.asdict(ref), rows=len(polygons)),
        timings=dict(plan_seconds=task.plan_seconds,
                     write_seconds=round(time.time() - started, 3),
                     finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    write_manifest(manifest, output)
    log.info("%s: done -> %s (%d object(s))", scene_id, manifest_uri(output, scene_id),
             len(polygons))
    return manifest


class FinishObjectScenes(GuardedStep):
    """:func:`finish_object_scene` for each (scene_id, {"rows", "tiles"}): scene ids
    out, failures to ``errors`` (stage ``objects``)."""

    STEP, STAGE = "finish", "objects"

    def __init__(self, params: TextureParams, output: str, run_id: str):
        super().__init__()
        self.params, self.output, self.run_id = params, output, run_id
        self.done = counter("scenes_done")
        self.pixels = counter("pixels")
        self.objects = counter("objects_written")

    def where(self, element):
        scene_id, grouped = element
        tasks = list(grouped["tiles"])
        return (tasks[0].scene.uri if tasks else ""), scene_id

    def run(self, element):
        scene_id, grouped = element
        tasks = list(grouped["tiles"])
        if not tasks:  # every tile failed: their records say why
            return
        manifest = finish_object_scene(scene_id, list(grouped["rows"]), tasks, self.params,
                                       self.output, self.run_id)
        self.done.inc()
        self.pixels.inc(tasks[0].info.height * tasks[0].info.width * len(tasks[0].sources))
        self.objects.inc(manifest.objects["rows"])
        yield scene_id


class ObjectTexture(beam.PTransform):
    """(task, example) tiles -> per-scene objects tables: count, sum per polygon,
    features in batches, write. Outputs ``done`` scene ids and ``errors``."""

    def __init__(self, params: TextureParams, output: str, run_id: str):
        super().__init__()
        self.params, self.output, self.run_id = params, output, run_id

    def expand(self, examples):
        from transforms.errors import ERRORS_TAG

        counted = examples | "CountPairs" >> beam.ParDo(
            CountObjectPairs(self.params)).with_outputs(ERRORS_TAG, TILES_TAG,
                                                        main="counts")
        rows = (counted.counts
                | "SumPerObject" >> beam.CombinePerKey(SumObjectCounts())
                | "Features" >> beam.ParDo(ObjectFeatures(self.params)))
        tiles = counted[TILES_TAG]
        finished = ({"rows": rows, "tiles": tiles} | "ByScene" >> beam.CoGroupByKey()
                    | "WriteObjects" >> beam.ParDo(FinishObjectScenes(
                        self.params, self.output, self.run_id)).with_outputs(
                            ERRORS_TAG, main="done"))
        errors = ((counted[ERRORS_TAG], finished[ERRORS_TAG])
                  | "ObjectErrors" >> beam.Flatten())
        return {"done": finished.done, "errors": errors}
