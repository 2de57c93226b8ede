"""The node runs the DHT (docs/oftp.md §17): a newcomer whose link names one peer and no
tracker finds the stream's other providers by a DHT lookup. Real processes on loopback:
a broadcaster (its own tracker), two viewers that joined by its link; the newcomer's
link names only the first viewer. Then a viewer with the broadcaster's *short* link (no
descriptor, no tracker) takes the stream's descriptor from the DHT and plays."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from procs import OasisProcess, wait_until

from oasis.core.identity import key_of_peer_id
from oasis.core.streamlink import Bootstrap, StreamLink
from oasis.core.streamlink import parse as parse_link


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def _stats(p: OasisProcess) -> dict[str, Any]:
    return get_json((p.info.get("gateway") or p.info["http"]) + "/stats?detail=1")


def _watch(link: str, tmp_path: Path, name: str) -> OasisProcess:
    return OasisProcess(["watch", link, "--json", "--gateway", "127.0.0.1:0",
                         "--data-dir", str(tmp_path / name)], str(tmp_path / f"{name}.log"))


def test_a_newcomer_finds_the_streams_providers_in_the_dht(tmp_path: Path) -> None:
    procs: list[OasisProcess] = []
    try:
        b = OasisProcess(["broadcast", "test", "--json", "--bitrate", "600",
                          "--data-dir", str(tmp_path / "b")], str(tmp_path / "b.log"))
        procs.append(b)
        info = b.wait_info()
        link = info["link"]
        viewers = [_watch(link, tmp_path, f"v{i}") for i in range(2)]
        procs.extend(viewers)
        for v in viewers:
            v.wait_info()
        # the viewers play, and so provide the stream in the DHT
        wait_until(lambda: all(_stats(v)["counters"]["dht_publishes"] >= 1 for v in viewers), 60)

        v0 = viewers[0].info
        host, port = v0["oftp"].rsplit(":", 1)
        only_v0 = StreamLink(parse_link(link).sid, parse_link(link).descriptor,
                             (Bootstrap(key_of_peer_id(v0["peer_id"]), host, int(port)),), None)
        n = _watch(only_v0.format(), tmp_path, "newcomer")
        procs.append(n)
        n.wait_info()
        try:
            wait_until(lambda: _stats(n)["counters"]["dht_providers_offered"] >= 1, 30)
        except TimeoutError:
            raise AssertionError({name: {k: v for k, v in _stats(p)["counters"].items()
                                         if k.startswith(("dht", "links", "dial")) and v}
                                  for name, p in [("b", b), ("v0", viewers[0]), ("v1", viewers[1]),
                                                  ("n", n)]}) from None
        c = _stats(n)["counters"]
        assert c["dht_joins"] == 1  # one bootstrap, through v0
        # the providers it found are dialled: it links to peers the link did not name
        wait_until(lambda: len(_stats(n)["nat"]["neighbours"]) >= 2, 20)
        assert c["dht_records_rejected"] == 0 and c["dht_answers_unsolicited"] == 0
        wait_until(lambda: _stats(n)["streams"][0]["chunks"] >= 20, 30)
        # a short link: stream id and the broadcaster as bootstrap, no descriptor, no
        # tracker: the descriptor comes from the broadcaster's stream record in the DHT
        short = info["short_link"]
        assert "d=" not in short and "t=" not in short and len(short) < len(link) // 2
        s2 = _watch(short, tmp_path, "short")
        procs.append(s2)
        assert s2.wait_info()["descriptor"] == parse_link(link).descriptor.to_json()
        wait_until(lambda: _stats(s2)["streams"][0]["chunks"] >= 20, 30)
        assert _stats(s2)["counters"]["dht_descriptors"] >= 1
        # DHT-only links took no neighbour slot and drew no blame
        for p in [b, *viewers, n, s2]:
            pc = _stats(p)["counters"]
            assert pc["peers_banned"] == 0, pc
    finally:
        for p in procs:
            p.stop()
