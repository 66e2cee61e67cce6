"""Token comparison."""

from __future__ import annotations

from pydantic import SecretStr

from jobyard.api.auth import token_in


def test_token_in() -> None:
    allowed = [SecretStr("alpha"), SecretStr("béta")]
    assert token_in("alpha", allowed)
    assert token_in("béta", allowed)
    assert not token_in("alph", allowed)
    assert not token_in("alphaa", allowed)
    assert not token_in("", allowed)
    assert not token_in("alpha", [])
