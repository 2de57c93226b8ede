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
