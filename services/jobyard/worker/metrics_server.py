"""A worker's `/metrics`: every prefork child counted, nothing lost when one is recycled.

The worker's main process switches prometheus-client to multiprocess mode before any
metric exists (:func:`prepare_metrics_dir`): each process (main and children) writes its
values to its own files in a per-worker directory, which the main process's HTTP server
merges at every scrape (`MultiProcessCollector`).

Before merging, each scrape tidies the files of children that have exited (recycled after
`max_tasks_per_child`, killed at a hard time limit, OOM-killed): their live gauges are
dropped (`mark_process_dead`), and their counters and histograms are folded into one
archive file per type, so the directory, and the scrape's cost, stay bounded however many
children come and go.
"""

from __future__ import annotations

import glob
import os
import shutil
import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from jobyard.core.errors import ConfigError
from jobyard.core.settings import Settings
from jobyard.observability import metrics
from jobyard.observability.exposition import serve_metrics

METRICS_SUBDIR = "metrics"
ARCHIVE_PID = "archive"
"""Stands in for the pid in the file names of folded values of exited processes."""
_ARCHIVED_TYPES = ("counter", "histogram")


def _pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # "<pid> (<comm>) <state> ...": comm may hold spaces and parentheses.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _dir_pid(path: Path) -> int | None:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None


def prepare_metrics_dir(settings: Settings, queue: str) -> Path:
    """Create this worker's fresh metrics directory and switch to multiprocess mode.

    The directory is `<heartbeat_dir>/metrics/<queue>-<pid>`; directories left by workers
    that no longer run are removed.
    """
    base = settings.heartbeat_dir / METRICS_SUBDIR
    base.mkdir(parents=True, exist_ok=True)
    for stale in base.iterdir():
        pid = _dir_pid(stale)
        if stale.is_dir() and pid is not None and not _pid_alive(pid):
            shutil.rmtree(stale, ignore_errors=True)
    directory = base / f"{queue}-{os.getpid()}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    metrics.enable_multiprocess(directory)
    return directory


def remove_metrics_dir(directory: Path) -> None:
    """Delete the directory at worker exit."""
    shutil.rmtree(directory, ignore_errors=True)


def _file_pid(path: str) -> str:
    # counter_<pid>.db, histogram_<pid>.db, gauge_<mode>_<pid>.db
    return os.path.basename(path)[:-3].rsplit("_", 1)[1]


class WorkerCollector:
    """Merges the worker's files at scrape time, after tidying those of exited children."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._collector = MultiProcessCollector(None, path=str(directory))

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            self.tidy()
            return list(self._collector.collect())

    def tidy(self) -> None:
        """Drop exited processes' live gauges; fold their counters and histograms."""
        me = os.getpid()
        dead: set[int] = set()
        for path in glob.glob(str(self.directory / "*.db")):
            raw = _file_pid(path)
            if raw == ARCHIVE_PID:
                continue
            pid = int(raw)
            if pid != me and not _pid_alive(pid):
                dead.add(pid)
        for pid in sorted(dead):
            mark_process_dead(pid, str(self.directory))
            for typ in _ARCHIVED_TYPES:
                self._fold(self.directory / f"{typ}_{pid}.db", typ)
            for leftover in self.directory.glob(f"gauge_*_{pid}.db"):
                # Non-live gauges of a dead process would be reported forever.
                leftover.unlink(missing_ok=True)

    def _fold(self, path: Path, typ: str) -> None:
        if not path.exists():
            return
        sums: dict[str, float] = defaultdict(float)
        for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(str(path)):
            sums[key] += value
        archive = MmapedDict(str(self.directory / f"{typ}_{ARCHIVE_PID}.db"))
        try:
            for key, value in sums.items():
                archive.write_value(key, archive.read_value(key)[0] + value, 0.0)
        finally:
            archive.close()
        path.unlink()


def start_worker_metrics_server(settings: Settings, directory: Path) -> Any:
    """Serve `/metrics` from the main process on `settings.worker_metrics_port` (0: off).

    Returns the server (None when off). Raises ConfigError when the port is taken.
    """
    if settings.worker_metrics_port == 0:
        return None
    registry = CollectorRegistry()
    registry.register(WorkerCollector(directory))
    try:
        return serve_metrics(settings.metrics_host, settings.worker_metrics_port, registry)
    except OSError as exc:
        raise ConfigError(
            f"JOBYARD_WORKER_METRICS_PORT: cannot serve /metrics on "
            f"{settings.metrics_host}:{settings.worker_metrics_port}: {exc} "
            "(give each worker on one host its own port, or 0 to turn it off)"
        ) from exc
