# The scoring service on NVIDIA GPUs: the CUDA 13 runtime and cuDNN 9 from NVIDIA's base image,
# onnxruntime-gpu (the `gpu` extra) on top, whose CUDA provider links libcudart.so.13 and
# libcublasLt.so.13 (`make check-images` reads them from the locked wheel). The node needs an NVIDIA
# driver for CUDA 13 (580 or later) and the device plugin (docs/deploy-aks.md). From the repository root:
#   docker build -f docker/scoring-gpu.Dockerfile -t visiondock/scoring-gpu:0.1.0 .
# Every Python package comes from docker/requirements/scoring-gpu.txt, pinned with hashes (make locks).

FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu22.04 AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 DEBIAN_FRONTEND=noninteractive
# Build stage only: Ubuntu's python3.11 at the patch level of the base image's release (see below).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY docker/requirements/build.txt docker/requirements/scoring-gpu.txt /tmp/requirements/
RUN python3.11 -m venv /opt/visiondock \
    && /opt/visiondock/bin/pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements/build.txt \
    && /opt/visiondock/bin/pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements/scoring-gpu.txt
COPY pyproject.toml README.md ./
COPY visiondock ./visiondock
COPY services ./services
RUN /opt/visiondock/bin/pip install --no-cache-dir --no-deps --no-build-isolation .

FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive
# Ubuntu's python3.11 (the interpreter the venv links to), at the version the base image's release
# carries; the CUDA base pins the OS release, security updates move the patch level.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 visiondock \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/visiondock --no-create-home visiondock \
    && mkdir -p /var/lib/visiondock && chown 10001:10001 /var/lib/visiondock
COPY --from=build /opt/visiondock /opt/visiondock
ENV PATH=/opt/visiondock/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VISIONDOCK_HOME=/var/lib/visiondock \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /var/lib/visiondock
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["python", "-m", "services.scoring", "--host", "0.0.0.0", "--port", "8080"]
