"""Redis credentials per component: each pod gets only its own user's URL, the bundled
Redis reads its users from an ACL file in a Secret (rendered from
files/redis/acl-rules.yaml, the rules the fault suite runs under), no password on a command
line, and the rendered ACL file works in a real redis-server."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest
import redis
import yaml

from tests.chart.conftest import MATRIX
from tests.chart.rendering import (
    RELEASE,
    Rendered,
    containers,
    load_values,
    pod_spec,
    render_error,
)
from tests.support.redis_acl import (
    COMPONENTS,
    EXAMPLE_PATH,
    AclUser,
    acl_file,
    example_acl_file,
)
from tests.support.redis_server import RedisProcess

Render = Callable[[str], Rendered]
RenderWith = Callable[[dict[str, Any]], Rendered]
WORKLOADS = ("Deployment", "StatefulSet", "Pod")

KEDA_SCRIPT = """
		local listName = KEYS[1]
		local listType = redis.call('type', listName).ok
		if listType == 'zset' then
			return redis.call('zcard', listName)
		elseif listType == 'set' then
			return redis.call('scard', listName)
		elseif listType == 'hash' then
			return redis.call('hlen', listName)
		elseif listType == 'list' or listType == 'none' then
			return redis.call('llen', listName)
		else
			return redis.error_reply('ERR unsupported key type: ' .. listType)
		end
	"""
"""KEDA's redis scaler script, verbatim (kedacore/keda pkg/scalers/redis_scaler.go)."""


def _secret_keys(container: dict[str, Any]) -> set[str]:
    """Keys of every Secret the container reads (env and envFrom)."""
    keys = set()
    for entry in container.get("env", []):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            keys.add(ref["key"])
    assert not any("secretRef" in e for e in container.get("envFrom", []))
    return keys


def _component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


@pytest.mark.parametrize("values_name", MATRIX)
def test_each_pod_gets_only_its_own_redis_credentials(rendered: Render, values_name: str) -> None:
    r = rendered(values_name)
    expected = {
        "api": {"redis-url-api"},
        "worker": {"redis-url-worker"},
        "beat": {"redis-url-beat"},
        "flower": {"redis-url-flower"},
        "redis": {"redis-password-probe"} if r.has("StatefulSet", f"{RELEASE}-redis") else set(),
        "test": set(),
    }
    seen = set()
    for obj in r.objects:
        if obj["kind"] not in WORKLOADS:
            continue
        component = _component(obj)
        for c in containers(obj):
            redis_keys = {k for k in _secret_keys(c) if k.startswith("redis-")}
            assert redis_keys == expected[component], (obj["metadata"]["name"], c["name"])
            seen.add(component)
    assert {"api", "worker", "beat"} <= seen


@pytest.mark.parametrize("values_name", MATRIX)
def test_no_password_on_any_command_line(rendered: Render, values_name: str) -> None:
    r = rendered(values_name)
    secrets = [v for v in (r.secret_data() if r.has("Secret", RELEASE) else {}).values()]
    for obj in r.objects:
        if obj["kind"] not in WORKLOADS:
            continue
        for c in containers(obj):
            line = [
                *c.get("command", []),
                *c.get("args", []),
                *c.get("livenessProbe", {}).get("exec", {}).get("command", []),
                *c.get("readinessProbe", {}).get("exec", {}).get("command", []),
            ]
            text = " ".join(line)
            where = (obj["metadata"]["name"], c["name"], text)
            assert "$(" not in text, where  # no env expansion into an argument
            for flag in ("--requirepass", "--pass", " -a ", "--masterauth"):
                assert flag not in f" {text} ", where
            for secret in secrets:
                for value in {secret, *secret.split(",")}:
                    if len(value) >= 8:
                        assert value not in text, where


def _acl_users(data: dict[str, str]) -> dict[str, AclUser]:
    names = {
        "api": urlsplit(data["redis-url-api"]).username,
        "worker": urlsplit(data["redis-url-worker"]).username,
        "beat": urlsplit(data["redis-url-beat"]).username,
    }
    return {
        c: AclUser(unquote(names.get(c) or f"jobyard-{c}"), data[f"redis-password-{c}"])
        for c in COMPONENTS
    }


@pytest.mark.parametrize("values_name", ["defaults", "rich", "priorities"])
def test_the_acl_file_is_the_rules_file_rendered_for_the_release(
    rendered: Render, values_name: str
) -> None:
    r = rendered(values_name)
    data = r.secret_data()
    queue_names = [q["name"] for q in yaml.safe_load(r.config_text())["queues"]]
    expected = acl_file(_acl_users(data), queue_names)
    assert data["redis-users.acl"] == expected
    # Passwords appear only as their SHA-256.
    for c in COMPONENTS:
        assert data[f"redis-password-{c}"] not in data["redis-users.acl"]
    assert "user default reset off nopass" in data["redis-users.acl"]


def test_the_deploy_example_is_generated_from_the_rules() -> None:
    assert EXAMPLE_PATH.read_text(encoding="utf-8") == example_acl_file(), (
        "deploy/redis-acl.example.acl is stale: python -m tests.support.redis_acl > "
        "deploy/redis-acl.example.acl"
    )


def test_bundled_redis_reads_its_users_from_a_secret_file(rendered: Render) -> None:
    r = rendered("defaults")
    conf = r.get("ConfigMap", f"{RELEASE}-redis")["data"]["redis.conf"].splitlines()
    assert "aclfile /etc/redis-acl/users.acl" in conf
    assert not any(line.startswith(("requirepass", "user ")) for line in conf)
    sts = r.get("StatefulSet", f"{RELEASE}-redis")
    spec = pod_spec(sts)
    acl = next(v for v in spec["volumes"] if v["name"] == "acl")
    assert acl["secret"] == {
        "secretName": RELEASE,
        "defaultMode": 0o440,
        "items": [{"key": "redis-users.acl", "path": "users.acl"}],
    }
    (c,) = spec["containers"]
    assert {"name": "acl", "mountPath": "/etc/redis-acl", "readOnly": True} in c["volumeMounts"]
    assert c["args"] == ["/etc/redis/redis.conf"]
    probe = c["readinessProbe"]["exec"]["command"]
    assert probe == [
        "sh",
        "-c",
        "redis-cli -p 6379 --user 'jobyard-probe' --no-auth-warning ping | grep -qx PONG",
    ]
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/redis-acl" in annotations


def test_an_existing_secret_provides_the_acl_file(render_with: RenderWith) -> None:
    r = render_with({"secrets": {"existingSecret": "mine"}, "keda": {"crdInstalled": True}})
    spec = pod_spec(r.get("StatefulSet", f"{RELEASE}-redis"))
    acl = next(v for v in spec["volumes"] if v["name"] == "acl")
    assert acl["secret"]["secretName"] == "mine"
    assert acl["secret"]["items"] == [{"key": "redis-users.acl", "path": "users.acl"}]
    assert not r.of_kind("Secret")


def test_without_auth_there_is_no_acl_file(render_with: RenderWith) -> None:
    r = render_with({"redis": {"auth": False}, "keda": {"crdInstalled": True}})
    data = r.secret_data()
    assert data["redis-url-api"] == f"redis://{RELEASE}-redis.jobs.svc:6379/0"
    assert "redis-users.acl" not in data
    assert "aclfile" not in r.get("ConfigMap", f"{RELEASE}-redis")["data"]["redis.conf"]
    assert not r.has("TriggerAuthentication", f"{RELEASE}-redis-auth")


def test_an_external_redis_needs_each_components_password(
    chart_dir: Path, render_with: RenderWith
) -> None:
    values: dict[str, Any] = {
        "redis": {"host": "r", "bundled": {"enabled": False}},
        "keda": {"crdInstalled": True},
    }
    assert "redis.users.api.password is required" in render_error(chart_dir, values)
    users = {c: {"username": f"u-{c}", "password": f"pw-{c}"} for c in ("api", "worker", "beat")}
    values["redis"]["users"] = users
    assert "redis.users.keda.password is required" in render_error(chart_dir, values)
    data = render_with({**values, "keda": {"enabled": False}}).secret_data()
    assert data["redis-url-beat"] == "redis://u-beat:pw-beat@r:6379/0"
    assert "redis-users.acl" not in data and "redis-password-keda" not in data


# The rendered ACL file in a real redis-server.


@pytest.fixture
def chart_redis(rendered: Render, tmp_path: Path) -> Iterator[tuple[RedisProcess, dict[str, str]]]:
    data = rendered("priorities").secret_data()
    aclfile = tmp_path / "users.acl"
    aclfile.write_text(data["redis-users.acl"])
    server = RedisProcess(aclfile=aclfile).start()
    try:
        yield server, data
    finally:
        server.stop()


def _local(url: str, port: int) -> redis.Redis:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return redis.Redis.from_url(
        urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}")), socket_timeout=5
    )


def test_the_rendered_acl_file_lets_each_component_do_only_its_part(
    chart_redis: tuple[RedisProcess, dict[str, str]],
) -> None:
    server, data = chart_redis
    api = _local(data["redis-url-api"], server.port)
    worker = _local(data["redis-url-worker"], server.port)
    keda = redis.Redis(
        port=server.port, username=data["redis-username-keda"], password=data["redis-password-keda"]
    )
    anonymous = redis.Redis(port=server.port)
    assert api.ping() and worker.ping() and keda.ping()
    api.hset("jobyard:job:1", "state", "queued")
    api.lpush("default\x06\x166", "message")
    assert keda.eval(KEDA_SCRIPT, 1, "default\x06\x166") == 1
    assert keda.eval(KEDA_SCRIPT, 1, "default") == 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        keda.hgetall("jobyard:job:1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        keda.lpush("default", "forged")
    with pytest.raises(redis.exceptions.NoPermissionError):
        api.brpop(["default"], timeout=1)
    assert worker.brpop(["default\x06\x166"], timeout=1) is not None
    for client in (api, worker):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.config_get("*")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("not-jobyard", "x")
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.get("jobyard:job:1")
    probe = subprocess.run(
        [
            "redis-cli",
            "-p",
            str(server.port),
            "--user",
            "jobyard-probe",
            "--no-auth-warning",
            "ping",
        ],
        env={"REDISCLI_AUTH": data["redis-password-probe"], "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert probe.stdout.strip() == "PONG"


def test_keda_trigger_authentication_uses_the_keda_user(rendered: Render) -> None:
    for values_name in ("defaults", "external-redis-tls"):
        r = rendered(values_name)
        auth = r.get("TriggerAuthentication", f"{RELEASE}-redis-auth")
        keys = {ref["parameter"]: ref["key"] for ref in auth["spec"]["secretTargetRef"]}
        assert keys["username"] == "redis-username-keda"
        assert keys["password"] == "redis-password-keda"


def test_values_of_the_external_example_name_every_user() -> None:
    users = load_values("deploy-prod-example")["redis"]["users"]
    assert set(users) == {"api", "worker", "beat", "keda"}
