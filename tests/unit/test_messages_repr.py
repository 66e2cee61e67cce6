"""`kwargsrepr`: the fast path writes exactly what Celery's `saferepr` writes."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
from celery import Celery
from celery.utils.saferepr import saferepr

from jobyard.core.messages import kwargs_repr

ALPHABET = string.printable + "éü€\u2028\u0000'\"\\"


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.4:
        return rng.choice(
            [
                rng.randint(-(10**20), 10**20),
                rng.random() * 1e6,
                float("inf"),
                None,
                True,
                False,
                "".join(rng.choices(ALPHABET, k=rng.randint(0, 60))),
                "plain text, no escapes: ok",
                "x" * rng.randint(100, 1500),
            ]
        )
    if roll < 0.7:
        return [_value(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    return {
        "".join(rng.choices(string.ascii_letters + "'", k=4)): _value(rng, depth - 1)
        for _ in range(rng.randint(0, 4))
    }


@pytest.fixture(scope="module")
def app() -> Celery:
    return Celery("repr-test")


def test_matches_saferepr_on_random_arguments(app: Celery) -> None:
    rng = random.Random(20261127)
    maxsize = app.amqp.kwargsrepr_maxsize
    maxlevels = app.conf.task_repr_maxlevels
    for _ in range(20_000):
        kwargs = {"a": _value(rng, 5), "b": _value(rng, 2)}
        assert kwargs_repr(app, kwargs) == saferepr(kwargs, maxsize, maxlevels=maxlevels)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"url": "https://example.com/hook", "body": {"n": 1, "ok": True, "x": None}},
        {"deep": [[[[1]]]]},
        {"long": "y" * 5000},
        {"escaped": "line\nbreak", "quote": "it's"},
    ],
)
def test_matches_saferepr_on_known_shapes(app: Celery, kwargs: dict[str, Any]) -> None:
    expected = saferepr(kwargs, app.amqp.kwargsrepr_maxsize, maxlevels=app.conf.task_repr_maxlevels)
    assert kwargs_repr(app, kwargs) == expected
