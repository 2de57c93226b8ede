"""A node keeps its neighbours in its data directory, and a restarted one dials them again
(oasis.node.neighbourfile).

With real processes: a broadcaster killed (SIGKILL, no goodbye) and started again on its
ports, its tracker killed as well. Its viewers still hold their links to the dead process
until QUIC's idle timeout (20 s) and dial nobody; with the tracker gone nothing else would
tell the new process of them. It links with both from its own file, well before that.
Before (session 49): with a tracker, the first viewer came back after 0.7-6.6 s and the
fourth after up to 13.7 s (their next announce); without one, not before the idle timeout.

The file itself is read as hostile (size, schema, entries, addresses, age)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from oasis.core.identity import Identity, peer_id_of
from oasis.node import neighbourfile as nf
from tests.node.procs import OasisProcess, free_port, wait_until

SLACK = 60.0
#: the viewers give up a dead link at QUIC's idle timeout (oasis.node.quicstack, 20 s) and
#: would then dial on their own: the broadcaster must have them back before that
BEFORE_IDLE = 15.0



def _stats(base: str) -> dict:
    try:
        with urllib.request.urlopen(base + "/stats", timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        return {}


def _neighbours(base: str) -> int:
    s = _stats(base)
    return int(s["streams"][0]["neighbours"]) if s.get("streams") else 0


def _saved(path: Path) -> int:
    try:
        return len(json.loads(path.read_bytes())["peers"])
    except (OSError, ValueError, KeyError):
        return 0


def _kill(p: OasisProcess) -> None:
    os.killpg(p.popen.pid, signal.SIGKILL)  # a crash: no goodbye, no end marker, no last save
    p.popen.wait(10)


@pytest.mark.integration
def test_a_crashed_broadcaster_dials_its_viewers_again_with_no_tracker(tmp_path: Path) -> None:
    procs: list[OasisProcess] = []
    try:
        t = OasisProcess(["tracker", "--listen", "127.0.0.1:0"], str(tmp_path / "t.log"))
        procs.append(t)
        turl = t.wait_info()["tracker"]
        udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
        base = f"http://127.0.0.1:{tcp}"
        bargs = ["broadcast", "test", "--data-dir", str(tmp_path / "b"), "--listen", f"127.0.0.1:{udp}",
                 "--http", f"127.0.0.1:{tcp}", "--bitrate", "300", "--tracker", turl]
        b1 = OasisProcess(bargs, str(tmp_path / "b1.log"))
        procs.append(b1)
        link = b1.wait_info()["link"]
        for n in ("v1", "v2"):
            v = OasisProcess(["watch", link, "--gateway", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                              "--data-dir", str(tmp_path / n)], str(tmp_path / f"{n}.log"))
            procs.append(v)
            v.wait_info()
        wait_until(lambda: _neighbours(base) == 2, SLACK)
        # links older than the redial rule's window (a crash comes long after the links): the
        # stream 200 chunks (6.6 s) further on
        at = _stats(base)["streams"][0]["latest"]
        wait_until(lambda: _stats(base)["streams"][0]["latest"] >= at + 200, SLACK)
        saved = tmp_path / "b" / nf.FILE_NAME
        wait_until(lambda: _saved(saved) == 2, SLACK)  # written within SAVE_EVERY
        _kill(t)
        _kill(b1)
        b2 = OasisProcess(bargs, str(tmp_path / "b2.log"))
        procs.append(b2)
        t0 = time.monotonic()
        wait_until(lambda: _neighbours(base) == 2, BEFORE_IDLE)
        assert time.monotonic() - t0 < BEFORE_IDLE
        assert _stats(base)["counters"]["neighbours_recalled"] == 2
        # and the viewers took the new links for their dead ones (the redial rule)
        for v in procs[2:4]:
            c = _stats(v.info["gateway"])["counters"]
            assert c["links_redialled"] >= 1, {k: x for k, x in c.items() if x and ("link" in k or "dup" in k)}
    finally:
        for p in procs:
            p.stop()


# ---- the file, read as hostile ------------------------------------------------------------
ME = Identity.generate().public
A, B = Identity.generate().public, Identity.generate().public
NOW = 1_800_000_000.0


def _raw(peers: list[dict], saved_ms: int | None = None, **extra: object) -> bytes:
    return json.dumps({"v": 1, "saved_ms": int(NOW * 1000) if saved_ms is None else saved_ms,
                       "peers": peers, **extra}).encode()


def test_the_file_round_trips_and_skips_what_no_candidate_may_be() -> None:
    data = nf.encode([(A, "127.0.0.1", 4000), (B, "192.0.2.7", 4001)], NOW)
    got = nf.decode(data, NOW + 1, ME)
    assert [(c.peer, c.host, c.port) for c in got] == [(A, "127.0.0.1", 4000), (B, "192.0.2.7", 4001)]
    bad = _raw([{"peer_id": "not-a-key", "host": "127.0.0.1", "port": 1},
                {"peer_id": peer_id_of(ME), "host": "127.0.0.1", "port": 2},  # ourselves
                {"peer_id": peer_id_of(A), "host": "0.0.0.0", "port": 3},  # not dialable
                {"peer_id": peer_id_of(A), "host": "127.0.0.1", "port": 0},
                {"peer_id": peer_id_of(A), "host": "example.org", "port": 4},  # not an IP literal
                {"peer_id": peer_id_of(B), "host": "127.0.0.1", "port": 5},
                {"peer_id": peer_id_of(B), "host": "127.0.0.1", "port": 6}])  # B twice: the first
    assert [(c.peer, c.port) for c in nf.decode(bad, NOW, ME)] == [(B, 5)]


def test_an_old_file_or_one_from_the_future_gives_no_one() -> None:
    peers = [{"peer_id": peer_id_of(A), "host": "127.0.0.1", "port": 4000}]
    assert nf.decode(_raw(peers, int((NOW - nf.MAX_AGE - 1) * 1000)), NOW, ME) == []
    assert nf.decode(_raw(peers, int((NOW + 3600) * 1000)), NOW, ME) == []
    assert len(nf.decode(_raw(peers, int((NOW - 30) * 1000)), NOW, ME)) == 1


@pytest.mark.parametrize("data", [
    b"", b"[]", b"{", b'{"v": 1}', b"\xff\xfe",
    _raw([], extra=1),  # an unknown field
    json.dumps({"v": 2, "saved_ms": 0, "peers": []}).encode(),  # another version
    _raw([{"peer_id": "x", "host": "127.0.0.1", "port": "4000"}]),  # a port as text
    _raw([{"peer_id": "x", "host": "127.0.0.1", "port": 1, "more": 1}]),
    b" " * (nf.MAX_FILE + 1),
])
def test_a_damaged_file_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        nf.decode(data, NOW, ME)


def test_at_most_max_entries_are_taken(tmp_path: Path) -> None:
    keys = [Identity.generate().public for _ in range(nf.MAX_ENTRIES + 10)]
    data = _raw([{"peer_id": peer_id_of(k), "host": "127.0.0.1", "port": 1000 + i} for i, k in enumerate(keys)])
    assert len(data) <= nf.MAX_FILE
    assert len(nf.decode(data, NOW, ME)) == nf.MAX_ENTRIES
    (tmp_path / nf.FILE_NAME).write_bytes(b"{damaged")
    assert nf.load(tmp_path, ME, NOW) == []  # logged, not raised: the node starts anyway
    nf.save(tmp_path, nf.encode([(A, "127.0.0.1", 4000)], NOW))
    assert [c.peer for c in nf.load(tmp_path, ME, NOW)] == [A]
    assert (tmp_path / nf.FILE_NAME).stat().st_mode & 0o777 == 0o600
