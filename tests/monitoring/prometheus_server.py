"""A real Prometheus server (the Debian `prometheus` binary) for tests."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


def binary(name: str) -> str:
    """Path of `promtool` or `prometheus`; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(
            f"{name} is not on PATH: install Debian's `prometheus` package "
            "(.ci/run does it when missing)"
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusServer:
    """A Prometheus with an empty TSDB and no scrape targets, on a free loopback port."""

    def __init__(self, workdir: Path, config: str = "global:\n  scrape_interval: 15s\n") -> None:
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(config, encoding="utf-8")
        self.log_path = workdir / "prometheus.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready after {timeout_s} s:\n{self.log()}")

    def query(self, expr: str) -> httpx.Response:
        """An instant query through the HTTP API (a parse error is a 400 `bad_data`)."""
        return httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)

    def query_result(self, expr: str) -> list[Any]:
        response = self.query(expr)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {response.status_code} {body}")
        result: list[Any] = body["data"]["result"]
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@contextlib.contextmanager
def running_prometheus(workdir: Path, config: str | None = None) -> Iterator[PrometheusServer]:
    """Start Prometheus, wait until it is ready, stop it afterwards."""
    server = PrometheusServer(workdir) if config is None else PrometheusServer(workdir, config)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
