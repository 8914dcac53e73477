# The annotation and registry services (one image: `python -m services.annotation` or
# `python -m services.registry`), also the storage provisioning hook and the `visiondock` command line
# (the chart's purge-captures CronJob runs `visiondock purge-captures`; `visiondock fsck` runs here too).
# From the repository root:
#   docker build -f docker/api.Dockerfile -t visiondock/api:0.1.0 .
# Every Python package comes from docker/requirements/api.txt, pinned with hashes (make locks).

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY docker/requirements/build.txt docker/requirements/api.txt /tmp/requirements/
RUN python -m venv /opt/visiondock \
    && /opt/visiondock/bin/pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements/build.txt \
    && /opt/visiondock/bin/pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements/api.txt
COPY pyproject.toml README.md ./
COPY visiondock ./visiondock
COPY services ./services
COPY cli ./cli
RUN /opt/visiondock/bin/pip install --no-cache-dir --no-deps --no-build-isolation .

FROM python:3.11.14-slim-bookworm
RUN groupadd --system --gid 10001 visiondock \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/visiondock --no-create-home visiondock \
    && mkdir -p /var/lib/visiondock && chown 10001:10001 /var/lib/visiondock
COPY --from=build /opt/visiondock /opt/visiondock
ENV PATH=/opt/visiondock/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VISIONDOCK_HOME=/var/lib/visiondock
WORKDIR /var/lib/visiondock
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["python", "-m", "services.registry", "--host", "0.0.0.0", "--port", "8080"]
