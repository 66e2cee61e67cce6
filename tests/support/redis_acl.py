"""Redis ACL files from the chart's rules (`charts/jobyard/files/redis/acl-rules.yaml`).

The same rules the chart renders into the bundled Redis' ACL file: the fault suite runs
redis-server with them, and `deploy/redis-acl.example.acl` is generated with
:func:`example_acl_file` (``python -m tests.support.redis_acl > deploy/redis-acl.example.acl``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_PATH = ROOT / "charts" / "jobyard" / "files" / "redis" / "acl-rules.yaml"
VALUES_PATH = ROOT / "charts" / "jobyard" / "values.yaml"
EXAMPLE_PATH = ROOT / "deploy" / "redis-acl.example.acl"

COMPONENTS = ("api", "worker", "beat", "keda", "flower", "probe")
"""The components that log in as their own user (besides `default`, PING only)."""

QUEUE_PLACEHOLDER = "{queue}"


@dataclass(frozen=True)
class AclUser:
    """One component's Redis user: its name and password."""

    username: str
    password: str


def load_rules(path: Path = RULES_PATH) -> dict[str, dict[str, Any]]:
    """Each user's entry of the rules file (`password` and the flattened `rules`)."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        name: {
            "password": entry.get("password"),
            "state": entry.get("state", "on"),
            "rules": list(_flatten(entry["rules"])),
        }
        for name, entry in doc["users"].items()
    }


def _flatten(items: Iterable[Any]) -> Iterable[str]:
    for item in items:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield str(item)


def expand(rules: Sequence[str], queues: Sequence[str]) -> list[str]:
    """`rules` with each rule naming {queue} repeated for every queue."""
    out: list[str] = []
    for rule in rules:
        if QUEUE_PLACEHOLDER in rule:
            out.extend(rule.replace(QUEUE_PLACEHOLDER, q) for q in queues)
        else:
            out.append(rule)
    return out


def password_rule(password: str) -> str:
    """The ACL rule setting `password`: its SHA-256 (`#<hex>`), never the password."""
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def acl_lines(
    users: Mapping[str, AclUser | str],
    queues: Sequence[str],
    rules: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """One `user ...` line per entry of the rules file, in name order (as the chart).

    `users` maps a component (api, worker, beat, keda) to its user, or to a ready-made
    password rule text (the example's placeholders); `default` needs none.
    """
    table = load_rules() if rules is None else rules
    lines = []
    for component in sorted(table):
        entry = table[component]
        if component == "default":
            username, secret = "default", str(entry["password"])
        else:
            given = users[component]
            if isinstance(given, AclUser):
                username, secret = given.username, password_rule(given.password)
            else:
                username, secret = f"<{component}>", given
        rules_text = expand(entry["rules"], queues)
        lines.append(" ".join(["user", username, "reset", entry["state"], secret, *rules_text]))
    return lines


def acl_file(
    users: Mapping[str, AclUser], queues: Sequence[str], extra_lines: Sequence[str] = ()
) -> str:
    """An ACL file (redis.conf `aclfile`) with every component's user."""
    return "\n".join([*acl_lines(users, queues), *extra_lines]) + "\n"


def chart_defaults() -> tuple[dict[str, str], list[str]]:
    """The chart's default user names (redis.users) and queue names (queues)."""
    values = yaml.safe_load(VALUES_PATH.read_text(encoding="utf-8"))
    names = {c: str(values["redis"]["users"][c]["username"]) for c in COMPONENTS}
    return names, [str(q["name"]) for q in values["queues"]]


EXAMPLE_HEADER = """\
# Redis ACL users of jobyard, one per component, for an external Redis (redis.conf:
# `aclfile /path/to/this/file`, then `ACL LOAD`). Generated from the chart's
# charts/jobyard/files/redis/acl-rules.yaml for the chart's default user names and queues
# (default, emails, reports): add a queue's two key patterns for every queue you add.
#   python -m tests.support.redis_acl > deploy/redis-acl.example.acl
# tests/chart/test_redis_acl.py fails when this file and the rules differ.
#
# Replace each #SHA256-OF-... with `#` and the SHA-256 (hex) of that user's password
# (printf %s "$PASSWORD" | sha256sum), or with `>` and the password itself. Redis refuses
# to load the file until every placeholder is replaced. Give each component its password
# in the chart's Secret (redis-url-api, -worker, -beat, -flower and redis-password-keda
# with secrets.existingSecret, or redis.users.<component>.password). jobyard-probe is
# only for the bundled Redis' probes: leave it out, as jobyard-flower without Flower.
"""


def example_acl_file() -> str:
    """The text of `deploy/redis-acl.example.acl`."""
    names, queues = chart_defaults()
    placeholders = {c: f"#SHA256-OF-THE-{c.upper()}-PASSWORD" for c in COMPONENTS}
    lines = acl_lines(placeholders, queues)
    for component, name in names.items():
        lines = [line.replace(f"user <{component}> ", f"user {name} ", 1) for line in lines]
    return EXAMPLE_HEADER + "\n".join(lines) + "\n"


ADMIN_RULES = "~* &* +@all"
"""The tests' own user (the oracle that reads and writes anything), never a component's."""


@dataclass(frozen=True)
class ServerUsers:
    """The users of one test redis-server: every component's, and the tests' admin."""

    components: dict[str, AclUser]
    admin: AclUser

    @classmethod
    def generate(cls) -> ServerUsers:
        """Random passwords; user names as the chart's defaults (jobyard-api...)."""
        return cls(
            components={c: AclUser(f"jobyard-{c}", secrets.token_hex(16)) for c in COMPONENTS},
            admin=AclUser("jobyard-test-admin", secrets.token_hex(16)),
        )

    def acl_text(self, queues: Sequence[str]) -> str:
        """The ACL file: the chart's rules for the components, plus the admin."""
        admin = self.admin
        return acl_file(
            self.components,
            queues,
            [f"user {admin.username} reset on {password_rule(admin.password)} {ADMIN_RULES}"],
        )

    def url(self, base_url: str, component: str | None = None) -> str:
        """`base_url` (no user info) as `component`'s user, or the admin's (None)."""
        user = self.admin if component is None else self.components[component]
        return with_user(base_url, user)


def with_user(url: str, user: AclUser) -> str:
    """`url` with `user`'s name and password as its user info (percent-encoded)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    auth = f"{quote(user.username, safe='')}:{quote(user.password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{auth}@{host}"))


if __name__ == "__main__":
    print(example_acl_file(), end="")
