# The locked TensorFlow stack (requirements/exporter.lock) on top of the Python base: the shared lower
# layers of the exporter and model-server stand-in images, so TensorFlow is installed and stored once.
# Built by tools/images/images.py only; the product's Dockerfiles work without it (they install the lock).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PIP_INSTALL_ARGS=""
RUN --mount=type=bind,target=/context \
    PIP_NO_CACHE_DIR=1 pip install ${PIP_INSTALL_ARGS} --require-hashes -r /context/requirements/exporter.lock
