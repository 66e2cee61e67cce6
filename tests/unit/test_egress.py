"""The egress guard's pure parts: address spellings, classification, the allow-list."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from jobyard.core import egress
from jobyard.core.config import parse_config
from jobyard.core.egress import EgressPolicy, denial_reason, parse_address


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.2", "127.0.0.2"),
        ("2130706434", "127.0.0.2"),
        ("0x7f000002", "127.0.0.2"),
        ("0X7F000002", "127.0.0.2"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("[::ffff:127.0.0.2]", "::ffff:127.0.0.2"),
        ("::1", "::1"),
        ("[fe80::1%eth0]", "fe80::1"),
    ],
)
def test_literals_in_every_spelling_a_resolver_accepts(host: str, expected: str) -> None:
    assert parse_address(host) == ipaddress.ip_address(expected)
    # The same answer as the C library's inet_aton, where it has one for the spelling.
    if ":" not in host and not host.endswith("."):
        assert socket.inet_ntoa(socket.inet_aton(host)) == expected


@pytest.mark.parametrize(
    "host", ["example.com", "256.1.1.1", "1.2.3.4.5", "08.1.1.1", "0x1g", "1.2.3.300", "", "a.1"]
)
def test_names_and_impossible_numbers_are_not_addresses(host: str) -> None:
    assert parse_address(host) is None


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("fc00::1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.255", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.0.8", "reserved"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("2001:db8::1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("::ffff:127.0.0.2", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("64:ff9b:1::1", "NAT64"),
        ("2002:7f00:1::", "loopback"),
        ("2002:a9fe:a9fe::1", "link-local"),
        ("2001:0:4136:e378::1", "Teredo"),
        ("::127.0.0.1", "reserved"),
        ("100::1", "discard-only"),
        ("fec0::1", "site-local"),
        ("4000::1", "reserved"),
    ],
)
def test_internal_addresses_are_denied_with_a_reason(address: str, why: str) -> None:
    reason = denial_reason(ipaddress.ip_address(address))
    assert reason is not None and why in reason, reason


@pytest.mark.parametrize(
    "address",
    [
        *("8.8.8.8", "93.184.216.34", "100.63.255.255", "100.128.0.1", "172.32.0.1"),
        *("2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"),
        *("198.20.0.1", "11.0.0.1"),
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert denial_reason(ipaddress.ip_address(address)) is None


def test_allow_list_networks_hosts_and_wildcards() -> None:
    policy = EgressPolicy.from_entries(
        ["10.20.0.0/16", "fd00::/8", "127.0.0.2", "hooks.internal.example", "*.svc.cluster.local"]
    )
    ip = ipaddress.ip_address
    assert policy.refusal("x", ip("10.20.3.4")) is None
    assert policy.refusal("x", ip("10.21.0.1")) is not None
    assert policy.refusal("x", ip("fd00::5")) is None
    assert policy.refusal("127.0.0.2", ip("127.0.0.2")) is None
    assert policy.refusal("x", ip("::ffff:127.0.0.2")) is None  # mapped form of a listed one
    assert policy.refusal("127.0.0.3", ip("127.0.0.3")) is not None
    assert policy.refusal("hooks.internal.example", ip("10.9.9.9")) is None
    assert policy.refusal("Hooks.Internal.Example.", ip("10.9.9.9")) is None
    assert policy.refusal("a.b.svc.cluster.local", ip("10.9.9.9")) is None
    assert policy.refusal("svc.cluster.local", ip("10.9.9.9")) is not None
    assert policy.refusal("evilsvc.cluster.local", ip("10.9.9.9")) is not None
    reason = policy.refusal("metadata.example", ip("169.254.169.254"))
    assert reason == (
        "metadata.example resolves to 169.254.169.254, a link-local (cloud metadata) address, "
        "which jobyard does not connect to unless egress.allow in jobyard.yaml lists it"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("10.20.0.1/16", "has host bits set"),
        ("bad host!", "neither a CIDR, an address nor a host name"),
        ("", "an empty entry"),
    ],
)
def test_malformed_allow_entries_are_config_errors_naming_the_entry(
    entry: str, message: str
) -> None:
    from jobyard.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config(f"queues: [{{name: default}}]\negress:\n  allow: ['10.0.0.0/8', '{entry}']\n")
    assert "egress.allow[1]" in str(info.value)
    assert message in str(info.value)


def test_a_name_is_resolved_once_and_every_address_must_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def fake_getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        calls.append(host)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(egress.EgressDeniedError, match=r"mixed\.test resolves to 10\.0\.0\.7"):
        egress.checked_addresses("mixed.test", 443, EgressPolicy())
    assert calls == ["mixed.test"]
