"""Polygons as pipeline inputs (``--mode objects``): read a vector file (local or
gs://), check it, describe it (digest, count, CRS), reproject it per scene CRS, and
write the per-scene GeoParquet of object features.

GeoPackage, GeoJSON, Shapefile, FlatGeobuf and every other format of GDAL's vector
drivers are read with pyogrio; GeoParquet (``.parquet``, ``.geoparquet``) with
pyarrow.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from typing import Iterator, List, Tuple

import numpy as np

from transforms.io import storage
from transforms.records import ObjectsRef, ParameterError

PARQUET_SUFFIXES = (".parquet", ".geoparquet")
# A Shapefile is several files; these travel (and are digested) with the .shp.
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


def _parts(uri: str) -> List[str]:
    """The files that make up the vector file ``uri`` (the Shapefile's sidecars)."""
    stem, suffix = os.path.splitext(uri)
    if suffix.lower() != ".shp":
        return [uri]
    return [stem + (part if suffix == ".shp" else part.upper()) for part in SHAPEFILE_PARTS]


def _read_parts(uri: str) -> List[Tuple[str, bytes]]:
    """[(file name, bytes)] of ``uri`` and its sidecars (missing optional sidecars
    skipped).

    Raises:
      ParameterError (``objects``): the file is missing or unreadable.
    """
    out = []
    for k, part in enumerate(_parts(uri)):
        try:
            out.append((os.path.basename(part), storage.read_bytes(part)))
        except FileNotFoundError:
            if k == 0:
                raise ParameterError("objects", f"objects file {uri} does not exist") from None
            if k < 3:  # .shx and .dbf are required
                raise ParameterError("objects", f"objects file {uri}: its {part} is "
                                                f"missing (a Shapefile needs its .shx and "
                                                f".dbf beside the .shp)") from None
        except (IsADirectoryError, PermissionError, OSError) as exc:
            raise ParameterError("objects", f"objects file {part} cannot be read: "
                                            f"{type(exc).__name__}: {exc}") from None
    return out


@contextlib.contextmanager
def _local_copy(parts: List[Tuple[str, bytes]]) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="glcm-objects-") as folder:
        for name, data in parts:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        yield os.path.join(folder, parts[0][0])


def read_objects(uri: str, id_field: str):
    """The polygons of ``uri`` as a GeoDataFrame indexed 0..n-1, checked.

    Raises:
      ParameterError (``objects`` or ``object_id``), naming the file: missing or
      unreadable, not a vector file, no CRS, no such field, missing or duplicate ids,
      empty, missing, invalid or non-polygonal geometry.
    """
    return _checked(_read_frame(uri, _read_parts(uri)), uri, id_field)


def _read_frame(uri: str, parts):
    import geopandas

    with _local_copy(parts) as path:
        try:
            if uri.lower().endswith(PARQUET_SUFFIXES):
                return geopandas.read_parquet(path)
            return geopandas.read_file(path, engine="pyogrio")
        except Exception as exc:  # noqa: BLE001 - every reader's own error types
            raise ParameterError(
                "objects", f"objects file {uri} is not a vector file that can be read "
                           f"(GeoPackage, GeoJSON, Shapefile, GeoParquet...): "
                           f"{type(exc).__name__}: {str(exc)[:300]}") from None


def _checked(frame, uri: str, id_field: str):
    import shapely

    if frame.crs is None:
        raise ParameterError("objects", f"objects file {uri} has no CRS: polygons are "
                                        f"reprojected to each scene's CRS, so theirs must "
                                        f"be known (e.g. ogr2ogr -a_srs EPSG:4326 ...)")
    if id_field not in frame.columns or id_field == frame.geometry.name:
        fields = [c for c in frame.columns if c != frame.geometry.name]
        raise ParameterError("object_id", f"objects file {uri} has no field {id_field!r}; "
                                          f"its fields: {', '.join(map(str, fields)) or 'none'}")
    ids = frame[id_field]
    if ids.isna().any():
        first = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise ParameterError("object_id", f"objects file {uri}: feature {first} has no "
                                          f"{id_field} value; every polygon needs an id")
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        values = ids[duplicated].unique()[:5]
        raise ParameterError(
            "object_id", f"objects file {uri}: {int(duplicated.sum())} polygons share "
                         f"{id_field} values (e.g. {', '.join(map(repr, values))}); ids "
                         f"must be unique: choose another field")
    geometry = frame.geometry.to_numpy()
    problems = [
        (shapely.is_missing(geometry), "no geometry"),
        (shapely.is_empty(geometry), "an empty geometry"),
        (~np.isin(shapely.get_type_id(geometry), (shapely.GeometryType.POLYGON,
                                                   shapely.GeometryType.MULTIPOLYGON)),
         "a geometry that is not a polygon"),
        (~shapely.is_valid(geometry), "an invalid geometry"),
    ]
    for bad, what in problems:
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            reason = ""
            if what == "an invalid geometry":
                reason = f" ({shapely.is_valid_reason(geometry[k])}; shapely.make_valid " \
                         f"or ogr2ogr -makevalid repairs it)"
            raise ParameterError(
                "objects", f"objects file {uri}: {int(bad.sum())} feature(s) with {what}, "
                           f"first {id_field}={ids.iloc[k]!r}{reason}")
    return frame.reset_index(drop=True)


def load_objects(uri: str, id_field: str):
    """(description, GeoDataFrame) of the polygons, from one read of the file.

    Raises:
      ParameterError: as :func:`read_objects`.
    """
    parts = _read_parts(uri)
    frame = _checked(_read_frame(uri, parts), uri, id_field)
    found = storage.match(uri)
    fingerprint = found[0][1] if found else ""
    digest = hashlib.sha256()
    for name, data in parts:
        digest.update(os.path.splitext(name)[1].lower().encode() + b"\0" + data)
    ref = ObjectsRef(uri, id_field, fingerprint, digest.hexdigest()[:16], len(frame),
                     frame.crs.to_string())
    return ref, frame


def describe_objects(uri: str, id_field: str) -> ObjectsRef:
    """Reads and checks the polygons, and describes them for the parameters.

    Raises:
      ParameterError: as :func:`read_objects`.
    """
    return load_objects(uri, id_field)[0]


def write_geoparquet(frame, uri: str) -> None:
    """Writes a GeoDataFrame as GeoParquet to a local path or ``gs://`` URI (whole
    file or nothing)."""
    with tempfile.TemporaryDirectory(prefix="glcm-parquet-") as folder:
        path = os.path.join(folder, "objects.parquet")
        frame.to_parquet(path, index=False)
        storage.upload(path, uri)
