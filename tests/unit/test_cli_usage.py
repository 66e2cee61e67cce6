"""Bad flags and bad settings stop a command with exit 2 and a message naming the flag.

None of these reach the API: an unused loopback port stands in for it, so a command that
wrongly went ahead would fail with a different message.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jobyard.cli import main
from tests.support.redis_server import free_port


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("JOBYARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("JOBYARD_API_URL", f"http://127.0.0.1:{free_port()}")


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["enqueue", "jobyard.noop", "--priority", "12"],
            "Invalid value for '--priority' / '-p': 12 is not in the range 0<=x<=9.",
        ),
        (
            ["enqueue", "jobyard.noop", "--delay", "5x"],
            "Invalid value for '--delay': '5x' is not a duration; "
            "use seconds, or a duration such as 30s, 5m, 1h, 1h30m",
        ),
        (
            ["enqueue", "jobyard.noop", "--arg", "novalue"],
            "Invalid value for '--arg': expected KEY=VALUE, got 'novalue'",
        ),
        (
            ["enqueue", "jobyard.noop", "--args-json", "[1, 2]"],
            "Invalid value for '--args-json': must be a JSON object, got list",
        ),
        (
            ["enqueue", "jobyard.noop", "--idempotency-key", " "],
            "Invalid value for '--idempotency-key': must not be empty",
        ),
        (["queues", "-o", "yaml"], "Invalid value for '--output' / '-o': 'yaml' is not one of"),
        (
            ["dead-letters", "list", "--limit", "0"],
            "Invalid value for '--limit': 0 is not in the range 1<=x<=500.",
        ),
        (
            ["api", "--port", "70000"],
            "Invalid value for '--port': 70000 is not in the range 1<=x<=65535.",
        ),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "abc", "--timeout", "5"], "jobyard: --timeout only applies with --wait\n"),
        (
            ["enqueue", "jobyard.noop", "--timeout", "5"],
            "jobyard: --timeout only applies with --wait\n",
        ),
        (
            ["dead-letters", "retry"],
            "jobyard: give --queue QUEUE (every dead letter of that queue) "
            "or one or more JOB_IDs\n",
        ),
        (
            ["dead-letters", "purge", "--queue", "emails", "abc"],
            "jobyard: give either --queue or JOB_IDs, not both\n",
        ),
        (
            ["dead-letters", "purge", "--queue", "emails"],
            "jobyard: refusing to go on without confirmation: "
            "stdin is not a terminal; pass --yes\n",
        ),
        (
            ["dead-letters", "purge", "abc"],
            "jobyard: refusing to go on without confirmation: "
            "stdin is not a terminal; pass --yes\n",
        ),
        (
            ["dead-letters", "retry", "--queue", "emails"],
            "jobyard: refusing to go on without confirmation: "
            "stdin is not a terminal; pass --yes\n",
        ),
        (
            ["queues", "--api-url", "ftp://example.org"],
            "jobyard: --api-url: must start with http:// or https://, got 'ftp://example.org'\n",
        ),
    ],
)
def test_bad_combinations_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr == message


def test_a_bad_api_url_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBYARD_API_URL", "127.0.0.1:8000")
    result = run("queues")
    assert result.exit_code == 2
    assert result.stderr == (
        "jobyard: JOBYARD_API_URL: must start with http:// or https://, got '127.0.0.1:8000'\n"
    )


def test_client_commands_refuse_unknown_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBYARD_API_TOKN", "x")
    result = run("queues")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "jobyard: configuration error:\nunknown environment variable(s) JOBYARD_API_TOKN; known: "
    )


def test_client_commands_need_neither_config_file_nor_redis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no config file and no Redis the failure is about the API, not about them."""
    monkeypatch.setenv("JOBYARD_CONFIG", str(tmp_path / "missing.yaml"))
    monkeypatch.setenv("JOBYARD_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    result = run("status", "abc")
    assert result.exit_code == 2
    assert result.stderr.startswith("jobyard: cannot reach the jobyard API at http://127.0.0.1:")


def test_dead_letters_without_a_subcommand_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """`jobyard dead-letters --queue q` is the list command (it tries to reach the API)."""
    result = run("dead-letters", "--queue", "emails", "--limit", "0")
    assert result.exit_code == 2
    assert "Invalid value for '--limit': 0 is not in the range 1<=x<=500." in result.output
    help_result = run("dead-letters", "--help")
    assert help_result.exit_code == 0
    assert "list" in help_result.output
    assert "purge" in help_result.output
    assert "retry" in help_result.output


@pytest.fixture
def component_env(monkeypatch: pytest.MonkeyPatch, config_path: Path) -> None:
    monkeypatch.setenv("JOBYARD_CONFIG", str(config_path))


@pytest.mark.usefixtures("component_env")
def test_worker_names_the_configured_queues() -> None:
    result = run("worker", "--queue", "nope")
    assert result.exit_code == 2
    assert result.stderr == (
        "jobyard: --queue: unknown queue 'nope'; configured queues: default, emails, reports\n"
    )
    result = run("worker")
    assert result.exit_code == 2
    assert result.stderr == (
        "jobyard: --queue is required; configured queues: default, emails, reports\n"
    )


@pytest.mark.usefixtures("component_env")
def test_dev_names_unknown_queues() -> None:
    result = run("dev", "--queues", "default,nope,other")
    assert result.exit_code == 2
    assert result.stderr == (
        "jobyard: --queues: unknown queue(s) 'nope', 'other'; "
        "configured queues: default, emails, reports\n"
    )
    result = run("dev", "--queues", ",")
    assert result.exit_code == 2
    assert result.stderr == (
        "jobyard: --queues: no queue; configured queues: default, emails, reports\n"
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.usefixtures("component_env")
def test_dev_refuses_a_busy_api_port(busy_port: int, tmp_path: Path) -> None:
    result = run("dev", "--port", str(busy_port))
    assert result.exit_code == 2
    assert result.stderr == (
        f"jobyard: --port: 127.0.0.1:{busy_port} is already in use (another `jobyard dev` "
        "or `jobyard api`?); stop it or choose another --port\n"
    )


def test_components_stop_on_a_bad_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "jobyard.yaml"
    bad.write_text("queues:\n  - name: Default\n")
    monkeypatch.setenv("JOBYARD_CONFIG", str(bad))
    for command in (["worker", "--queue", "x"], ["dev"], ["api"], ["beat"]):
        result = run(*command)
        assert result.exit_code == 2, command
        assert result.stderr.startswith(
            f"jobyard: configuration error:\n{bad}: queues[0].name: String should match pattern"
        ), result.stderr
