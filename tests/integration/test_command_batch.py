"""`core.redis.CommandBatch` (redis-py's command methods, one write, raw replies in order)
and `core.redis.AtomicWrites` (a producer's writes applied by one script)."""

from __future__ import annotations

import pytest
import redis

from jobyard.core import keys, store
from jobyard.core.redis import AtomicWrites, CommandBatch, async_client, new_sync_client

pytestmark = pytest.mark.integration


def test_replies_come_back_raw_and_in_order_with_errors_in_place(
    redis_client: redis.Redis,
) -> None:
    batch = CommandBatch(redis_client)
    batch.zadd("z", {"a": 1.5})
    batch.hset("h", mapping={"f": "v"})
    batch.evalsha("0" * 40, 0)  # no such script: an error reply, not an exception
    batch.hget("h", "f")
    batch.set("k", "v")
    assert len(batch) == 5
    replies = batch.execute()
    assert replies[:2] == [1, 1]
    assert isinstance(replies[2], redis.exceptions.NoScriptError)
    assert replies[3:] == [b"v", b"OK"]  # unconverted: a pipeline's SET reply would be True
    assert len(batch) == 0 and batch.execute() == []


def test_store_plans_write_the_same_as_through_a_pipeline(redis_client: redis.Redis) -> None:
    batch = CommandBatch(redis_client)
    store.plan_succeeded(batch, "j1", "default", {"n": 1}, result_ttl_s=60)
    batch.execute()
    pipe = redis_client.pipeline(transaction=False)
    store.plan_succeeded(pipe, "j2", "default", {"n": 1}, result_ttl_s=60)
    pipe.execute()
    one, two = (redis_client.hgetall(keys.job(j)) for j in ("j1", "j2"))
    assert one.keys() == two.keys() == {b"state", b"finished_at", b"result"}
    assert one[b"result"] == two[b"result"] == b'{"n":1}'
    assert 0 < redis_client.ttl(keys.job("j1")) <= 60


def test_a_killed_connection_is_replaced_and_the_batch_sent_once_more(redis_url: str) -> None:
    client = new_sync_client(redis_url)
    admin = redis.Redis.from_url(redis_url)
    CommandBatch(client).client_setname("batch-under-test").execute()
    admin.client_kill_filter(_type="normal", skipme=True)
    batch = CommandBatch(client)
    batch.incr("counter")
    assert batch.execute() == [1]
    assert admin.get("counter") == b"1"
    client.close()
    admin.close()


@pytest.mark.anyio
async def test_atomic_writes_apply_what_a_transaction_would(
    redis_url: str, redis_client: redis.Redis
) -> None:
    client = async_client(redis_url)
    now = 1735787045.6789123
    try:
        writes = AtomicWrites()
        writes.hset("h", mapping={"state": "queued", "n": 3, "text": "é \\ ' \""})
        writes.expire("h", 60)
        writes.zadd("z", {"a": now, "b": 0.1})
        writes.lpush("l", "first", "second")
        assert len(writes) == 4
        await writes.apply(client)
        redis_client.script_flush()  # a restarted Redis: the script is loaded again
        again = AtomicWrites()
        again.zadd("z", {"c": 2.5})
        await again.apply(client)
        await AtomicWrites().apply(client)  # nothing to write: no call
    finally:
        await client.aclose()
    assert redis_client.hgetall("h") == {
        b"state": b"queued",
        b"n": b"3",
        b"text": "é \\ ' \"".encode(),
    }
    assert 0 < redis_client.ttl("h") <= 60
    # Scores travel as text: no rounding through Lua numbers.
    assert redis_client.zscore("z", "a") == now
    assert redis_client.zrange("z", 0, -1, withscores=True) == [
        (b"b", 0.1),
        (b"c", 2.5),
        (b"a", now),
    ]
    assert redis_client.lrange("l", 0, -1) == [b"second", b"first"]
