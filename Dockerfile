# ember's one image: node agents (`ember start ...`, the entrypoint) and the operator
# (`ember-operator`, via `command: ["ember-operator"]`).
#
# Built offline from a local wheelhouse; `make containers-image` does all of it:
#   python tools/containers/build_image.py   # fills .tools/containers/wheelhouse/, then runs
#   docker build --network none --build-arg BASE_IMAGE=ember-base:bookworm -t ember:test .
# BASE_IMAGE needs CPython 3.11 with venv (the wheelhouse holds cp311 manylinux wheels):
# python:3.11-slim where a registry is reachable, or the debootstrap-made ember-base:bookworm.
#
# Runs as uid/gid 65532 and works with a read-only root filesystem as long as /tmp (TMPDIR:
# sessions, sockets, spill files) is writable, e.g. an emptyDir; the object store lives in
# /dev/shm, so give the container a large enough one (`--shm-size`, or a memory emptyDir).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Dependencies first: this layer is rebuilt only when the dependency wheels change.
COPY .tools/containers/wheelhouse/deps/ /wheels/deps/
RUN python3 -m venv /opt/ember \
 && /opt/ember/bin/python -m pip install --no-cache-dir --no-index --disable-pip-version-check \
        --find-links /wheels/deps -r /wheels/deps/requirements.txt
COPY .tools/containers/wheelhouse/ember/ /wheels/ember/
RUN set -- /wheels/ember/ember-*.whl \
 && /opt/ember/bin/python -m pip install --no-cache-dir --no-index --disable-pip-version-check \
        --find-links /wheels/deps "$1[operator]" \
 && /opt/ember/bin/python -m pip check \
 && /opt/ember/bin/ember --help >/dev/null \
 && /opt/ember/bin/ember-operator --help >/dev/null

FROM ${BASE_IMAGE}
RUN groupadd --gid 65532 ember \
 && useradd --uid 65532 --gid 65532 --home-dir /home/ember --create-home --shell /usr/sbin/nologin ember
COPY --from=build /opt/ember /opt/ember
ENV PATH=/opt/ember/bin:$PATH \
    HOME=/home/ember \
    TMPDIR=/tmp \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
WORKDIR /home/ember
# gRPC (head), Prometheus metrics and /healthz, dashboard (reserved)
EXPOSE 6380 8080 8265
ENTRYPOINT ["ember"]
CMD ["--help"]
