"""The texture parameters of a run: validated once, carried by every step."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Optional, Tuple

import glcm
from glcm.quantization import QUANTIZE_KINDS, parse_quantize
from glcm.validation import check_distances, check_levels, check_window

DEFAULT_FEATURES = "contrast,dissimilarity,homogeneity,asm,entropy,correlation,mean,variance"
__all__ = ["DEFAULT_FEATURES", "QUANTIZE_KINDS", "TextureParams", "parse_quantize"]


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

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Hash of the parameters that change the output (not the tile size: tiles
        join seamlessly)."""
        values = self.to_json()
        values.pop("tile")
        blob = json.dumps(values, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def from_flags(cls, *, features: str = DEFAULT_FEATURES, window: int = 7,
                   distances: str = "1", angles: str = "0,45,90,135", levels: int = 32,
                   quantize: str = "percentile:2,98", bands: Optional[str] = None,
                   mode: str = "pixel", block: int = 32, tile: int = 1024
                   ) -> "TextureParams":
        """Parameters from the command line's text values.

        Raises:
          ValueError: naming the flag and what to fix. Window, levels and distances
            have the limits of :mod:`glcm.validation`, as in the core.
        """
        names = _flag("--features", glcm.resolve_features, features)
        window = _flag("--window", check_window, window)
        levels = _flag("--levels", check_levels, levels)
        distances = _flag("--distances", check_distances, _numbers(distances, "--distances",
                                                                   float))
        angle_values = _numbers(angles, "--angles", float)
        if not all(math.isfinite(a) for a in angle_values):
            raise ValueError(f"--angles must be finite degrees, got {angles!r}")
        band_values = None
        if bands:
            band_values = _numbers(bands, "--bands", int)
            if min(band_values) < 1:
                raise ValueError(f"--bands are 1-based, got {bands}")
        if mode not in ("pixel", "block"):
            raise ValueError(f"--mode must be pixel or block, got {mode!r}")
        if tile < 16:
            raise ValueError(f"--tile must be >= 16, got {tile}")
        if mode == "block" and not 2 <= block <= 4096:
            raise ValueError(f"--block must be in 2..4096, got {block}")
        return cls(names, window, distances, angle_values, levels, parse_quantize(quantize),
                   band_values, mode, block, tile)


def _flag(flag, check, value):
    try:
        return check(value)
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


def _numbers(text, flag, cast):
    try:
        values = tuple(cast(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} must be a comma list of numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} is empty")
    return values
