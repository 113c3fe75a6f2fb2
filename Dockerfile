# Dataflow worker image (also the Flex Template launcher image) for glcm-texture.
#
# Base: the Apache Beam SDK image of the pinned Beam and Python versions (its SDK
# harness, its Python), plus TensorFlow with the NVIDIA CUDA and cuDNN wheels that
# match its build (tensorflow[and-cuda]). The TensorFlow GPU images are not used:
# they carry CUDA 12.3 / cuDNN 8.9 system libraries, while TensorFlow 2.18 and later
# need cuDNN 9, so TensorFlow would skip the GPU and quietly run on the CPU.
# dataflow/check_gpu_image.py fails the build when versions do not match.
# Built by ./run_dataflow.sh with Cloud Build (dataflow/cloudbuild.yaml); see
# docs/cloud.md.
#
# Versions: they must match setup.py (a test reads this file). Every package is
# installed at the exact version of dataflow/image-constraints.txt (written by
# dataflow/lock_image.py), so rebuilding a commit gives the same image.
ARG TENSORFLOW_VERSION=2.21.0
ARG BEAM_VERSION=2.77.0
ARG PYTHON_VERSION=3.11
ARG PYTHON_TAG=311
# Google's Flex Template launcher base image. ./run_dataflow.sh looks up its newest
# release and passes it by digest (--build-arg LAUNCHER_IMAGE=...@sha256:...); this
# default, for builds by hand, is a release tag of the form Google's own samples use
# in 2026 (flex_templates_base_image_release_YYYYMMDD_RCNN). The bare YYYYMMDD_RC00
# form is 2023's: a tag that does not exist stops the build at this FROM.
ARG LAUNCHER_IMAGE=gcr.io/dataflow-templates-base/python${PYTHON_TAG}-template-launcher-base:flex_templates_base_image_release_20260112_RC00

FROM ${LAUNCHER_IMAGE} AS launcher

FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}
ARG TENSORFLOW_VERSION
ARG BEAM_VERSION
ARG PYTHON_VERSION

# The Flex Template launcher (the SDK harness entrypoint comes with the base image).
COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

WORKDIR /template
COPY setup.py README.md ./
COPY glcm ./glcm
COPY transforms ./transforms
COPY pipeline ./pipeline
COPY dataflow/check_gpu_image.py dataflow/image-constraints.txt ./dataflow/

# Dataflow mounts the host's NVIDIA driver into the container under /usr/local/nvidia
# (lib64: libcuda.so.1; bin: nvidia-smi). tensorflow[and-cuda] brings CUDA and cuDNN
# but never the driver, and the Beam SDK image (unlike NVIDIA's CUDA images) does not
# put that folder on the loader path: without this TensorFlow finds no GPU.
ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}} \
    PATH=/usr/local/nvidia/bin:${PATH} \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# GLCM_TENSORFLOW=gpu: depend on `tensorflow`, whose [and-cuda] extra brings the
# NVIDIA libraries, not on the CPU-only wheel a laptop gets. Beam stays the base
# image's version (pinned again so pip cannot move it). pip check: no conflict left.
RUN GLCM_TENSORFLOW=gpu pip install --no-cache-dir -c dataflow/image-constraints.txt \
      "apache-beam[gcp]==${BEAM_VERSION}" "tensorflow[and-cuda]==${TENSORFLOW_VERSION}" . \
 && pip check \
 && python3 dataflow/check_gpu_image.py --tensorflow "${TENSORFLOW_VERSION}" \
      --beam "${BEAM_VERSION}" --python "${PYTHON_VERSION}"

# Process start is where settings of this kind belong (the package changes none):
# the pipeline's TensorFlow uses its caching CPU allocator (fresh pages for every
# tile's buffers cost CPU, docs/performance.md); GDAL uses the worker VM's
# service account for gs:// reads (inside a container it may not detect the VM).
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipeline/__main__.py \
    KERAS_BACKEND=tensorflow \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    TF_CPU_ALLOCATOR_USE_BFC=true \
    CPL_MACHINE_IS_GCE=YES

ENTRYPOINT ["/opt/apache/beam/boot"]
