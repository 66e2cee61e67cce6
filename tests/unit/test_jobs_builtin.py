"""The built-in jobs as the registry (and so `GET /v1/tasks`) shows them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jobyard.core.config import load_config
from jobyard.core.registry import (
    BUILTIN_MODULES,
    PermanentError,
    Registry,
    RetryableError,
    check_queues,
    load_job_modules,
)

ROOT = Path(__file__).resolve().parents[2]

BUILTINS = {
    # name: (queue, max_attempts, idempotent)
    "webhook.deliver": ("default", 8, True),
    "email.send": ("emails", 6, True),
    "report.export": ("reports", 3, True),
    "maintenance.cleanup": ("default", 3, False),
}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_is_registered_as_documented(name: str) -> None:
    spec = load_job_modules([]).get(name)
    queue, max_attempts, idempotent = BUILTINS[name]
    assert (spec.queue, spec.retry.max_attempts, spec.idempotent) == (
        queue,
        max_attempts,
        idempotent,
    )
    assert spec.description
    assert not spec.retry.should_retry(PermanentError("x"), 1)
    assert spec.retry.should_retry(RetryableError("x"), 1)
    assert not spec.retry.should_retry(RetryableError("x"), max_attempts)
    # A bug (an unexpected exception type) is not retried over and over.
    assert not spec.retry.should_retry(KeyError("x"), 1)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_argument_schema_is_strict_and_every_field_is_described(name: str) -> None:
    schema = load_job_modules([]).get(name).args_model.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]
    undocumented = [p for p, s in schema["properties"].items() if not s.get("description")]
    assert undocumented == []


def test_sample_config_has_every_builtin_queue() -> None:
    config = load_config(ROOT / "jobyard.yaml")
    registry = load_job_modules([])
    # Only the built-ins: other tests in this process may register their own jobs.
    builtins = Registry()
    for spec in registry.specs():
        if spec.fn.__module__ in BUILTIN_MODULES:
            builtins.add(spec)
    assert sorted(builtins.names()) == [
        "email.send",
        "jobyard.noop",
        "maintenance.cleanup",
        "report.export",
        "webhook.deliver",
    ]
    check_queues(builtins, config.queue_names)


def test_registering_the_builtin_jobs_does_not_import_httpx() -> None:
    # Every worker registers every built-in job; only one that delivers a webhook should
    # pay httpx's import (about 9 MiB per process).
    code = (
        "import sys; from jobyard.core.registry import load_job_modules; "
        "registry = load_job_modules([]); assert registry.get('webhook.deliver'); "
        "print('httpx' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False", out.stderr
