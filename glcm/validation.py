"""Argument checks and limits shared by the core, the layers and the pipeline's flags.

One set of limits for everyone: the command line validates its flags with these
functions, so a value the core accepts is accepted everywhere, with the same message.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
from keras import ops

DEFAULT_ANGLES = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
MIN_LEVELS, MAX_LEVELS = 2, 65536
MIN_WINDOW, MAX_WINDOW = 3, 63


class ParameterError(ValueError):
    """An argument that cannot be used; ``parameter`` names it (a command line adds
    its own name for it, such as a flag, to the message)."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


def checked(parameter: str, check, value):
    """``check(value)``, its ValueError turned into a ParameterError naming
    ``parameter``."""
    try:
        return check(value)
    except ParameterError:
        raise
    except ValueError as exc:
        raise ParameterError(parameter, str(exc)) from None


def check_levels(levels) -> int:
    """Returns ``levels`` as an int.

    Raises:
      ValueError: not an integer in MIN_LEVELS..MAX_LEVELS (2..65536).
    """
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)):
        raise ValueError(f"levels must be an integer >= {MIN_LEVELS}, got {levels!r}")
    if levels < MIN_LEVELS:
        raise ValueError(
            f"levels must be >= {MIN_LEVELS} (got {levels}): a GLCM needs at least two "
            f"grey levels")
    if levels > MAX_LEVELS:
        raise ValueError(
            f"levels must be <= {MAX_LEVELS}, got {levels}; quantize the image first")
    return int(levels)


def check_window(window) -> int:
    """Returns ``window`` as an int.

    Raises:
      ValueError: not an odd integer in MIN_WINDOW..MAX_WINDOW (3..63).
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise ValueError(f"window must be an odd integer in {MIN_WINDOW}..{MAX_WINDOW}, "
                         f"got {window!r}")
    if window % 2 == 0 or not MIN_WINDOW <= window <= MAX_WINDOW:
        raise ValueError(f"window must be an odd integer in {MIN_WINDOW}..{MAX_WINDOW} "
                         f"(a centred square), got {window}")
    return int(window)


def check_distances(distances) -> Tuple[int, ...]:
    """Returns the distances as a tuple of positive ints.

    Raises:
      ValueError: empty, not 1-D, or holding a value that is not a positive integer.
    """
    values = np.atleast_1d(np.asarray(distances))
    if values.size == 0:
        raise ValueError("distances is empty: give at least one pixel distance, e.g. [1]")
    if values.ndim != 1:
        raise ValueError(f"distances must be a 1-D list, got shape {values.shape}")
    out = []
    for d in values.tolist():
        if isinstance(d, bool) or not isinstance(d, (int, float)) or \
                not float(d).is_integer() or d < 1:
            raise ValueError(f"distances must be positive integers, got {d!r}")
        out.append(int(d))
    return tuple(out)


def check_angles(angles) -> Tuple[float, ...]:
    """Returns the angles (radians) as a tuple of floats.

    Raises:
      ValueError: empty, not 1-D, or not finite.
    """
    values = np.atleast_1d(np.asarray(angles, dtype=np.float64))
    if values.size == 0:
        raise ValueError(
            "angles is empty: give at least one angle in radians, e.g. [0, np.pi/2]")
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise ValueError(f"angles must be a 1-D list of finite radians, got {angles!r}")
    return tuple(float(a) for a in values)


PADDINGS = ("same", "valid")


def check_padding(padding) -> str:
    """Returns ``padding`` (a texture map's: :data:`PADDINGS`).

    Raises:
      ValueError: neither "same" nor "valid".
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    return padding


def texture_halo(window: int, distances: Sequence[int]) -> int:
    """Pixels a texture map reads beyond the pixel it describes: the window radius
    plus the largest pair distance. Tiles read this much around their core so that
    per-tile maps join seamlessly (an upper bound for every angle: an offset's row
    and column steps never exceed its distance)."""
    return check_window(window) // 2 + max(check_distances(distances))


def _round_half_away(x: float) -> int:
    # scikit-image's Cython loop uses C's round(): halves go away from zero.
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def pixel_offsets(distances: Sequence[int], angles: Sequence[float]) -> np.ndarray:
    """(row, col) offsets in (distance, angle) row-major order, as scikit-image.

    For distance d and angle θ the neighbour of the reference pixel (r, c) is
    (r + round(d sin θ), c + round(d cos θ)) (see docs/features.md, "Offsets").

    Returns:
      int array of shape (len(distances) * len(angles), 2).
    """
    return np.array(
        [(_round_half_away(math.sin(a) * d), _round_half_away(math.cos(a) * d))
         for d in distances for a in angles],
        dtype=np.int64).reshape(-1, 2)


def concrete_numpy(x):
    """Returns x as a numpy array when its values are known now, else None.

    Symbolic tensors (tf.function graphs, JAX tracers, KerasTensors) give None, so
    value checks run eagerly and are skipped while tracing.
    """
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # noqa: BLE001 - any symbolic tensor type refuses conversion
        return None
