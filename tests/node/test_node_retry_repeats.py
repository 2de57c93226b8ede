"""One Retry per ClientHello: qh3's (X25519 + ML-KEM-768) fills two Initial datagrams, and
the listener answered each with a Retry (two HMAC tokens and two of the source's Retry rate
per dial). Now the second, from the same address for the same connection id within
``RETRY_REPEAT_WINDOW``, is dropped and counted (``retry_repeats``); after the window the
same Initial draws a Retry again (a client that lost ours retransmits after its probe
timeout, ~1 s). Real endpoints and real UDP on loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest
from procs import until

from oasis.core.identity import Identity
from oasis.node.transport import RETRY_REPEAT_WINDOW, Endpoint

SLACK = 10.0


async def _endpoints(listener: str) -> tuple[Endpoint, Endpoint, Identity]:
    loop = asyncio.get_running_loop()
    b_id = Identity.generate()
    a = Endpoint(Identity.generate(), on_event=lambda link, ev: None, clock=loop.time, quic="qh3")
    b = Endpoint(b_id, on_event=lambda link, ev: None, clock=loop.time, quic=listener)
    await a.listen("127.0.0.1", 0)
    await b.listen("127.0.0.1", 0)
    return a, b, b_id


@pytest.mark.parametrize("listener", ["qh3", "aioquic"])
async def test_a_qh3_dial_draws_one_retry_not_two(listener: str) -> None:
    a, b, b_id = await _endpoints(listener)
    try:
        port = b.transport.get_extra_info("sockname")[1]
        link = a.dial(("127.0.0.1", port), b_id.public)
        await asyncio.wait_for(asyncio.shield(link.handshake_done), SLACK)
        c = b.counters
        assert c["retry_sent"] == 1 and c["retry_repeats"] == 1, c
        assert c["links_accepted"] == 1 and c["retry_token_invalid"] == 0
    finally:
        a.close()
        b.close()


async def test_the_same_initial_draws_a_retry_again_after_the_window() -> None:
    loop = asyncio.get_running_loop()
    a, b, _ = await _endpoints("qh3")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.2", 0))
    try:
        dst = ("127.0.0.1", b.transport.get_extra_info("sockname")[1])
        quic = a.stack.dialler(a._config(is_client=True))
        quic.connect(dst, now=loop.time())
        first = quic.datagrams_to_send(now=loop.time())[0][0]  # never sent by the dialler
        c = b.counters
        sock.sendto(first, dst)
        sock.sendto(first, dst)
        await until(lambda: c["retry_sent"] + c["retry_repeats"] == 2, SLACK)
        assert c["retry_sent"] == 1 and c["retry_repeats"] == 1
        # the listener forgets it answered this Initial once the window is over
        src = sock.getsockname()
        asked = f"{src[0]}|{src[1]}|".encode() + b.stack.header(first).destination_cid
        assert b.retried.seen(asked, loop.time())
        await until(lambda: not b.retried.seen(asked, loop.time()), RETRY_REPEAT_WINDOW + SLACK)
        sock.sendto(first, dst)
        await until(lambda: c["retry_sent"] + c["retry_repeats"] == 3, SLACK)
        assert c["retry_sent"] == 2 and c["retry_repeats"] == 1
        assert c["links_accepted"] == 0  # a Retry keeps nothing
    finally:
        sock.close()
        a.close()
        b.close()
