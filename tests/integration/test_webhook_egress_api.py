"""Enqueue-time egress checks of `webhook.deliver`, through the real API (default config:
nothing internal allow-listed), with real listeners on 127.0.0.x that must stay silent."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.webhook_receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver(host="127.0.0.2") as receiver:
        yield receiver


SPELLINGS = [
    "http://127.0.0.2:{port}/",
    "http://2130706434:{port}/",
    "http://0x7f000002:{port}/",
    "http://0177.0.0.2:{port}/",
    "http://127.2:{port}/",
    "http://[::ffff:127.0.0.2]:{port}/",
    "http://[::ffff:7f00:2]:{port}/",
    "http://localhost:{port}/v1/jobs",
    "http://[::1]:{port}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://10.0.0.1/",
    "http://0/",
]


@pytest.mark.parametrize("template", SPELLINGS)
async def test_internal_destinations_are_refused_at_enqueue_naming_args_url(
    api: httpx.AsyncClient, rx: Receiver, template: str
) -> None:
    url = template.format(port=rx.port)
    r = await api.post(
        "/v1/jobs", json={"task": "webhook.deliver", "args": {"url": url, "body": {}}}
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    (error,) = r.json()["errors"]
    assert error["field"] == "args.url"
    assert "refused destination" in error["message"]
    assert "unless egress.allow in jobyard.yaml lists it" in error["message"]
    assert rx.deliveries == []


async def test_a_batch_names_the_refused_member(api: httpx.AsyncClient, rx: Receiver) -> None:
    job = {"task": "webhook.deliver", "args": {"url": "http://8.8.8.8/", "body": {}}}
    bad = {"task": "webhook.deliver", "args": {"url": rx.url, "body": {}}}
    r = await api.post("/v1/jobs:batch", json={"jobs": [job, bad]})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["jobs[1].args.url"]


async def test_a_name_that_does_not_resolve_yet_and_a_public_address_are_accepted(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for url in ("https://hooks.not-yet.example/in", "http://8.8.8.8/"):
        r = await api.post(
            "/v1/jobs", json={"task": "webhook.deliver", "args": {"url": url, "body": {}}}
        )
        assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "value", ["caf\u00e9", "a\x00b", "a\x0bb", "a\x1fb", "a\x85b", " padded", "a\u2028b"]
)
async def test_a_header_value_outside_visible_ascii_is_refused_naming_the_header(
    api: httpx.AsyncClient, value: str
) -> None:
    args = {"url": "http://8.8.8.8/", "body": {}, "headers": {"X-Tenant": value}}
    r = await api.post("/v1/jobs", json={"task": "webhook.deliver", "args": args})
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "args.headers.X-Tenant"
    assert "visible ASCII" in error["message"]


async def test_an_unknown_endpoint_name_is_refused(api: httpx.AsyncClient) -> None:
    args = {"url": "http://8.8.8.8/", "body": {}, "endpoint": "billing"}
    r = await api.post("/v1/jobs", json={"task": "webhook.deliver", "args": args})
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "args.endpoint"
    assert error["message"] == (
        "Value error, unknown endpoint 'billing'; webhooks.endpoints in jobyard.yaml: none"
    )
