# mockstream as a container / CI service. Build from a clean checkout with one command:
#   docker build -t mockstream .
# BASE_IMAGE is any image with python3 (3.10+) and its venv module; the official slim image by default.
ARG BASE_IMAGE=python:3.12-slim

# ---- build: install the package and its dependencies (wheels from PyPI) into a virtual environment
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mockstream ./mockstream
RUN python3 -m venv /opt/mockstream \
    && /opt/mockstream/bin/pip install --no-cache-dir . \
    && /opt/mockstream/bin/pip uninstall --yes pip setuptools \
    && /opt/mockstream/bin/mockstream --version

# ---- run: the same base, the virtual environment and a user that is not root (numeric, so Kubernetes
# runAsNonRoot can check it); no compilers, no pip inside the environment
FROM ${BASE_IMAGE}
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent mockstream \
    && mkdir /scenarios
COPY --from=build /opt/mockstream /opt/mockstream
ENV PATH=/opt/mockstream/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MOCKSTREAM_SCENARIOS=/scenarios
USER 10001:10001
EXPOSE 8000
# `mockstream health` reads MOCKSTREAM_PORT, so a changed port is still checked on the right one.
HEALTHCHECK --interval=2s --timeout=2s --start-period=20s --retries=3 CMD ["mockstream", "health"]
ENTRYPOINT ["mockstream"]
CMD ["serve", "--host", "0.0.0.0"]
