"""One validated texture specification: what determines a texture map's numbers.

:class:`TextureSpec` is what :func:`glcm.texture_map`'s arguments describe, checked
once (:mod:`glcm.validation`): the ``TextureMap`` layer, :func:`glcm.xarray.texture_map`,
the pipeline's model handler and its parameters all build one, and its defaults are
everyone's defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple, Union

from glcm.features import resolve_features
from glcm.validation import (DEFAULT_ANGLES, check_angles, check_distances, check_levels,
                             check_window, checked, pixel_offsets, texture_halo)


@dataclasses.dataclass(frozen=True)
class TextureSpec:
    """Features, window, grey levels, offsets and symmetry of a texture map, validated.

    Parameters
    ----------
    features : str or sequence of str
        Names or aliases of :data:`glcm.FEATURES` (``"all"`` for every one); kept as
        canonical names.
    window : int
        Odd window size, 3..63 (default 7).
    levels : int
        Grey levels, 2..65536 (default 32).
    distances : sequence of int
        Pixel distances (default (1,)).
    angles : sequence of float
        Angles in radians, scikit-image's convention (default the four directions).
    symmetric : bool
        Count (i, j) and (j, i) (default True).

    Raises
    ------
    glcm.validation.ParameterError
        A ValueError naming the argument (``window``, ``levels``...) and what to fix.

    Examples
    --------
    >>> import glcm
    >>> spec = glcm.TextureSpec(["contrast", "ent"], window=9, distances=[1, 2])
    >>> spec.features, spec.halo
    (('contrast', 'entropy'), 6)
    >>> glcm.TextureSpec("contrast", window=8)
    Traceback (most recent call last):
    ...
    glcm.validation.ParameterError: window must be an odd integer in 3..63 (a centred square), got 8
    """

    features: Union[str, Tuple[str, ...]]
    window: int = 7
    levels: int = 32
    distances: Tuple[int, ...] = (1,)
    angles: Tuple[float, ...] = DEFAULT_ANGLES
    symmetric: bool = True

    def __post_init__(self):
        values = dict(features=checked("features", resolve_features, self.features),
                      window=checked("window", check_window, self.window),
                      levels=checked("levels", check_levels, self.levels),
                      distances=checked("distances", check_distances, self.distances),
                      angles=checked("angles", check_angles, self.angles),
                      symmetric=bool(self.symmetric))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def halo(self) -> int:
        """Pixels a map reads beyond the pixel it describes (:func:`glcm.texture_halo`):
        tiles read this much around their core to join seamlessly."""
        return texture_halo(self.window, self.distances)

    @property
    def offsets(self) -> Tuple[Tuple[int, int], ...]:
        """(row, col) offsets in (distance, angle) order."""
        return tuple(map(tuple, pixel_offsets(self.distances, self.angles).tolist()))

    def to_config(self) -> dict:
        """Plain JSON values (a layer's config; ``TextureSpec(**config)`` back)."""
        return dict(features=list(self.features), window=self.window, levels=self.levels,
                    distances=list(self.distances), angles=list(self.angles),
                    symmetric=self.symmetric)


def spec_defaults() -> dict:
    """The default of every argument but ``features``."""
    return {f.name: f.default for f in dataclasses.fields(TextureSpec)
            if f.default is not dataclasses.MISSING}
