# Dataflow worker image (also the Flex Template launcher image) for glcm-texture.
#
# GPU when the worker has one, CPU otherwise: the TensorFlow GPU build falls back to
# the CPU by itself. Built by ./run_dataflow.sh with Cloud Build; see README "Cloud".
#
# Versions: they must match setup.py (a test reads this file).
#   TensorFlow 2.21.0 (GPU base image, Python 3.11)
#   Apache Beam 2.77.0 (SDK harness copied from the Beam SDK image of the same version
#   and Python: the documented way to build a custom container)
ARG TENSORFLOW_VERSION=2.21.0
ARG BEAM_VERSION=2.77.0
ARG PYTHON_VERSION=3.11
ARG PYTHON_TAG=311

FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam_sdk
FROM gcr.io/dataflow-templates-base/python${PYTHON_TAG}-template-launcher-base:latest AS launcher

FROM tensorflow/tensorflow:${TENSORFLOW_VERSION}-gpu
ARG BEAM_VERSION
ARG PYTHON_VERSION

# The Beam SDK harness entrypoint, and the Flex Template launcher.
COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam
COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

# The worker's Python must be the SDK image's.
RUN python3 -c "import sys; want = tuple(map(int, '${PYTHON_VERSION}'.split('.'))); \
assert sys.version_info[:2] == want, f'base image has Python {sys.version}, need ${PYTHON_VERSION}'"

WORKDIR /template
COPY setup.py README.md ./
COPY glcm ./glcm
COPY transforms ./transforms
COPY pipeline ./pipeline
# GLCM_TENSORFLOW=gpu: depend on `tensorflow` (the base image's GPU build), not the
# CPU wheel a laptop gets.
RUN GLCM_TENSORFLOW=gpu pip install --no-cache-dir "apache-beam[gcp]==${BEAM_VERSION}" . \
 && python3 -c "import tensorflow as tf, apache_beam, glcm; \
assert tf.__version__ == '2.21.0', tf.__version__; \
assert apache_beam.__version__ == '${BEAM_VERSION}', apache_beam.__version__"

# Flex Template: the launcher runs the same entry point as `python -m pipeline`.
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipeline/__main__.py \
    KERAS_BACKEND=tensorflow \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TF_FORCE_GPU_ALLOW_GROWTH=true

ENTRYPOINT ["/opt/apache/beam/boot"]
