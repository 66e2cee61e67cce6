"""Authentication of a real `jobyard api` walked from the OpenAPI document it serves:
with tokens configured every operation but the probes refuses a missing token (401) and a
wrong one (403), in `Authorization` or `X-Jobyard-Token`; tokens are compared in
constant time; and no token, valid or not, reaches a log line of the API or a worker,
even at DEBUG."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from jobyard.api import auth
from tests.e2e.cluster import ApiProc, Cluster

pytestmark = [pytest.mark.integration, pytest.mark.faults]

READ_TOKEN = "read-Zq3xV9tokenvalue"
ADMIN_TOKEN = "admin-Kp7wR2tokenvalue"
WRONG_TOKENS = ("wrong-Ht5yU1tokenvalue", READ_TOKEN[:-1], READ_TOKEN + "x")
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")
TOKEN_ENV = {
    "JOBYARD_API_TOKENS": READ_TOKEN,
    "JOBYARD_ADMIN_TOKENS": ADMIN_TOKEN,
    "JOBYARD_API_DOCS": "true",  # the documentation is open when on: the test lists it
    "JOBYARD_LOG_LEVEL": "DEBUG",
}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, ApiProc]]:
    cluster = Cluster(tmp_path_factory.mktemp("auth"), env=TOKEN_ENV)
    try:
        yield cluster, cluster.api()
    finally:
        cluster.close()


def _operations(api: ApiProc) -> list[tuple[str, str]]:
    """Every operation of the served document, path parameters filled in."""
    document = api.http.get("/openapi.json").json()
    ops = []
    for path, operations in document["paths"].items():
        for method in operations:
            ops.append((method.upper(), re.sub(r"\{[^}]+\}", "some-id", path)))
    return sorted(ops)


def test_every_operation_but_the_probes_needs_a_valid_token(
    guarded: tuple[Cluster, ApiProc],
) -> None:
    _, api = guarded
    operations = _operations(api)
    guarded_ops = [(m, p) for m, p in operations if p.startswith("/v1/")]
    assert len(guarded_ops) == 16
    assert {p for _, p in operations} - {p for _, p in guarded_ops} == {"/healthz", "/readyz"}
    for method, path in guarded_ops:
        r = api.http.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["content-type"] == "application/problem+json"
        for wrong in WRONG_TOKENS:
            for headers in ({"Authorization": f"Bearer {wrong}"}, {"X-Jobyard-Token": wrong}):
                r = api.http.request(method, path, headers=headers)
                assert r.status_code == 403, (method, path, headers, r.text)
                assert r.json()["detail"] == "the bearer token is not valid"
        token = ADMIN_TOKEN if method in ("POST", "DELETE") else READ_TOKEN
        r = api.http.request(method, path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code not in (401, 403), (method, path, r.text)
        if method in ("POST", "DELETE"):
            r = api.http.request(method, path, headers={"Authorization": f"Bearer {READ_TOKEN}"})
            assert r.status_code == 403, (method, path)
            assert r.json()["detail"] == "this endpoint changes state and needs an admin token"
    for path in OPEN_PATHS:
        assert api.http.get(path).status_code == 200, path


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    allowed = [SecretStr("first"), SecretStr("second"), SecretStr("third")]
    # Every candidate is compared whichever matches, or none: no early exit to time.
    for given, expected in (("first", True), ("third", True), ("nope", False)):
        calls.clear()
        assert auth.token_in(given, allowed) is expected
        assert calls == [(given.encode(), c.get_secret_value().encode()) for c in allowed]
    source = inspect.getsource(auth)
    assert "compare_digest" in source
    assert not re.search(r"token\s*(==|!=|in)\s", source), "a token compared with == or in"


def test_no_token_reaches_a_log(guarded: tuple[Cluster, ApiProc], tmp_path: Path) -> None:
    cluster, api = guarded
    # A worker with the same secrets in its environment (a shared Secret), logging DEBUG.
    worker = cluster.worker("alpha")
    body: dict[str, Any] = {"task": "faults.effect", "args": {"path": str(tmp_path / "e.txt")}}
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = api.http.post("/v1/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    cluster.wait_all_terminal([r.json()["id"]], timeout_s=30)
    assert cluster.states([r.json()["id"]]) == {r.json()["id"]: "succeeded"}
    for wrong in WRONG_TOKENS:
        api.http.get("/v1/jobs", headers={"Authorization": f"Bearer {wrong}"})
        api.http.get("/v1/jobs", headers={"X-Jobyard-Token": wrong})
    api.http.get("/v1/queues", headers={"X-Jobyard-Token": READ_TOKEN})
    logs = {"api": api.proc.log(), "worker": worker.log()}
    assert "POST /v1/jobs HTTP/1.1" in logs["api"], "the API logged its requests"
    assert "job succeeded" in logs["worker"]
    for name, text in logs.items():
        for token in (READ_TOKEN, ADMIN_TOKEN, *WRONG_TOKENS):
            assert token not in text, f"{name} log holds a token"
        assert "tokenvalue" not in text, f"{name} log holds part of a token"
