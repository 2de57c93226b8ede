"""Nothing of a viewer's own set-up blocks its event loop between its join and its first
links (h-join6). In the 20-viewer run of ``bench/fidelity.py`` a stack sampler found two
stalls of 0.4-0.7 s each in every viewer's start: the local API's imports and its OpenAPI
document right after the announce (which then waited to go out), and qh3's first
post-quantum key share inside the first dial. The first is built at its first request now
and the modules imported before the join; the second is paid when the stack is made. These
tests check what that changed and what it must not: the key share is still offered, fresh,
in every dial (the OpenAPI document, still served the same at every request, is checked on a
real viewer in ``test_node_start_trace``)."""

from __future__ import annotations

import time

import pytest

from oasis.core.identity import Identity
from oasis.node import quicstack


def test_the_qh3_stack_pays_its_first_key_share_when_made_and_every_dial_still_offers_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    hazmat = pytest.importorskip("qh3._hazmat")
    made: list[object] = []
    real = hazmat.X25519ML768KeyExchange

    def counted() -> object:
        k = real()
        made.append(k)
        return k

    monkeypatch.setattr(hazmat, "X25519ML768KeyExchange", counted)  # (the warm-up's import)
    tls = pytest.importorskip("qh3.tls")
    assert tls.X25519ML768KeyExchange is real  # (what a ClientHello makes its share with)
    monkeypatch.setattr(tls, "X25519ML768KeyExchange", counted)
    monkeypatch.setattr(quicstack, "_warmed", False)
    st = quicstack.make_stack("qh3")
    assert len(made) == 1  # paid when the stack is made, before any dial
    quicstack.make_stack("qh3")
    assert len(made) == 1  # once per process
    ident = Identity.generate()
    for n in (2, 3):  # each dial's ClientHello still carries a post-quantum share, a fresh one
        q = st.dialler(st.config(ident, is_client=True, mds=1350, max_data=1 << 20, max_stream_data=1 << 20))
        q.connect(("127.0.0.1", 9), now=time.time())
        assert q.datagrams_to_send(now=time.time())
        assert len(made) == n
    assert len({id(k) for k in made}) == len(made)

