"""End-to-end encrypted live streams with real processes (docs/oftp.md §7.2): `oasis
broadcast --encrypt` seals every chunk's media with a content key that only its link
carries. A viewer with the link plays it; the origin (and so any CDN) serves ciphertext;
a link without the key is refused, or relays without playing (`--relay-only`); a wrong
key plays nothing and says so. The same through the local API and SDK."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import av
import pytest

from oasis.core import streamcrypt as sc
from oasis.core import wire
from oasis.core.streamlink import StreamLink
from oasis.core.streamlink import parse as parse_link
from oasis.sdk import AsyncClient, Client, OasisApiError
from tests.node.procs import OasisProcess, wait_until

pytestmark = pytest.mark.integration
SLACK = 60.0


def _get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _stream(gateway: str) -> dict[str, Any]:
    status, body = _get(gateway + "/stats")
    streams = json.loads(body)["streams"] if status == 200 else []
    return streams[0] if streams else {}


def _watch(tmp_path: Path, procs: list[OasisProcess], name: str, link: str, *extra: str,
           stdin: bytes | None = None) -> OasisProcess:
    v = OasisProcess(["watch", link, "--json", "--gateway", "127.0.0.1:0", "--listen", "127.0.0.1:0",
                      "--data-dir", str(tmp_path / name), *extra], str(tmp_path / f"{name}.log"), stdin=stdin)
    procs.append(v)
    return v


def _is_ts(data: bytes) -> bool:
    return len(data) >= 376 and all(data[i] == 0x47 for i in range(0, len(data) - 187, 188))


def test_an_encrypted_stream_plays_only_with_its_key(tmp_path: Path) -> None:
    procs: list[OasisProcess] = []
    try:
        b = OasisProcess(["broadcast", "test", "--encrypt", "--json", "--bitrate", "300", "--data-dir",
                          str(tmp_path / "b")], str(tmp_path / "b.log"))
        procs.append(b)
        info = b.wait_info()
        assert info["encrypted"] is True
        link = parse_link(info["link"])
        assert link.key is not None and link.descriptor is not None and link.descriptor.encrypted
        assert parse_link(info["short_link"]).key == link.key
        kept = tmp_path / "b" / "streams" / "live.key"  # kept for a restart, owner-only
        assert sc.key_from_text(kept.read_text().strip()) == link.key
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600

        keyless = StreamLink(link.sid, link.descriptor, link.bootstrap, link.tracker).format()
        wrong = StreamLink(link.sid, link.descriptor, link.bootstrap, link.tracker, bytes(32)).format()
        # the keyed link on stdin (`oasis watch -`): not in the process's command line
        viewer = _watch(tmp_path, procs, "v", "-", stdin=info["link"].encode() + b"\n")
        relay = _watch(tmp_path, procs, "r", keyless, "--relay-only")
        liar = _watch(tmp_path, procs, "w", wrong)
        refused = _watch(tmp_path, procs, "n", keyless)
        assert refused.popen.wait(SLACK) == 2  # no start line, a clear error, nothing left running
        said = (tmp_path / "n.log").read_text()
        assert "no_key" in said and "end-to-end encrypted" in said and "--relay-only" in said

        v, r, w = (p.wait_info()["gateway"] for p in (viewer, relay, liar))
        cmdline = Path(f"/proc/{viewer.popen.pid}/cmdline").read_bytes()
        assert sc.key_text(link.key).encode() not in cmdline
        assert viewer.info["encrypted"] and viewer.info["playable"] and not relay.info["playable"]
        wait_until(lambda: all(_stream(g).get("chunks", 0) >= 30 for g in (v, r))
                   and _stream(w).get("unopened", 0) >= 30, SLACK)

        # the key holder plays: its gateway gives MPEG-TS a decoder reads
        with av.open(v + viewer.info["player_url"].split(v, 1)[1], timeout=20) as c:
            frame = next(c.decode(video=0))
        assert frame.width > 0
        assert _stream(v)["unopened"] == 0

        # the relay carries the stream (verified chunks from its neighbours) but cannot play it
        rs = _stream(r)
        assert rs["encrypted"] and not rs["playable"] and rs["chunks"] >= 30
        status, body = _get(r + f"/live/{info['stream_id']}.ts")
        assert status == 403 and json.loads(body)["error"] == "no_key"
        assert _get(r + f"/watch/{info['stream_id']}")[0] == 403

        # a wrong key: every chunk refused by the AEAD, nothing played (nor counted as
        # delivered: no continuity for what no player can show), and said so
        ws = _stream(w)
        assert ws["unopened"] >= 30 and ws["playable"] and ws["chunks"] == 0
        status, body = _get(w + "/metrics")
        assert f'oasis_chunks_unopened_total{{stream="{info["stream_id"]}"}}' in body.decode()
        status, body = _get(w + f"/live/{info['stream_id']}.ts")
        assert status == 502 and json.loads(body)["error"] == "unopened"
        assert "did not open with this link's content key" in (tmp_path / "w.log").read_text()

        # the broadcaster's public face (origin, tracker) plays it to no one but this
        # machine's players; neither does a viewer's gateway (a proxy in front: refused)
        sid = info["stream_id"]
        assert _get(info["http"] + f"/watch/{sid}")[0] == 200  # (the operator's own browser)
        for base in (info["http"], v):
            for path in (f"/live/{sid}.ts", f"/watch/{sid}"):
                req = urllib.request.Request(base + path, headers={"X-Forwarded-For": "203.0.113.9"})
                try:
                    urllib.request.urlopen(req, timeout=10).close()
                    raise AssertionError(f"{base}{path} served a proxied request")
                except urllib.error.HTTPError as e:
                    assert e.code == 403 and json.loads(e.read())["error"] == "local_only", (base, path)

        # the origin serves ciphertext (so does any CDN in front of it): signed, sealed
        status, body = _get(f"{info['origin']}/{info['stream_id']}/latest.json")
        seq = json.loads(body)["keyframe"]
        status, body = _get(f"{info['origin']}/{info['stream_id']}/{seq}.chunk")
        assert status == 200
        chunk = wire.decode_chunk(body)
        assert not _is_ts(chunk.payload)
        media = sc.open_sealed(link.key, chunk.stream, chunk.seq, chunk.time_us, chunk.flags, chunk.payload)
        assert media is not None and _is_ts(media)
        with av.open(io.BytesIO(media), format="mpegts") as c:  # the keyframe's own frame
            assert next(c.decode(video=0)).width > 0
    finally:
        for p in procs:
            p.stop()


async def test_an_encrypted_stream_through_the_api(tmp_path: Path) -> None:
    common = ["--api-listen", "127.0.0.1:0", "--bitrate", "300"]
    procs = [OasisProcess(["node", "--data-dir", str(tmp_path / n), *common], str(tmp_path / f"{n}.log"))
             for n in ("a", "b")]
    try:
        for p in procs:
            p.wait_info(SLACK)
        async with AsyncClient.from_data_dir(tmp_path / "a") as api_a, \
                AsyncClient.from_data_dir(tmp_path / "b") as api_b:
            pub = await api_a.publish("secret", "test", bitrate_kbps=300, encrypt=True)
            link = parse_link(pub.link)
            assert pub.encrypted and link.key is not None
            plain = await api_a.publish("open", "test", bitrate_kbps=300)
            assert not plain.encrypted and parse_link(plain.link).key is None
            keyless = StreamLink(link.sid, link.descriptor, link.bootstrap, link.tracker).format()
            with pytest.raises(OasisApiError) as exc:
                await api_b.watch(keyless)
            assert (exc.value.status, exc.value.code) == (400, "no_key")
            assert await api_b.streams() == []  # nothing joined
            relayed = await api_b.watch(keyless, relay_only=True)
            assert relayed.encrypted and not relayed.playable
            info = await api_b.stream(pub.stream_id)
            assert info.encrypted and not info.playable
            await api_b.stop(pub.stream_id)
            # a wrong key: what did not open reached no player, and continuity says so
            wrong = StreamLink(link.sid, link.descriptor, link.bootstrap, link.tracker, bytes(32)).format()
            await api_b.watch(wrong)
            with Client.from_data_dir(tmp_path / "b") as sync_b:  # (a bounded poll, in a thread)
                await asyncio.to_thread(wait_until, lambda: sync_b.stream(pub.stream_id).unopened >= 20, SLACK)
            info = await api_b.stream(pub.stream_id)
            assert info.chunks == 0 and info.continuity is not None and info.continuity == 0.0
            await api_b.stop(pub.stream_id)
            watched = await api_b.watch(pub.link)
            assert watched.encrypted and watched.playable
            mine = await api_a.stream(pub.stream_id)
            assert mine.encrypted and mine.link == pub.link  # the link to share carries the key
            # stopped and published again without "encrypt": refused, not in clear by oversight
            await api_a.stop(pub.stream_id)
            with pytest.raises(OasisApiError) as exc:
                await api_a.publish("secret", "test", bitrate_kbps=300)
            assert exc.value.status == 400 and "published end-to-end encrypted" in exc.value.message
            again = await api_a.publish("secret", "test", bitrate_kbps=300, encrypt=True)
            assert parse_link(again.link).key == link.key  # the same key: old links still play
    finally:
        for p in procs:
            p.stop()
    # the node's key for the stream stays in its data directory (a restart keeps links valid)
    assert (tmp_path / "a" / "streams" / "secret.key").exists()
    assert not (tmp_path / "a" / "streams" / "open.key").exists()
    assert os.stat(tmp_path / "a" / "streams" / "secret.key").st_mode & 0o077 == 0


def test_a_damaged_key_file_is_refused_not_replaced(tmp_path: Path) -> None:
    """The broadcaster's key file (``streams/<name>.key``) is read strictly: one that is not
    a key stops the start with the reason, and is left for the user to look at (a new key
    would silently make every link given out unplayable)."""
    from oasis.core.identity import Identity
    from oasis.core.stream import StreamId
    from oasis.node.streaming import content_key, key_file

    sid = StreamId(Identity.generate().public, "live")
    first = content_key(tmp_path, sid)
    assert content_key(tmp_path, sid) == first  # kept
    path = key_file(tmp_path, sid)
    for junk in (b"", b"\xff" * 43, sc.key_text(first)[:-1].encode(), b"x" * 10_000):
        path.write_bytes(junk)
        with pytest.raises(ValueError, match="not a content key|larger than"):
            content_key(tmp_path, sid)
        assert path.read_bytes() == junk
    path.write_text(sc.key_text(first))
    path.chmod(0o644)  # others may read it: refused, not used
    with pytest.raises(ValueError, match="readable by others"):
        content_key(tmp_path, sid)
    path.unlink()
    path.symlink_to("/dev/zero")  # read without end before
    with pytest.raises(ValueError, match="not a regular file"):
        content_key(tmp_path, sid)


def test_a_stream_once_encrypted_is_not_broadcast_in_clear_by_oversight(tmp_path: Path) -> None:
    """Started again without --encrypt while its key is kept: refused (exit 2, saying what to
    do), before anything starts. Before, it went out in clear and its links' holders followed."""
    import subprocess
    import sys

    from oasis.core.identity import Identity
    from oasis.core.stream import StreamId
    from oasis.node.keystore import load_or_create
    from oasis.node.streaming import content_key

    ident = load_or_create(str(tmp_path / "b"))
    assert isinstance(ident, Identity)
    content_key(tmp_path / "b", StreamId(ident.public, "live"))
    run = subprocess.run([sys.executable, "-m", "oasis", "broadcast", "test", "--data-dir", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2 and "published end-to-end encrypted" in run.stderr and "--encrypt" in run.stderr
    assert run.stdout == ""  # no start line, no link


def test_an_old_plain_descriptor_does_not_make_ciphertext_play() -> None:
    """A viewer given the key (``k=``) whose newest descriptor says "plain" -- an older one,
    genuinely signed, handed out by a tracker or a storer -- opens each chunk with its key
    first: the media plays, ciphertext never goes to the player as media. A chunk that does
    not open is played as it is only on a stream the newest descriptor says is plain (a
    broadcaster that turned sealing off); on an encrypted one it is counted, not played."""
    import types

    from oasis.core.identity import Identity
    from oasis.core.stream import StreamId, sign_chunk
    from oasis.node.node import LiveStream

    bc = Identity.generate()
    sid = StreamId(bc.public, "live")
    key = bytes(range(32))
    media = b"\x47" + bytes(187)
    sealed = sign_chunk(bc, sid, 5, 1_000, True, media, content_key=key)
    plain = sign_chunk(bc, sid, 6, 2_000, False, media)

    def stream(stream_keys: dict, link_keys: dict) -> LiveStream:
        ls = LiveStream.__new__(LiveStream)  # (only what _media reads)
        ls.node = types.SimpleNamespace(stream_keys=stream_keys, link_keys=link_keys,  # type: ignore[assignment]
                                        clock=lambda: 0.0)
        ls.sid, ls.text_id, ls.unopened, ls._unopened_said = sid, str(sid), 0, float("-inf")
        return ls

    told_plain = stream({}, {sid.key: key})  # the link's key, an old "plain" descriptor
    assert told_plain._media(sealed) == media
    assert told_plain._media(plain) == media  # (truly plain now: played as it is)
    encrypted = stream({sid.key: key}, {sid.key: key})
    assert encrypted._media(sealed) == media
    assert encrypted._media(plain) is None and encrypted.unopened == 1
    relay = stream({sid.key: None}, {})
    assert relay._media(sealed) is None and relay.unopened == 0
    assert stream({}, {})._media(plain) == media
