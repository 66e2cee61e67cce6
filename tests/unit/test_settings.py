"""Environment settings: parsed once, strictly."""

from __future__ import annotations

import pytest

from jobyard.core.errors import ConfigError
from jobyard.core.settings import load_settings


def test_defaults_and_csv_lists() -> None:
    s = load_settings({"JOBYARD_API_TOKENS": "a, b,,c", "JOBYARD_JOB_MODULES": "x.jobs"})
    assert [t.get_secret_value() for t in s.api_tokens] == ["a", "b", "c"]
    assert s.job_modules == ["x.jobs"]
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert "a" not in repr(s.api_tokens)


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
