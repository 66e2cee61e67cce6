"""Start-up shared by every entry point: settings, config file, registered jobs."""

from __future__ import annotations

from dataclasses import dataclass

from jobyard.core.config import JobyardConfig, load_config
from jobyard.core.registry import Registry, load_job_modules
from jobyard.core.settings import Settings, load_settings


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
    registry = load_job_modules(settings.job_modules)
    return Runtime(settings, config, registry)
