"""Package definition for glcm-texture: GLCM (Haralick) texture at scale."""

import os
import re

from setuptools import find_packages, setup

# The version is written once, in glcm/__init__.py.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "glcm", "__init__.py")) as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)

TENSORFLOW_VERSION = "2.21.0"
# TensorFlow: on Linux x86-64 the CPU-only wheel (no CUDA libraries downloaded on a
# laptop or CI). The Dataflow GPU worker image (Dockerfile: the Beam SDK image plus
# tensorflow[and-cuda]) installs this package with GLCM_TENSORFLOW=gpu, so that it
# depends on the `tensorflow` wheel whose CUDA extra it installs.
if os.environ.get("GLCM_TENSORFLOW") == "gpu":
    TENSORFLOW = [f"tensorflow=={TENSORFLOW_VERSION}"]
else:
    TENSORFLOW = [
        f'tensorflow-cpu=={TENSORFLOW_VERSION}; sys_platform == "linux" and '
        f'platform_machine == "x86_64"',
        f'tensorflow=={TENSORFLOW_VERSION}; sys_platform != "linux" or '
        f'platform_machine != "x86_64"',
    ]

XARRAY = [
    "xarray==2026.9.0",
    "dask[distributed]==2026.8.0",
    "rioxarray==0.19.0",
    "zarr==3.1.6",
]

setup(
    name="glcm-texture",
    version=VERSION,
    description="Exact, fast GLCM/Haralick texture features for large raster collections",
    python_requires=">=3.11",  # numpy 2.4, xarray 2026 and zarr 3 need 3.11
    packages=find_packages(include=["glcm", "glcm.*", "transforms", "transforms.*",
                                    "pipeline", "pipeline.*"]),
    install_requires=TENSORFLOW + [
        "keras==3.15.1",
        "numpy==2.4.6",
        "apache-beam[gcp]==2.77.0",
        "rasterio==1.4.4",
        "google-cloud-storage==3.17.1",
        # the default codec's COG (transforms/io/cog_writer.py); apache-beam needs it too
        "zstandard==0.25.0",
        # --mode objects: polygons read (pyogrio, GeoParquet via pyarrow), reprojected
        # and indexed (shapely's STRtree), per-scene tables written as GeoParquet.
        "geopandas==1.2.0",
        "shapely==2.2.0",
        "pyogrio==0.13.0",
    ],
    extras_require={
        # glcm.xarray: xarray / Dask in, xarray out; `import glcm` needs none of it.
        "xarray": XARRAY,
        "test": [
            "pytest==9.2.0",
            "scikit-image==0.26.0",
            "mahotas==1.4.19",
            "jax[cpu]==0.10.2",
            "gcp-storage-emulator==2026.7.19",
        ] + XARRAY,
    },
)
