"""Settings shared by every service, read from `VISIONDOCK_*` environment variables.

The defaults are the embedded, single-machine setup: blobs as files and documents
in SQLite under one home directory, and a local-only API key. Production sets the
Azure backends and real keys; it refuses to start with the local key.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Marked in its own name: a key anybody can read in the source is for a laptop only.
LOCAL_DEV_API_KEY = "local-dev-only-insecure-key"

DEFAULT_PORTS = {"annotation": 8701, "registry": 8702, "scoring": 8703}
MIN_RUN_KEY_SECRET_LENGTH = 32


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may use: its CPU affinity, capped by a cgroup CPU quota (a pod's limit),
    which `os.cpu_count()` and torch's default thread count ignore."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def default_home() -> Path:
    return Path.home() / ".visiondock"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VISIONDOCK_", extra="ignore")

    environment: Literal["local", "production"] = "local"
    home: Path = Field(default_factory=default_home)

    # Blob storage: images and model artifacts.
    blob_backend: Literal["local", "azure"] = "local"
    blob_root: Path | None = None  # local backend; defaults to <home>/blobs
    azure_storage_connection_string: SecretStr | None = None
    # Without a connection string: the account's blob endpoint (https://<account>.blob.core.windows.net),
    # signed in with DefaultAzureCredential (workload identity on AKS, `az login` on a workstation).
    azure_storage_account_url: str | None = None
    azure_storage_container: str = "visiondock"

    # Document storage: projects, labels, model versions, metrics.
    document_backend: Literal["sqlite", "cosmos"] = "sqlite"
    sqlite_path: Path | None = None  # defaults to <home>/documents.sqlite3
    cosmos_endpoint: str | None = None
    cosmos_key: SecretStr | None = None  # None: DefaultAzureCredential (workload identity)
    cosmos_database: str = "visiondock"
    cosmos_verify_tls: bool = True
    # Multi-region endpoint discovery; off for single-endpoint servers.
    cosmos_endpoint_discovery: bool = True

    # Comma-separated list of accepted plain API keys (admin keys, for local use).
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [LOCAL_DEV_API_KEY])
    # Named keys with roles, stored hashed (see visiondock.auth): `;`- or line-separated entries,
    # and/or a file of them (a mounted Kubernetes Secret).
    api_key_entries: str = ""
    api_keys_file: Path | None = None
    # The key this process presents when it calls another service.
    api_key: SecretStr = SecretStr(LOCAL_DEV_API_KEY)
    # Signs the key the registry gives each launched trainer (`train`, scoped to the run's project and model,
    # expiring at its deadline; visiondock.auth.RunKeys). The registry and the annotation service need the
    # same secret, as a value or a mounted file; without one, the registry launches no trainers.
    run_key_secret: SecretStr | None = None
    run_key_secret_file: Path | None = None
    # How long a run key holds when the trainer has no deadline of its own (a process beside the registry).
    run_key_lifetime_seconds: float = Field(default=24 * 3600.0, gt=0)

    # Full image decodes at once in one process (a small PNG can decode to hundreds of megabytes), and the
    # pixels the images of one scoring request may hold together (batches and skills).
    max_concurrent_decodes: int = Field(default=4, ge=1)
    max_request_pixels: int = Field(default=1_000_000_000, ge=1)

    # Population stability index above which production predictions are flagged as drifted
    # (below 0.1 is read as stable, 0.1 up to this as a moderate shift).
    drift_psi_threshold: float = Field(default=0.25, gt=0)

    annotation_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['annotation']}"
    registry_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['registry']}"
    scoring_url: str = f"http://127.0.0.1:{DEFAULT_PORTS['scoring']}"
    # The scoring service's address as the people and programs calling it reach it (an ingress, a public
    # host name), where that is not VISIONDOCK_SCORING_URL: the console's "Use this model" snippets show it.
    scoring_public_url: str | None = None

    # The trainer's on-disk cache of backbone features and exported frozen backbones
    # (a persistent volume in Kubernetes); defaults to <home>/feature-cache.
    trainer_cache_dir: Path | None = None
    # After each training run its least recently used files go until it is under this many GB (unset: no
    # cap) and its volume is at least 10 % free (services/trainer/cache_budget.py).
    trainer_cache_max_gb: float | None = Field(default=None, gt=0)
    # Whether the registry may start a run created with `launch: {"on": "local"}`: `local` spawns the trainer as a
    # process beside it (the default on one machine), `none` refuses. Unset: local unless production.
    training_launcher: Literal["local", "none"] | None = None
    # A cancelled run's local trainer gets this long to notice at its next epoch and stop by itself; then
    # the registry ends its process.
    training_cancel_grace_seconds: float = Field(default=60.0, ge=0)

    # Captured predictions (images people sent to the scoring service) are purged after this
    # many days by `visiondock purge-captures` (run it daily, e.g. as a Kubernetes CronJob).
    review_retention_days: float = Field(default=30.0, gt=0)

    # The registry marks a running training run `lost` after this long without a heartbeat.
    run_lost_after_seconds: float = Field(default=300.0, gt=0)

    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    # A second port serving only GET /metrics, without a key, for a Prometheus scraper (unset: none).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        # The keys a service accepts are checked where it starts (`accepted_keys_problem`): a trainer or a
        # command line accepts none, and a launched trainer is given only its run's key.
        if self.environment == "production" and self.api_key.get_secret_value() == LOCAL_DEV_API_KEY:
            raise ValueError("VISIONDOCK_API_KEY must be set to a real key in production")
        if self.blob_backend == "azure" and not (self.azure_storage_connection_string
                                                 or self.azure_storage_account_url):
            raise ValueError("VISIONDOCK_AZURE_STORAGE_CONNECTION_STRING (or VISIONDOCK_AZURE_STORAGE_ACCOUNT_URL "
                             "with an Azure identity) is required with blob_backend=azure")
        if self.document_backend == "cosmos" and self.cosmos_endpoint is None:
            raise ValueError("VISIONDOCK_COSMOS_ENDPOINT is required with cosmos (and VISIONDOCK_COSMOS_KEY, "
                             "unless the process has an Azure identity)")
        return self

    def accepted_keys_problem(self) -> str | None:
        """Why a service must not start with the keys it would accept (None: it may)."""
        if self.environment == "production" and (LOCAL_DEV_API_KEY in self.api_keys or not (
                self.api_keys or self.api_key_entries or self.api_keys_file)):
            return ("VISIONDOCK_API_KEYS must be set to real keys in production; the built-in local development "
                    "key is refused there")
        return None

    def run_key_secret_bytes(self) -> bytes | None:
        """The secret that signs run keys (VISIONDOCK_RUN_KEY_SECRET, else the file), or None."""
        if self.run_key_secret is not None and self.run_key_secret.get_secret_value().strip():
            text = self.run_key_secret.get_secret_value().strip()
        elif self.run_key_secret_file is not None:
            try:
                text = self.run_key_secret_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read VISIONDOCK_RUN_KEY_SECRET_FILE {self.run_key_secret_file}: "
                                 f"{exc.strerror}") from None
        else:
            return None
        if len(text) < MIN_RUN_KEY_SECRET_LENGTH:
            raise ValueError(f"the run key secret must be at least {MIN_RUN_KEY_SECRET_LENGTH} characters "
                             "(e.g. `openssl rand -base64 48`)")
        return text.encode()

    @property
    def resolved_scoring_public_url(self) -> str:
        return (self.scoring_public_url or self.scoring_url).rstrip("/")

    @property
    def resolved_blob_root(self) -> Path:
        return self.blob_root or self.home / "blobs"

    @property
    def resolved_sqlite_path(self) -> Path:
        return self.sqlite_path or self.home / "documents.sqlite3"

    @property
    def resolved_trainer_cache_dir(self) -> Path:
        return self.trainer_cache_dir or self.home / "feature-cache"

    @property
    def resolved_training_launcher(self) -> str:
        if self.training_launcher is not None:
            return self.training_launcher
        return "none" if self.environment == "production" else "local"

    @property
    def uses_local_key(self) -> bool:
        return LOCAL_DEV_API_KEY in self.api_keys

    @property
    def uses_azure(self) -> bool:
        return self.blob_backend == "azure" or self.document_backend == "cosmos"
