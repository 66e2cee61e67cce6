"""Settings from `JOBYARD_*` environment variables (URLs, secrets, paths).

Created once per process (in the API lifespan, at worker or beat start), never at import.
An unknown `JOBYARD_*` variable is an error: a misspelt setting must not be ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from jobyard.core.errors import ConfigError, format_validation_error
from jobyard.core.tls import broker_ssl_options

ENV_PREFIX = "JOBYARD_"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every environment setting jobyard reads."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Broker and store. `rediss://` verifies certificates unless `ssl_cert_reqs=none`."""
    config: Path = Path("jobyard.yaml")
    """Path of the queues/schedules/limits file."""
    job_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated Python modules that register jobs (imported at start)."""
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Comma-separated bearer tokens; when set, every endpoint but health needs one."""
    admin_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Comma-separated tokens that write endpoints require (when set)."""
    api_url: str = "http://127.0.0.1:8000"
    """Where client commands (`jobyard enqueue`, `status`, ...) reach the API."""
    api_token: SecretStr | None = None
    """Bearer token client commands send."""
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    api_header_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10
    """Time a client has to send a request's line and headers, from the connection or
    from the first byte of its next request; the API then closes the connection."""
    api_body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30
    """Time a client has to send a request's whole body, from the end of its headers; the
    API then answers 408 (or closes the connection once an answer has started)."""
    api_keepalive_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 5
    """How long the API keeps an idle connection open between requests."""
    webhook_secret: SecretStr | None = None
    """HMAC-SHA256 key for `webhook.deliver` signatures."""
    webhook_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10
    smtp_host: str = "127.0.0.1"
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_from: str = "jobyard@localhost"
    smtp_timeout_s: Annotated[float, Field(gt=0, le=300)] = 30
    export_dir: Path = Path("exports")
    """Where `report.export` writes CSV files (and the only place it reads sources from)."""
    heartbeat_dir: Path = Path("/tmp/jobyard")  # noqa: S108 - default for local runs
    """Where workers write the heartbeat file `jobyard worker --check` reads."""
    heartbeat_interval_s: Annotated[float, Field(gt=0, le=300)] = 5
    heartbeat_max_age_s: Annotated[float, Field(gt=0, le=3600)] = 30
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    worker_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9808
    """Port of a worker's `/metrics` (0 disables it)."""
    beat_metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9809
    """Port of beat's `/metrics` (0 disables it)."""
    metrics_host: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes pods from outside
    """Address the worker and beat `/metrics` servers listen on."""

    @field_validator("job_modules", "api_tokens", "admin_tokens", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        broker_ssl_options(value)  # raises ValueError naming a bad ssl_cert_reqs
        return value


def known_env_names() -> set[str]:
    return {ENV_PREFIX + name.upper() for name in Settings.model_fields}


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build :class:`Settings`; raise :class:`ConfigError` naming the variable."""
    env = dict(os.environ if environ is None else environ)
    known = known_env_names()
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise ConfigError(
            f"unknown environment variable(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    values = {k[len(ENV_PREFIX) :].lower(): v for k, v in env.items() if k in known}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        msg = format_validation_error(exc, "environment")
        for name in Settings.model_fields:
            msg = msg.replace(f"environment: {name}:", f"environment: {ENV_PREFIX}{name.upper()}:")
        raise ConfigError(msg) from exc
