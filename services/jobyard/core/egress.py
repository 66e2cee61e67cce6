"""The egress guard: which network destinations jobs may reach.

Every outbound connection a job makes (today `webhook.deliver`; any future HTTP-calling
job) goes through this module, so one policy holds everywhere:

- Deny by default every address that is not public unicast: loopback, link-local (the
  cloud metadata service at 169.254.169.254), private (RFC 1918, unique local), carrier-grade
  NAT, multicast, unspecified, reserved, documentation and benchmarking ranges. IPv6 forms
  that carry an IPv4 address (IPv4-mapped, NAT64, 6to4) are judged by that address.
- Host literals are parsed the way a resolver would: `2130706434`, `0x7f000002`,
  `0177.0.0.1` and `127.1` all mean a 127.x address.
- The explicit allow-list (`egress.allow` in `jobyard.yaml`: CIDRs, addresses, host names,
  `*.` suffixes) lets teams call internal services on purpose.
- A name is resolved once and every address it resolves to is checked; the caller connects
  to those checked addresses (see :mod:`jobyard.core.egress_http`), so a DNS answer that
  changes between check and connect (rebinding) changes nothing.

This module uses only the standard library (and pydantic for :data:`OutboundUrl`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, HttpUrl, ValidationInfo

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CONTEXT_KEY = "egress"
"""Key of the :class:`EgressPolicy` in a pydantic validation context (see `core.enqueue`)."""

ENQUEUE_RESOLVE_TIMEOUT_S = 0.5
"""The longest a name is resolved for at enqueue; one that does not resolve in time (or at
all) is accepted and judged at delivery."""
ENQUEUE_CACHE_TTL_S = 30.0
"""How long an enqueue-time verdict for a host name is reused (bounds repeated lookups)."""
_ENQUEUE_CACHE_SIZE = 1024

LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
"""What `JOBYARD_EGRESS_ALLOW_LOOPBACK=true` (set by `jobyard dev`) adds to the allow-list."""


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), why) for cidr, why in pairs)


_V4_DENIED = _nets(
    ("0.0.0.0/8", "an unspecified ('this network')"),
    ("10.0.0.0/8", "a private (RFC 1918)"),
    ("100.64.0.0/10", "a carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "a loopback"),
    ("169.254.0.0/16", "a link-local (cloud metadata)"),
    ("172.16.0.0/12", "a private (RFC 1918)"),
    ("192.0.0.0/24", "a reserved (IETF protocol assignments)"),
    ("192.0.2.0/24", "a documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "a reserved (6to4 relay anycast)"),
    ("192.168.0.0/16", "a private (RFC 1918)"),
    ("198.18.0.0/15", "a benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "a documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "a documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "a multicast"),
    ("240.0.0.0/4", "a reserved (240/4, broadcast)"),
)
_V6_DENIED = _nets(
    ("::/128", "an unspecified"),
    ("::1/128", "a loopback"),
    ("64:ff9b:1::/48", "a local-use NAT64 (RFC 8215)"),
    ("100::/64", "a discard-only (RFC 6666)"),
    ("2001::/32", "a Teredo tunnelling"),
    ("2001::/23", "a reserved (IETF protocol assignments)"),
    ("2001:db8::/32", "a documentation"),
    ("3fff::/20", "a documentation"),
    ("fc00::/7", "a private (unique local)"),
    ("fe80::/10", "a link-local"),
    ("fec0::/10", "a site-local (deprecated)"),
    ("ff00::/8", "a multicast"),
)
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 address carries."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip in _V4_MAPPED:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    return None


def denial_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address (e.g. "a loopback address"), or None."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        why = denial_reason(inner)
        return f"{why[: -len(' address')]} address (as {inner} inside {ip})" if why else None
    table = _V4_DENIED if isinstance(ip, ipaddress.IPv4Address) else _V6_DENIED
    for network, why in table:
        if ip in network:
            return f"{why} address"
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST:
        return "a reserved address (outside global unicast 2000::/3)"
    if not ip.is_global:
        return "a non-global address"
    return None


_V4_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


def _parse_ipv4_loose(text: str) -> ipaddress.IPv4Address | None:
    """IPv4 in the spellings `inet_aton` and URL parsers accept: 1-4 parts, each decimal,
    octal (leading 0) or hex (0x); the last part fills the remaining bytes."""
    if text.endswith("."):
        text = text[:-1]
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_V4_PART.match(p) for p in parts):
        return None
    values = []
    for part in parts:
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif part.startswith("0"):
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def parse_address(host: str) -> IPAddress | None:
    """The address a host literal means (brackets, zone ids and odd IPv4 spellings
    included), or None when `host` is a name."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    return _parse_ipv4_loose(text)


_HOST_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_PATTERN = re.compile(rf"^(\*\.)?({_HOST_LABEL}\.)*{_HOST_LABEL}$")


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def host_matches(host: str, pattern: str) -> bool:
    """Whether the name `host` is `pattern`, or a subdomain of it when it is `*.suffix`."""
    name = _normal_host(host)
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


@dataclass(frozen=True)
class EgressPolicy:
    """What may be reached besides public unicast addresses."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: tuple[str, ...] = ()
    """Exact names, or `*.suffix` for any subdomain of `suffix`."""

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> EgressPolicy:
        """Build from `egress.allow` entries; ValueError names a malformed one."""
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        for entry in entries:
            network = parse_allow_entry(entry)
            if isinstance(network, str):
                hosts.append(network)
            else:
                networks.append(network)
        return cls(tuple(networks), tuple(hosts))

    def allows_host(self, host: str) -> bool:
        """Whether the name `host` is allow-listed (then any address it resolves to is)."""
        return any(host_matches(host, pattern) for pattern in self.hosts)

    def allows_address(self, ip: IPAddress) -> bool:
        """Whether `ip` (or the IPv4 address it embeds) is in an allow-listed network."""
        candidates = [ip]
        inner = embedded_ipv4(ip)
        if inner is not None:
            candidates.append(inner)
        return any(c in n for c in candidates for n in self.networks if c.version == n.version)

    def refusal(self, host: str, ip: IPAddress) -> str | None:
        """Why connecting to `ip` (which `host` resolved to) is refused, or None."""
        if self.allows_host(host) or self.allows_address(ip):
            return None
        why = denial_reason(ip)
        if why is None:
            return None
        shown = "" if parse_address(host) == ip else f"{_normal_host(host)} resolves to "
        return (
            f"{shown}{ip}, {why}, which jobyard does not connect to unless "
            "egress.allow in jobyard.yaml lists it"
        )


def parse_allow_entry(entry: str) -> IPNetwork | str:
    """One `egress.allow` entry: a network (CIDR or address) or a host name pattern."""
    text = entry.strip()
    if not text:
        raise ValueError("an empty entry")
    if "/" in text or ":" in text or parse_address(text) is not None:
        try:
            return ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not a valid CIDR or address: {exc}") from exc
    name = text.lower().rstrip(".")
    if not _HOST_PATTERN.match(name) or name.rsplit(".", 1)[-1].isdigit():
        raise ValueError(
            f"{entry!r} is neither a CIDR, an address nor a host name "
            "(a leading '*.' matches subdomains)"
        )
    return name


class EgressDeniedError(Exception):
    """A destination the egress policy refuses; the message says which address and why."""

    def __init__(self, host: str, address: IPAddress, reason: str) -> None:
        super().__init__(reason)
        self.host = host
        self.address = address


_executor_lock = threading.Lock()
_executor: tuple[int, ThreadPoolExecutor] | None = None


def _resolver() -> ThreadPoolExecutor:
    """A small per-process pool for name lookups that must not wait longer than asked."""
    global _executor
    import os

    with _executor_lock:
        if _executor is None or _executor[0] != os.getpid():
            _executor = (os.getpid(), ThreadPoolExecutor(4, thread_name_prefix="egress-dns"))
        return _executor[1]


def resolve(host: str, port: int, timeout_s: float | None = None) -> list[IPAddress]:
    """Every address `host` means: the literal itself, or one `getaddrinfo` lookup.

    Raises OSError when the name does not resolve, TimeoutError after `timeout_s`.
    """
    literal = parse_address(host)
    if literal is not None:
        return [literal]
    name = _normal_host(host)
    if timeout_s is None:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    else:
        future = _resolver().submit(socket.getaddrinfo, name, port, type=socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=max(timeout_s, 0.001))
        except FutureTimeout:
            raise TimeoutError(f"resolving {name} took longer than {timeout_s:g} s") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise OSError(f"{name} resolves to no address")
    return addresses


def checked_addresses(
    host: str, port: int, policy: EgressPolicy, timeout_s: float | None = None
) -> list[IPAddress]:
    """Resolve `host` once and return its addresses, all of them allowed, to connect to.

    Raises :class:`EgressDeniedError` when any address is refused (a name with one private
    address among public ones is refused whole), OSError/TimeoutError from resolution.
    """
    addresses = resolve(host, port, timeout_s)
    for ip in addresses:
        reason = policy.refusal(host, ip)
        if reason is not None:
            raise EgressDeniedError(host, ip, reason)
    return addresses


_verdicts: OrderedDict[tuple[EgressPolicy, str], tuple[float, str | None]] = OrderedDict()
_verdicts_lock = threading.Lock()


def enqueue_refusal(host: str, port: int, policy: EgressPolicy) -> str | None:
    """Why a URL naming `host` is refused at enqueue, or None to accept it.

    Literals are judged at once; a name is resolved with a short timeout
    (:data:`ENQUEUE_RESOLVE_TIMEOUT_S`) and refused when an address is denied. A name that
    does not resolve (in time) is accepted: delivery resolves it again and decides.
    """
    literal = parse_address(host)
    if literal is not None:
        return policy.refusal(host, literal)
    if policy.allows_host(host):
        return None
    key = (policy, _normal_host(host))
    now = time.monotonic()
    with _verdicts_lock:
        cached = _verdicts.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
    try:
        checked_addresses(host, port, policy, ENQUEUE_RESOLVE_TIMEOUT_S)
        verdict: str | None = None
    except EgressDeniedError as exc:
        verdict = str(exc)
    except OSError:  # TimeoutError included: accepted, delivery decides
        verdict = None
    with _verdicts_lock:
        _verdicts[key] = (now + ENQUEUE_CACHE_TTL_S, verdict)
        _verdicts.move_to_end(key)
        while len(_verdicts) > _ENQUEUE_CACHE_SIZE:
            _verdicts.popitem(last=False)
    return verdict


def policy_in(context: Any) -> EgressPolicy | None:
    """The policy a validation context carries (None: validation without egress checks,
    as in a worker re-validating arguments that delivery checks anyway)."""
    if isinstance(context, Mapping):
        policy = context.get(CONTEXT_KEY)
        if isinstance(policy, EgressPolicy):
            return policy
    return None


def _check_outbound_url(value: HttpUrl, info: ValidationInfo) -> HttpUrl:
    policy = policy_in(info.context)
    if policy is not None and value.host is not None:
        port = value.port or (443 if value.scheme == "https" else 80)
        reason = enqueue_refusal(value.host, port, policy)
        if reason is not None:
            raise ValueError(f"refused destination: {reason}")
    return value


OutboundUrl = Annotated[HttpUrl, AfterValidator(_check_outbound_url)]
"""An http(s) URL a job will call: at enqueue its host is checked against the egress policy
(literal addresses in any spelling, and names resolving into a denied range, are refused).
Use it for the URL field of any job that makes outbound requests."""
