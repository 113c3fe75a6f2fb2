"""Tiling a scene into cores with halos, so per-tile texture maps join seamlessly."""

from __future__ import annotations

import dataclasses
from typing import List


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


def tiles_for(scene_id: str, height: int, width: int, tile: int, halo: int) -> List[Tile]:
    """Splits a height x width scene into tile x tile cores (smaller at the edges).

    Args:
      scene_id: scene the tiles belong to.
      height, width: scene size in pixels (>= 1).
      tile: core size (>= 1).
      halo: pixels read around each core (>= 0): ``glcm.texture_halo(window,
        distances)`` makes per-tile texture maps join seamlessly.

    Returns:
      Tiles in row-major order; their cores cover the scene exactly once.

    Raises:
      ValueError: a non-positive size, tile, or a negative halo.
    """
    if height < 1 or width < 1:
        raise ValueError(f"scene {scene_id!r} has no pixels ({height}x{width})")
    if tile < 1:
        raise ValueError(f"--tile must be >= 1, got {tile}")
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    out = []
    for gr, r0 in enumerate(range(0, height, tile)):
        for gc, c0 in enumerate(range(0, width, tile)):
            h, w = min(tile, height - r0), min(tile, width - c0)
            top, left = max(0, r0 - halo), max(0, c0 - halo)
            bottom, right = min(height, r0 + h + halo), min(width, c0 + w + halo)
            out.append(Tile(TileKey(scene_id, gr, gc), r0, c0, h, w, top, left,
                            bottom - top, right - left, top - (r0 - halo),
                            left - (c0 - halo), (r0 + h + halo) - bottom,
                            (c0 + w + halo) - right))
    return out
