"""Command-line flags of the texture pipeline (also Beam PipelineOptions)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Optional, Tuple

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

import glcm

DEFAULT_FEATURES = "contrast,dissimilarity,homogeneity,asm,entropy,correlation,mean,variance"


def is_dataflow(options: PipelineOptions) -> bool:
    """Whether the pipeline runs on Dataflow (no local exit code, no local files)."""
    return "dataflow" in str(options.view_as(StandardOptions).runner or "").lower()


def _switch(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


class TextureOptions(PipelineOptions):
    """The flags of DESIGN.md; any other Beam option (--runner, ...) passes through."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", action="append", default=None,
                            help="glob, directory, or @file listing URIs; local or gs://; "
                                 "repeatable (default: the built-in sample, run_local.sh)")
        parser.add_argument("--output", default="./output",
                            help="local directory or gs:// prefix (default ./output)")
        parser.add_argument("--features", default=DEFAULT_FEATURES,
                            help="comma list of feature names or Earth Engine aliases")
        parser.add_argument("--window", type=int, default=7,
                            help="odd window size in pixels, 3..63 (default 7)")
        parser.add_argument("--distances", default="1",
                            help="comma list of pixel distances (default 1)")
        parser.add_argument("--angles", default="0,45,90,135",
                            help="comma list of angles in degrees, scikit-image "
                                 "convention (default 0,45,90,135)")
        parser.add_argument("--levels", type=int, default=32,
                            help="grey levels after quantization (default 32)")
        parser.add_argument("--quantize", default="percentile:2,98",
                            help="minmax, percentile:LO,HI or fixed:VMIN,VMAX; per scene "
                                 "and band (default percentile:2,98)")
        parser.add_argument("--bands", default=None,
                            help="comma list of 1-based band indexes (default all)")
        parser.add_argument("--mode", default="pixel", choices=["pixel", "block"],
                            help="pixel: a texture map per pixel (default); block: one "
                                 "feature vector per block x block cell")
        parser.add_argument("--block", type=int, default=32,
                            help="block size for --mode block (default 32)")
        parser.add_argument("--tile", type=int, default=1024,
                            help="tile core size in pixels; halo added (default 1024)")
        # Switches also take =true/=false: Flex Templates pass every parameter that way.
        parser.add_argument("--force", type=_switch, nargs="?", const=True, default=False,
                            metavar="true|false", help="recompute scenes that are already finished")
        parser.add_argument("--fail-on-error", "--fail_on_error", dest="fail_on_error",
                            type=_switch, nargs="?", const=True, default=False,
                            metavar="true|false", help="exit non-zero when any scene or tile failed (on "
                                 "Dataflow: the job fails, after errors.jsonl is "
                                 "written)")


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

    @property
    def angles(self) -> Tuple[float, ...]:
        return tuple(math.radians(a) for a in self.angles_degrees)

    @property
    def halo(self) -> int:
        """Pixels read around a tile core: none in block mode (blocks do not overlap)."""
        if self.mode == "block":
            return 0
        return self.window // 2 + max(self.distances)

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

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Hash of the parameters that change the output (not --tile: seamless)."""
        values = self.to_json()
        values.pop("tile")
        blob = json.dumps(values, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _numbers(text, flag, cast):
    try:
        values = tuple(cast(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} must be a comma list of numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} is empty")
    return values


def _quantize(spec: str):
    kind, _, rest = spec.partition(":")
    if kind == "minmax" and not rest:
        return ("minmax", ())
    if kind in ("percentile", "fixed"):
        values = _numbers(rest, f"--quantize {kind}", float)
        if len(values) != 2 or values[0] >= values[1]:
            raise ValueError(f"--quantize {kind}:LO,HI needs two numbers with LO < HI, "
                             f"got {spec!r}")
        if kind == "percentile" and not (0 <= values[0] < values[1] <= 100):
            raise ValueError(f"--quantize percentiles must lie in 0..100, got {spec!r}")
        return (kind, values)
    raise ValueError(f"--quantize must be minmax, percentile:LO,HI or fixed:VMIN,VMAX, "
                     f"got {spec!r}")


def params_from(options: TextureOptions) -> TextureParams:
    """Checks every flag before any work starts; raises ValueError saying what to fix."""
    o = options.view_as(TextureOptions)
    features = glcm.resolve_features(o.features)
    window = o.window
    if window % 2 == 0 or not 3 <= window <= 63:
        raise ValueError(f"--window must be an odd number in 3..63, got {window}")
    if o.levels < 2 or o.levels > 256:
        raise ValueError(f"--levels must be in 2..256, got {o.levels}")
    distances = _numbers(o.distances, "--distances", int)
    if min(distances) < 1:
        raise ValueError(f"--distances must be positive, got {o.distances}")
    angles = _numbers(o.angles, "--angles", float)
    bands = None
    if o.bands:
        bands = _numbers(o.bands, "--bands", int)
        if min(bands) < 1:
            raise ValueError(f"--bands are 1-based, got {o.bands}")
    if o.tile < 16:
        raise ValueError(f"--tile must be >= 16, got {o.tile}")
    if is_dataflow(options) and not str(o.output).startswith("gs://"):
        raise ValueError(f"--output {o.output!r} is local, but Dataflow workers can only "
                         f"write to Cloud Storage: use --output gs://BUCKET/prefix")
    if o.mode == "block" and not 2 <= o.block <= 4096:
        raise ValueError(f"--block must be in 2..4096, got {o.block}")
    return TextureParams(features, window, distances, angles, o.levels,
                         _quantize(o.quantize), bands, o.mode, o.block, o.tile)
