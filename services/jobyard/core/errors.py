"""Errors shared by every component."""

from __future__ import annotations

from pydantic import ValidationError

from jobyard.core.redaction import MASK, is_secret_name, redact_text, redact_value


class JobyardError(Exception):
    """Base class of jobyard's own errors."""


class ConfigError(JobyardError):
    """The config file or the environment is invalid; the message names the field."""


class UnknownTaskError(JobyardError):
    """A task name that is not registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown task {name!r}; registered tasks: {', '.join(known) or 'none'}")


class UnknownQueueError(JobyardError):
    """A queue name that is not configured."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown queue {name!r}; configured queues: {', '.join(known)}")


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def format_validation_error(
    exc: ValidationError, source: str, *, loc_prefix: tuple[int | str, ...] = ()
) -> str:
    """One readable message per field: where, what was given, what is allowed.

    `loc_prefix` places the model inside a larger document (e.g. `("schedules", 0, "args")`).
    """
    lines = []
    for err in exc.errors(include_url=False):
        where = _loc(loc_prefix + tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        given = err.get("input")
        secret = any(isinstance(p, str) and is_secret_name(p) for p in err["loc"])
        shown = MASK if secret else redact_text(repr(redact_value(given)))
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"{source}: {where}: {msg} (got {shown})")
    return "\n".join(lines)
