"""Nothing of a viewer's own set-up blocks its event loop between its join and its first
links (h-join6). In the 20-viewer run of ``bench/fidelity.py`` a stack sampler found two
stalls of 0.4-0.7 s each in every viewer's start: the local API's imports and its OpenAPI
document right after the announce (which then waited to go out), and qh3's first
post-quantum key share inside the first dial. The first is built at its first request now
and the modules imported before the join; the second is paid when the stack is made. These
tests check what that changed and what it must not: the key share is still offered, fresh,
in every dial; the OpenAPI document is still served, the same bytes at every request."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from procs import OasisProcess, wait_until

from oasis.core.identity import Identity
from oasis.node import quicstack
from oasis.node.api import load_or_create_token


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


def get(url: str, token: str | None = None) -> bytes:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
        return bytes(r.read())


def test_a_viewer_starts_in_order_and_its_api_serves_the_openapi_document(tmp_path: Path) -> None:
    procs: list[OasisProcess] = []
    try:
        b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "800", "--data-dir", str(tmp_path / "b")],
                         str(tmp_path / "b.log"))
        procs.append(b)
        info = b.wait_info()
        v = OasisProcess(["watch", info["stream_id"], "--tracker", info["tracker"], "--json",
                          "--gateway", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                          "--data-dir", str(tmp_path / "v")], str(tmp_path / "v.log"))
        procs.append(v)
        first = v.wait_info()
        gateway, api = first["gateway"], first["api"]
        assert api, first

        def stream() -> dict[str, Any]:
            return dict(json.loads(get(gateway + "/stats"))["streams"][0])

        wait_until(lambda: "start" in stream()["start_trace"], 60)
        tr = stream()["start_trace"]
        # the announce went at the join; every step came in its order, the first frame last
        seen = [tr[k] for k in ("announce", "candidates", "dial", "link", "peer", "start") if k in tr]
        assert seen == sorted(seen) and seen[0] == tr["announce"] and seen[-1] == tr["start"], tr
        assert tr["announce"] <= tr["gateway"], tr
        # the local API is up and its OpenAPI document, built at the first request, is
        # served whole and the same at the next
        token = load_or_create_token(tmp_path / "v")
        base = api.rstrip("/")
        url = base + ("/openapi.json" if base.endswith("/v1") else "/v1/openapi.json")
        doc = get(url, token)
        parsed = json.loads(doc)
        assert parsed["openapi"].startswith("3.") and "/v1/openapi.json" in parsed["paths"], sorted(parsed)
        assert get(url, token) == doc
    finally:
        for p in procs:
            p.stop()
