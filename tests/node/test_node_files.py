"""Files on real nodes: `oasis publish`/`oasis get` processes on loopback fetching a real MP4
(leading moov) and an MPEG-TS, the gateway's HTTP Range answers, PyAV playing the gateway URL
while the file downloads, the origin fallback, and attacks on the real code path (a forging
peer, a file over the disk cap)."""

from __future__ import annotations

import asyncio
import json
import select
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import pytest
from procs import OasisProcess, until

from oasis.core import content
from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.media.clip import make_clip
from oasis.node.files import Files
from oasis.node.files_http import parse_range
from oasis.node.node import Node


def _line(p: OasisProcess, timeout: float) -> dict:
    assert p.popen.stdout is not None
    ready, _, _ = select.select([p.popen.stdout], [], [], timeout)
    assert ready, "no JSON line in time"
    line = p.popen.stdout.readline()
    assert line, f"process exited with {p.popen.poll()}"
    return json.loads(line)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_publish_get_range_play_and_origin(tmp_path: Path) -> None:
    mp4, ts = str(tmp_path / "clip.mp4"), str(tmp_path / "clip.ts")
    make_clip(mp4, 2.0, 2500)
    make_clip(ts, 1.0, 1000)
    data, tsdata = Path(mp4).read_bytes(), Path(ts).read_bytes()
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat")  # faststart
    procs: list[OasisProcess] = []

    def start(*args: str) -> OasisProcess:
        p = OasisProcess(list(args), str(tmp_path / f"p{len(procs)}.log"))
        procs.append(p)
        return p

    try:
        pub = start("publish", mp4, "--data-dir", str(tmp_path / "pub"))
        pub_ts = start("publish", ts, "--data-dir", str(tmp_path / "pubts"))
        info, info_ts = _line(pub, 60), _line(pub_ts, 60)
        assert info["size"] == len(data) and info["mime"] == "video/mp4"
        g1 = start("get", info["link"], "--data-dir", str(tmp_path / "g1"), "-o", str(tmp_path / "o1.mp4"),
                   "--seed")
        g2 = start("get", info["link"], "--data-dir", str(tmp_path / "g2"), "-o", str(tmp_path / "o2.mp4"),
                   "--seed")
        # the TS from the HTTP origin alone (no peer given): the CDN fallback path
        g3 = start("get", info_ts["cid"], "--origin", info_ts["gateway"], "--data-dir", str(tmp_path / "g3"),
                   "-o", str(tmp_path / "o3.ts"))
        first = _line(g1, 60)
        # time to first frame: PyAV opens the gateway URL while the file downloads
        t0 = time.monotonic()
        with av.open(first["url"], timeout=20) as c:
            frame = next(c.decode(video=0))
        assert frame.width == 640 and time.monotonic() - t0 < 20
        _line(g2, 60)
        _line(g3, 60)
        done = [_line(g, 60) for g in (g1, g2, g3)]
        assert Path(tmp_path / "o1.mp4").read_bytes() == data
        assert Path(tmp_path / "o2.mp4").read_bytes() == data
        assert Path(tmp_path / "o3.ts").read_bytes() == tsdata
        assert done[0]["from_peers"] + done[0]["from_origin"] >= len(data)
        assert done[2]["from_origin"] == len(tsdata) and done[2]["from_peers"] == 0
        assert done[2]["state"] == "complete"
        # HTTP Range on a getter's gateway (it seeds now)
        url = first["url"]
        st, h, body = _get(url, {"Range": "bytes=1000-1999"})
        assert st == 206 and body == data[1000:2000]
        assert h["Content-Range"] == f"bytes 1000-1999/{len(data)}" and h["Content-Type"] == "video/mp4"
        st, h, body = _get(url, {"Range": "bytes=-500"})
        assert st == 206 and body == data[-500:]
        st, h, body = _get(url, {"Range": f"bytes={len(data) - 10}-"})
        assert st == 206 and body == data[-10:]
        st, h, body = _get(url, {"Range": f"bytes={len(data)}-"})
        assert st == 416 and h["Content-Range"] == f"bytes */{len(data)}"
        st, h, body = _get(url)
        assert st == 200 and body == data and h["Accept-Ranges"] == "bytes"
        st, _, _ = _get(f"{first['gateway']}/files/{content.cid_text(bytes(32))}")
        assert st == 404  # a file this node does not hold
        st, _, _ = _get(url[:-1] + ("a" if url[-1] != "a" else "b"))
        assert st in (400, 404)  # not canonical, or another cid
        # the origin answers blocks as BLOCK messages, cacheable by a CDN
        st, h, body = _get(f"{info_ts['gateway']}/origin/files/{info_ts['cid']}/0.blk")
        assert st == 200 and "immutable" in h["Cache-Control"]
        st, _, _ = _get(f"{info_ts['gateway']}/origin/files/{info_ts['cid']}/99999.blk")
        assert st == 404
        metrics = _get(f"{first['gateway']}/metrics")[2].decode()
        assert 'event="files_blocks_from_peers"' in metrics
    finally:
        for p in procs:
            p.stop()


def test_a_publisher_on_every_interface_prints_a_link_a_getter_takes(tmp_path: Path) -> None:
    """``oasis publish --http 0.0.0.0:P``: the link names no ``o=http://0.0.0.0:P`` (no one
    can ask that address; every parser refused the link, ``bad_origin``: found 2026-12-07
    from outside), only the peer, which ``oasis get`` fetches from."""
    from oasis.core.filelink import parse as parse_file_link

    path = tmp_path / "a.bin"
    path.write_bytes(bytes(range(256)) * 300)
    procs = [OasisProcess(["publish", str(path), "--data-dir", str(tmp_path / "pub"), "--http", "0.0.0.0:0",
                           "--listen", "127.0.0.1:0"], str(tmp_path / "pub.log"))]
    try:
        info = _line(procs[0], 60)
        link = parse_file_link(info["link"])  # (it raised bad_origin)
        port = int(info["oftp"].rsplit(":", 1)[1])
        assert link.origin is None and [(h, p) for _, h, p in link.peers] == [("127.0.0.1", port)], info
        procs.append(OasisProcess(["get", info["link"], "--data-dir", str(tmp_path / "g"),
                                   "-o", str(tmp_path / "o.bin")], str(tmp_path / "g.log")))
        assert procs[1].popen.wait(60) == 0, (tmp_path / "g.log").read_text()
        assert (tmp_path / "o.bin").read_bytes() == path.read_bytes()
    finally:
        for p in procs:
            p.stop()


def test_range_parser() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-200", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-1000", 100) == (0, 99)
    assert parse_range("bytes=100-", 100) == "unsatisfiable"
    assert parse_range("bytes=-0", 100) == "unsatisfiable"
    assert parse_range("bytes=5-1", 100) is None  # invalid: ignored
    assert parse_range("bytes=0-1,5-6", 100) is None  # several ranges: whole file
    assert parse_range("items=0-1", 100) is None
    assert parse_range("Bytes=0-9", 100) == parse_range("BYTES=0-9", 100) == (0, 9)  # RFC 9110: any case
    assert parse_range("bytes=" + "9" * 30 + "-", 100) is None


async def _nodes(n: int, tmp: Path, **kw: object) -> list[Node]:
    out = []
    for i in range(n):
        node = Node(Identity.generate(), sw.SwarmConfig())
        await node.start()
        node.files = Files(node, tmp / f"n{i}", **kw)  # type: ignore[arg-type]
        out.append(node)
    return out


async def _slow_seed(tmp: Path, data: bytes) -> tuple[Node, str, list[str]]:
    """A node (under ``tmp/s``) that published ``data`` and uploads 8 blocks a second, so a
    fetch from it can be caught half-way; its cid and ``[PEER_ID@HOST:PORT]``."""
    from oasis.core import fileswarm as fs
    from oasis.core.content import BLOCK_SIZE

    slow = fs.FileSwarmConfig(upload_bytes_per_s=8 * BLOCK_SIZE, upload_burst=2 * BLOCK_SIZE)
    (seed,) = await _nodes(1, tmp / "s", config=slow)
    (tmp / "f.bin").write_bytes(data)
    info = await seed.files.publish(str(tmp / "f.bin"))
    return seed, info["cid"], [f"{seed.peer_id}@{seed.host}:{seed.port}"]


async def _complete(f: Files, cid: str, timeout: float = 20.0) -> dict:
    sub = f.node.events.subscribe(("file",))
    try:
        end = time.monotonic() + timeout
        while f.status(cid)["state"] == "fetching":
            await sub.get(timeout=max(0.01, end - time.monotonic()))
        return f.status(cid)
    finally:
        sub.close()


def test_forging_peer_is_banned_and_the_file_still_verifies(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000  # 256 kB, 8 blocks

    async def run() -> None:
        honest, forger, getter = await _nodes(3, tmp_path)
        try:
            (tmp_path / "f.bin").write_bytes(data)
            info = await honest.files.publish(str(tmp_path / "f.bin"))
            await forger.files.publish(str(tmp_path / "f.bin"))
            e = forger.files.entries[content.parse_cid(info["cid"])]
            real = e.read_block
            e.read_block = lambda i: bytes([real(i)[0] ^ 1]) + real(i)[1:]  # type: ignore[method-assign]
            await getter.files.fetch(info["cid"], [f"{forger.peer_id}@{forger.host}:{forger.port}"])
            sub = getter.events.subscribe()
            await until(lambda: forger.identity.public in getter.banned, 20, what="the forger's ban")
            sub.close()
            c = getter.counters
            assert c["files_bad_blocks"] >= 1 and c["files_peers_dropped"] == 1
            assert getter.files.status(info["cid"])["have_blocks"] == 0  # nothing forged was stored
            await getter.files.fetch(info["cid"], [f"{honest.peer_id}@{honest.host}:{honest.port}"])
            st = await _complete(getter.files, info["cid"])
            assert st["state"] == "complete"
            # the status (a getter's summary, the API's FileStatus) says what was refused
            assert st["bad_blocks"] >= 1 and st["peers_dropped"] == 1
            e2 = getter.files.entries[content.parse_cid(info["cid"])]
            assert (e2.dir / "data").read_bytes() == data
            # a FILE_WANT for a cid nobody holds is answered "none" and counted
            assert getter.counters["files_unknown_cid"] == 0
        finally:
            for n in (honest, forger, getter):
                await n.close()

    asyncio.run(run())


def test_disk_cap_evicts_lru_unpinned_and_refuses_what_cannot_fit(tmp_path: Path) -> None:
    a_data, b_data = b"a" * 150_000, b"b" * 150_000

    async def run() -> None:
        (seed,) = await _nodes(1, tmp_path)
        (small,) = await _nodes(1, tmp_path / "s", cap_bytes=200_000)
        assert (tmp_path / "n0" / "files").stat().st_mode & 0o777 == 0o700  # private, as all data dirs
        try:
            (tmp_path / "a.bin").write_bytes(a_data)
            (tmp_path / "b.bin").write_bytes(b_data)
            ia = await seed.files.publish(str(tmp_path / "a.bin"))
            ib = await seed.files.publish(str(tmp_path / "b.bin"))
            peer = [f"{seed.peer_id}@{seed.host}:{seed.port}"]
            await small.files.fetch(ia["cid"], peer)
            assert (await _complete(small.files, ia["cid"]))["state"] == "complete"
            await small.files.fetch(ib["cid"], peer)
            assert (await _complete(small.files, ib["cid"]))["state"] == "complete"
            assert [s["cid"] for s in small.files.list()] == [ib["cid"]]  # a was evicted (LRU, not pinned)
            assert small.counters["files_evicted"] == 1 and small.counters["files_bytes"] == 150_000
            with pytest.raises(LookupError):
                small.files.status(ia["cid"])
            (tmp_path / "big.bin").write_bytes(b"c" * 250_000)
            with pytest.raises(ValueError):
                await small.files.publish(str(tmp_path / "big.bin"))  # over the cap
            with pytest.raises(ValueError):
                await small.files.fetch("of1nonsense")
        finally:
            await seed.close()
            await small.close()

    asyncio.run(run())


def test_a_getter_finds_a_seeder_through_the_dht(tmp_path: Path) -> None:
    # S fetched the file from P and seeds it (announced in the DHT); G knows only P: its DHT
    # lookup of the file's name finds S's signed record (stored at P) -- not only FILE_PEERS
    data = bytes(range(256)) * 400

    async def run() -> None:
        p, s, g = await _nodes(3, tmp_path)
        try:
            (tmp_path / "f.bin").write_bytes(data)
            info = await p.files.publish(str(tmp_path / "f.bin"))
            at = f"{p.peer_id}@{p.host}:{p.port}"
            await s.files.fetch(info["cid"], [at])
            assert (await _complete(s.files, info["cid"]))["state"] == "complete"
            await until(lambda: p.dht is not None and p.dht.dht.records >= 1, 20, what="S's record at P")
            await g.files.fetch(info["cid"], [at])
            await until(lambda: g.counters["files_dht_providers"] >= 1, 20, what="a DHT provider")
            assert (await _complete(g.files, info["cid"]))["state"] == "complete"
            assert g.counters["dht_records_rejected"] == 0
        finally:
            for n in (p, s, g):
                await n.close()

    asyncio.run(run())


def test_an_interrupted_download_resumes_and_re_verifies_what_it_kept(tmp_path: Path) -> None:
    from oasis.core.content import BLOCK_SIZE

    data = __import__("os").urandom(64 * BLOCK_SIZE - 100)  # 64 blocks

    async def run() -> None:
        seed, cid, peer = await _slow_seed(tmp_path, data)
        (getter,) = await _nodes(1, tmp_path / "g")
        try:
            await getter.files.fetch(cid, peer)
            await until(lambda: getter.files.status(cid)["have_blocks"] >= 16, 30, what="16 blocks")
            kept = getter.files.status(cid)["have_blocks"]
            await getter.close()  # interrupted (Ctrl-C): the partial download stays on disk
            d = tmp_path / "g" / "n0" / "files" / cid
            assert (d / "data").exists() and (d / "proofs").exists() and not (d / "done").exists()
            with open(d / "data", "r+b") as f:  # one kept block rots on disk
                f.seek(0)
                b = f.read(1)
                f.seek(0)
                f.write(bytes([b[0] ^ 0xFF]))
            (getter,) = await _nodes(1, tmp_path / "g")  # the next run, same data directory
            assert getter.files.used() > 0  # the partial counts against the disk cap
            await getter.files.fetch(cid, peer)
            c = getter.counters
            assert c["files_resumed"] == 1 and c["files_resume_bad_blocks"] == 1
            assert c["files_resumed_blocks"] >= kept - 1
            st = await _complete(getter.files, cid, timeout=30)
            assert st["state"] == "complete"
            assert (d / "data").read_bytes() == data and not (d / "proofs").exists()
            # only what was missing (and the rotten block) came again
            assert getter.counters["files_blocks_from_peers"] <= 64 - c["files_resumed_blocks"]
        finally:
            await seed.close()
            await getter.close()

    asyncio.run(run())


def test_a_disk_that_fills_up_ends_the_fetch_saying_so_and_keeps_what_was_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's disk fills up mid-download (ENOSPC from the block's write; a 1 MB tmpfs in
    the outside audit of 2026-12-05, which saw a traceback per block from the socket's
    callback and blocks never written counted as kept). The fetch ends saying why; what was
    written stays, and a fetch once there is room resumes from it."""
    import errno
    import os

    from oasis.core.content import BLOCK_SIZE

    data = os.urandom(32 * BLOCK_SIZE - 100)  # 32 blocks
    real_pwrite = os.pwrite
    full = False

    def pwrite(fd: int, b: bytes, offset: int) -> int:  # (only the getter writes while this runs)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, b, offset)

    async def run() -> None:
        nonlocal full
        seed, cid, peer = await _slow_seed(tmp_path, data)
        (getter,) = await _nodes(1, tmp_path / "g")
        try:
            monkeypatch.setattr(os, "pwrite", pwrite)
            await getter.files.fetch(cid, peer)
            await until(lambda: getter.files.status(cid)["have_blocks"] >= 8, 30, what="8 blocks")
            full = True
            await until(lambda: getter.files.failure(cid) is not None, 30, what="the fetch to end")
            why = getter.files.failure(cid)
            assert why is not None and "No space left on device" in why and "kept" in why, why
            assert getter.counters["files_write_failed"] == 1
            d = tmp_path / "g" / "n0" / "files" / cid
            assert (d / "manifest").exists() and (d / "data").exists()  # kept for a resume
            full = False  # room again: the same fetch resumes from what was written
            await getter.files.fetch(cid, peer)
            assert getter.counters["files_resumed"] == 1 and getter.counters["files_resumed_blocks"] >= 8
            st = await _complete(getter.files, cid, timeout=30)
            assert st["state"] == "complete" and (d / "data").read_bytes() == data
        finally:
            await seed.close()
            await getter.close()

    asyncio.run(run())


def test_a_stored_block_damaged_while_running_is_never_served_and_is_fetched_again(tmp_path: Path) -> None:
    from oasis.core.content import BLOCK_SIZE

    data = __import__("os").urandom(8 * BLOCK_SIZE)

    def rot(d: Path, index: int) -> None:  # the disk (or a user) changes the stored copy
        with open(d / "data", "r+b") as f:
            f.seek(index * BLOCK_SIZE + 7)
            b = f.read(1)
            f.seek(index * BLOCK_SIZE + 7)
            f.write(bytes([b[0] ^ 0xFF]))

    async def run() -> None:
        pub, seeder, getter = await _nodes(3, tmp_path)
        try:
            (tmp_path / "f.bin").write_bytes(data)
            info = await pub.files.publish(str(tmp_path / "f.bin"))
            cid = info["cid"]
            await seeder.files.fetch(cid, [f"{pub.peer_id}@{pub.host}:{pub.port}"])
            assert (await _complete(seeder.files, cid))["state"] == "complete"
            e = pub.files.entries[content.parse_cid(cid)]
            # 1. the player reads a damaged block: the publisher fetches it again from the
            # seeder and plays the right bytes; its stored copy is whole again
            rot(e.dir, 3)
            assert await pub.files.block(e, 3) == data[3 * BLOCK_SIZE: 4 * BLOCK_SIZE]
            assert pub.counters["files_stored_damaged"] == 1 and pub.counters["files_blocks_lost"] == 1
            await until(lambda: (e.dir / "data").read_bytes() == data, 20, what="the stored copy healed")
            await until(lambda: e.swarm.complete and e.done, 20, what="complete again")
            # 2. a peer asks for a damaged block and nobody else holds it: it gets BLOCK_MISSING,
            # never the damaged bytes, and the publisher stops offering it
            await seeder.close()
            rot(e.dir, 6)
            await getter.files.fetch(cid, [f"{pub.peer_id}@{pub.host}:{pub.port}"])
            await until(lambda: getter.files.status(cid)["have_blocks"] == 7
                        and pub.counters["files_stored_damaged"] >= 2, 20, what="7 good blocks")
            assert getter.counters["files_bad_blocks"] == 0
            assert pub.identity.public not in getter.banned
            assert 6 not in e.swarm.have and pub.counters["files_blocks_lost"] == 2
            with pytest.raises(LookupError, match="damaged|not held"):
                pub.files.origin_block(cid, 6)  # the HTTP origin does not serve it either
            g = getter.files.entries[content.parse_cid(cid)]
            got = (g.dir / "data").read_bytes()
            for i in (0, 1, 2, 3, 4, 5, 7):
                assert got[i * BLOCK_SIZE: (i + 1) * BLOCK_SIZE] == data[i * BLOCK_SIZE: (i + 1) * BLOCK_SIZE]
        finally:
            for n in (pub, seeder, getter):
                await n.close()

    asyncio.run(run())


def test_get_with_nothing_to_fetch_from_refuses_and_an_interrupted_get_fails(tmp_path: Path) -> None:
    """``oasis get CID`` naming no peer and no origin cannot ever complete: exit 2 with what
    to give, not a silent wait. A get stopped (SIGINT) before the file is whole exits 130, so
    a script can tell; the finished part is resumed by the next run (tested elsewhere)."""
    blob = tmp_path / "big.bin"
    blob.write_bytes(Identity.generate().private_bytes() * (4 * 1024 * 1024 // 32))  # 4 MiB
    procs: list[OasisProcess] = []
    try:
        pub = OasisProcess(["publish", str(blob), "--data-dir", str(tmp_path / "pub"), "--upload-mbps", "1"],
                           str(tmp_path / "pub.log"))
        procs.append(pub)
        info = _line(pub, 60)
        t0 = time.monotonic()
        bare = OasisProcess(["get", info["cid"], "--data-dir", str(tmp_path / "g0")], str(tmp_path / "g0.log"))
        procs.append(bare)
        assert bare.popen.wait(60) == 2 and time.monotonic() - t0 < 60
        err = (tmp_path / "g0.log").read_text()
        assert "nothing to fetch" in err and "--peer" in err and "Traceback" not in err
        # at 1 Mbit/s the 4 MiB take ~30 s: stopped after its first line, it is not whole
        g = OasisProcess(["get", info["link"], "--data-dir", str(tmp_path / "g1"), "-o", str(tmp_path / "o.bin")],
                         str(tmp_path / "g1.log"))
        procs.append(g)
        _line(g, 60)
        g.popen.send_signal(signal.SIGINT)
        assert g.popen.wait(30) == 130
        assert not (tmp_path / "o.bin").exists()
    finally:
        for p in reversed(procs):
            p.stop()


def test_a_big_file_from_one_peer_is_not_cut_by_the_control_message_budget(tmp_path: Path) -> None:
    """A 24 MB file from one seeder: each 32 KiB block is one BLOCK_REQUEST and one BLOCK,
    and at a full token of the peer's control-message budget each (400 at once, 200 a
    second) both sides dropped the messages over it after ~14 MB; the transfer stalled ~12 s
    each time until the requests timed out. File messages now cost a tenth: no message over
    budget, no request timed out, the bytes identical."""
    data = bytes(range(256)) * (24 * 4096)  # 24 MiB
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    procs: list[OasisProcess] = []
    try:
        pub = OasisProcess(["publish", str(src), "--data-dir", str(tmp_path / "pub")], str(tmp_path / "pub.log"))
        procs.append(pub)
        info = _line(pub, 60)
        g = OasisProcess(["get", info["link"], "--data-dir", str(tmp_path / "g"), "-o", str(tmp_path / "out.bin"),
                          "--seed"], str(tmp_path / "g.log"))
        procs.append(g)
        first = _line(g, 60)
        done = _line(g, 120)
        assert done["state"] in ("complete", "seeding") and (tmp_path / "out.bin").read_bytes() == data
        for url in (first["gateway"], info["gateway"]):
            text = _get(f"{url}/metrics")[2].decode()
            values = {k: float(v) for k, v in
                      (ln.rsplit(" ", 1) for ln in text.splitlines() if ln.startswith("oasis_node_events_total"))}
            assert values['oasis_node_events_total{event="messages_over_budget"}'] == 0.0, url
            assert values['oasis_node_events_total{event="files_request_timeouts"}'] == 0.0, url
        text = _get(f"{first['gateway']}/metrics")[2].decode()
        got = {k: float(v) for k, v in (ln.rsplit(" ", 1) for ln in text.splitlines()
                                        if ln.startswith('oasis_node_events_total{event="files_blocks_from_'))}
        peers = got['oasis_node_events_total{event="files_blocks_from_peers"}']
        origin = got['oasis_node_events_total{event="files_blocks_from_origin"}']
        # each of the 768 blocks came once; the seeder carried them past where the budget cut
        # the transfer (~14 MB = 437 blocks). A block late 0.25 s near the playhead may come
        # from the origin instead (origin_after): on a loaded machine a few do.
        assert peers + origin == 768 and peers >= 576, got
    finally:
        for p in procs:
            p.stop()


def test_a_shared_page_is_never_served_as_a_page(tmp_path: Path) -> None:
    """Found 2026-12-02: a published ``.html`` (or ``.svg``) was served by every gateway that
    fetched it as ``text/html``, immutable for a year, unsniffed: its script ran on the
    gateway's origin and read what the user watches. Files now keep only media types, and
    every file answer forbids sniffing and sandboxes whatever a browser makes of it."""
    page = tmp_path / "page.html"
    page.write_text("<script>fetch('/streams').then(r => r.text()).then(t => document.title = t)</script>")
    svg = tmp_path / "pic.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    procs = [OasisProcess(["publish", str(p), "--data-dir", str(tmp_path / f"d{i}")], str(tmp_path / f"p{i}.log"))
             for i, p in enumerate((page, svg))]
    try:
        for p in procs:
            info = _line(p, 60)
            assert info["mime"] == "application/octet-stream"
            st, h, _ = _get(info["url"])
            assert st == 200 and h["Content-Type"] == "application/octet-stream"
            assert h["X-Content-Type-Options"] == "nosniff" and "sandbox" in h["Content-Security-Policy"]
        # a manifest's type is the publisher's word: a hostile one is not served as it says
        assert content.safe_mime("text/html") == content.safe_mime("image/svg+xml") == "application/octet-stream"
        assert content.safe_mime("video/mp4") == "video/mp4"
    finally:
        for p in procs:
            p.stop()


async def test_a_file_whose_size_is_not_what_it_holds_is_not_published(tmp_path: Path) -> None:
    """``/proc/self/environ`` (size 0, holding bytes) was published as a 0-byte file whose
    store entry held its bytes, and failed its check at the node's next start (found
    2026-12-05 by an outside audit). A read that does not match the size is refused, and
    nothing is left in the store; a real empty file still publishes."""
    node = Node(Identity.generate(), sw.SwarmConfig(), host="127.0.0.1")
    await node.start()
    files = Files(node, tmp_path / "files")
    try:
        proc = Path("/proc/self/environ")
        assert proc.is_file() and proc.stat().st_size == 0 and proc.read_bytes()
        with pytest.raises(ValueError, match="not its size 0"):
            await files.publish(str(proc))
        assert not files.entries
        assert [p.name for p in files.root.iterdir()] == []  # no half-copy left behind
        (tmp_path / "empty.bin").write_bytes(b"")
        info = await files.publish(str(tmp_path / "empty.bin"))
        assert info["size"] == 0 and len(files.entries) == 1
    finally:
        files.close()
        await node.close()


class _Staller:
    """A node's file service that claims every block of one file and serves none."""

    def __init__(self, cid: bytes, manifest: bytes, blocks: int) -> None:
        from oasis.core import wire
        self.wire, self.cid, self.manifest = wire, cid, manifest
        self.have = b"\xff" * ((blocks + 7) // 8)

    def on_message(self, link: object, peer: bytes, msg: object) -> None:
        if isinstance(msg, self.wire.FileWant) and msg.cid == self.cid:
            link.send(self.wire.FileHave(cid=self.cid, manifest=self.manifest, have=self.have))  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:  # link_up, link_down, close, ...: nothing
        return lambda *a, **k: None


def test_silent_peers_named_first_do_not_keep_the_named_seeder_out(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Found 2026-12-06 by an outside audit: a discovery dials its first 24 peers; with 24
    silent sybils named before the publisher (a link's ``b=`` list, ``--peer``s, a DHT answer)
    the publisher was never dialled and ``oasis get`` gave up after 60 s with 0 blocks. The
    peers named beyond are kept and dialled, a batch at a time, while no peer sends a block
    (here with 2 dialled at first and the reserve's turn after 0.5 s)."""
    from oasis.node import files as files_mod

    monkeypatch.setattr(files_mod, "MAX_DISCOVERED", 2)
    monkeypatch.setattr(files_mod, "RESERVE_AFTER", 0.5)
    data = bytes(range(256)) * 1000  # 8 blocks

    async def run() -> None:
        honest, s1, s2, s3, getter = await _nodes(5, tmp_path)
        try:
            (tmp_path / "f.bin").write_bytes(data)
            info = await honest.files.publish(str(tmp_path / "f.bin"))
            cid = content.parse_cid(info["cid"])
            manifest = honest.files.entries[cid].manifest
            assert manifest is not None
            for s in (s1, s2, s3):
                s.files.close()
                s.files = _Staller(cid, manifest.encode(), manifest.blocks)  # type: ignore[assignment]
            named = [f"{n.peer_id}@{n.host}:{n.port}" for n in (s1, s2, s3, honest)]
            await getter.files.fetch(info["cid"], named)
            st = await _complete(getter.files, info["cid"])
            assert st["state"] == "complete" and st["from_peers"] == len(data)
            assert getter.counters["files_reserve_dialled"] >= 1
        finally:
            for n in (honest, s1, s2, s3, getter):
                await n.close()

    asyncio.run(run())
