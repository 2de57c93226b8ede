"""A modified chat client for bench/chat_live.py: joins a stream by its link and sends
RATE signed chat messages per second for SECONDS straight to its neighbours, ignoring its
own limit (every relay's per-sender bucket must stop the excess at the first hop).

    python bench/chat_spammer.py LINK DATA_DIR RATE SECONDS
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oasis.core import chat as ch  # noqa: E402
from oasis.core import wire  # noqa: E402
from oasis.node.msgcli import _join, _linked  # noqa: E402
from oasis.node.runtime import Common, emit  # noqa: E402


async def main(link: str, data_dir: str, rate: float, seconds: float) -> None:
    node, ls, finder = await _join(Common(data_dir=data_dir), link, None)
    try:
        await _linked(node, ls.sid.key, 60)
        await asyncio.sleep(1.0)
        emit({"event": "spamming", "peer_id": node.peer_id})
        me = node.identity
        sent = 0
        t_start = time.time()
        t_end = t_start + seconds
        while time.time() < t_end:
            # catch up to the target count in batches (a loaded machine wakes us late)
            due = int((time.time() - t_start) * rate) + 1
            while sent < due:
                t = time.time()
                ms = int(t * 1000)
                seq = ms * 1000 + sent
                text = f"SPAM {sent}"
                msg = wire.ChatMsg(stream=ls.sid.key, sender=me.public, seq=seq, time_ms=ms, text=text,
                                   signature=me.sign(ch.chat_signing_bytes(ls.sid.key, me.public, seq, ms,
                                                                           text)))
                for peer in node.messaging._neighbours(ls.sid.key):
                    node.send_to(peer, msg)
                sent += 1
            await asyncio.sleep(0.02)  # the spam's pace
        emit({"event": "done", "sent": sent})
        await asyncio.sleep(1.0)
    finally:
        finder.cancel()
        await node.close()


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("link", help="the stream link (oasis://...) to join")
    ap.add_argument("data_dir", help="the spammer node's data directory")
    ap.add_argument("rate", type=float, help="chat messages per second")
    ap.add_argument("seconds", type=float, help="how long to send")
    a = ap.parse_args()
    asyncio.run(main(a.link, a.data_dir, a.rate, a.seconds))
