"""A replayed direct message after the recipient restarts (docs/oftp.md §19.3). Found
2026-12-03: the ids a node had opened lived in memory only, and its inbox file keeps the
newest 1,000 messages, so a storer that kept a message for B could replay it once B had
received 1,000 newer ones and restarted: B showed it again as new. Now B's messaging
service, loading the inbox file at start, remembers the ids it holds and refuses anything
no newer than a message it no longer keeps. Real node (in-process), real inbox file."""

from __future__ import annotations

import os
from pathlib import Path

from procs import until

from oasis.core import dm
from oasis.core import swarm as sw
from oasis.core.identity import Identity
from oasis.node.messaging import MAX_INBOX
from oasis.node.node import Node

A, B, S = (Identity.generate() for _ in range(3))  #: sender, recipient, the hostile storer


async def _node() -> Node:
    n = Node(B, sw.SwarmConfig(chunk_ms=100, bitrate_kbps=200))
    await n.start()
    return n


async def test_a_message_replayed_after_a_restart_is_not_shown_again(tmp_path: Path) -> None:
    inbox = tmp_path / "dm_inbox"
    v = await _node()
    try:
        v.messaging.keep_inbox(inbox)
        t0 = v.clock()
        old, _ = dm.seal(A, B.public, "the transfer is done", t0 - 60, os.urandom)
        recent, _ = dm.seal(A, B.public, "one of the newest", t0 - 1, os.urandom)
        v.messaging.on_dm(S.public, old)
        for i in range(MAX_INBOX):  # newer mail: the old message leaves the inbox file
            sybil = Identity.generate()
            env, _ = dm.seal(sybil, B.public, f"newer {i}", t0 - 30, os.urandom)
            v.messaging.on_dm(sybil.public, env)
        v.messaging.on_dm(S.public, recent)
        await until(lambda: not v.messaging._writing and not v.messaging._unwritten, 30, what="inbox written")
        assert v.counters["dm_delivered"] == MAX_INBOX + 2
    finally:
        await v.close()

    v = await _node()  # B restarts
    try:
        v.messaging.keep_inbox(inbox)
        assert len(v.messaging.inbox) == MAX_INBOX
        sub = v.events.subscribe(("dm",))
        try:
            v.messaging.on_dm(S.public, old)  # the storer replays what it kept
            v.messaging.on_dm(S.public, recent)  # and one still in the inbox
            assert v.counters["dm_replays_refused"] == 1 and v.counters["dm_duplicates"] == 1
            assert v.counters["dm_delivered"] == 0
            fresh, _ = dm.seal(A, B.public, "new today", v.clock(), os.urandom)
            v.messaging.on_dm(A.public, fresh)  # the control: new mail is shown
            ev = await sub.get(timeout=10)
            assert ev.kind == "dm.received" and ev.data["text"] == "new today"
        finally:
            sub.close()
        assert [r["text"] for r in v.messaging.dm_inbox(limit=2)] == ["one of the newest", "new today"]
    finally:
        await v.close()
