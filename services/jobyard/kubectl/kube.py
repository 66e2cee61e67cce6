"""The connection to the Kubernetes API: config loading, namespace, and error translation.

Reads return the API's own JSON (dicts in the shapes the API server sends), so the code and
its tests see exactly what `kubectl get -o json` shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from jobyard import __version__
from jobyard.kubectl.errors import (
    ForbiddenError,
    KubeApiError,
    KubeUnreachableError,
    NotFoundError,
    PluginError,
)
from jobyard.kubectl.rbac import Permission

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REQUEST_TIMEOUT_S = 30.0

Obj = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """Where to connect, from the command line (None: kubectl's defaults)."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


@dataclass
class Kube:
    """API clients for one cluster, and the namespace commands work in."""

    api_client: Any
    namespace: str
    server: str

    @property
    def core(self) -> Any:
        return k8s.CoreV1Api(self.api_client)

    @property
    def apps(self) -> Any:
        return k8s.AppsV1Api(self.api_client)

    @property
    def custom(self) -> Any:
        return k8s.CustomObjectsApi(self.api_client)

    @property
    def autoscaling(self) -> Any:
        return k8s.AutoscalingV2Api(self.api_client)

    def read(
        self,
        permission: Permission,
        call: Callable[..., Any],
        *args: Any,
        namespace: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> Obj:
        """Run a generated client method and return the API's JSON body as a dict."""
        response = self.raw(permission, call, *args, namespace=namespace, name=name, **kwargs)
        data: Obj = json.loads(response.data)
        return data

    def raw(
        self,
        permission: Permission,
        call: Callable[..., Any],
        *args: Any,
        namespace: str | None = None,
        name: str | None = None,
        timeout_s: float | None = REQUEST_TIMEOUT_S,
        **kwargs: Any,
    ) -> Any:
        """Run a call with `_preload_content=False`: the urllib3 response (for streams)."""
        try:
            return call(*args, _preload_content=False, _request_timeout=timeout_s, **kwargs)
        except ApiException as exc:
            where = self.namespace if namespace is None else namespace
            raise api_error(exc, permission, where, name) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise unreachable(self.server, exc) from exc


def unreachable(server: str, exc: BaseException) -> KubeUnreachableError:
    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    return KubeUnreachableError(
        f"cannot reach the Kubernetes API server at {server}: {reason or type(exc).__name__} "
        "(check the kubeconfig context: `kubectl config current-context`)"
    )


def status_of(body: Any) -> Obj | None:
    """The Status object in an error body, or None when the body is something else."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("kind") == "Status":
        return data
    return None


def api_error(
    exc: ApiException, permission: Permission, namespace: str | None, name: str | None
) -> PluginError:
    """A message a person can act on, from an ApiException of `permission`'s request."""
    if not exc.status:
        return KubeUnreachableError(f"cannot reach the Kubernetes API server: {exc.reason}")
    status = status_of(exc.body) or {}
    message = str(status.get("message") or exc.reason or "").strip()
    reason = str(status.get("reason") or exc.reason or "")
    return error_for(int(exc.status), reason, message, permission, namespace, name)


def error_for(
    code: int,
    reason: str,
    message: str,
    permission: Permission,
    namespace: str | None,
    name: str | None,
) -> PluginError:
    """Translate an error Status into the plugin's errors."""
    if code == 403:
        where = f'in namespace "{namespace}"' if namespace else "at the cluster scope"
        what = permission.qualified_resource + (f' "{name}"' if name else "")
        check = f"kubectl auth can-i {permission.verb} {permission.qualified_resource}"
        check += f" -n {namespace}" if namespace else " --all-namespaces"
        return ForbiddenError(
            code,
            reason,
            f"RBAC denied: you may not {permission.verb} {what} {where} "
            f"(the API server said: {message}). Ask for the chart's kubectl role "
            f"(values kubectlPlugin.rbac) or check with `{check}`",
        )
    if code == 401:
        return KubeApiError(
            code,
            reason,
            f"the Kubernetes API server rejected your credentials (401 {reason}): log in "
            "again or check the kubeconfig user (`kubectl config view --minify`)",
        )
    if code == 404:
        return NotFoundError(code, reason, message or "not found")
    return KubeApiError(
        code, reason, f"the Kubernetes API server answered {code} {reason}: {message}"
    )


def connect(target: Target) -> Kube:
    """Clients from the kubeconfig (`--kubeconfig`, KUBECONFIG, ~/.kube/config) and its
    context, or from the pod's service account when run in a pod without a kubeconfig."""
    if _in_cluster(target):
        configuration = k8s.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise PluginError(f"in-cluster config: {exc}") from exc
        namespace = target.namespace or _pod_namespace(SERVICE_ACCOUNT_DIR)
        api_client = k8s.ApiClient(configuration)
    else:
        try:
            api_client = k8s_config.new_client_from_config(
                config_file=kubeconfig_path(target), context=target.context, persist_config=False
            )
            namespace = target.namespace or context_namespace(target) or "default"
        except ConfigException as exc:
            raise PluginError(f"kubeconfig: {exc} (pass --kubeconfig or set KUBECONFIG)") from exc
        except OSError as exc:
            raise PluginError(f"kubeconfig: {exc}") from exc
    api_client.user_agent = f"kubectl-jobyard/{__version__}"
    return Kube(api_client=api_client, namespace=namespace, server=api_client.configuration.host)


def context_namespace(target: Target) -> str | None:
    """The namespace set on the kubeconfig context in use, if any."""
    contexts, current = k8s_config.list_kube_config_contexts(config_file=kubeconfig_path(target))
    chosen = current
    if target.context is not None:
        chosen = next((c for c in contexts if c.get("name") == target.context), None)
    if not chosen:
        return None
    namespace = (chosen.get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def kubeconfig_path(target: Target) -> str | None:
    """--kubeconfig, else KUBECONFIG (paths joined by ':' are merged), else None (the
    client's ~/.kube/config)."""
    return target.kubeconfig or os.environ.get("KUBECONFIG") or None


def _in_cluster(target: Target) -> bool:
    """In a pod (KUBERNETES_SERVICE_HOST set) with no kubeconfig anywhere: like kubectl."""
    if target.kubeconfig or target.context or os.environ.get("KUBECONFIG"):
        return False
    if Path("~/.kube/config").expanduser().exists():
        return False
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _pod_namespace(sa_dir: Path) -> str:
    try:
        return (sa_dir / "namespace").read_text(encoding="utf-8").strip() or "default"
    except OSError:
        return "default"
