# The certmint operator image.
#
#   docker build -t certmint-operator:0.1.0 .
#
# BASE_IMAGE is any image with Python 3.11+ and its venv module (python:3.11-slim, or a
# Debian with python3 and python3-venv). Both stages use it, so the virtualenv built in
# the first stage finds the same interpreter in the second.
# PIP_OPTIONS passes options to every pip install, e.g. an internal index. For an offline
# build, put the wheels in .wheelhouse/ in the build context (the stage copies its files,
# if any, beside the lock in /src/deps) and pass --no-index --find-links=/src/deps.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_OPTIONS=""
# Builds the certmint wheel (pyproject.toml asks for setuptools>=77); never reaches the final image.
ARG SETUPTOOLS_VERSION=80.9.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# The lock, and the wheels of an offline build when .wheelhouse/ exists (the pattern may match nothing).
COPY operator/requirements.lock .wheelhous[e] /src/deps/
# Dependencies first: this layer is reused as long as they do not change.
RUN python3 -m venv /opt/certmint \
 && /opt/certmint/bin/pip install $PIP_OPTIONS --no-deps -r /src/deps/requirements.lock \
 && /opt/certmint/bin/pip install $PIP_OPTIONS "setuptools==${SETUPTOOLS_VERSION}"
COPY pyproject.toml README.md /src/
COPY operator /src/operator
# Install certmint itself, prove the pinned set is complete, then drop the installers.
RUN /opt/certmint/bin/pip install $PIP_OPTIONS --no-deps --no-build-isolation /src \
 && /opt/certmint/bin/pip check \
 && /opt/certmint/bin/pip uninstall --yes setuptools pip \
 && /opt/certmint/bin/certmint-operator --version

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="certmint" \
      org.opencontainers.image.description="Kubernetes operator for private CAs and short-lived workload certificates" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/certmint /opt/certmint
# No .pyc writes at run time (the root filesystem is read-only in the chart; pip compiled them at build time).
# USER: kopf derives an identity from the login name (getpass.getuser), which fails for a UID without an
# /etc/passwd entry, such as 65532 here or the arbitrary UIDs some platforms assign; the variable answers first.
ENV PATH=/opt/certmint/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    USER=certmint
# Non-root, numeric so that Kubernetes can verify runAsNonRoot without an /etc/passwd entry.
USER 65532:65532
# /metrics, /healthz (liveness) and /readyz (readiness).
EXPOSE 8080
ENTRYPOINT ["certmint-operator"]
