"""Loopback TCP ports for the local stack."""

from __future__ import annotations

import socket


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on `host:port` (checked by binding it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Servers set SO_REUSEADDR too: a port in TIME_WAIT is free for them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def preferred_or_free(preferred: int, taken: set[int], host: str = "127.0.0.1") -> int:
    """`preferred` when free and not in `taken`, else any free port not in `taken`."""
    if preferred not in taken and port_is_free(preferred, host):
        return preferred
    while True:
        port = free_port(host)
        if port not in taken:
            return port
