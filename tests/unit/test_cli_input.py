"""Parsing of `--arg`, `--args-json`, `--delay`, and human durations."""

from __future__ import annotations

import pytest

from jobyard.cli_input import (
    format_duration_s,
    merge_args,
    parse_arg_pairs,
    parse_args_json,
    parse_duration_s,
    parse_value,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("1.5", 1.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("250ms", 0.25),
        (" 5M ", 300.0),
        ("0", 0.0),
    ],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["5x", "", "m", "-3", "1h 30m", "h1", "5m5", "nan", "inf"])
def test_bad_durations_say_what_is_allowed(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration_s(text)
    assert str(err.value) == (
        f"{text!r} is not a duration; use seconds, or a duration such as 30s, 5m, 1h, 1h30m"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0004, "0ms"),
        (0.42, "420ms"),
        (1.25, "1.2s"),
        (5, "5s"),
        (12.7, "12s"),
        (192, "3m12s"),
        (3600, "1h00m"),
        (7500, "2h05m"),
        (273600, "3d04h"),
        (-1, "0s"),
    ],
)
def test_durations_format(seconds: float, text: str) -> None:
    assert format_duration_s(seconds) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-2.5", -2.5),
        ("true", True),
        ("null", None),
        ('["a",1]', ["a", 1]),
        ('{"k":1}', {"k": 1}),
        ('"quoted"', "quoted"),
        ("hello", "hello"),
        ("a@b.c", "a@b.c"),
        ("", ""),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("01", "01"),
    ],
)
def test_arg_values_are_json_when_they_parse(text: str, value: object) -> None:
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_arg_pairs_nest_on_dots_and_split_on_the_first_equals() -> None:
    got = parse_arg_pairs(
        ["count=3", "name=ada", "opts.dry_run=true", "opts.level=2", "expr=a=b", "tags=[]"]
    )
    assert got == {
        "count": 3,
        "name": "ada",
        "opts": {"dry_run": True, "level": 2},
        "expr": "a=b",
        "tags": [],
    }


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["novalue"], "expected KEY=VALUE, got 'novalue'"),
        (["=3"], "expected KEY=VALUE with a non-empty key, got '=3'"),
        (["a..b=1"], "expected KEY=VALUE with a non-empty key, got 'a..b=1'"),
        (["a=1", "a.b=2"], "'a.b' nests under 'a', which already has a value"),
        (["a.b=2", "a=1"], "'a' is given a value and also nested keys"),
    ],
)
def test_bad_arg_pairs_are_refused(pairs: list[str], message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_arg_pairs(pairs)
    assert str(err.value) == message


def test_args_json_must_be_an_object() -> None:
    assert parse_args_json('{"a": {"b": 1}}') == {"a": {"b": 1}}
    with pytest.raises(ValueError, match=r"^must be a JSON object, got list$"):
        parse_args_json("[1]")
    with pytest.raises(ValueError, match=r"^not valid JSON: "):
        parse_args_json("{a:1}")


def test_arg_pairs_merge_over_args_json_key_by_key() -> None:
    base = {"count": 1, "opts": {"dry_run": False, "level": 5}, "keep": "x"}
    override = {"count": 2, "opts": {"dry_run": True}}
    assert merge_args(base, override) == {
        "count": 2,
        "opts": {"dry_run": True, "level": 5},
        "keep": "x",
    }
    assert base["opts"] == {"dry_run": False, "level": 5}
