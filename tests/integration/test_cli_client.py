"""Client commands (`jobyard enqueue/status/queues/dead-letters`) against a real API and workers.

One API and two workers (queues `default` and `emails`) serve the whole module, on their own
Redis database. Each command runs as a real `python -m jobyard.cli` process whose
environment has only JOBYARD_API_URL: no config file, no Redis.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import ROOT, TEST_CONFIG
from tests.support.processes import Proc, jobyard_env, wait_until
from tests.support.redis_server import free_port

pytestmark = pytest.mark.integration

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CLI_DB = 7


@dataclass
class Stack:
    api_url: str
    redis: redis.Redis

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=10)


@pytest.fixture(scope="module")
def stack(redis_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("cli")
    redis_url = f"{redis_base_url.rsplit('/', 1)[0]}/{CLI_DB}"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    config = tmp / "jobyard.yaml"
    config.write_text(TEST_CONFIG)
    port = free_port()
    env = jobyard_env(
        redis_url,
        config,
        JOBYARD_API_PORT=str(port),
        JOBYARD_JOB_MODULES="tests.support.cli_jobs",
        JOBYARD_HEARTBEAT_DIR=str(tmp / "hb"),
        JOBYARD_WORKER_METRICS_PORT="0",
    )
    procs = [
        Proc(["api"], env, tmp / "api.log"),
        Proc(["worker", "--queue", "default"], env, tmp / "worker-default.log"),
        Proc(["worker", "--queue", "emails"], env, tmp / "worker-emails.log"),
    ]
    try:
        api_url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=api_url, timeout=5) as http:

            def ready() -> bool:
                for proc in procs:
                    if proc.popen.poll() is not None:
                        raise AssertionError(f"{proc.args} exited:\n{proc.log()}")
                try:
                    if http.get("/readyz").status_code != 200:
                        return False
                    queues = {q["name"]: q for q in http.get("/v1/queues").json()["queues"]}
                except httpx.HTTPError:
                    return False
                return queues["default"]["workers"] >= 1 and queues["emails"]["workers"] >= 1

            wait_until(ready, timeout_s=90, interval_s=0.2)
        yield Stack(api_url, client)
    finally:
        for proc in procs:
            proc.stop()
        client.flushdb()
        client.close()


def cli_env(api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    env["JOBYARD_API_URL"] = api_url
    return env


def cli(stack: Stack, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `jobyard ARGS...` as a real process talking to the module's API."""
    return subprocess.run(
        [sys.executable, "-m", "jobyard.cli", *args],
        env=cli_env(stack.api_url),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def summary(stdout: str) -> dict[str, str]:
    """The `label  value` lines of `jobyard status` as a dict."""
    out = {}
    for line in stdout.splitlines():
        label, _, value = line.partition("  ")
        out[label.strip()] = value.strip()
    return out


def enqueue_id(stack: Stack, *args: str) -> str:
    result = cli(stack, "enqueue", *args)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert UUID.match(job_id), result.stdout
    return job_id


def job_state(stack: Stack, job_id: str) -> str:
    with stack.http() as http:
        return str(http.get(f"/v1/jobs/{job_id}").json()["state"])


def test_enqueue_parses_args_and_status_shows_the_result(stack: Stack) -> None:
    job_id = enqueue_id(
        stack,
        "cli.echo",
        "--arg",
        "count=3",
        "--arg",
        "name=007",
        "--arg",
        'tags=["x", "y"]',
        "--arg",
        "opts.dry_run=true",
        "--arg",
        "opts.level=2",
    )
    result = cli(stack, "status", job_id, "--wait", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    rows = summary(result.stdout)
    assert rows["id"] == job_id
    assert rows["task"] == "cli.echo"
    assert rows["queue"] == "default"
    assert rows["state"] == "succeeded"
    assert rows["attempts"] == "1 of 1"
    assert rows["result"] == (
        '{"count": 3, "name": "007", "tags": ["x", "y"], "opts": {"dry_run": true, "level": 2}}'
    )
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(ran \d", rows["finished"])

    as_json = cli(stack, "status", job_id, "-o", "json")
    assert as_json.returncode == 0
    record = json.loads(as_json.stdout)
    assert record["args"] == {
        "count": 3,
        "name": "007",
        "tags": ["x", "y"],
        "opts": {"dry_run": True, "level": 2},
    }
    assert record["result"] == record["args"]


def test_args_json_is_merged_under_arg_pairs(stack: Stack) -> None:
    result = cli(
        stack,
        "enqueue",
        "cli.echo",
        "--args-json",
        '{"count": 1, "name": "base", "opts": {"level": 5}}',
        "--arg",
        "count=2",
        "--arg",
        "opts.dry_run=true",
        "--wait",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["state"] == "succeeded"
    assert record["result"] == {
        "count": 2,
        "name": "base",
        "tags": [],
        "opts": {"dry_run": True, "level": 5},
    }


def test_enqueue_json_priority_delay_and_idempotency(stack: Stack) -> None:
    key = f"cli-{uuid.uuid4()}"
    first = cli(stack, "enqueue", "jobyard.noop", "--idempotency-key", key, "-o", "json")
    again = cli(stack, "enqueue", "jobyard.noop", "--idempotency-key", key, "-o", "json")
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    one, two = json.loads(first.stdout), json.loads(again.stdout)
    assert one["id"] == two["id"]
    assert one["task"] == "jobyard.noop"
    assert one["idempotency_key"] == key

    later = cli(stack, "enqueue", "jobyard.noop", "--priority", "7", "--delay", "1h", "-o", "json")
    assert later.returncode == 0, later.stderr
    record = json.loads(later.stdout)
    assert record["state"] == "scheduled"
    assert record["priority"] == 7
    assert record["eta"] == pytest.approx(record["enqueued_at"] + 3600, abs=1)
    # A job that has not ended is not a failure: exit 0.
    shown = cli(stack, "status", record["id"])
    assert shown.returncode == 0, shown.stderr
    rows = summary(shown.stdout)
    assert rows["state"] == "scheduled"
    assert rows["priority"] == "7"
    assert rows["attempts"] == "0 of 1"
    assert "eta" in rows
    assert "started" not in rows


def test_status_wait_draws_the_progress_bar_to_the_end(stack: Stack) -> None:
    job_id = enqueue_id(stack, "cli.progress", "--arg", "steps=5", "--arg", "step_s=0.2")
    result = cli(stack, "status", job_id, "--wait")
    assert result.returncode == 0, result.stderr
    bar = result.stderr.strip().splitlines()[-1]
    assert re.match(r"^cli\.progress succeeded: step 5 .* 5/5 100% \d:\d\d:\d\d$", bar), bar
    rows = summary(result.stdout)
    assert rows["state"] == "succeeded"
    assert rows["progress"] == "5/5 step 5"
    assert rows["result"] == '{"steps": 5}'


def test_a_failing_job_exits_1_with_its_error(stack: Stack) -> None:
    result = cli(stack, "enqueue", "cli.fail", "--arg", "reason=kaput", "--wait")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    job_id = lines[0]
    assert UUID.match(job_id)
    rows = summary("\n".join(lines[1:]))
    assert rows["state"] in {"dead", "failed"}
    assert rows["error"] == "RuntimeError: kaput"
    again = cli(stack, "status", job_id)
    assert again.returncode == 1
    assert summary(again.stdout)["state"] == rows["state"]


def test_wait_gives_up_after_timeout_with_exit_3(stack: Stack) -> None:
    job_id = enqueue_id(stack, "cli.progress", "--arg", "steps=4", "--arg", "step_s=0.5")
    result = cli(stack, "status", job_id, "--wait", "--timeout", "0.5")
    assert result.returncode == 3, result.stderr
    assert re.search(
        rf"jobyard: job {job_id} is still (queued|started) after --timeout 0.5 s", result.stderr
    )
    wait_until(lambda: job_state(stack, job_id) == "succeeded", timeout_s=30)


def test_queues_table_and_json(stack: Stack) -> None:
    # `reports` has no worker here: what is enqueued there waits.
    for priority in ("0", "9"):
        enqueue_id(stack, "jobyard.noop", "--queue", "reports", "--priority", priority)
    as_json = cli(stack, "queues", "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    queues = {q["name"]: q for q in json.loads(as_json.stdout)["queues"]}
    assert sorted(queues) == ["default", "emails", "reports"]
    assert queues["reports"]["depth"] == 2
    assert queues["reports"]["workers"] == 0
    assert queues["reports"]["in_progress"] == 0
    assert queues["reports"]["oldest_job_age_s"] >= 0
    assert queues["default"]["workers"] == 1
    assert queues["emails"]["workers"] == 1

    table = cli(stack, "queues")
    assert table.returncode == 0, table.stderr
    lines = [line.rstrip() for line in table.stdout.splitlines()]
    assert re.split(r"\s{2,}", lines[0]) == [
        "QUEUE",
        "DEPTH",
        "OLDEST",
        "IN PROGRESS",
        "WORKERS",
        "DEAD LETTERS",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["reports"][0] == "2"
    assert re.match(r"^\d+ms$|^\d+(\.\d)?s$|^\d+m\d\ds$", rows["reports"][1])
    assert rows["reports"][2:] == ["0", "0", "0"]
    assert rows["emails"][3] == "1"


def dead_ids(stack: Stack, queue: str) -> list[str]:
    result = cli(stack, "dead-letters", "list", "--queue", queue, "-o", "json")
    assert result.returncode == 0, result.stderr
    return [r["id"] for r in json.loads(result.stdout)["dead_letters"]]


def test_dead_letters_list_retry_and_purge(stack: Stack) -> None:
    ids = [
        enqueue_id(stack, "cli.fail", "--queue", "emails", "--arg", f"reason=r{n}")
        for n in range(3)
    ]
    wait_until(lambda: sorted(dead_ids(stack, "emails")) == sorted(ids), timeout_s=60)

    table = cli(stack, "dead-letters", "--queue", "emails")
    assert table.returncode == 0, table.stderr
    lines = [line.rstrip() for line in table.stdout.splitlines()]
    assert lines[0].split() == ["ID", "TASK", "QUEUE", "ATTEMPTS", "DIED", "ERROR"]
    by_id = {line.split()[0]: line for line in lines[1:]}
    assert sorted(by_id) == sorted(ids)
    assert re.search(r"cli\.fail\s+emails\s+1\s+\S+ ago\s+RuntimeError: r0$", by_id[ids[0]])

    retried = cli(stack, "dead-letters", "retry", ids[0])
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout == f"retried {ids[0]}\n"
    # It runs again, fails again, and is dead again.
    wait_until(lambda: job_state(stack, ids[0]) in {"dead", "failed"}, timeout_s=60)
    wait_until(lambda: ids[0] in dead_ids(stack, "emails"), timeout_s=30)

    purged = cli(stack, "dead-letters", "purge", ids[1], "--yes")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout == f"purged {ids[1]}\n"
    assert sorted(dead_ids(stack, "emails")) == sorted([ids[0], ids[2]])

    unknown = cli(stack, "dead-letters", "retry", "no-such-job")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("jobyard: no-such-job: ")
    assert "(404)" in unknown.stderr

    all_retried = cli(stack, "dead-letters", "retry", "--queue", "emails", "--yes")
    assert all_retried.returncode == 0, all_retried.stderr
    assert all_retried.stdout == "retried 2 dead letter(s) of queue 'emails'\n"
    wait_until(lambda: sorted(dead_ids(stack, "emails")) == sorted([ids[0], ids[2]]))
    wait_until(
        lambda: all(job_state(stack, i) in {"dead", "failed"} for i in (ids[0], ids[2])),
        timeout_s=60,
    )

    all_purged = cli(stack, "dead-letters", "purge", "--queue", "emails", "--yes")
    assert all_purged.returncode == 0, all_purged.stderr
    assert all_purged.stdout == "purged 2 dead letter(s) of queue 'emails'\n"
    empty = cli(stack, "dead-letters", "--queue", "emails")
    assert empty.returncode == 0
    assert empty.stdout == "no dead letters in queue 'emails'\n"


def test_purge_asks_on_a_terminal_and_no_keeps_them(stack: Stack) -> None:
    job_id = enqueue_id(stack, "cli.fail", "--queue", "emails")
    wait_until(lambda: job_id in dead_ids(stack, "emails"), timeout_s=60)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobyard.cli", "dead-letters", "purge", "--queue", "emails"],
            env=cli_env(stack.api_url),
            cwd=str(ROOT),
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(master, b"n\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 1, err
    assert out.startswith("Permanently delete the 1 dead letter(s) of queue 'emails'? [y/N]: "), out
    assert "Aborted!" in err
    assert dead_ids(stack, "emails") == [job_id]


def test_api_errors_show_detail_and_each_field(stack: Stack) -> None:
    bad_args = cli(stack, "enqueue", "cli.echo", "--arg", "count=many")
    assert bad_args.returncode == 2
    first, *fields = bad_args.stderr.splitlines()
    assert first.startswith("jobyard: ")
    assert "(422)" in first
    assert any(line.startswith("  - ") and "count" in line for line in fields), bad_args.stderr
    assert any(line.startswith("  - ") and "name" in line for line in fields), bad_args.stderr

    unknown = cli(stack, "enqueue", "no.such_task")
    assert unknown.returncode == 2
    assert "(404)" in unknown.stderr
    assert "no.such_task" in unknown.stderr
    assert "cli.echo" in unknown.stderr  # the known tasks are listed

    missing = cli(stack, "status", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 2
    assert "(404)" in missing.stderr


def test_connection_refused_says_what_to_do() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    result = subprocess.run(
        [sys.executable, "-m", "jobyard.cli", "queues"],
        env=cli_env(url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"jobyard: cannot reach the jobyard API at {url}: [Errno 111] Connection refused "
        "(is `jobyard api` running? set JOBYARD_API_URL)\n"
    )


def test_tokens_from_flag_or_environment(
    redis_base_url: str, tmp_path: Path, config_path: Path
) -> None:
    port = free_port()
    env = jobyard_env(
        f"{redis_base_url.rsplit('/', 1)[0]}/{CLI_DB}",
        config_path,
        JOBYARD_API_PORT=str(port),
        JOBYARD_API_TOKENS="reader-token-abcdef,other-token-abcdef",
    )
    api = Proc(["api"], env, tmp_path / "api-tokens.log")
    try:
        url = f"http://127.0.0.1:{port}"
        api.wait_for_log("Application startup complete", timeout_s=60)
        token_stack = Stack(url, redis.Redis())

        missing = cli(token_stack, "queues")
        assert missing.returncode == 2
        assert "(401)" in missing.stderr
        assert missing.stderr.endswith("  (pass --token or set JOBYARD_API_TOKEN)\n")

        wrong = cli(token_stack, "queues", "--token", "nope")
        assert wrong.returncode == 2
        assert "(403)" in wrong.stderr

        by_flag = cli(token_stack, "queues", "-o", "json", "--token", "reader-token-abcdef")
        assert by_flag.returncode == 0, by_flag.stderr
        assert [q["name"] for q in json.loads(by_flag.stdout)["queues"]] == [
            "default",
            "emails",
            "reports",
        ]
        by_env = subprocess.run(
            [sys.executable, "-m", "jobyard.cli", "queues", "-o", "json"],
            env={**cli_env(url), "JOBYARD_API_TOKEN": "other-token-abcdef"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert by_env.returncode == 0, by_env.stderr
    finally:
        api.stop()
