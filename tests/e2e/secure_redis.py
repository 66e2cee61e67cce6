"""A redis-server that only speaks TLS and only lets a password-protected ACL user in,
with a throwaway certificate authority made for the test."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.certs import Authority
from tests.support.redis_server import free_port, redis_server_binary

ACL_USER = "jobyard"
ACL_PASSWORD = "s3cret-acl-password"
ACL_RULES = "on >{password} ~* &* +@all -@dangerous"
"""Every key and pub/sub channel (Celery needs `&*`), no dangerous commands."""


class SecureRedis:
    """`redis-server` with TLS only (no plain port) and an ACL user; the default user off."""

    def __init__(self) -> None:
        binary = redis_server_binary()
        assert binary is not None, "no redis-server binary"
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="jobyard-tls-redis-"))
        self.ca = Authority.create(self.dir, "jobyard-test-ca")
        self.other_ca = Authority.create(self.dir, "some-other-ca")
        self.cert_path, self.key_path = self.ca.issue_server(self.dir)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(
        self,
        *,
        user: str = ACL_USER,
        password: str = ACL_PASSWORD,
        query: str | None = None,
    ) -> str:
        """`rediss://user:password@127.0.0.1:port/0` + `?query` (default: our CA)."""
        q = f"ssl_ca_certs={self.ca.cert_path}" if query is None else query
        return f"rediss://{user}:{password}@127.0.0.1:{self.port}/0" + (f"?{q}" if q else "")

    def start(self) -> SecureRedis:
        conf = self.dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "port 0",
                    f"tls-port {self.port}",
                    "bind 127.0.0.1",
                    f"tls-cert-file {self.cert_path}",
                    f"tls-key-file {self.key_path}",
                    f"tls-ca-cert-file {self.ca.cert_path}",
                    "tls-auth-clients no",
                    f"dir {self.dir}",
                    'save ""',
                    "appendonly no",
                    "user default off",
                    f"user {ACL_USER} {ACL_RULES.format(password=ACL_PASSWORD)}",
                ]
            )
            + "\n"
        )
        log = (self.dir / "redis.log").open("wb")
        self.proc = subprocess.Popen([self.binary, str(conf)], stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url(), socket_connect_timeout=0.5)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.dir / "redis.log").read_text()) from None
                time.sleep(0.05)
        raise RuntimeError(f"TLS redis-server did not answer on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
