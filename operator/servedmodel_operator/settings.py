"""Operator settings from SERVEDMODEL_* environment variables, read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


def _env_list(name: str) -> tuple[str, ...]:
    """A comma-separated list; blanks around entries and empty entries are dropped."""
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name) or default
    if raw not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    workers: int = 4  # reconciles running at once (each for a different ServedModel)
    resync_seconds: int = 300  # level-based safety net: every ServedModel is reconciled at least this often
    retry_min_seconds: float = 1.0  # backoff after a transient failure, doubling up to the maximum
    retry_max_seconds: float = 300.0
    request_timeout_seconds: int = 30
    watch_server_timeout_seconds: int = 300  # the API server ends each watch; kopf then resumes it
    # Where the model servers' REST APIs are reached; {service}, {namespace} and {port} are filled in.
    model_server_url: str = "http://{service}.{namespace}.svc:{port}"
    # Who may run what (policy.py): image prefixes and ServiceAccount names a ServedModel may use; empty: any.
    allowed_image_prefixes: tuple[str, ...] = ()
    allowed_service_accounts: tuple[str, ...] = ()
    # Leader election (--leader-elect), client-go's defaults: a standby takes over at most
    # lease_duration after the leader's last renewal; a leader that cannot renew for renew_deadline exits.
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0
    # How storage.image reaches the pods: auto (detected, model_image.py), modelcar or imageVolume.
    model_image_mount: str = "auto"

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            workers=_env_int("SERVEDMODEL_WORKERS", cls.workers),
            resync_seconds=_env_int("SERVEDMODEL_RESYNC_SECONDS", cls.resync_seconds),
            request_timeout_seconds=_env_int(
                "SERVEDMODEL_REQUEST_TIMEOUT_SECONDS", cls.request_timeout_seconds
            ),
            watch_server_timeout_seconds=_env_int(
                "SERVEDMODEL_WATCH_TIMEOUT_SECONDS", cls.watch_server_timeout_seconds
            ),
            model_server_url=os.environ.get("SERVEDMODEL_MODEL_SERVER_URL") or cls.model_server_url,
            allowed_image_prefixes=_env_list("SERVEDMODEL_ALLOWED_IMAGE_PREFIXES"),
            allowed_service_accounts=_env_list("SERVEDMODEL_ALLOWED_SERVICE_ACCOUNTS"),
            lease_duration_seconds=_env_float(
                "SERVEDMODEL_LEASE_DURATION_SECONDS", cls.lease_duration_seconds
            ),
            renew_deadline_seconds=_env_float(
                "SERVEDMODEL_RENEW_DEADLINE_SECONDS", cls.renew_deadline_seconds
            ),
            retry_period_seconds=_env_float("SERVEDMODEL_RETRY_PERIOD_SECONDS", cls.retry_period_seconds),
            model_image_mount=_env_choice(
                "SERVEDMODEL_MODEL_IMAGE_MOUNT", cls.model_image_mount, ("auto", "modelcar", "imageVolume")
            ),
        )
