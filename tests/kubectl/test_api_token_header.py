"""The jobyard API takes its token from X-Jobyard-Token when Authorization is absent: the
Kubernetes API server removes Authorization before it proxies."""

from __future__ import annotations

import httpx

from jobyard.api.auth import PROXY_TOKEN_HEADER
from jobyard.kubectl.proxy import TOKEN_HEADER
from tests.kubectl.conftest import ADMIN_TOKEN, READ_TOKEN, Apis


def test_the_plugin_and_the_api_agree_on_the_header() -> None:
    assert TOKEN_HEADER == PROXY_TOKEN_HEADER == "X-Jobyard-Token"


def test_proxy_token_header_reads_and_writes(apis: Apis) -> None:
    with httpx.Client(base_url=apis.secure_url, timeout=10) as http:
        assert http.get("/v1/queues").status_code == 401
        assert http.get("/v1/queues", headers={TOKEN_HEADER: READ_TOKEN}).status_code == 200
        assert http.get("/v1/queues", headers={TOKEN_HEADER: "wrong-token"}).status_code == 403
        write = http.delete(
            "/v1/dead-letters", params={"queue": "emails"}, headers={TOKEN_HEADER: READ_TOKEN}
        )
        assert write.status_code == 403
        assert write.json()["detail"] == "this endpoint changes state and needs an admin token"
        admin = http.delete(
            "/v1/dead-letters", params={"queue": "emails"}, headers={TOKEN_HEADER: ADMIN_TOKEN}
        )
        assert admin.status_code == 200, admin.text
        # Authorization, when present, is the one checked.
        both = http.get(
            "/v1/queues", headers={"Authorization": "Bearer wrong-token", TOKEN_HEADER: READ_TOKEN}
        )
        assert both.status_code == 403
