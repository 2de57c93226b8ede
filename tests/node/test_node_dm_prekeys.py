"""A node keeps its DM prekeys at rest (``<data-dir>/dm_prekeys``, 0600), so mail held for
it while it was away, sealed to a prekey it had told its neighbours, opens after a restart;
a damaged or foreign prekey file is a one-line error naming the file, never replaced."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.datafiles import DataFileError
from oasis.node.keystore import load_or_create
from oasis.node.messaging import PREKEY_FILE, read_prekeys
from oasis.node.node import Node


async def _node(data_dir: Path) -> Node:
    ident = load_or_create(data_dir)
    prekeys = read_prekeys(data_dir, ident)
    node = Node(ident, sw.SwarmConfig(), dht=False)
    node.messaging.keep_prekeys(*prekeys)
    return node


def test_prekeys_survive_a_restart_and_a_bad_file_is_refused(tmp_path: Path) -> None:
    async def run() -> None:
        first = await _node(tmp_path)
        current = first.messaging.dm.prekey(first.clock())
        path = tmp_path / PREKEY_FILE
        assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        await first.close()
        again = await _node(tmp_path)  # the restart: the old prekey's private half is back
        assert current.prekey in again.messaging.dm.prekeys
        assert len(again.messaging.dm.prekeys) == 2  # and a new one of its own, saved too
        saved = path.read_bytes()
        await again.close()
        third = await _node(tmp_path)
        assert set(third.messaging.dm.prekeys) >= set(again.messaging.dm.prekeys)
        await third.close()
        assert saved

    asyncio.run(run())
    ident = load_or_create(tmp_path)
    path = tmp_path / PREKEY_FILE
    good = path.read_bytes()
    path.write_bytes(good[:-5])  # damaged
    with pytest.raises(DataFileError, match="dm_prekeys: not a DM prekey file of this identity"):
        read_prekeys(tmp_path, ident)
    path.write_bytes(good)
    with pytest.raises(DataFileError, match="another identity"):  # someone else's data dir
        read_prekeys(tmp_path, Identity.generate())
    assert read_prekeys(tmp_path, ident) == (path, good)


def test_received_messages_survive_a_restart(tmp_path: Path) -> None:
    # the inbox lived in memory: a DM received (and acked, so every other copy released)
    # was gone after the recipient restarted
    from oasis.node.messaging import INBOX_FILE
    from tests.node.procs import until

    async def run() -> None:
        a = Node(Identity.generate(), sw.SwarmConfig(), dht=False, host="127.0.0.1")
        await a.start()
        b = await _node(tmp_path)
        await b.start()
        try:
            sub = b.events.subscribe(["dm"])
            assert await a.connect(b.peer_id, b.host, b.port)
            sent = await a.messaging.dm_send(b.peer_id, "kept across restarts")
            got = await sub.get(timeout=10)
            assert got.kind == "dm.received" and got.data["id"] == sent["id"]
            await until(lambda: a.messaging.dm_state(sent["id"])["state"] == "delivered", 10, what="ack")
        finally:
            await b.close()
        path = tmp_path / INBOX_FILE
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        b2 = await _node(tmp_path)
        assert [(m["id"], m["text"], m["sender"]) for m in b2.messaging.dm_inbox()] == [
            (sent["id"], "kept across restarts", a.peer_id)]
        await b2.close()
        with open(path, "ab") as f:  # a damaged tail (a crash mid-write, a bad disk)
            f.write(b'{"id": "x", "sender": \n\xff\xfe garbage\n')
            f.write(b'{"id": "\xb6", "sender": "s", "text": "t", "time": 1.0}\n')  # a string not UTF-8
        b3 = await _node(tmp_path)
        assert [m["id"] for m in b3.messaging.dm_inbox()] == [sent["id"]]
        assert b3.messaging.counters()["dm_inbox_bad_lines"] == 3
        await b3.close()
        await a.close()

    asyncio.run(run())
