"""Child processes of the local stack and their prefixed, coloured output."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import click

TAIL_LINES = 30
"""Lines of output kept per child, shown when it dies."""

_COLOURS = {"api": "cyan", "beat": "yellow", "redis": "red", "dev": "white"}
_WORKER_COLOURS = ("green", "magenta", "blue", "bright_green", "bright_magenta", "bright_blue")


def colour_for(name: str, index: int = 0) -> str:
    """The prefix colour of a child: fixed per component, cycling for workers."""
    return _COLOURS.get(name, _WORKER_COLOURS[index % len(_WORKER_COLOURS)])


class Printer:
    """Writes lines from many threads, each prefixed by a fixed-width coloured name."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._lock = threading.Lock()

    def line(self, name: str, colour: str, text: str) -> None:
        prefix = click.style(f"{name:<{self.width}}", fg=colour, bold=name == "dev")
        with self._lock:
            click.echo(f"{prefix} | {text}")

    def block(self, text: str) -> None:
        """Unprefixed lines (the banner, reports)."""
        with self._lock:
            click.echo(text)


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGTERM the child if `jobyard dev` is killed."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return preexec


class Child:
    """One process of the stack, in its own session and process group.

    Its stdout and stderr go to a pipe; :meth:`start_streaming` copies them, prefixed, to
    the printer and keeps the last lines for a death report.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        printer: Printer,
        colour: str,
    ) -> None:
        self.name = name
        self.argv = argv
        self.printer = printer
        self.colour = colour
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._reader: threading.Thread | None = None
        # Spawned before any reader thread runs: a preexec function is only safe then.
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def start_streaming(self) -> None:
        self._reader = threading.Thread(target=self._pump, name=f"out-{self.name}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for raw in iter(self.popen.stdout.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self.tail.append(text)
            self.printer.line(self.name, self.colour, text)

    def drain(self, timeout_s: float = 2.0) -> None:
        """Wait (briefly) until everything the child wrote has been printed."""
        if self._reader is not None:
            self._reader.join(timeout_s)
        elif self.popen.stdout is not None and self.poll() is not None:
            # Never streamed (died during start-up): read what it left in the pipe.
            for raw in self.popen.stdout.read().splitlines():
                text = raw.decode("utf-8", errors="replace")
                self.tail.append(text)
                self.printer.line(self.name, self.colour, text)

    def terminate(self) -> None:
        """SIGTERM to the child itself (not its group: a Celery worker must receive it
        alone, and it stops its pool children)."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def kill_group(self) -> None:
        """SIGKILL the child's whole process group (the child and anything it forked)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def group_alive(self) -> bool:
        """True while any process of the child's group exists."""
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
