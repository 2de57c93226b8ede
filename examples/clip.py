"""Publish a short video clip from one node and fetch and play it on another, by the API.

    python examples/clip.py --publisher ~/.local/share/oasis/a --player ~/.local/share/oasis/b clip.ts

The publisher node publishes the file (``POST /v1/files``); the player node fetches it
by its content id from the publisher (``POST /v1/files/{cid}/fetch``), waits for its
``file.complete`` event, then opens the file's gateway URL with PyAV and decodes it
("plays" it headless). Prints one JSON line; exits 0 when every byte arrived and at
least one video frame decoded. Needs nodes with files (``node.files``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from oasis.sdk import AsyncClient, OasisApiError


async def run(publisher_dir: str, player_dir: str, path: str, timeout: float) -> int:
    async with AsyncClient.from_data_dir(publisher_dir) as pub, \
            AsyncClient.from_data_dir(player_dir) as player:
        info = await pub.file_publish(path)
        pub_node = await pub.node()
        player_node = await player.node()

        async def complete() -> None:
            async for ev in player.events(kinds=["file.complete"]):
                if ev.data.get("cid") == info.cid:
                    return

        waiter = asyncio.create_task(complete())
        await asyncio.sleep(0)  # let the feed subscribe before the fetch starts
        # where to fetch from: the publishing node (PEER_ID@HOST:PORT, its key pinned)
        status = await player.file_fetch(info.cid, peers=[f"{pub_node.peer_id}@{pub_node.oftp}"])
        if status.state not in ("complete", "seeding"):
            await asyncio.wait_for(waiter, timeout)
        waiter.cancel()
        status = await player.file_status(info.cid)
        url = status.url if "://" in status.url else f"{player_node.http or ''}{status.url}"
        frames = await asyncio.get_running_loop().run_in_executor(None, decode_frames, url)
        ok = status.have_blocks == status.blocks and frames > 0
        print(json.dumps({"cid": info.cid, "size": info.size, "state": status.state,
                          "from_peers": status.from_peers, "from_origin": status.from_origin,
                          "frames": frames, "ok": ok}), flush=True)
        return 0 if ok else 1


def decode_frames(url: str, limit: int = 300) -> int:
    """Video frames decoded from ``url`` (at most ``limit``): the headless "play"."""
    import av

    frames = 0
    with av.open(url, timeout=10) as c:
        if not c.streams.video:
            return 0
        for _ in c.decode(video=0):
            frames += 1
            if frames >= limit:
                break
    return frames


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="the clip (a local video file)")
    ap.add_argument("--publisher", required=True, help="data directory of the publishing node")
    ap.add_argument("--player", required=True, help="data directory of the fetching node")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    try:
        return asyncio.run(run(args.publisher, args.player, args.path, args.timeout))
    except OasisApiError as exc:
        print(f"clip: {exc}", file=sys.stderr)
        return 2
    except TimeoutError:
        print("clip: the fetch did not complete in time", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
