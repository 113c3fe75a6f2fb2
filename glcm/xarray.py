"""Texture maps of xarray DataArrays, in memory or lazily with Dask.

Needs the optional extra (``pip install glcm-texture[xarray]``); ``import glcm``
does not import this module. :func:`object_features` gives one texture vector per
labelled object. :func:`raster_bands` turns a result into ``(band, y, x)`` named
like the pipeline's COG bands, for ``rio.to_raster``. Georeferencing travels with
the coordinates: the ``y``/``x`` coordinates and a ``spatial_ref`` coordinate
(rioxarray's) are kept, so ``result.rio.crs`` and ``result.rio.transform()`` work
when rioxarray is imported.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
import xarray as xr

from glcm.features import resolve_features
from glcm.quantization import parse_quantize, quantize, range_from_sample
from glcm.spec import TextureSpec
from glcm.texture import texture_map as _texture_map
from glcm.validation import (DEFAULT_ANGLES, check_angles, check_distances, check_levels,
                             checked)

# Percentiles come from a regular sample of at most about SAMPLE_SIDE² pixels per
# band: the same sample whatever the chunking, so the ranges never depend on it.
SAMPLE_SIDE = 1024
# Attributes of the input that describe its values, not the texture output.
VALUE_ATTRS = ("_FillValue", "missing_value", "nodata", "scale_factor", "add_offset",
               "units", "long_name", "standard_name", "valid_range", "valid_min",
               "valid_max")


def texture_map(da: xr.DataArray, features, *, window: int = 7, levels: int = 32,
                distances: Sequence[int] = (1,), angles: Sequence[float] = DEFAULT_ANGLES,
                quantize: str = "percentile:2,98", symmetric: bool = True,
                nodata: Optional[float] = None) -> xr.DataArray:
    """Per-pixel GLCM features of a 2-D or band-stacked DataArray.

    Each band is quantized once, with one range for the whole array (never per
    chunk), then :func:`glcm.texture_map` runs on it: on the whole band in memory, or
    chunk by chunk with a halo of ``glcm.texture_halo(window, distances)`` pixels for
    Dask-backed input, which gives the in-memory numbers bit for bit, chunk borders
    and masked pixels included. Memory per task: the chunk plus its halo, and the
    output. Each task computes its block in one thread: Dask's workers are the
    parallelism.

    Parameters
    ----------
    da : DataArray, dims ``(y, x)`` or ``(band, y, x)``
        Any numeric dtype; the last two dimensions are the image rows and columns.
        NaN, ±inf and ``nodata`` (default: the array's ``_FillValue`` or ``nodata``
        attribute or encoding) are invalid pixels.
    features : str or sequence of str
        Names or aliases of :data:`glcm.FEATURES`.
    window, levels, distances, angles, symmetric
        As :func:`glcm.texture_map` (angles in radians).
    quantize : str
        ``minmax``, ``percentile:LO,HI`` (from a regular sample of at most about
        1024 x 1024 valid pixels per band) or ``fixed:VMIN,VMAX``. With ``fixed`` the
        numbers are those of ``glcm.quantize`` then ``glcm.texture_map``.

    Returns
    -------
    DataArray, float32, dims ``(feature, y, x)`` or ``(band, feature, y, x)``
        Lazy (Dask) when the input is. ``feature`` holds the canonical names; the
        spatial coordinates, ``spatial_ref`` and georeferencing attributes are kept;
        NaN where a pixel is invalid or its window has no valid pair. Attributes
        record the parameters and each band's quantization range.

    Raises
    ------
    ValueError
        Wrong dimensions, bad parameters, or a band without any valid pixel (for
        ``minmax`` and ``percentile``).

    Examples
    --------
    >>> import numpy as np, xarray as xr, glcm.xarray
    >>> da = xr.DataArray(np.random.default_rng(0).random((40, 50)), dims=("y", "x"))
    >>> t = glcm.xarray.texture_map(da, ["contrast", "savg"], window=5, levels=16)
    >>> t.dims, t.feature.values.tolist()
    (('feature', 'y', 'x'), ['contrast', 'sum_average'])
    """
    if da.ndim not in (2, 3):
        raise ValueError(f"texture_map needs a 2-D (y, x) or 3-D (band, y, x) DataArray, "
                         f"got dims {da.dims}")
    spec = TextureSpec(features, window, levels, distances, angles, symmetric)
    names, window, levels = spec.features, spec.window, spec.levels
    distances, angles = spec.distances, spec.angles
    rule = checked("quantize", parse_quantize, quantize)
    nodata = _nodata(da) if nodata is None else nodata
    bands = [da] if da.ndim == 2 else [da[k] for k in range(da.shape[0])]
    results, ranges = [], []
    for k, band in enumerate(bands):
        values = _valid_values(band.data, nodata)
        vmin, vmax = _quantization_range(values, rule, k)
        ranges.append([vmin, vmax])
        results.append(_band_texture(values, vmin, vmax, spec))
    data = results[0] if da.ndim == 2 else _stack(results)
    y, x = da.dims[-2:]
    dims = ("feature", y, x) if da.ndim == 2 else (da.dims[0], "feature", y, x)
    coords = {name: coord for name, coord in da.coords.items()
              if set(coord.dims) <= set(da.dims)}
    coords["feature"] = list(names)
    attrs = {key: value for key, value in da.attrs.items() if key not in VALUE_ATTRS}
    attrs.update(glcm_features=list(names), glcm_window=window, glcm_levels=levels,
                 glcm_distances=list(distances), glcm_angles=list(angles),
                 glcm_symmetric=int(spec.symmetric), glcm_quantize=str(quantize),
                 glcm_quantization_range=ranges if da.ndim == 3 else ranges[0])
    result = xr.DataArray(data, dims=dims, coords=coords, attrs=attrs,
                          name=f"{da.name}_texture" if da.name else "texture")
    result.encoding["_FillValue"] = np.float32(np.nan)
    return result


def raster_bands(texture: xr.DataArray) -> xr.DataArray:
    """A texture of :func:`texture_map` as ``(band, y, x)``, one band per (input band,
    feature), named as the pipeline names its COG bands, ready for
    ``result.rio.to_raster(path)``.

    Band names are ``b<band>_<feature>`` (``b1_contrast`` for a 2-D input), or
    ``<name>_<feature>`` where the input's band coordinate holds names (``nir``), in
    (band, feature) order; they are the ``long_name`` attribute, which rioxarray
    writes as the band descriptions. Lazy input stays lazy.

    Parameters
    ----------
    texture : DataArray, dims ``(feature, y, x)`` or ``(band, feature, y, x)``

    Returns
    -------
    DataArray, dims ``(band, y, x)``, ``band`` = 1..n, the spatial coordinates and
    ``spatial_ref`` of ``texture``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, glcm.xarray
    >>> da = xr.DataArray(np.arange(64.0).reshape(2, 4, 8), dims=("band", "y", "x"),
    ...                   coords={"band": [1, 2]})
    >>> t = glcm.xarray.texture_map(da, ["contrast", "mean"], window=3, levels=4,
    ...                             quantize="minmax")
    >>> list(glcm.xarray.raster_bands(t).attrs["long_name"])
    ['b1_contrast', 'b1_mean', 'b2_contrast', 'b2_mean']
    """
    if "feature" not in texture.dims or texture.ndim not in (3, 4):
        raise ValueError(f"raster_bands takes the result of glcm.xarray.texture_map, "
                         f"dims (feature, y, x) or (band, feature, y, x); got {texture.dims}")
    features = [str(f) for f in texture["feature"].values]
    if texture.ndim == 3:
        prefixes = ["b1"]
    else:
        band_dim = texture.dims[0]
        labels = (texture[band_dim].values if band_dim in texture.coords
                  else np.arange(1, texture.shape[0] + 1))
        prefixes = [str(v) if isinstance(v, str) else f"b{int(v)}" for v in labels]
    names = [f"{p}_{f}" for p in prefixes for f in features]
    y, x = texture.dims[-2:]
    data = texture.data.reshape((len(names),) + texture.shape[-2:])
    coords = {name: coord for name, coord in texture.coords.items()
              if set(coord.dims) <= {y, x}}
    coords["band"] = np.arange(1, len(names) + 1)
    attrs = {k: v for k, v in texture.attrs.items() if k != "long_name"}
    attrs["long_name"] = tuple(names)
    result = xr.DataArray(data, dims=("band", y, x), coords=coords, attrs=attrs,
                          name=texture.name)
    result.encoding["_FillValue"] = np.float32(np.nan)
    return result


def _nodata(da: xr.DataArray):
    for source in (da.attrs, da.encoding):
        for key in ("_FillValue", "nodata", "missing_value"):
            if source.get(key) is not None:
                return source[key]
    return None


def _is_dask(data) -> bool:
    return type(data).__module__.split(".")[0] == "dask"


def _valid_values(data, nodata):
    """float64 values with NaN where invalid (non-finite or nodata)."""
    if _is_dask(data):
        import dask.array as dsa

        module = dsa
    else:
        module, data = np, np.asarray(data)
    values = data.astype(np.float64)
    invalid = ~module.isfinite(values)
    if nodata is not None and np.isfinite(nodata):
        invalid = invalid | (values == float(nodata))
    return module.where(invalid, np.nan, values)


def _quantization_range(values, rule, band_index) -> Tuple[float, float]:
    if rule[0] == "fixed":
        return range_from_sample(np.empty(0), rule)
    step = max(1, math.ceil(max(values.shape) / SAMPLE_SIDE))
    sample = values[::step, ::step]
    sample = np.asarray(sample.compute() if _is_dask(sample) else sample).ravel()
    try:
        return range_from_sample(sample[np.isfinite(sample)], rule)
    except ValueError:
        raise ValueError(f"band {band_index} has no valid pixel (all NaN or nodata): "
                         f"nothing to quantize; give quantize='fixed:VMIN,VMAX' for "
                         f"an all-NaN result") from None


def _texture_block(block, *, halo, vmin, vmax, spec, shape=None, threads=None):
    """(features, h, w) float32 texture of the core of a (h + 2 halo, w + 2 halo)
    block of float64 values (NaN invalid).

    ``shape``: pad the block with NaN (invalid, as beyond the image) to this shape
    first, so that every block of an array runs one compiled program.
    """
    core_shape = (block.shape[0] - 2 * halo, block.shape[1] - 2 * halo)
    if shape is not None:
        block = np.pad(block, [(0, shape[0] - block.shape[0]),
                               (0, shape[1] - block.shape[1])], constant_values=np.nan)
    q, ok = quantize(block[None], spec.levels, vmin, vmax)
    maps = _texture_map(q, spec.features, spec.window, levels=spec.levels,
                        distances=spec.distances, angles=spec.angles,
                        symmetric=spec.symmetric, mask=ok, threads=threads,
                        padding="valid")  # the halo is context: no maps for it
    core = np.asarray(maps)[0, :core_shape[0], :core_shape[1]]
    return np.ascontiguousarray(np.moveaxis(core, -1, 0), dtype=np.float32)


def _band_texture(values, vmin, vmax, spec):
    """One band's (features, y, x) texture; chunk by chunk for Dask input."""
    halo = spec.halo
    settings = dict(halo=halo, vmin=vmin, vmax=vmax, spec=spec)
    if not _is_dask(values):
        return _texture_block(np.pad(values, halo, constant_values=np.nan), **settings)
    import dask.array as dsa

    if min(values.shape) <= 2 * halo:  # too small to split: one block, in memory
        block = _texture_block(np.pad(values.compute(), halo, constant_values=np.nan),
                               **settings)
        return dsa.from_array(block, chunks=(block.shape[0],) + values.chunks)
    values = _chunks_of_at_least(values, halo)
    padded = dsa.overlap.overlap(values, depth={0: halo, 1: halo},
                                 boundary={0: np.nan, 1: np.nan})
    n_features = len(spec.features)
    largest = tuple(max(c) + 2 * halo for c in values.chunks)
    return padded.map_blocks(_texture_block, dtype=np.float32, new_axis=0,
                             chunks=((n_features,),) + values.chunks, shape=largest,
                             threads=1, **settings)


def _chunks_of_at_least(values, size):
    """Rechunks so that every chunk holds at least ``size`` pixels along each axis
    (the halo is read from the neighbouring chunk only)."""
    chunks = []
    for axis_chunks in values.chunks:
        merged = []
        for c in axis_chunks:
            if merged and (merged[-1] < size or c < size):
                merged[-1] += c
            else:
                merged.append(c)
        chunks.append(tuple(merged))
    chunks = tuple(chunks)
    return values if chunks == values.chunks else values.rechunk(chunks)


def _stack(results):
    if any(_is_dask(r) for r in results):
        import dask.array as dsa

        return dsa.stack(results)
    return np.stack(results)


def object_features(da: xr.DataArray, labels: xr.DataArray, features, *, levels: int = 32,
                    distances: Sequence[int] = (1,),
                    angles: Sequence[float] = DEFAULT_ANGLES,
                    quantize: str = "percentile:2,98", symmetric: bool = True,
                    average: bool = True, nodata: Optional[float] = None,
                    convention: str = "skimage") -> xr.DataArray:
    """GLCM features per labelled object of a 2-D or band-stacked DataArray.

    Each band is quantized as in :func:`texture_map` (one range per band for the whole
    array), then every object's matrix counts the pairs whose two pixels carry its
    label and are valid (see :func:`glcm.object_features`). With Dask-backed input,
    each chunk counts the pairs whose reference pixel it holds (reading a halo of the
    largest distance), and the per-chunk counts are summed per object: the result
    equals the in-memory one exactly, whatever the chunks.

    Parameters
    ----------
    da : DataArray, dims ``(y, x)`` or ``(band, y, x)``
        Values, invalid pixels as in :func:`texture_map`.
    labels : DataArray, dims ``(y, x)`` as the last two of ``da``, same shape
        Integer object ids; 0, negative values and NaN are background. Its
        coordinates, where both have them, must equal ``da``'s.
    features, levels, distances, angles, quantize, symmetric, nodata
        As :func:`texture_map`.
    average : bool
        Average over the offsets (default); else ``distance`` and ``angle`` dims.
    convention : {"skimage", "ibsi"}
        As :func:`glcm.graycoprops`.

    Returns
    -------
    DataArray, float32, dims ``(object, feature)`` or ``(band, object, feature)``
        ``object`` holds the sorted positive labels (found when called: the labels are
        read once then, the features stay lazy for Dask input); NaN for an object
        without a valid pair. Attributes record the parameters and the quantization
        ranges.

    Examples
    --------
    >>> import numpy as np, xarray as xr, glcm.xarray
    >>> da = xr.DataArray(np.random.default_rng(0).random((40, 50)), dims=("y", "x"))
    >>> labels = xr.DataArray(np.repeat([1, 2], 25)[None].repeat(40, 0), dims=("y", "x"))
    >>> f = glcm.xarray.object_features(da, labels, ["contrast", "asm"], levels=8)
    >>> f.dims, f.object.values.tolist(), f.shape
    (('object', 'feature'), [1, 2], (2, 2))
    """
    from glcm.objects import object_features as features_per_object
    from glcm.objects import object_glcm, object_glcm_features, object_ids
    from glcm.quantization import quantize as quantize_values

    if da.ndim not in (2, 3):
        raise ValueError(f"object_features needs a 2-D (y, x) or 3-D (band, y, x) "
                         f"DataArray, got dims {da.dims}")
    _check_same_grid(da, labels)
    names = checked("features", lambda f: resolve_features(f, convention), features)
    levels = checked("levels", check_levels, levels)
    distances = checked("distances", check_distances, distances)
    angles = checked("angles", check_angles, angles)
    rule = checked("quantize", parse_quantize, quantize)
    nodata = _nodata(da) if nodata is None else nodata
    values = _valid_values(da.data if da.ndim == 3 else da.data[None], nodata)
    ranges = [list(_quantization_range(values[k], rule, k)) for k in range(values.shape[0])]
    vmin = np.array([r[0] for r in ranges])[:, None, None]
    vmax = np.array([r[1] for r in ranges])[:, None, None]
    settings = dict(levels=levels, distances=distances, angles=angles,
                    symmetric=bool(symmetric))

    def counts_of(block, label_block, core=None, ids=None):
        q, ok = quantize_values(block, levels, vmin, vmax)
        return object_glcm(np.asarray(q), label_block, mask=np.asarray(ok), core=core,
                           ids=ids, **settings)

    def finish(ids, P):
        return object_glcm_features(P, names, average=average, convention=convention)

    label_data = labels.data
    if not (_is_dask(values) or _is_dask(label_data)):  # objects a bounded number at a time
        q, ok = quantize_values(np.asarray(values), levels, vmin, vmax)
        ids, data = features_per_object(np.asarray(q), np.asarray(label_data), names,
                                        mask=np.asarray(ok), average=average,
                                        convention=convention, **settings)
    else:
        ids, data = _lazy_object_features(values, label_data, counts_of, finish,
                                          halo=max(distances), object_ids=object_ids,
                                          tail=((len(names),) if average else
                                                (len(distances), len(angles), len(names))))
    if da.ndim == 2:
        data = data[0]
    dims = ("object",) + (() if average else ("distance", "angle")) + ("feature",)
    coords = {"object": ids, "feature": list(names)}
    if not average:
        coords.update(distance=list(distances), angle=list(angles))
    if da.ndim == 3:
        dims = (da.dims[0],) + dims
        if da.dims[0] in da.coords:
            coords[da.dims[0]] = da[da.dims[0]].values
    attrs = dict(glcm_features=list(names), glcm_levels=levels,
                 glcm_distances=list(distances), glcm_angles=list(angles),
                 glcm_symmetric=int(bool(symmetric)), glcm_quantize=str(quantize),
                 glcm_convention=convention,
                 glcm_quantization_range=ranges if da.ndim == 3 else ranges[0])
    return xr.DataArray(data, dims=dims, coords=coords, attrs=attrs,
                        name=f"{da.name}_object_texture" if da.name else "object_texture")


def _check_same_grid(da, labels):
    if not isinstance(labels, xr.DataArray) or labels.ndim != 2:
        raise ValueError("labels must be a 2-D (y, x) DataArray on the grid of da")
    if labels.shape != da.shape[-2:]:
        raise ValueError(f"labels has shape {labels.shape}, da's grid is {da.shape[-2:]}: "
                         f"they must be on the same grid")
    for dim_da, dim_labels in zip(da.dims[-2:], labels.dims):
        if dim_da in da.coords and dim_labels in labels.coords and not np.array_equal(
                da[dim_da].values, labels[dim_labels].values):
            raise ValueError(f"labels' {dim_labels} coordinates differ from da's "
                             f"{dim_da}: reproject or align the labels onto da's grid")


def _lazy_object_features(values, label_data, counts_of, finish, *, halo, object_ids,
                          tail):
    """Per-chunk partial counts (pairs whose reference pixel the chunk holds, read
    with a halo), summed per object in a tree, then the features: one Dask task
    graph, computed when the result is."""
    import dask
    import dask.array as dsa

    if not _is_dask(values):
        values = dsa.from_array(values, chunks=(values.shape[0],) + label_data.chunks)
    values = _chunks_of_at_least(values.rechunk({0: values.shape[0]}), halo)
    label_data = dsa.asarray(label_data).rechunk(values.chunks[1:])
    # The ids are the coordinate: read once now, as every chunk's unique labels.
    ids = np.unique(np.concatenate(dask.compute(
        *[dask.delayed(object_ids)(block) for block in label_data.to_delayed().ravel()])))
    padded = dsa.overlap.overlap(values, depth={0: 0, 1: halo, 2: halo},
                                 boundary={0: "none", 1: np.nan, 2: np.nan})
    padded_labels = dsa.overlap.overlap(label_data, depth={0: halo, 1: halo},
                                        boundary={0: 0, 1: 0})

    def block_counts(block, label_block):
        core = (halo, block.shape[1] - halo, halo, block.shape[2] - halo)
        return counts_of(block, label_block, core=core)

    parts = [dask.delayed(block_counts)(b, l) for b, l in zip(
        padded.to_delayed().ravel(), padded_labels.to_delayed().ravel())]
    while len(parts) > 1:  # a binary tree of sums: no task holds every chunk's counts
        parts = [dask.delayed(_add_counts)(*parts[k:k + 2]) for k in range(0, len(parts), 2)]
    result = dask.delayed(_features_for)(parts[0], ids, finish)
    shape = (values.shape[0], len(ids)) + tail
    return ids, dsa.from_delayed(result, shape=shape, dtype=np.float32)


def _add_counts(first, second=None):
    """The sum of two (ids, counts) partial results, over the union of their ids."""
    if second is None:
        return first
    ids = np.union1d(first[0], second[0])
    total = np.zeros((first[1].shape[0], len(ids)) + first[1].shape[2:], np.int32)
    for part_ids, counts in (first, second):
        total[:, np.searchsorted(ids, part_ids)] += counts
    return ids, total


def _features_for(part, ids, finish):
    part_ids, counts = part
    if np.array_equal(part_ids, ids):
        return finish(ids, counts)
    # some objects no chunk counted (usually none): zero matrices for them
    P = np.zeros((counts.shape[0], len(ids)) + counts.shape[2:], np.int32)
    P[:, np.searchsorted(ids, part_ids)] = counts
    return finish(ids, P)
