"""A stand-in for the Kubernetes API server: the one boundary these tests may fake.

Real HTTP on a free port, objects in memory, answers in the shapes kube-apiserver sends
(lists, Status objects for 401/403/404/415/503, chunked pod logs), RBAC evaluated from
Role rules (the chart's own, in the tests), and the service proxy forwarded to a real
jobyard API. Every request is recorded: method, path, query, body and content type.

Requests map to RBAC attributes the way kube-apiserver's RequestInfoFactory does: GET on
a collection is `list`, on a name `get`; POST `create`, PATCH `patch`, DELETE `delete`;
`/services/{name}:{port}/proxy/...` is `services/proxy` named `{name}:{port}`.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

Obj = dict[str, Any]

# (group, version, plural) -> kind, for the resources the plugin touches.
RESOURCES: dict[tuple[str, str, str], str] = {
    ("", "v1", "pods"): "Pod",
    ("", "v1", "services"): "Service",
    ("", "v1", "secrets"): "Secret",
    ("apps", "v1", "deployments"): "Deployment",
    ("autoscaling", "v2", "horizontalpodautoscalers"): "HorizontalPodAutoscaler",
    ("keda.sh", "v1alpha1", "scaledobjects"): "ScaledObject",
}
PLURALS = {kind: key for key, kind in RESOURCES.items()}
CRD_GROUPS = {"keda.sh"}
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "host",
    "authorization",
    "content-length",
    "accept-encoding",
}


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    content_type: str | None
    user: str | None
    verb: str = ""
    group: str = ""
    resource: str = ""
    name: str = ""
    namespace: str = ""
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Attributes:
    """RBAC attributes of a request."""

    verb: str
    group: str
    version: str
    resource: str
    subresource: str
    namespace: str
    name: str
    rest: str = ""
    """The path after `proxy` for the service proxy."""

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def go_bool(text: str) -> bool:
    """A query flag as the API server parses it (Go's strconv.ParseBool)."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"invalid boolean {text!r}")


def status_body(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    def has(values: list[str], wanted: str) -> bool:
        return "*" in values or wanted in values

    if not has(rule.get("apiGroups") or [], attrs.group):
        return False
    if not has(rule.get("resources") or [], attrs.full_resource):
        return False
    if not has(rule.get("verbs") or [], attrs.verb):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


@dataclass
class Grants:
    """What one user may do: rules per namespace (Roles) and cluster-wide (ClusterRoles)."""

    namespaced: dict[str, list[Obj]] = field(default_factory=dict)
    cluster: list[Obj] = field(default_factory=list)
    everything: bool = False

    def allows(self, attrs: Attributes) -> bool:
        if self.everything or any(rule_allows(r, attrs) for r in self.cluster):
            return True
        return any(rule_allows(r, attrs) for r in self.namespaced.get(attrs.namespace, []))


class LogSource:
    """A pod's log: lines so far, more appended by the test, then ended."""

    def __init__(self, lines: list[str] | None = None) -> None:
        self.lines = list(lines or [])
        self.ended = False
        self.cond = threading.Condition()

    def append(self, *lines: str) -> None:
        with self.cond:
            self.lines.extend(lines)
            self.cond.notify_all()

    def end(self) -> None:
        with self.cond:
            self.ended = True
            self.cond.notify_all()


class FakeApiServer:
    """The fake API server; `start()` it, `url` is its address."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str, str], Obj] = {}
        """(group, plural, namespace, name) -> object."""
        self.requests: list[Recorded] = []
        self.users: dict[str, tuple[str, Grants]] = {}
        """bearer token -> (user name, grants)."""
        self.proxy_targets: dict[tuple[str, str], str | None] = {}
        """(namespace, service) -> base URL of the real backend (None: no endpoints)."""
        self.logs: dict[tuple[str, str], LogSource] = {}
        self.keda_installed = True
        self.on_patch: list[Callable[[Attributes, Obj], None]] = []
        self._lock = threading.RLock()
        self._rv = 1000
        self._server: ThreadingHTTPServer | None = None
        self.stopping = threading.Event()

    # ---- state

    def add_user(self, token: str, name: str, grants: Grants) -> None:
        self.users[token] = (name, grants)

    def put(self, obj: Obj, namespace: str | None = None) -> Obj:
        """Store an object as the API server would after a create (server-side fields)."""
        obj = copy.deepcopy(obj)
        kind = obj["kind"]
        group, _, plural = PLURALS[kind]
        meta = obj.setdefault("metadata", {})
        ns = namespace or meta.get("namespace") or "default"
        meta["namespace"] = ns
        with self._lock:
            self._rv += 1
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["resourceVersion"] = str(self._rv)
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            meta.setdefault("generation", 1)
            if kind == "Secret" and "stringData" in obj:
                data = obj.setdefault("data", {})
                for key, value in obj.pop("stringData").items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
            if kind == "Deployment":
                spec = obj.setdefault("spec", {})
                spec.setdefault("replicas", 1)
                spec.setdefault(
                    "strategy",
                    {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                    },
                )
                obj.setdefault("status", {"observedGeneration": 1})
            self.objects[(group, plural, ns, meta["name"])] = obj
        return obj

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        group, _, plural = PLURALS[kind]
        return self.objects[(group, plural, namespace, name)]

    def delete(self, kind: str, namespace: str, name: str) -> None:
        group, _, plural = PLURALS[kind]
        with self._lock:
            self.objects.pop((group, plural, namespace, name), None)

    def patched(self, kind: str | None = None) -> list[Recorded]:
        return [
            r for r in self.requests if r.method == "PATCH" and (kind is None or kind in r.path)
        ]

    # ---- server

    def start(self) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self.stopping.set()
        for source in self.logs.values():
            source.end()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ---- request handling

    def parse(self, method: str, path: str, query: dict[str, list[str]]) -> Attributes | None:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = ""
        if len(rest) >= 2 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest:
            return None
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        tail = "/" + "/".join(rest[3:]) if len(rest) > 3 else "/"
        if method == "GET":
            watch = go_bool((query.get("watch") or ["false"])[0])
            verb = "get" if name else ("watch" if watch else "list")
        else:
            verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
            if method == "DELETE" and not name:
                verb = "deletecollection"
        return Attributes(verb, group, version, resource, subresource, namespace, name, tail)

    def forbidden(self, user: str, attrs: Attributes) -> Obj:
        qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
        subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
        where = (
            f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
        )
        message = (
            f'{subject} is forbidden: User "{user}" cannot {attrs.verb} resource '
            f'"{attrs.full_resource}" in API group "{attrs.group}" {where}'
        )
        details: Obj = {"group": attrs.group, "kind": attrs.resource}
        if attrs.name:
            details["name"] = attrs.name
        return status_body(403, "Forbidden", message, details)


def _labels_match(obj: Obj, selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _handler(api: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.handle_any("GET")

        def do_POST(self) -> None:
            self.handle_any("POST")

        def do_PATCH(self) -> None:
            self.handle_any("PATCH")

        def do_DELETE(self) -> None:
            self.handle_any("DELETE")

        def do_PUT(self) -> None:
            self.handle_any("PUT")

        # ---- plumbing

        def send_json(self, code: int, body: Obj, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
            self.record.status = code

        def send_status(
            self, code: int, reason: str, message: str, details: Obj | None = None
        ) -> None:
            self.send_json(code, status_body(code, reason, message, details))

        def handle_any(self, method: str) -> None:
            split = urlsplit(self.path)
            query = parse_qs(split.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
            user = api.users.get(token or "")
            self.record = Recorded(
                method=method,
                path=split.path,
                query=query,
                body=body,
                content_type=self.headers.get("Content-Type"),
                user=user[0] if user else None,
                headers={k.lower(): v for k, v in self.headers.items()},
            )
            api.requests.append(self.record)
            if user is None:
                self.send_status(401, "Unauthorized", "Unauthorized")
                return
            attrs = api.parse(method, split.path, query)
            if attrs is None:
                self.send_status(
                    404, "NotFound", "the server could not find the requested resource", {}
                )
                return
            self.record.verb, self.record.group = attrs.verb, attrs.group
            self.record.resource, self.record.name = attrs.full_resource, attrs.name
            self.record.namespace = attrs.namespace
            if not user[1].allows(attrs):
                self.send_json(403, api.forbidden(user[0], attrs))
                return
            if attrs.group in CRD_GROUPS and not api.keda_installed:
                self.send_status(
                    404, "NotFound", "the server could not find the requested resource", {}
                )
                return
            key = (attrs.group, attrs.version, attrs.resource)
            if key not in RESOURCES:
                self.send_status(
                    404, "NotFound", "the server could not find the requested resource", {}
                )
                return
            if attrs.resource == "services" and attrs.subresource == "proxy":
                self.proxy(method, attrs, raw, split.query)
            elif attrs.resource == "pods" and attrs.subresource == "log":
                self.pod_log(attrs, query)
            elif attrs.subresource:
                self.send_status(
                    404, "NotFound", "the server could not find the requested resource", {}
                )
            elif attrs.verb == "list":
                self.list(attrs, query)
            elif attrs.verb == "get":
                self.get_one(attrs)
            elif attrs.verb == "patch":
                self.patch(attrs, body)
            else:
                self.send_status(
                    405, "MethodNotAllowed", f"the fake does not {attrs.verb} {attrs.resource}"
                )

        def not_found(self, attrs: Attributes) -> None:
            qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
            self.send_status(
                404,
                "NotFound",
                f'{qualified} "{attrs.name}" not found',
                {"name": attrs.name, "group": attrs.group, "kind": attrs.resource},
            )

        def list(self, attrs: Attributes, query: dict[str, list[str]]) -> None:
            selector = (query.get("labelSelector") or [""])[0]
            with api._lock:
                items = [
                    copy.deepcopy(o)
                    for (g, p, ns, _), o in sorted(api.objects.items())
                    if g == attrs.group
                    and p == attrs.resource
                    and (not attrs.namespace or ns == attrs.namespace)
                    and _labels_match(o, selector)
                ]
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
            kind = RESOURCES[(attrs.group, attrs.version, attrs.resource)]
            api_version = f"{attrs.group}/{attrs.version}" if attrs.group else attrs.version
            self.send_json(
                200,
                {
                    "kind": f"{kind}List",
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": str(api._rv)},
                    "items": items,
                },
            )

        def get_one(self, attrs: Attributes) -> None:
            obj = api.objects.get((attrs.group, attrs.resource, attrs.namespace, attrs.name))
            if obj is None:
                self.not_found(attrs)
                return
            self.send_json(200, copy.deepcopy(obj))

        def patch(self, attrs: Attributes, body: Any) -> None:
            content_type = (self.headers.get("Content-Type") or "").split(";")[0]
            accepted = [
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ]
            if attrs.group not in CRD_GROUPS:
                accepted.append("application/strategic-merge-patch+json")
            if content_type not in accepted or content_type == "application/json-patch+json":
                self.send_status(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types "
                    f"include: {', '.join(accepted)}",
                )
                return
            key = (attrs.group, attrs.resource, attrs.namespace, attrs.name)
            with api._lock:
                obj = api.objects.get(key)
                if obj is None:
                    self.not_found(attrs)
                    return
                updated = merge_patch(obj, body)
                api._rv += 1
                updated["metadata"]["resourceVersion"] = str(api._rv)
                if updated.get("spec") != obj.get("spec"):
                    updated["metadata"]["generation"] = (
                        int(obj["metadata"].get("generation", 1)) + 1
                    )
                api.objects[key] = updated
            for hook in api.on_patch:
                hook(attrs, updated)
            self.send_json(200, copy.deepcopy(updated))

        def proxy(self, method: str, attrs: Attributes, raw: bytes, query: str) -> None:
            service_name, _, port = attrs.name.partition(":")
            service = api.objects.get(("", "services", attrs.namespace, service_name))
            if service is None:
                self.send_status(
                    404,
                    "NotFound",
                    f'services "{service_name}" not found',
                    {"name": service_name, "kind": "services"},
                )
                return
            ports = service["spec"]["ports"]
            if not any(port in (str(p["port"]), p.get("name")) for p in ports) and port:
                self.send_status(
                    503, "ServiceUnavailable", f'no endpoints available for service "{attrs.name}"'
                )
                return
            target = api.proxy_targets.get((attrs.namespace, service_name))
            if target is None:
                self.send_status(
                    503,
                    "ServiceUnavailable",
                    f'no endpoints available for service "{service_name}"',
                )
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            url = target + attrs.rest + (f"?{query}" if query else "")
            try:
                response = httpx.request(
                    method, url, headers=headers, content=raw or None, timeout=30
                )
            except httpx.TransportError as exc:
                self.send_status(
                    503,
                    "ServiceUnavailable",
                    f"error trying to reach service: dial tcp {target}: {exc}",
                )
                return
            self.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-encoding":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)
            self.record.status = response.status_code

        def pod_log(self, attrs: Attributes, query: dict[str, list[str]]) -> None:
            pod = api.objects.get(("", "pods", attrs.namespace, attrs.name))
            if pod is None:
                self.not_found(attrs)
                return
            container = (query.get("container") or [""])[0]
            names = [c["name"] for c in pod["spec"]["containers"]]
            if container and container not in names:
                self.send_status(
                    400, "BadRequest", f"container {container} is not valid for pod {attrs.name}"
                )
                return
            source = api.logs.setdefault((attrs.namespace, attrs.name), LogSource())
            follow = go_bool((query.get("follow") or ["false"])[0])
            tail = int((query.get("tailLines") or ["-1"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.record.status = 200
            with source.cond:
                position = 0 if tail < 0 else max(0, len(source.lines) - tail)
            try:
                while True:
                    with source.cond:
                        while (
                            position >= len(source.lines)
                            and follow
                            and not source.ended
                            and not api.stopping.is_set()
                        ):
                            source.cond.wait(0.2)
                        fresh = source.lines[position:]
                        position = len(source.lines)
                        done = not follow or source.ended or api.stopping.is_set()
                    for line in fresh:
                        data = (line + "\n").encode()
                        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                        self.wfile.flush()
                    if done and position >= len(source.lines):
                        break
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler
