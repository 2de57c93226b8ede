"""A chat bot: answers ``!ping`` with ``pong`` in a stream's chat, through a node's local API.

    python examples/chat_bot.py --data-dir ~/.local/share/oasis/node STREAM_ID

It reads the node's event feed (``chat.message`` events) with the asyncio SDK and
answers every ``!ping`` from someone else. ``--replies N`` exits after N answers (0:
run until interrupted); ``--timeout`` bounds the whole run. Needs a node with
messaging (``node.messaging``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from oasis.sdk import AsyncClient, OasisApiError


async def run(data_dir: str, stream_id: str, replies: int) -> int:
    async with AsyncClient.from_data_dir(data_dir) as api:
        me = (await api.node()).peer_id
        answered = 0
        async for ev in api.events(kinds=["chat.message"]):
            if ev.kind == "subscribed":  # the feed is open: from here on nothing is missed
                print(json.dumps({"bot": me, "stream": stream_id, "ready": True}), flush=True)
                continue
            msg = ev.data
            if msg.get("stream") != stream_id or msg.get("sender") == me:
                continue
            if str(msg.get("text", "")).strip() == "!ping":
                sent = await api.chat_send(stream_id, "pong")
                answered += 1
                print(json.dumps({"answered": msg.get("id"), "reply": sent.id}), flush=True)
                if replies and answered >= replies:
                    return 0
    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stream_id")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--replies", type=int, default=0, help="exit after this many answers")
    ap.add_argument("--timeout", type=float, default=0, help="give up after this many seconds")
    args = ap.parse_args(argv)
    coro = run(args.data_dir, args.stream_id, args.replies)
    try:
        return asyncio.run(asyncio.wait_for(coro, args.timeout) if args.timeout else coro)
    except OasisApiError as exc:
        print(f"chat_bot: {exc}", file=sys.stderr)
        return 2
    except TimeoutError:
        print("chat_bot: timed out", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
