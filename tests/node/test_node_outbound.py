"""The HTTP client for outside URLs (oasis.node.outbound): how a failure reads."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from oasis.node import outbound


async def test_a_refused_connection_reads_as_one_plain_line() -> None:
    with socket.socket() as s:  # a port nobody listens on (bound, never listening)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        async with outbound.session() as session:
            with pytest.raises(aiohttp.ClientConnectorError) as exc:
                async with session.get(f"http://127.0.0.1:{port}/tracker"):
                    pass
    # was: "Cannot connect to host 127.0.0.1:PORT ssl:default [Connect call failed ...]"
    assert outbound.reason(exc.value) == f"cannot connect to 127.0.0.1:{port} (connection refused)"
    assert outbound.reason(TimeoutError()) == "timed out"
    assert outbound.reason(ValueError("bad")) == "bad" and outbound.reason(ValueError()) == "ValueError"


async def test_a_dead_tracker_s_descriptor_failure_reads_plainly() -> None:
    from oasis.core.identity import Identity
    from oasis.core.stream import StreamId
    from oasis.node.runtime import fetch_descriptor

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        async with outbound.session() as session:
            with pytest.raises(RuntimeError) as exc:
                await fetch_descriptor(session, f"http://127.0.0.1:{port}", StreamId(Identity.generate().public,
                                                                                      "live"), timeout=0)
    assert f"(cannot connect to 127.0.0.1:{port} (connection refused))" in str(exc.value), exc.value
    assert "ssl:default" not in str(exc.value)
