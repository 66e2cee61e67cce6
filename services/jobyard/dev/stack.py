"""`jobyard dev`: start, watch and stop the local stack.

Order: Redis (embedded unless JOBYARD_REDIS_URL is set), then the API, one worker per
queue and beat, each a child in its own process group. Ready means `/readyz` answers 200
and every worker has registered its heartbeat. A child that dies stops the stack (exit 1)
rather than being restarted, so a crash is seen, not hidden. SIGINT/SIGTERM: SIGTERM to
every child, a grace for running jobs, SIGKILL for stragglers, Redis last, exit 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
import redis

from jobyard.core import keys
from jobyard.core.bootstrap import Runtime
from jobyard.core.errors import ConfigError
from jobyard.dev.children import Child, Printer, colour_for
from jobyard.dev.ports import free_port, port_is_free, preferred_or_free
from jobyard.dev.redis import EmbeddedRedis, plan_embedded_redis

STATE_DIR = ".jobyard"
"""Under the current directory: Redis data, heartbeats, the stack's state file."""
STATE_FILE = "dev-stack.json"
"""Names, pids and URLs of the running stack (for tools and tests); removed on exit."""
EXIT_MARGIN_S = 10.0
"""Added to the longest worker shutdown grace before stragglers are killed."""
REDIS_START_TIMEOUT_S = 20.0
REDIS_STOP_TIMEOUT_S = 10.0
POLL_S = 0.2
LOOPBACK_ENV = "JOBYARD_EGRESS_ALLOW_LOOPBACK"
"""Set to true for the children unless already set: outbound jobs may reach loopback."""


@dataclass(frozen=True)
class DevOptions:
    """What `jobyard dev` was asked for."""

    api_host: str
    api_port: int
    queues: list[str]
    ready_timeout_s: float
    redis_url: str | None
    """An existing Redis (JOBYARD_REDIS_URL); None starts an embedded one."""


class StackError(Exception):
    """The stack could not start or a child died; the message says which and why."""


@dataclass
class _Signals:
    stop: threading.Event = field(default_factory=threading.Event)
    force: threading.Event = field(default_factory=threading.Event)
    received: list[int] = field(default_factory=list)

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.stop.is_set():
            self.force.set()
        self.stop.set()


class DevStack:
    """The running stack: children, Redis, printer, state file."""

    def __init__(self, rt: Runtime, options: DevOptions, cwd: Path) -> None:
        self.rt = rt
        self.options = options
        self.cwd = cwd
        self.state_dir = cwd / STATE_DIR
        names = ["api", "beat", "redis", "dev", *(f"worker:{q}" for q in options.queues)]
        self.printer = Printer(max(len(n) for n in names))
        self.signals = _Signals()
        self.redis: Child | None = None
        self.embedded: EmbeddedRedis | None = None
        self.redis_url = options.redis_url or ""
        self.children: list[Child] = []
        self.worker_metrics_ports: dict[str, int] = {}
        self.beat_metrics_port = 0
        self.started_at = time.time()

    # messages

    def say(self, text: str) -> None:
        self.printer.line("dev", colour_for("dev"), text)

    @property
    def api_url(self) -> str:
        return f"http://{self.options.api_host}:{self.options.api_port}"

    # start

    def check_ports(self) -> None:
        if not port_is_free(self.options.api_port, self.options.api_host):
            raise ConfigError(
                f"--port: {self.options.api_host}:{self.options.api_port} is already in use "
                "(another `jobyard dev` or `jobyard api`?); stop it or choose another --port"
            )

    def start_redis(self) -> None:
        if self.options.redis_url:
            self.say(f"using the Redis at JOBYARD_REDIS_URL={masked_url(self.options.redis_url)}")
            self._wait_for_redis(None)
            return
        self.embedded = plan_embedded_redis(self.state_dir, {self.options.api_port})
        self.redis_url = self.embedded.url
        self.say(
            f"starting redis-server ({self.embedded.binary.source}: {self.embedded.binary.path}) "
            f"on {self.redis_url}"
        )
        self.redis = Child(
            "redis",
            self.embedded.argv(),
            dict(os.environ),
            self.cwd,
            self.printer,
            colour_for("redis"),
        )
        self._wait_for_redis(self.redis)

    def _wait_for_redis(self, child: Child | None) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=2)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        last = ""
        try:
            while time.monotonic() < deadline and not self.signals.stop.is_set():
                if child is not None and child.poll() is not None:
                    child.drain()
                    raise StackError(_death_report(child))
                try:
                    if client.ping():
                        return
                except redis.RedisError as exc:
                    last = str(exc)
                time.sleep(0.05)
        finally:
            client.close()
        if self.signals.stop.is_set():
            return
        where = "JOBYARD_REDIS_URL" if child is None else "the embedded redis-server"
        raise StackError(
            f"{where} at {masked_url(self.redis_url)} did not answer within "
            f"{REDIS_START_TIMEOUT_S:g} s: {last}"
        )

    def child_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["JOBYARD_REDIS_URL"] = self.redis_url
        env.setdefault("JOBYARD_LOG_FORMAT", "console")
        env.setdefault("JOBYARD_HEARTBEAT_DIR", str(self.state_dir / "heartbeat"))
        env.setdefault("JOBYARD_METRICS_HOST", "127.0.0.1")
        if not self.rt.settings.auth_tokens_configured:
            # A laptop stack: the API runs open on purpose (and says so), docs on.
            env.setdefault("JOBYARD_API_AUTH", "none")
            env.setdefault("JOBYARD_API_DOCS", "true")
        # Local webhook receivers live on loopback; the banner says so.
        env.setdefault(LOOPBACK_ENV, "true")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def start_components(self) -> None:
        cli = [sys.executable, "-m", "jobyard.cli"]
        self._spawn(
            "api",
            [*cli, "api", "--host", self.options.api_host, "--port", str(self.options.api_port)],
            self.child_env(),
        )
        taken = {self.options.api_port}
        if self.embedded is not None:
            taken.add(self.embedded.port)
        for index, queue in enumerate(self.options.queues):
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            self.worker_metrics_ports[queue] = port
            self._spawn(
                f"worker:{queue}",
                [*cli, "worker", "--queue", queue],
                self.child_env(JOBYARD_WORKER_METRICS_PORT=str(port)),
                index,
            )
        self.beat_metrics_port = preferred_or_free(self.rt.settings.beat_metrics_port, taken)
        self._spawn(
            "beat",
            [*cli, "beat"],
            self.child_env(JOBYARD_BEAT_METRICS_PORT=str(self.beat_metrics_port)),
        )
        # Readers (Redis's too) start only now: spawning with a preexec function is unsafe
        # once other threads run.
        for child in [*([self.redis] if self.redis else []), *self.children]:
            child.start_streaming()
        self.write_state(ready=False)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], index: int = 0) -> None:
        child = Child(name, argv, env, self.cwd, self.printer, colour_for(name, index))
        self.children.append(child)

    # watch

    def dead_child(self) -> Child | None:
        for child in ([self.redis] if self.redis else []) + self.children:
            if child.poll() is not None:
                return child
        return None

    def wait_until_ready(self) -> bool:
        """True when ready; False when interrupted. Raises StackError."""
        deadline = time.monotonic() + self.options.ready_timeout_s
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1, socket_timeout=2)
        http = httpx.Client(timeout=2.0)
        readyz = "no answer yet"
        missing = list(self.options.queues)
        try:
            while not self.signals.stop.is_set():
                dead = self.dead_child()
                if dead is not None:
                    dead.drain()
                    raise StackError(_death_report(dead))
                try:
                    status = http.get(f"{self.api_url}/readyz").status_code
                    readyz = f"answered {status}"
                except httpx.HTTPError as exc:
                    status, readyz = 0, f"no answer ({type(exc).__name__})"
                with contextlib.suppress(redis.RedisError):
                    missing = [
                        q
                        for q in self.options.queues
                        if client.zcount(keys.workers(q), self.started_at, "+inf") == 0
                    ]
                if status == 200 and not missing:
                    return True
                if time.monotonic() >= deadline:
                    waiting = (
                        f"; no worker heartbeat yet for: {', '.join(missing)}" if missing else ""
                    )
                    raise StackError(
                        f"the stack was not ready after {self.options.ready_timeout_s:g} s "
                        f"(--ready-timeout): GET {self.api_url}/readyz {readyz}{waiting}"
                    )
                self.signals.stop.wait(POLL_S)
        finally:
            client.close()
            http.close()
        return False

    def banner(self) -> str:
        took = time.time() - self.started_at
        ports = ", ".join(f":{self.worker_metrics_ports[q]}" for q in self.options.queues)
        beat_metrics = (
            f"metrics on :{self.beat_metrics_port}" if self.beat_metrics_port else "metrics off"
        )
        if self.embedded is not None:
            redis_line = (
                f"{self.redis_url}  (embedded {self.embedded.binary.path}, "
                f"data in {self.embedded.data_dir.relative_to(self.cwd)}, not persisted)"
            )
        else:
            redis_line = f"{masked_url(self.redis_url)}  (JOBYARD_REDIS_URL)"
        return "\n".join(
            [
                "",
                f"jobyard dev stack ready in {took:.1f} s",
                f"  API      {self.api_url}  ({self._auth_line()})",
                f"  docs     {self.api_url}/docs",
                f"  metrics  {self.api_url}/metrics",
                f"  Redis    {redis_line}",
                f"  workers  {', '.join(self.options.queues)}  (metrics on {ports})",
                f"  beat     running  ({beat_metrics})",
                *self._egress_line(),
                *self._client_hint(),
                "Press Ctrl-C to stop.",
                "",
            ]
        )

    def _auth_line(self) -> str:
        if self.rt.settings.auth_tokens_configured:
            return "tokens required: JOBYARD_API_TOKENS / JOBYARD_ADMIN_TOKENS"
        return (
            "OPEN: no token needed (JOBYARD_API_AUTH=none); set JOBYARD_ADMIN_TOKENS "
            "before listening beyond loopback"
        )

    def _egress_line(self) -> list[str]:
        value = self.child_env()[LOOPBACK_ENV]
        if value.strip().lower() not in ("1", "true", "yes", "on", "t", "y"):
            return []
        return [
            f"  egress   loopback (127.0.0.0/8, ::1) allowed for webhooks and other outbound "
            f"jobs ({LOOPBACK_ENV}={value}; dev only, never in a cluster)"
        ]

    def _client_hint(self) -> list[str]:
        if self.rt.settings.api_url.rstrip("/") == self.api_url:
            return []
        return [f"  CLI      export JOBYARD_API_URL={self.api_url}  (for jobyard enqueue/status)"]

    def watch(self) -> Child | None:
        """Block until a signal (None) or a child's death (that child)."""
        while not self.signals.stop.is_set():
            dead = self.dead_child()
            if dead is not None:
                return dead
            self.signals.stop.wait(POLL_S)
        return None

    # stop

    def stop(self) -> None:
        """SIGTERM every component, wait for their grace, SIGKILL the rest, then Redis."""
        grace_s = EXIT_MARGIN_S + max(
            (self.rt.config.queue(q).shutdown_grace_s for q in self.options.queues), default=0
        )
        running = [c for c in self.children if c.poll() is None]
        if running:
            self.say(
                f"stopping {', '.join(c.name for c in running)} "
                f"(up to {grace_s:g} s; Ctrl-C again to kill now)"
            )
        for child in running:
            child.terminate()
        deadline = time.monotonic() + grace_s
        while (
            any(c.poll() is None for c in self.children)
            and time.monotonic() < deadline
            and not self.signals.force.is_set()
        ):
            time.sleep(0.05)
        for child in self.children:
            if child.poll() is None:
                self.say(f"{child.name} (pid {child.pid}) did not stop in time: killing it")
            # Also reaps what a child forked and left behind (pool processes of a worker).
            if child.group_alive():
                child.kill_group()
            child.wait(5)
        for child in self.children:
            child.drain()
        if self.redis is not None:
            self.redis.terminate()
            if self.redis.wait(REDIS_STOP_TIMEOUT_S) is None:
                self.say("redis-server did not stop in time: killing it")
            if self.redis.group_alive():
                self.redis.kill_group()
            self.redis.wait(5)
            self.redis.drain()
        self.remove_state()

    # state file

    def write_state(self, *, ready: bool) -> None:
        processes = [{"name": c.name, "pid": c.pid} for c in self.children]
        if self.redis is not None:
            processes.append({"name": "redis", "pid": self.redis.pid})
        state = {
            "pid": os.getpid(),
            "ready": ready,
            "api_url": self.api_url,
            "redis_url": masked_url(self.redis_url),
            "redis_server": self.embedded.binary.path if self.embedded else None,
            "worker_metrics_ports": self.worker_metrics_ports,
            "beat_metrics_port": self.beat_metrics_port,
            "processes": processes,
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_dir / STATE_FILE)

    def remove_state(self) -> None:
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)


def _death_report(child: Child) -> str:
    code = child.poll()
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited {code}"
    lines = [f"{child.name} (pid {child.pid}) {how}; its last output:"]
    lines += [f"  {line}" for line in child.tail] or ["  (nothing)"]
    return "\n".join(lines)


def masked_url(url: str) -> str:
    """The URL with its password replaced by `***` (for printing)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def run_dev(rt: Runtime, options: DevOptions, cwd: Path | None = None) -> int:
    """Run the stack until Ctrl-C (exit 0) or a child's death (exit 1)."""
    stack = DevStack(rt, options, cwd or Path.cwd())
    stack.check_ports()
    previous = {
        sig: signal.signal(sig, stack.signals.handle)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    code = 0
    try:
        stack.start_redis()
        if not stack.signals.stop.is_set():
            stack.start_components()
        if not stack.signals.stop.is_set() and stack.wait_until_ready():
            stack.write_state(ready=True)
            stack.printer.block(stack.banner())
            dead = stack.watch()
            if dead is not None:
                dead.drain()
                raise StackError(_death_report(dead))
    except StackError as exc:
        stack.printer.block(f"\njobyard dev: {exc}\n")
        code = 1
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stack.say("stopped" if code == 0 else "stopped after a failure (exit 1)")
    return code
