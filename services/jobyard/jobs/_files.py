"""Files read and written inside one directory, never through a link out of it.

Whoever can write to the directory can plant a symbolic link or a hard link at a name a
job is about to open (its temporary file, say) and make it read or write a file outside.
So the directory is opened once (`O_DIRECTORY | O_NOFOLLOW`) and every file is opened
relative to it (`dir_fd`), one path component at a time, without following symbolic
links; new files are created exclusively (`O_CREAT | O_EXCL`: nothing already there is
ever opened); a file with more than one hard link is refused; and the finished file is
renamed into place within the directory. Each refusal raises :class:`UnsafePathError`
with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(Exception):
    """A path the job must not open: a link, not a regular file, or hard-linked."""


def open_dir(path: Path) -> int:
    """A file descriptor of the directory `path` (its last component must not be a
    symbolic link); close it with `os.close`."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)


def _refuse_link(name: str, fd_or_name: int | str, dir_fd: int | None) -> os.stat_result:
    """lstat / fstat, refusing anything but a regular file with a single hard link."""
    info = (
        os.fstat(fd_or_name)
        if isinstance(fd_or_name, int)
        else os.stat(fd_or_name, dir_fd=dir_fd, follow_symlinks=False)
    )
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"{name!r} is a symbolic link")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePathError(f"{name!r} is not a regular file")
    if info.st_nlink > 1:
        raise UnsafePathError(
            f"{name!r} has {info.st_nlink} hard links (another name, maybe outside the "
            "directory, shares its content)"
        )
    return info


def open_source(dir_fd: int, relative: str) -> BinaryIO:
    """Open `relative` (a/b/c, no `..`) under `dir_fd` for reading, following no link."""
    parts = PurePosixPath(relative).parts
    current = dir_fd
    try:
        for part in parts[:-1]:
            try:
                step = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=current)
            except OSError as exc:
                raise _unsafe_or(exc, relative, f"{part!r} is not a directory") from exc
            if current != dir_fd:
                os.close(current)
            current = step
        try:
            # O_NONBLOCK: a FIFO planted there must not block the open (it is refused).
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW, dir_fd=current)
        except OSError as exc:
            raise _unsafe_or(exc, relative, f"{parts[-1]!r} is a symbolic link") from exc
    finally:
        if current != dir_fd:
            os.close(current)
    try:
        _refuse_link(relative, fd, None)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _unsafe_or(exc: OSError, relative: str, reason: str) -> Exception:
    """ELOOP / ENOTDIR: a link where a file or directory was expected."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return UnsafePathError(f"{relative!r}: {reason}")
    return exc


def create_exclusive(dir_fd: int, name: str, mode: int = 0o640) -> BinaryIO:
    """Create the new file `name` in the directory; whatever is already there is never
    opened: a leftover regular file (a crashed earlier attempt) is replaced, a link is
    refused."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    try:
        fd = os.open(name, flags, mode, dir_fd=dir_fd)
    except FileExistsError:
        _refuse_link(name, name, dir_fd)
        os.unlink(name, dir_fd=dir_fd)
        fd = os.open(name, flags, mode, dir_fd=dir_fd)
    return os.fdopen(fd, "wb")


def replace_into(dir_fd: int, source: str, target: str) -> None:
    """Rename `source` over `target` within the directory; an existing `target` must be a
    regular file with one hard link."""
    with contextlib.suppress(FileNotFoundError):
        _refuse_link(target, target, dir_fd)
    os.rename(source, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)
