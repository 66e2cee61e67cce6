"""The jobyard API through the Kubernetes API server's service proxy.

`GET /api/v1/namespaces/{ns}/services/{service}:{port}/proxy/v1/queues` reaches the API's
Service with the operator's own credentials and RBAC (`get`, `create`, `delete` on
`services/proxy`): no port-forward. :class:`ServiceProxyTransport` plugs that into the
`JobyardClient` the `jobyard` CLI uses, so both parse the API the same way.

The API server removes the `Authorization` header before it proxies (it authenticated the
operator with it), so jobyard's own bearer token travels in `X-Jobyard-Token`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import urllib3
from kubernetes.client.exceptions import ApiException

from jobyard.client import ApiError, JobyardClient
from jobyard.kubectl.errors import JobyardApiError, NotFoundError, PluginError
from jobyard.kubectl.kube import REQUEST_TIMEOUT_S, Kube, error_for, status_of, unreachable
from jobyard.kubectl.rbac import GET_SERVICES, PROXY_CREATE, PROXY_DELETE, PROXY_GET, Permission
from jobyard.kubectl.release import Release

TOKEN_HEADER = "X-Jobyard-Token"  # noqa: S105 (a header name)
"""jobyard's bearer token, for clients behind a proxy that consumes `Authorization`."""

_VERBS: dict[str, Permission] = {"GET": PROXY_GET, "POST": PROXY_CREATE, "DELETE": PROXY_DELETE}


class ServiceProxyTransport(httpx.BaseTransport):
    """An httpx transport that sends each request through the service proxy."""

    def __init__(
        self, kube: Kube, release: Release, service: str, port: int | str, token: str | None
    ) -> None:
        self.kube = kube
        self.release = release
        self.service = service
        self.port = port
        self.token = token

    @property
    def proxy_name(self) -> str:
        """The `services/proxy` object name RBAC checks: `<service>:<port>`."""
        return f"{self.service}:{self.port}"

    def path(self, api_path: str) -> str:
        return (
            f"/api/v1/namespaces/{self.kube.namespace}/services/{self.proxy_name}/proxy{api_path}"
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        permission = _VERBS.get(request.method)
        if permission is None:
            raise PluginError(f"the plugin does not send {request.method} requests")
        headers = {"Accept": request.headers.get("Accept", "application/json")}
        if self.token:
            headers[TOKEN_HEADER] = self.token
        body: Any = json.loads(request.content) if request.content else None
        try:
            response = self.kube.api_client.call_api(
                self.path(request.url.path),
                request.method,
                query_params=list(request.url.params.multi_items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
            status, data, response_headers = response.status, response.data, response.headers
        except ApiException as exc:
            if not exc.status:
                raise self._unreachable(str(exc.reason)) from exc
            status, data, response_headers = exc.status, exc.body, exc.headers or {}
        except urllib3.exceptions.HTTPError as exc:
            raise unreachable(self.kube.server, exc) from exc
        if isinstance(data, str):
            data = data.encode("utf-8")
        kube_status = status_of(data) if status >= 400 else None
        if kube_status is not None:
            raise self._proxy_error(status, kube_status, permission)
        return httpx.Response(
            status,
            headers={
                k: v for k, v in dict(response_headers).items() if k.lower() == "content-type"
            },
            content=data,
            request=request,
        )

    def _proxy_error(
        self, status: int, kube_status: dict[str, Any], permission: Permission
    ) -> PluginError:
        """An error the API server (not jobyard) answered: RBAC, no Service, no endpoints."""
        message = str(kube_status.get("message") or "")
        reason = str(kube_status.get("reason") or "")
        if status in (502, 503, 504):
            return self._unreachable(message or reason)
        if status == 404:
            return NotFoundError(
                status,
                reason,
                f"the Service {self.service!r} of release {self.release.name!r} was not found "
                f"in namespace {self.kube.namespace!r} ({message})",
            )
        return error_for(status, reason, message, permission, self.kube.namespace, self.proxy_name)

    def _unreachable(self, why: str) -> JobyardApiError:
        selector = self.release.selector("api")
        return JobyardApiError(
            f"the jobyard API of release {self.release.name!r} is unreachable through the "
            f"Kubernetes service proxy ({self.service}:{self.port}): {why}. Are its pods ready? "
            f"`kubectl -n {self.kube.namespace} get pods -l {selector}`"
        )


def api_port(kube: Kube, release: Release) -> int | str:
    """The API Service's port (the one named `http`, else the first)."""
    service = kube.read(
        GET_SERVICES,
        kube.core.read_namespaced_service,
        release.api_name,
        kube.namespace,
        name=release.api_name,
    )
    ports = service.get("spec", {}).get("ports") or []
    if not ports:
        raise PluginError(f"the Service {release.api_name!r} has no port")
    chosen = next((p for p in ports if p.get("name") == "http"), ports[0])
    port: int | str = chosen["port"]
    return port


@contextmanager
def api_client(kube: Kube, release: Release, token: str | None) -> Iterator[JobyardClient]:
    """A `JobyardClient` whose requests go through the service proxy."""
    try:
        port = api_port(kube, release)
    except NotFoundError as exc:
        raise PluginError(
            f"release {release.name!r} has no API Service {release.api_name!r} in namespace "
            f"{kube.namespace!r} ({exc})"
        ) from exc
    transport = ServiceProxyTransport(kube, release, release.api_name, port, token)
    base_url = f"http://{release.api_name}.{kube.namespace}.svc:{port}"
    with JobyardClient(base_url, transport=transport) as client:
        yield client


def describe(exc: ApiError, hint: str | None = None) -> str:
    """An API error as one message, with what to do about 401/403."""
    lines = [str(exc)]
    lines += [f"  - {e.field}: {e.message}" if e.field else f"  - {e.message}" for e in exc.errors]
    if exc.status in (401, 403):
        lines.append(
            "  the jobyard API requires a bearer token: pass --api-token or set "
            "JOBYARD_API_TOKEN (an admin token for retry and purge)"
        )
        if hint:
            lines.append(f"  ({hint})")
    return "\n".join(lines)
