"""Start-up shared by every entry point: settings, config file, registered jobs."""

from __future__ import annotations

from dataclasses import dataclass

from jobyard.core.config import JobyardConfig, load_config
from jobyard.core.registry import Registry, load_job_modules
from jobyard.core.settings import Settings, load_settings
from jobyard.core.webhook_secrets import check_endpoints, read_secrets_file


@dataclass(frozen=True)
class Runtime:
    """Everything a component needs to start."""

    settings: Settings
    config: JobyardConfig
    registry: Registry


def bootstrap(environ: dict[str, str] | None = None) -> Runtime:
    """Load and validate settings, the config file and job modules.

    Raises ConfigError with a message naming the field; entry points print it and exit 2.
    """
    settings = load_settings(environ)
    config = load_config(settings.config)
    if settings.egress_allow_loopback:
        config = config.model_copy(update={"egress": config.egress.with_loopback()})
    if settings.webhook_secrets_file is not None:
        path = settings.webhook_secrets_file
        check_endpoints(path, read_secrets_file(path), [e.name for e in config.webhooks.endpoints])
    registry = load_job_modules(settings.job_modules)
    return Runtime(settings, config, registry)
