"""What travels between the pipeline's steps: immutable, named records.

Every record of the pipeline is here, and this module imports no I/O library (no
Beam, rasterio or storage client): a record can be built, compared and pickled
anywhere. Reading and writing them is the steps' business (:mod:`transforms.layout`
for the manifest).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Dict, List, Optional, Tuple

import glcm
from glcm.quantization import QUANTIZE_KINDS, parse_quantize
from glcm.spec import TextureSpec, spec_defaults
from glcm.validation import ParameterError, checked

__all__ = ["DEFAULT_FEATURES", "QUANTIZE_KINDS", "BandSource", "ErrorRecord", "Manifest",
           "ModelRef", "ObjectsRef", "ParameterError", "Scene", "SceneInfo", "TextureFailure",
           "TextureOutput", "TextureParams", "Tile", "TileKey", "TileResult", "TileTask"]
DEFAULT_FEATURES = ("contrast", "dissimilarity", "homogeneity", "asm", "entropy",
                    "correlation", "mean", "variance")
MODES = ("pixel", "block", "objects")
_SPEC = spec_defaults()
# Every texture parameter's default, declared once: the texture's own from
# glcm.TextureSpec, the pipeline's here. The command line's flags, the launcher's
# help and the Flex Template metadata take theirs from this (tests check the last,
# and the README's flags table).
DEFAULTS = {"features": DEFAULT_FEATURES, "window": _SPEC["window"],
            "distances": _SPEC["distances"],
            "angles_degrees": tuple(round(math.degrees(a), 6) for a in _SPEC["angles"]),
            "levels": _SPEC["levels"], "quantize": "percentile:2,98", "bands": None,
            "mode": "pixel", "block": 32, "tile": 1024, "model": None, "classes": None,
            "objects": None, "cog_compression": "zstd"}
# --cog-compression choices (their GDAL settings: transforms.io.cog.CODECS)
COMPRESSIONS = ("deflate", "zstd", "zstd-fast", "lzw", "none")
# Tile cores are rounded up to a multiple of this many pixels, so that scenes of
# nearby sizes share tile shapes (each new shape compiles the kernel once), at a cost
# of fewer than this many pixels computed in vain per tile side.
TILE_QUANTUM = 16


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


@dataclasses.dataclass(frozen=True)
class SceneInfo:
    """What the pipeline needs to know of a scene before tiling it."""

    height: int
    width: int
    count: int
    dtype: str
    crs: Optional[str]
    transform: Tuple[float, ...]
    nodata: Optional[float]

    @property
    def warnings(self) -> List[str]:
        """What a user should know about the output's georeferencing."""
        out = []
        if self.crs is None:
            out.append("the input has no CRS; the output has none either")
        a, b, _, d, e, _ = self.transform
        if b != 0 or d != 0:
            out.append("the input's geotransform is rotated or sheared; texture is "
                       "computed on the pixel grid and the output keeps the same "
                       "transform")
        return out


@dataclasses.dataclass(frozen=True)
class TileKey:
    """Immutable, hashable key of one tile: the scene and the tile's grid position."""

    scene_id: str
    row: int
    col: int


@dataclasses.dataclass(frozen=True)
class Tile:
    """Where a tile's core lies in the scene and what to read for it.

    Attributes:
      key: the tile's key.
      core_row, core_col, core_height, core_width: the pixels this tile writes.
      read_row, read_col, read_height, read_width: the window to read (core plus
        halo, clipped to the scene).
      pad_top, pad_left, pad_bottom, pad_right: halo that fell outside the scene;
        pad it as invalid (masked) so windows are clipped at the scene border as
        ``glcm.texture_map`` clips them.
    """

    key: TileKey
    core_row: int
    core_col: int
    core_height: int
    core_width: int
    read_row: int
    read_col: int
    read_height: int
    read_width: int
    pad_top: int
    pad_left: int
    pad_bottom: int
    pad_right: int


@dataclasses.dataclass(frozen=True)
class BandSource:
    """One band of a scene's output: which file and band it is read from.

    Attributes:
      uri: the raster (the scene itself, or one asset of a STAC item).
      band: the 1-based band in that raster.
      asset: the STAC asset name, None for a plain raster.
      single: the asset has one band (its name alone then names the output band).
    """

    uri: str
    band: int
    asset: Optional[str] = None
    single: bool = True

    @property
    def name(self) -> str:
        """Prefix of the output band names: ``b2``, ``nir`` or ``visual_b2``."""
        if self.asset is None:
            return f"b{self.band}"
        return self.asset if self.single else f"{self.asset}_b{self.band}"

    @property
    def label(self) -> str:
        """Key of the manifest's quantization ranges: ``2``, ``nir`` or ``visual:2``."""
        if self.asset is None:
            return str(self.band)
        return self.asset if self.single else f"{self.asset}:{self.band}"


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A trained Keras model the pipeline applies to every tile (model mode).

    Attributes:
      uri: the ``.keras`` file, local or ``gs://``.
      fingerprint: its size and modification time or generation, when described.
      digest: SHA-256 of its bytes (16 hex digits): a rerun recomputes the scenes
        when it changes; workers refuse a file whose digest differs.
      channels: the bands the model takes (its input's last axis).
      outputs: K, the values it gives per pixel.
      halo: pixels read around each tile's core (derived from the layers, or given).
      halo_derived: whether the halo was derived (``glcm.model_halo``) or given.
    """

    uri: str
    fingerprint: str
    digest: str
    channels: int
    outputs: int
    halo: int
    halo_derived: bool = True

    def identity(self) -> dict:
        """What determines the numbers (not where the file lies)."""
        return {"digest": self.digest, "channels": self.channels,
                "outputs": self.outputs, "halo": self.halo}


@dataclasses.dataclass(frozen=True)
class ObjectsRef:
    """The polygons of ``--mode objects``: one texture vector per polygon and scene.

    Attributes:
      uri: the vector file (GeoPackage, GeoJSON, Shapefile, GeoParquet...), local or
        ``gs://``.
      id_field: the attribute that identifies each polygon (unique).
      fingerprint: size and modification time or generation of the file(s).
      digest: SHA-256 of the file's bytes (16 hex digits; a Shapefile's .shp, .shx,
        .dbf and .prj together): a rerun recomputes the scenes when it changes.
      count: the number of polygons.
      crs: the polygons' CRS (WKT or authority string); reprojected per scene.
    """

    uri: str
    id_field: str
    fingerprint: str
    digest: str
    count: int
    crs: str

    def identity(self) -> dict:
        """What determines the numbers (not where the file lies)."""
        return {"digest": self.digest, "id_field": self.id_field}


@dataclasses.dataclass(frozen=True)
class TextureParams:
    """Validated parameters: everything that determines the numbers in the output."""

    features: Tuple[str, ...]
    window: int
    distances: Tuple[int, ...]
    angles_degrees: Tuple[float, ...]
    levels: int
    quantize: Tuple[str, Tuple[float, ...]]
    bands: Optional[Tuple[int, ...]]
    mode: str
    block: int
    tile: int
    model: Optional[ModelRef] = None
    classes: Optional[Tuple[str, ...]] = None
    objects: Optional[ObjectsRef] = None
    cog_compression: str = DEFAULTS["cog_compression"]

    @classmethod
    def create(cls, **parameters) -> "TextureParams":
        """The parameters given (keyword arguments named as the fields), the others
        at :data:`DEFAULTS`, checked with the core's rules (the texture ones by
        :class:`glcm.TextureSpec`).

        Raises:
          ParameterError: naming the parameter and what to fix.
        """
        unknown = set(parameters) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown texture parameter(s) {sorted(unknown)}; known: "
                            f"{', '.join(DEFAULTS)}")
        p = dict(DEFAULTS, **parameters)
        angles = tuple(float(a) for a in p["angles_degrees"])
        if not angles or not all(math.isfinite(a) for a in angles):
            raise ParameterError("angles", f"angles must be finite degrees, got "
                                           f"{tuple(p['angles_degrees'])!r}")
        spec = TextureSpec(p["features"], p["window"], p["levels"], tuple(p["distances"]),
                           tuple(math.radians(a) for a in angles))
        quantize, bands, mode, block, tile, model, classes, objects, compression = (
            p[k] for k in ("quantize", "bands", "mode", "block", "tile", "model",
                           "classes", "objects", "cog_compression"))
        if compression not in COMPRESSIONS:
            raise ParameterError("cog_compression", f"the COG compression must be one "
                                                    f"of {', '.join(COMPRESSIONS)}, got "
                                                    f"{compression!r}")
        rule = checked("quantize", parse_quantize, quantize)
        if bands is not None:
            bands = tuple(int(b) for b in bands)
            if not bands or min(bands) < 1:
                raise ParameterError("bands", f"bands are 1-based, got {bands}")
        if mode not in MODES:
            raise ParameterError("mode", f"mode must be pixel, block or objects, got "
                                         f"{mode!r}")
        check_objects_mode(mode, objects, model)
        if tile < 16:
            raise ParameterError("tile", f"tile must be >= 16, got {tile}")
        if mode == "block" and not 2 <= block <= 4096:
            raise ParameterError("block", f"block must be in 2..4096, got {block}")
        if model is not None:
            mode = _model_mode(model, mode, bands)
            classes = _class_names(classes, model)
        elif classes is not None:
            raise ParameterError("classes", "classes name the outputs of a model: give "
                                            "the model too")
        return cls(spec.features, spec.window, spec.distances, angles, spec.levels, rule,
                   bands, mode, block, tile, model, classes, objects, compression)

    @property
    def spec(self) -> TextureSpec:
        """The texture part, as :class:`glcm.TextureSpec` (the model handler's)."""
        return TextureSpec(self.features, self.window, self.levels, self.distances,
                           self.angles)

    @property
    def angles(self) -> Tuple[float, ...]:
        return tuple(math.radians(a) for a in self.angles_degrees)

    @property
    def halo(self) -> int:
        """Pixels read around a tile core: none in block mode (blocks do not overlap),
        the model's in model mode."""
        if self.model is not None:
            return self.model.halo
        if self.mode == "objects":  # pairs only: no window
            return max(self.distances)
        return 0 if self.mode == "block" else glcm.texture_halo(self.window, self.distances)

    @property
    def scale(self) -> int:
        """Output pixels per input pixel side: the block size in block mode."""
        return self.block if self.mode == "block" else 1

    @property
    def tile_size(self) -> int:
        """Tile core size; a multiple of the block in block mode."""
        if self.mode == "block":
            return max(self.block, self.tile // self.block * self.block)
        return self.tile

    @property
    def tile_quantum(self) -> int:
        """Tile cores are multiples of it (:func:`transforms.plan.core_size`): the
        block in block mode, else :data:`TILE_QUANTUM`."""
        return self.block if self.mode == "block" else TILE_QUANTUM

    @property
    def output_names(self) -> Optional[Tuple[str, ...]]:
        """In model mode, the output bands' names: the classes, else ``p0..p{K-1}``."""
        if self.model is None:
            return None
        return self.classes or tuple(f"p{k}" for k in range(self.model.outputs))

    def to_json(self) -> dict:
        """The parameters as JSON (the manifest's ``params``). In model mode only what
        a model run uses: the texture parameters are the model's own business."""
        values = dataclasses.asdict(self)
        if self.objects is not None:  # no window: each polygon is its own window
            return {key: values[key] for key in (
                "mode", "objects", "features", "distances", "angles_degrees", "levels",
                "quantize", "bands", "tile")}
        del values["objects"]  # digests as before objects existed
        if self.cog_compression == DEFAULTS["cog_compression"]:
            del values["cog_compression"]  # likewise: and the codec changes no value
        if self.model is None:
            del values["model"], values["classes"]  # digests as before models existed
            return values
        return {key: values[key] for key in ("mode", "model", "classes", "bands", "tile",
                                             "cog_compression") if key in values}

    def digest(self) -> str:
        """Hash of the parameters that change the output (not the tile size: tiles
        join seamlessly; not the COG's compression; not where the model file lies,
        only its content)."""
        values = self.to_json()
        values.pop("tile")
        values.pop("cog_compression", None)  # bytes, not values: no rerun for it
        if self.model is not None:
            values["model"] = self.model.identity()
        if self.objects is not None:
            values["objects"] = self.objects.identity()
        blob = json.dumps(values, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def check_objects_mode(mode: str, objects, model) -> None:
    """ParameterError unless the polygons and ``mode`` go together: objects mode
    needs polygons, the other modes take none, and a model maps pixels."""
    if mode == "objects":
        if objects is None:
            raise ParameterError("objects", "mode objects computes one texture vector per "
                                            "polygon: give the polygons' vector file")
        if not isinstance(objects, ObjectsRef):
            raise TypeError(f"objects must be an ObjectsRef, got {type(objects).__name__}")
        if model is not None:
            check_model_mode(mode)
    elif objects is not None:
        raise ParameterError("objects", f"polygons are read in mode objects only (the "
                                        f"mode is {mode}): choose mode objects")


def check_model_mode(mode: str) -> None:
    """ParameterError (``mode``) unless ``mode`` can run a model (pixel)."""
    if mode != "pixel":
        raise ParameterError("mode", f"a model maps every pixel: mode {mode} cannot be "
                                     f"combined with a model")


def _model_mode(model: ModelRef, mode: str, bands) -> str:
    """The mode of a run with a model ("model"), or ParameterError."""
    if not isinstance(model, ModelRef):
        raise TypeError(f"model must be a ModelRef, got {type(model).__name__}")
    check_model_mode(mode)
    if bands is not None and len(bands) != model.channels:
        raise ParameterError("bands", f"the model {model.uri} takes {model.channels} "
                                      f"channel(s), but {len(bands)} band(s) are "
                                      f"selected ({','.join(map(str, bands))}): select "
                                      f"{model.channels}")
    return "model"


def _class_names(classes, model: ModelRef) -> Optional[Tuple[str, ...]]:
    """The classes as a tuple of names, one per model output, or ParameterError."""
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = classes.split(",")
    names = tuple(str(c).strip() for c in classes)
    if len(names) != model.outputs:
        raise ParameterError("classes", f"{len(names)} class name(s) given "
                                        f"({','.join(names)}), but the model "
                                        f"{model.uri} gives {model.outputs} value(s) per "
                                        f"pixel: name each")
    if not all(names) or len(set(names)) != len(names):
        raise ParameterError("classes", f"class names must be non-empty and distinct, "
                                        f"got {','.join(names)}")
    if len(names) > 255:
        raise ParameterError("classes", f"classes.tif holds at most 255 classes (255 "
                                        f"marks no prediction), got {len(names)}")
    return names


@dataclasses.dataclass(frozen=True)
class TileTask:
    """One tile of one band of one scene, with the scene-wide quantization range.

    Attributes:
      scene: the input scene.
      info: its header (size, CRS, transform).
      sources: every band the scene's output holds, in output order.
      band_index: which of ``sources`` this task computes.
      tile: the tile's core and read window.
      vmin, vmax: the band's quantization range (one per scene and band).
      n_tasks: tasks of the scene in all (tiles x bands): its mosaic waits for them.
      plan_seconds: how long planning the scene took (the manifest's step times).
    """

    scene: Scene
    info: SceneInfo
    sources: Tuple[BandSource, ...]
    band_index: int
    tile: Tile
    vmin: float
    vmax: float
    n_tasks: int
    plan_seconds: float = 0.0

    @property
    def source(self) -> BandSource:
        return self.sources[self.band_index]


@dataclasses.dataclass(frozen=True)
class TileResult:
    """A computed tile's core, saved where the scene's mosaic step finds it.

    Attributes:
      task: the task it answers.
      row, col: where the core starts in the output raster (output pixels: block
        cells in block mode).
      path: the saved (h, w, n_features) float32 array.
      worker: ``host:pid`` of the process that computed it (the manifest counts
        tiles per worker: how the work spread).
      timings: (step, seconds) this tile spent in read, texture and save.
    """

    task: TileTask
    row: int
    col: int
    path: str
    worker: str = ""
    timings: Tuple[Tuple[str, float], ...] = ()

    @property
    def order(self) -> Tuple[int, int, int]:
        """Mosaic order: position, then band."""
        return (self.row, self.col, self.task.band_index)


class TextureOutcome:
    """What the texture step yields for a tile: :class:`TextureOutput` or
    :class:`TextureFailure` (the type of its outputs in the graph, so that they get a
    coder that sizes maps without encoding them: ``transforms.texture``)."""


@dataclasses.dataclass(frozen=True)
class TextureOutput(TextureOutcome):
    """The texture step's result for one tile: its maps (S, S, F) and the seconds
    its read and its model call took, and of the latter, those it waited for the
    process's one model call at a time."""

    maps: Any = dataclasses.field(compare=False)
    read_seconds: float = 0.0
    texture_seconds: float = 0.0
    wait_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class TextureFailure(TextureOutcome):
    """The texture step's result for a tile the model could not compute."""

    error: str
    message: str


@dataclasses.dataclass(frozen=True)
class ErrorRecord:
    """One failed scene or tile (a line of ``errors.jsonl``).

    Attributes:
      uri: the input (or the missing name of an input list).
      scene_id: the scene's output folder name; None before a scene exists.
      stage: discover, plan, read, texture, write_tile or mosaic.
      error: the exception's type name.
      message: what failed and what to do, naming the file, band or window.
      parameter: the parameter the failure is about (``bands``, ``asset``...), if
        any: the command line adds its flag's name to the message.
    """

    uri: str
    scene_id: Optional[str]
    stage: str
    error: str
    message: str
    parameter: Optional[str] = None

    @classmethod
    def from_exception(cls, uri: str, scene_id: Optional[str], stage: str,
                       exc: BaseException) -> "ErrorRecord":
        return cls(uri, scene_id, stage, type(exc).__name__, str(exc),
                   getattr(exc, "parameter", None))

    def to_json(self) -> dict:
        """The record as JSON (``parameter`` only where there is one)."""
        out = dataclasses.asdict(self)
        if out["parameter"] is None:
            del out["parameter"]
        return out


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The content of ``<scene>/manifest.json`` (JSON keys as the attribute names;
    ``workers``: tiles computed per ``host:pid``; ``item``: for a STAC item, its id,
    datetime, collection and the hrefs of the assets read; ``run_id``: the run that
    wrote it; ``model``: in model mode, the model's file, fingerprint, digest, halo
    and whether the halo was derived; ``objects``: in objects mode, the polygons'
    file, id field, fingerprint, digest and count, and the rows written).

    A scene is finished exactly when its manifest exists and records the same input
    fingerprint and parameter digest: the manifest is committed after the mosaic
    and the quicklook, so its presence means they are complete.
    """

    scene_id: str
    input: str
    fingerprint: str
    params: dict
    params_digest: str
    bands: List[int]
    quantization: Dict[str, List[float]]
    band_names: List[str]
    size: List[int]
    pixels: int
    crs: Optional[str]
    transform: List[float]
    warnings: List[str]
    tiles: int
    outputs: List[str]
    versions: Dict[str, str]
    timings: Dict[str, object]
    workers: Dict[str, int] = dataclasses.field(default_factory=dict)
    item: Dict[str, object] = dataclasses.field(default_factory=dict)
    run_id: str = ""
    model: Dict[str, object] = dataclasses.field(default_factory=dict)
    objects: Dict[str, object] = dataclasses.field(default_factory=dict)

    def is_finished(self, fingerprint: str, params_digest: str) -> bool:
        """True when this manifest describes the same input computed with the same
        parameters: a rerun skips the scene."""
        return self.fingerprint == fingerprint and self.params_digest == params_digest

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, content: dict) -> "Manifest":
        """A manifest from its JSON; fields with a default were added later, so older
        manifests may lack them.

        Raises:
          KeyError, TypeError: not a manifest of this layout.
        """
        return cls(**{f.name: content[f.name] for f in dataclasses.fields(cls)
                      if f.name in content or (f.default is dataclasses.MISSING and
                                               f.default_factory is dataclasses.MISSING)})
