# Rotor's container image. Two stages: `build` installs Rotor and its pinned dependencies into a
# virtual environment; the final stage copies only that environment onto the same slim base.
# No compiler is needed (every dependency installs from a wheel) and none is in the final image.
# Build: make image   (or: docker build --build-arg VERSION=$(rotor version | cut -d' ' -f2) .)
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/rotor
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
# Rotor as a wheel, then it and its dependencies at the versions CI tested (constraints.txt),
# wheels only: a dependency that would need a compiler fails the build instead of pulling one in.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/rotor/bin/pip install --only-binary=:all: -c constraints.txt /wheels/rotor-*.whl \
 && /opt/rotor/bin/pip uninstall -y pip \
 && rm -rf /wheels

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="rotor" \
      org.opencontainers.image.description="Delivers secrets from Vault/OpenBao into Kubernetes workloads and rotates them without downtime" \
      org.opencontainers.image.source="https://github.com/rotor-dev/rotor" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/rotor/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/rotor /opt/rotor
# A numeric non-root user (no passwd entry needed), so runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["rotor"]
CMD ["run"]
