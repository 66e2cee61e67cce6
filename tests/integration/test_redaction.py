"""Secrets stay out of what people read: the job record and its error as the API returns
them, dead letters, and every JSON log line of the API and the worker (real processes)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from jobyard.core.redaction import redact_text, redact_value
from tests.integration.conftest import WORKER_ENV
from tests.support.processes import wait_until
from tests.support.redis_server import free_port

pytestmark = pytest.mark.integration

SECRETS = ("tok-SECRET-1", "pw-SECRET-2", "SECRET-3-bearer", "SECRET-4-cookie")
ARGS = {
    "api_token": "tok-SECRET-1",
    "url": "https://svc:pw-SECRET-2@billing.example.com/charge",
    "headers": {"Authorization": "Bearer SECRET-3-bearer", "Cookie": "sid=SECRET-4-cookie"},
}


def _no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} in {where}: {text[:2000]}"


def test_the_record_the_error_the_dead_letter_and_the_logs_hold_no_secret(spawn: Any) -> None:
    port = free_port()
    api = spawn("api", "--port", str(port), env={**WORKER_ENV, "JOBYARD_LOG_LEVEL": "DEBUG"})
    worker = spawn("worker", "--queue", "default", env={**WORKER_ENV, "JOBYARD_LOG_LEVEL": "DEBUG"})
    worker.wait_for_log("ready.", timeout_s=60)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{base}/readyz"), timeout_s=60)
    with httpx.Client(base_url=base, timeout=10) as http:
        created = http.post("/v1/jobs", json={"task": "tests.careless", "args": ARGS})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        _no_secret("the enqueue answer", created.text)

        def dead() -> bool:
            return bool(http.get(f"/v1/jobs/{job_id}").json()["state"] == "dead")

        wait_until(dead, timeout_s=60)
        record = http.get(f"/v1/jobs/{job_id}")
        listed = http.get("/v1/jobs", params={"task": "tests.careless"})
        letters = http.get("/v1/dead-letters", params={"queue": "default"})
    for where, response in (("GET job", record), ("list", listed), ("dead letters", letters)):
        assert response.status_code == 200
        _no_secret(where, response.text)
    body = record.json()
    assert body["args"]["api_token"] == "***"
    assert body["args"]["url"] == "https://***@billing.example.com/charge"
    assert body["args"]["headers"] == {"Authorization": "***", "Cookie": "***"}
    assert "'Authorization': 'Bearer ***'" in body["error"]["message"]
    assert "token=***" in body["error"]["message"]
    assert "Authorization: Bearer ***" in body["error"]["message"]
    assert "https://***@billing.example.com/charge" in body["error"]["message"]
    for name, proc in (("api", api), ("worker", worker)):
        log = proc.log()
        _no_secret(f"the {name} log", log)
    lines = [json.loads(x) for x in worker.log().splitlines() if x.startswith("{")]
    careless = [x for x in lines if x["logger"] == "tests.careless"]
    assert careless and careless[0]["api_token"] == "***"
    assert careless[0]["target"] == "https://***@billing.example.com/charge"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw@h:6379/0", "redis://***@h:6379/0"),
        ("rediss://user:pw@h", "rediss://***@h"),
        ("Proxy-Authorization: Basic dXNlcjpwdw==", "Proxy-Authorization: Basic ***"),
        ("POST https://h/x?a=1&access_token=zz&b=2", "POST https://h/x?a=1&access_token=***&b=2"),
        ("password=hunter2 user=ada", "password=*** user=ada"),
        ("{'client_secret': 's3'}", "{'client_secret': '***'}"),
        ("job succeeded in 0.01 s", "job succeeded in 0.01 s"),
        ("mail ada@example.com", "mail ada@example.com"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_value_masks_by_name_at_any_depth() -> None:
    value = {
        "x-api-key": "k",
        "nested": [{"Set-Cookie": "c", "ok": "https://u:p@h/"}],
        "token_count": 0,
        "empty_password": "",
    }
    assert redact_value(value) == {
        "x-api-key": "***",
        "nested": [{"Set-Cookie": "***", "ok": "https://***@h/"}],
        "token_count": "***",
        "empty_password": "",
    }


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000 + "token",
        "a-" * 100_000 + "password",
        "x://" * 50_000 + "@",
        "token:" * 50_000,
        "Bearer " * 50_000,
        "token" + " " * 200_000 + "=",
    ],
    ids=[
        "long-word",
        "long-dashed-word",
        "many-schemes",
        "many-names",
        "many-schemes-words",
        "gap",
    ],
)
def test_redaction_takes_linear_time_on_hostile_text(text: str) -> None:
    """Every log line and error passes through redaction: a 200 kB word must not cost
    seconds (the first version of these patterns took 179 s on 50 kB)."""
    started = time.perf_counter()
    redact_text(text)
    assert time.perf_counter() - started < 0.5
