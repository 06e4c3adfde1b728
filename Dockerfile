# syntax=docker/dockerfile:1
# The Stressgrid image: one image for the coordinator and the generators.
#
#   docker build -t stressgrid:0.1.0 .
#
# Stage "build" compiles the Cython extensions into a wheel (and collects
# wheels of every dependency); the runtime stage installs those wheels
# without a compiler, and runs as the unprivileged user stressgrid (10001).
# The role is the command:
#   python -m coordinator_app          (the default: management 8000, generators 9696)
#   python -m stressgrid.generator     (env COORDINATOR_URL, GENERATOR_ID)
# deploy/kubernetes/ runs it on a cluster; docs/kubernetes.md explains.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# A C compiler, Python's headers (the base image's own are in /usr/local/include;
# python3-dev is the package the install guide names), libnghttp2's headers
# for the HTTP/2 core and llhttp's sources for the HTTP/1 core (compiled in).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc python3-dev libnghttp2-dev node-llhttp \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cython and setuptools come from pyproject.toml's build requirements.
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
# libnghttp2-14: the library the HTTP/2 core links against.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnghttp2-14 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 stressgrid \
    && useradd --system --uid 10001 --gid stressgrid --home-dir /var/lib/stressgrid \
        --shell /usr/sbin/nologin stressgrid \
    && install -d -o stressgrid -g stressgrid -m 0750 /var/lib/stressgrid
# Only the wheels, and no index: the image gets exactly what the build stage built.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --disable-pip-version-check --no-index --find-links=/wheels stressgrid
COPY --chmod=0755 deploy/container/stressgrid-probe /usr/local/bin/stressgrid-probe
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STRESSGRID_DATA_DIR=/var/lib/stressgrid
WORKDIR /var/lib/stressgrid
EXPOSE 8000 9696
USER 10001:10001
CMD ["python", "-m", "coordinator_app", "--bind", "0.0.0.0"]
