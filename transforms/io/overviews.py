"""GDAL's overview pass without holding Python's global interpreter lock.

rasterio (1.4) holds the GIL through ``build_overviews``: while GDAL averages a
mosaic's overviews (about 0.5-1 s for a 3072² scene of 8 features, 9-10 s for a
10980² one) no other Python thread of the process runs, not Beam's, not the one
feeding the texture model, not the COG encoder's (a thread counting in a loop ran
25-45 times slower meanwhile; docs/performance-history.md). :func:`build_overviews`
calls the same GDAL, the library rasterio loaded, through :mod:`ctypes`, which lets
the GIL go for the call; where that library cannot be found (not Linux, or a GDAL
whose version is not rasterio's) it falls back to rasterio.

The call is GDAL's ``GDALBuildOverviews`` on the dataset opened for update, as
rasterio makes it; the thread's GDAL configuration (``rasterio.Env``) applies, and
GDAL's messages go to a quiet handler for its duration (rasterio's own handler calls
into Python), the last error being raised if it fails.
"""

import ctypes
import functools
from typing import Optional, Sequence

import rasterio
import rasterio.errors
from rasterio.enums import Resampling

__all__ = ["build_overviews", "gdal_library"]

# GDALOpenEx's flags: open for update, a raster, errors reported.
_GDAL_OF_UPDATE, _GDAL_OF_RASTER, _GDAL_OF_VERBOSE_ERROR = 0x01, 0x02, 0x40
_CE_NONE = 0
# rasterio's resampling methods by GDAL's overview names (those it names otherwise).
_GDAL_NAMES = {Resampling.cubic_spline: "CUBICSPLINE"}


@functools.lru_cache(maxsize=1)
def gdal_library() -> Optional[ctypes.CDLL]:
    """The GDAL library rasterio uses, with the prototypes :func:`build_overviews`
    needs; None where it is not found in this process's mapped files
    (``/proc/self/maps``) or reports another version than rasterio's."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps
                            if "libgdal" in line.rsplit("/", 1)[-1]})
    except OSError:  # not Linux
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same library, not a copy
            lib.GDALVersionInfo.restype = ctypes.c_char_p
            lib.GDALVersionInfo.argtypes = [ctypes.c_char_p]
            version = lib.GDALVersionInfo(b"RELEASE_NAME").decode()
        except (OSError, AttributeError):
            continue
        if version != rasterio.__gdal_version__:
            continue
        lib.GDALOpenEx.restype = ctypes.c_void_p
        lib.GDALOpenEx.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_void_p,
                                   ctypes.c_void_p, ctypes.c_void_p]
        lib.GDALBuildOverviews.restype = ctypes.c_int
        lib.GDALBuildOverviews.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
            ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.POINTER(ctypes.c_int),
            ctypes.c_void_p, ctypes.c_void_p]
        lib.GDALClose.restype = ctypes.c_int
        lib.GDALClose.argtypes = [ctypes.c_void_p]
        lib.CPLPushErrorHandler.restype = None
        lib.CPLPushErrorHandler.argtypes = [ctypes.c_void_p]
        lib.CPLPopErrorHandler.restype = None
        lib.CPLPopErrorHandler.argtypes = []
        lib.CPLErrorReset.restype = None
        lib.CPLErrorReset.argtypes = []
        lib.CPLGetLastErrorMsg.restype = ctypes.c_char_p
        lib.CPLGetLastErrorMsg.argtypes = []
        return lib
    return None


def build_overviews(path: str, factors: Sequence[int], resampling: Resampling) -> None:
    """Builds the overviews of ``factors`` of the raster at ``path`` (for a VRT, in a
    ``.ovr`` file beside it), averaged or resampled as ``resampling`` says, as
    ``rasterio.open(path, "r+").build_overviews(factors, resampling)`` does, but
    with Python's GIL released for GDAL's work where the library is found
    (:func:`gdal_library`).

    Raises:
      rasterio.errors.RasterioIOError: GDAL could not open ``path`` for update or
        build the overviews (GDAL's message quoted).
    """
    lib = gdal_library()
    if lib is None:
        with rasterio.open(path, "r+") as dst:
            dst.build_overviews(list(factors), resampling)
        return
    levels = (ctypes.c_int * len(factors))(*factors)
    lib.CPLPushErrorHandler(ctypes.cast(lib.CPLQuietErrorHandler, ctypes.c_void_p))
    try:
        lib.CPLErrorReset()
        dataset = lib.GDALOpenEx(path.encode(), _GDAL_OF_UPDATE | _GDAL_OF_RASTER
                                 | _GDAL_OF_VERBOSE_ERROR, None, None, None)
        if not dataset:
            raise rasterio.errors.RasterioIOError(
                f"{path}: GDAL could not open it to build overviews: "
                f"{_last_error(lib)}")
        try:
            method = _GDAL_NAMES.get(resampling, resampling.name.upper())
            built = lib.GDALBuildOverviews(dataset, method.encode(),
                                           len(factors), levels, 0, None, None, None)
        finally:
            closed = lib.GDALClose(dataset)  # writes what is left of the overviews
        if built != _CE_NONE or closed != _CE_NONE:
            raise rasterio.errors.RasterioIOError(
                f"{path}: GDAL could not build its overviews {list(factors)}: "
                f"{_last_error(lib)}")
    finally:
        lib.CPLPopErrorHandler()


def _last_error(lib) -> str:
    message = lib.CPLGetLastErrorMsg()
    return message.decode(errors="replace") if message else "no message"
