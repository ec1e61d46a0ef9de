"""Bytes that are not UTF-8 (fakeredis and the real server): the backend's client reads them
as str (surrogateescape) and writes that str back byte-identical, so a garbage job can be
acked, buried and removed instead of raising UnicodeDecodeError inside redis-py."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest
import redis

from sideline import App, ConfigurationError
from sideline.adapters.redis import RedisBackend, redis_url
from sideline.core.payload import raw_bytes
from tests.redis.helpers import in_progress_keys, wait_until

BAD = b"\xff\xfe{bad"


@pytest.fixture
def raw(backend: RedisBackend) -> Iterator[redis.Redis]:
    """A client of the same server that neither decodes nor encodes (bytes in, bytes out)."""
    server = backend.client.get_connection_kwargs().get("server")
    client = (redis.Redis.from_url(redis_url()) if server is None
              else fakeredis.FakeRedis(server=server))
    try:
        yield client
    finally:
        client.close()


def test_invalid_utf8_reads_as_str_and_writes_back_byte_identical(
        backend: RedisBackend, raw: redis.Redis) -> None:
    key = backend.keys("bytes")
    raw.rpush(key, BAD, b"ok")
    value, ok = backend.client.lrange(key, 0, -1)
    assert (value, ok) == ("\udcff\udcfe{bad", "ok")
    # written back as bytes, as sideline does (hiredis's command packer refuses surrogates)
    backend.client.set(backend.keys("copy"), raw_bytes(value))
    assert raw.get(backend.keys("copy")) == BAD
    assert backend.client.lrem(key, 1, raw_bytes(value)) == 1  # LREM finds the bytes
    assert raw.lrange(key, 0, -1) == [b"ok"]


def test_a_job_that_is_not_utf8_is_buried_and_leaves_nothing_in_progress(
        backend: RedisBackend, raw: redis.Redis) -> None:
    app = App(backend)
    ran: list[int] = []
    app.job(name="rec")(ran.append)
    raw.sadd(backend.keys("queues"), "default")  # what push.lua would record
    raw.rpush(backend.keys.queue("default"), BAD)
    app.enqueue("rec", [7])
    with app.worker(concurrency=1, fetch_timeout_s=0.1, shutdown_timeout_s=5) as worker:
        wait_until(lambda: worker.processed >= 2, 10, "two jobs to be processed")
    assert ran == [7]
    [dead] = [entry.payload for entry in backend.entries("dead")]  # its placeholder
    assert dead.name != "rec"
    assert in_progress_keys(backend) == {}  # the kill script's LREM found the exact bytes
    assert backend.queue_sizes() == {"default": 0}


def test_a_client_that_decodes_strictly_is_refused(backend: RedisBackend) -> None:
    server = backend.client.get_connection_kwargs().get("server")
    strict = (redis.Redis.from_url(redis_url(), decode_responses=True) if server is None
              else fakeredis.FakeRedis(server=server, decode_responses=True))
    try:
        with pytest.raises(ConfigurationError, match=(
                r'decode_responses=True and encoding_errors="surrogateescape" \(this one has '
                r"decode_responses=True, encoding_errors='strict'")):
            RedisBackend(strict)
    finally:
        strict.close()
