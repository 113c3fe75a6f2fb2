"""What travels between the pipeline's steps: immutable, named records."""

from __future__ import annotations

import dataclasses
from typing import Tuple

from transforms.raster import SceneInfo
from transforms.scenes import Scene
from transforms.tiling import Tile


@dataclasses.dataclass(frozen=True)
class TileTask:
    """One tile of one band of one scene, with the scene-wide quantization range.

    Attributes:
      scene: the input scene.
      info: its header (size, CRS, transform).
      bands: every 1-based band the scene's output holds, in output order.
      band_index: which of ``bands`` this task computes.
      tile: the tile's core and read window.
      vmin, vmax: the band's quantization range (one per scene and band).
      n_tasks: tasks of the scene in all (tiles x bands): its mosaic waits for them.
    """

    scene: Scene
    info: SceneInfo
    bands: Tuple[int, ...]
    band_index: int
    tile: Tile
    vmin: float
    vmax: float
    n_tasks: int

    @property
    def band(self) -> int:
        return self.bands[self.band_index]


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
