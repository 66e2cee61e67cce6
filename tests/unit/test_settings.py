"""Environment settings: parsed once, strictly."""

from __future__ import annotations

import pytest

from jobyard.core.errors import ConfigError
from jobyard.core.settings import load_settings

A = "token-a-0123456789"
B = "token-b-0123456789"


def test_defaults_and_csv_lists() -> None:
    s = load_settings({"JOBYARD_API_TOKENS": f"{A}, {B}", "JOBYARD_JOB_MODULES": "x.jobs"})
    assert [t.get_secret_value() for t in s.api_tokens] == [A, B]
    assert s.job_modules == ["x.jobs"]
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.api_auth == "tokens"
    assert s.api_docs is False
    assert A not in repr(s.api_tokens)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"JOBYARD_API_TOKENS": " , "}, "JOBYARD_API_TOKENS: Value error, holds a blank entry"),
        ({"JOBYARD_API_TOKENS": ""}, "JOBYARD_API_TOKENS: Value error, holds a blank entry"),
        ({"JOBYARD_ADMIN_TOKENS": f"{A},,{B}"}, "JOBYARD_ADMIN_TOKENS: Value error, holds a blank"),
        (
            {"JOBYARD_API_TOKENS": f"{A},tiny-x"},
            "JOBYARD_API_TOKENS: Value error, token(s) number 2",
        ),
        ({"JOBYARD_ADMIN_TOKENS": f"{A},{A}"}, "JOBYARD_ADMIN_TOKENS: Value error, the same token"),
        (
            {"JOBYARD_API_TOKENS": A, "JOBYARD_ADMIN_TOKENS": f"{B},{A}"},
            "JOBYARD_ADMIN_TOKENS and JOBYARD_API_TOKENS share a token",
        ),
        ({"JOBYARD_API_AUTH": "off"}, "JOBYARD_API_AUTH: Input should be 'tokens' or 'none'"),
    ],
)
def test_blank_short_or_repeated_tokens_are_configuration_errors(
    env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert expected in str(err.value)
    for token in (A, B, "tiny-x"):
        assert token not in str(err.value)


def test_configuration_errors_never_print_a_secret() -> None:
    url = "rediss://:SuperSecretPw123@redis.internal:6379/0?ssl_cert_reqs=bogus"
    with pytest.raises(ConfigError) as err:
        load_settings({"JOBYARD_REDIS_URL": url})
    assert "JOBYARD_REDIS_URL" in str(err.value)
    assert "SuperSecretPw123" not in str(err.value)
    assert "rediss://***@redis.internal" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings({"JOBYARD_SMTP_PASSWORD": "", "JOBYARD_WEBHOOK_TIMEOUT_S": "x"})
    with pytest.raises(ConfigError) as err:
        load_settings({"JOBYARD_API_PORT": "x", "JOBYARD_API_TOKENS": "short-SECRET"})
    assert "short-SECRET" not in str(err.value)


def test_unknown_variable_is_an_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"JOBYARD_REDIS_URI": "redis://x"})
    assert "unknown environment variable(s) JOBYARD_REDIS_URI" in str(err.value)
    assert "JOBYARD_REDIS_URL" in str(err.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"JOBYARD_API_PORT": "99999"}, "JOBYARD_API_PORT: Input should be less than or equal"),
        ({"JOBYARD_REDIS_URL": "http://x"}, "JOBYARD_REDIS_URL: Value error, must start with"),
        ({"JOBYARD_LOG_FORMAT": "xml"}, "JOBYARD_LOG_FORMAT: Input should be 'json' or 'console'"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert expected in str(err.value)


def test_other_variables_are_ignored() -> None:
    assert load_settings({"PATH": "/bin", "OTEL_SERVICE_NAME": "x"}).api_port == 8000
