"""Errors a person can act on, and the plugin's exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
"""The command ran but the outcome is bad (status with the API unreachable)."""
EXIT_ERROR = 2
"""Usage, release not found, RBAC denied, API unreachable, an API error."""
EXIT_TIMEOUT = 3
"""`drain --timeout` expired before the queue was drained."""


class PluginError(Exception):
    """An error shown as `kubectl jobyard: <message>`, with an exit code."""

    exit_code = EXIT_ERROR


class KubeApiError(PluginError):
    """The Kubernetes API answered with an error Status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


class ForbiddenError(KubeApiError):
    """RBAC denied a request: the message names the verb and the resource."""


class NotFoundError(KubeApiError):
    """The object (or the API group) does not exist."""


class KubeUnreachableError(PluginError):
    """No answer from the Kubernetes API server."""


class ReleaseNotFoundError(PluginError):
    """No jobyard release of that name in the namespace."""


class JobyardApiError(PluginError):
    """The jobyard API (through the service proxy) answered with an error, or not at all."""


class ConfirmationRefusedError(PluginError):
    """A destructive action needs a confirmation that cannot be asked (no terminal)."""
