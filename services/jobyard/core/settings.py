"""Settings from `JOBYARD_*` environment variables (URLs, secrets, paths).

Created once per process (in the API lifespan, at worker or beat start), never at import.
An unknown `JOBYARD_*` variable is an error: a misspelt setting must not be ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from jobyard.core.errors import ConfigError, format_validation_error
from jobyard.core.tls import broker_ssl_options
from jobyard.core.webhook_secrets import default_secrets, read_secrets_file

ENV_PREFIX = "JOBYARD_"


MIN_TOKEN_CHARS = 16
"""The shortest API or admin token accepted (a guessable token is no token)."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _split_tokens(value: object) -> object:
    """Comma-separated tokens; a blank entry is an error, not something to skip."""
    if not isinstance(value, str):
        return value
    parts = [part.strip() for part in value.split(",")]
    if any(not part for part in parts):
        raise ValueError(
            "holds a blank entry (check for stray commas and spaces); give comma-separated "
            "tokens, or unset it"
        )
    return parts


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
    """Comma-separated bearer tokens for reads (at least 16 characters each)."""
    admin_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Comma-separated tokens for writes (and reads); at least 16 characters each."""
    api_auth: Literal["tokens", "none"] = "tokens"
    """`tokens`: the API needs a token for everything but the probes and metrics, and does
    not start without one configured. `none`: the API is open to anyone who reaches it
    (it says so in a warning at start); only with no tokens configured."""
    api_docs: bool = False
    """Serve `/docs`, `/redoc` and `/openapi.json` (without a token: the API's shape only)."""
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
    """HMAC-SHA256 key for `webhook.deliver` signatures of URLs that match no configured
    endpoint; `current,previous` (two, comma-separated) while rotating."""
    webhook_secrets_file: Path | None = None
    """JSON file of per-endpoint secrets: `{"<endpoint name>": ["current", "previous"]}`
    (see `webhooks.endpoints` in jobyard.yaml and docs/webhooks.md)."""
    webhook_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10
    """Per operation (connect, each read, each write) of one delivery attempt."""
    webhook_deadline_s: Annotated[float, Field(gt=0, le=600)] = 30
    """Whole delivery attempt: resolution, connect, TLS, send, answer headers and body."""
    egress_allow_loopback: bool = False
    """Let outbound jobs reach loopback addresses (127.0.0.0/8, ::1) as if `egress.allow`
    listed them. `jobyard dev` sets it (and says so); never needed in a cluster."""
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

    @field_validator("job_modules", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("api_tokens", "admin_tokens", mode="before")
    @classmethod
    def _tokens_csv(cls, value: object) -> object:
        return _split_tokens(value)

    @field_validator("api_tokens", "admin_tokens")
    @classmethod
    def _tokens_usable(cls, value: list[SecretStr]) -> list[SecretStr]:
        texts = [t.get_secret_value() for t in value]
        short = [n for n, t in enumerate(texts, 1) if len(t) < MIN_TOKEN_CHARS]
        if short:
            raise ValueError(
                f"token(s) number {', '.join(map(str, short))} are shorter than "
                f"{MIN_TOKEN_CHARS} characters (generate one with `openssl rand -hex 32`)"
            )
        if len(set(texts)) != len(texts):
            raise ValueError("the same token is listed twice")
        return value

    @model_validator(mode="after")
    def _tokens_distinct(self) -> Settings:
        api = {t.get_secret_value() for t in self.api_tokens}
        if any(t.get_secret_value() in api for t in self.admin_tokens):
            raise ValueError(
                "JOBYARD_ADMIN_TOKENS and JOBYARD_API_TOKENS share a token: an admin token "
                "already reads, give each token one role"
            )
        return self

    @property
    def auth_tokens_configured(self) -> bool:
        """Whether any API or admin token is configured."""
        return bool(self.api_tokens or self.admin_tokens)

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
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        msg = format_validation_error(exc, "environment")
        for name in Settings.model_fields:
            msg = msg.replace(f"environment: {name}:", f"environment: {ENV_PREFIX}{name.upper()}:")
        raise ConfigError(msg) from exc
    # Checked here, not by validators: pydantic's errors would quote the secret.
    default_secrets(settings.webhook_secret)
    if settings.webhook_secrets_file is not None:
        read_secrets_file(settings.webhook_secrets_file)
    return settings
