"""The scripts run by EVALSHA survive a server that forgot them (SCRIPT FLUSH, a restart
without persistence): NOSCRIPT loads the source and the call is made again, once."""

from __future__ import annotations

from sideline.adapters.redis import RedisBackend
from sideline.core.payload import decode
from sideline.core.settlement import Action, Settlement
from tests.contract.helpers import payload
from tests.redis.helpers import RedisServer


def test_a_flushed_script_cache_is_reloaded_on_the_next_call(redis_server: RedisServer) -> None:
    backend = RedisBackend.from_url(redis_server.url, namespace="scripts")
    try:
        backend.push([payload("j1"), payload("j2")])
        first = backend.fetch("w", ["default"], 0)
        assert first is not None
        backend.client.script_flush()
        assert backend.client.script_exists(backend.scripts["settle"].sha) == [False]
        settled = backend.settle("w", first, Settlement(Action.ACK, decode(first.raw)), 100.0,
                                 ["default"])
        assert settled.next is not None
        assert decode(settled.next.raw).jid == "j2"
        assert backend.client.script_exists(backend.scripts["settle"].sha) == [True]
    finally:
        backend.close()
