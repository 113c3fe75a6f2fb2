"""What travels between the pipeline's steps: immutable, named records."""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from transforms.raster import SceneInfo
from transforms.scenes import Scene
from transforms.tiling import Tile


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
    """

    scene: Scene
    info: SceneInfo
    sources: Tuple[BandSource, ...]
    band_index: int
    tile: Tile
    vmin: float
    vmax: float
    n_tasks: int

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
    """

    task: TileTask
    row: int
    col: int
    path: str
    worker: str = ""

    @property
    def order(self) -> Tuple[int, int, int]:
        """Mosaic order: position, then band."""
        return (self.row, self.col, self.task.band_index)
