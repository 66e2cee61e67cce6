"""Text that ends up in a mail header: what is refused, and how a message is written safely.

Header injection needs a line break in a header. A caller can smuggle one in three ways,
and each is refused for every header-bound value (subject, addresses, display names):

- a raw control or line-separator character: CR, LF, VT, FF, NEL, U+2028, U+2029, the
  file/group/record separators, and every other C0 or C1 control and DEL;
- an RFC 2047 encoded word (`=?utf-8?q?...=0D=0A...?=`), which Python's `email` package
  before 3.11.10 / 3.12.5 / 3.13.0 decodes into a real line break when it writes the
  message (CVE-2024-6923). jobyard never needs a caller's encoded word: the policy encodes
  non-ASCII text itself.

Messages are then written with :data:`HEADER_POLICY` (which, on a Python carrying the
fix, refuses to generate a header that would read as a new line) and the written header
block is checked again by :func:`check_header_block` before anything reaches the relay,
so the guard holds whatever the interpreter.
"""

from __future__ import annotations

import email.policy
import functools
import re
import unicodedata
from collections.abc import Iterable
from email.message import EmailMessage
from typing import Annotated

from pydantic import AfterValidator

ENCODED_WORD = re.compile(r"=\?[^?]*\?[bq]\?.*?\?=", re.IGNORECASE | re.DOTALL)
"""An RFC 2047 encoded word, as loosely as a decoder would accept one."""

_LINE_BREAK_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
"""Controls (C0, DEL, C1: CR LF VT FF NEL and the rest) and the line/paragraph separators."""


def header_text_problem(value: str) -> str | None:
    """Why `value` cannot be written into a mail header, or None when it can."""
    for index, char in enumerate(value):
        if unicodedata.category(char) in _LINE_BREAK_CATEGORIES:
            name = unicodedata.name(char, "") or f"control U+{ord(char):04X}"
            return (
                f"must not contain control or line-break characters "
                f"(found U+{ord(char):04X} {name.lower()} at position {index})"
            )
    if ENCODED_WORD.search(value):
        return (
            "must not contain an RFC 2047 encoded word ('=?charset?q?...?='); send the text "
            "itself: non-ASCII is encoded by jobyard"
        )
    return None


def _header_safe(value: str) -> str:
    problem = header_text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


HeaderText = Annotated[str, AfterValidator(_header_safe)]
"""A `str` field whose value is written into a mail header (validated by pydantic)."""


@functools.cache
def header_policy() -> email.policy.EmailPolicy[EmailMessage]:
    """SMTP line endings; on a Python with the CVE-2024-6923 fix, generated headers verified."""
    try:
        return email.policy.SMTP.clone(verify_generated_headers=True)
    except TypeError:  # an interpreter without the fix has no such policy attribute
        return email.policy.SMTP


class HeaderInjectionError(ValueError):
    """The written message has a header jobyard did not set: it must not be sent."""


def header_names(raw: bytes) -> list[str]:
    """The names of the header fields of a written message, in order (folding undone)."""
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n").split(b"\n")
    names: list[str] = []
    for line in head:
        if not line or line[:1] in (b" ", b"\t"):
            continue  # a continuation of the previous field
        name, sep, _ = line.partition(b":")
        names.append(name.decode("ascii", "replace") if sep else "<no field name>")
    return names


def check_header_block(raw: bytes, expected: Iterable[str]) -> None:
    """Raise :class:`HeaderInjectionError` unless `raw`'s top-level headers are `expected`.

    Each expected name must appear once and no other name may appear: a header a value
    smuggled in (a second `From`, a `Bcc`) is caught here even on a Python that decodes
    encoded line breaks.
    """
    want = sorted(n.lower() for n in expected)
    got = sorted(n.lower() for n in header_names(raw))
    if got != want:
        unexpected = set(got) - set(want)
        repeated = {n for n in got if got.count(n) > want.count(n)}
        extra = ", ".join(sorted(unexpected | repeated)) or "a field is missing"
        raise HeaderInjectionError(
            f"the written message has header fields jobyard did not set ({extra}): "
            "refusing to send it"
        )


@functools.cache
def interpreter_has_cve_2024_6923_fix() -> bool:
    """Whether this Python's `email` package keeps an encoded CR/LF inside its header.

    A behavioural probe, not a version check: distributions backport the fix (Debian's
    3.11.2-6+deb12u3 and later carry it while calling themselves 3.11.2).
    """
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = "=?utf-8?q?probe=0D=0AX-Jobyard-Probe:_1?="
    msg.set_content("probe")
    try:
        raw = msg.as_bytes()
    except Exception:  # a fixed interpreter may refuse to write it at all
        return True
    return "X-Jobyard-Probe" not in header_names(raw)
