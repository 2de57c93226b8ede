"""``oasis chat`` and ``oasis dm``: a node that joins a stream's swarm to talk in it.

Both join like ``oasis watch`` (a stream link, or a stream id and a tracker) -- the
swarm's links are what chat floods over and what carries direct messages -- then print
what arrives, one line per message (JSON lines with ``--json``), and send what is typed:

* ``oasis chat STREAM``: each stdin line is a chat message; ``/dm PEER_ID TEXT`` sends a
  direct message, ``/mute PEER_ID [SECONDS]``, ``/ban ...``, ``/unmute ...`` moderate
  (broadcaster's key only); any other ``/word`` is refused, not sent (a typo of ``/dm``
  would publish a private text); ``//`` sends a message that begins with a slash.
  ``--send TEXT``: send one message and exit. Stdin may be a terminal, a pipe, a file
  or ``/dev/null``; once it ends the node listens on until stopped.
* ``oasis dm PEER_ID --via STREAM``: each stdin line is a direct message to PEER_ID;
  ``--send TEXT``: send one, print its state until it is delivered (or ``--wait`` s).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import unicodedata
from typing import Any

from oasis.core import peer as pp
from oasis.core.chat import RateLimited
from oasis.pipes import loop_can_watch

from .keystore import load_or_create
from .messaging import read_prekeys
from .node import LiveStream, Node
from .runtime import (
    Common,
    announce_loop,
    apply_descriptor,
    bootstrap_loop,
    dht_descriptor,
    emit,
    parse_hostport,
    resolve_stream,
    run_until_stopped,
    swarm_config,
)


async def _join(c: Common, stream: str, tracker_url: str | None) -> tuple[Node, LiveStream, asyncio.Task[None]]:
    sid, desc, boots, tracker_url = await resolve_stream(stream, tracker_url)
    ident = load_or_create(c.data_dir)
    prekeys = read_prekeys(c.data_dir, ident)
    host, port = parse_hostport(c.listen, "--listen")
    node = Node(ident, swarm_config(c), host=host, port=port, rng=random.Random(c.seed))
    node.messaging.keep_prekeys(*prekeys)  # DMs held for us open after a restart
    await node.start()
    if desc is None:  # a short link: the stream record in the DHT carries it
        desc = await dht_descriptor(node, sid, boots)
    apply_descriptor(c, desc)
    node.config = swarm_config(c)
    ls = node.add_stream(sid, is_source=ident.public == sid.broadcaster,
                         origin_url=desc.fetch_url)
    if boots:
        node.offer_candidates([pp.Candidate(b.peer, b.host, b.port) for b in boots])
    if tracker_url is not None:
        task = asyncio.create_task(announce_loop(node, ls, tracker_url))
    else:
        task = asyncio.create_task(bootstrap_loop(node, boots))
    return node, ls, task


async def _linked(node: Node, skey: bytes, timeout: float) -> bool:
    """Wait (bounded) until some neighbour joined the stream with us."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not any(skey in p.joined for p in node.policy.peers.values()):
        if loop.time() > end:
            return False
        await asyncio.sleep(0.05)  # a poll of the policy's table, bounded by ``timeout``
    return True


def shown(text: str) -> str:
    """``text`` from a peer, safe for a terminal: control characters (ESC and every C0/C1
    code: screen clearing, window titles, OSC 52 clipboard writes, BEL, BS, CR, newlines
    that would start a line under another sender's name), format characters (bidi
    overrides, zero-width) and line separators are shown as escapes (``\\x1b``, ``\\u202e``)."""
    out = []
    for ch in text:
        if unicodedata.category(ch) in _UNSAFE and ch not in _JOINERS:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


_UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"}
_JOINERS = {"\u200c", "\u200d"}  #: format characters that only join letters or emoji: harmless


def _print(kind: str, data: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit({"event": kind, **data})  # JSON escapes every control character itself
        return
    if kind == "chat.message":
        line = f"<{shown(data['sender'][:8])}> {shown(data['text'])}"
    elif kind == "dm.received":
        line = f"[dm from {shown(data['sender'])}] {shown(data['text'])}"
    elif kind == "dm.acked":
        line = f"[dm {data['id'][:8]} to {data['to'][:8]} delivered]"
    else:
        line = f"[{kind}] {json.dumps(data)}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _printer(node: Node, json_out: bool) -> None:
    sub = node.events.subscribe(["chat", "dm"])
    try:
        async for ev in sub:
            _print(ev.kind, ev.data, json_out)
    finally:
        sub.close()


COMMANDS = ("/dm PEER TEXT, /mute PEER [SECONDS], /ban PEER [SECONDS], /unmute PEER, /stats; "
            "start a message with // to send one that begins with a slash")


async def _command(node: Node, ls: LiveStream, line: str, dm_to: str | None, json_out: bool,
                   paced: bool = False) -> None:
    """Send one line (a chat message, a DM, a command). ``paced``: a chat message over the
    sender's rate limit raises :class:`RateLimited` (the caller waits and sends it again)
    instead of being reported and dropped."""
    m = node.messaging
    try:
        word = line.split(" ", 1)[0]
        if dm_to is not None:
            _print("dm.sent", await m.dm_send(dm_to, line), json_out)
        elif word == "/dm":
            _, peer, text = (line.split(" ", 2) + ["", ""])[:3]
            if not peer or not text:
                raise ValueError("usage: /dm PEER TEXT")
            _print("dm.sent", await m.dm_send(peer, text), json_out)
        elif line.strip() == "/stats":  # the node's counters (chat_*, dm_*, links, ...)
            _print("stats", {"neighbours": node.neighbour_count(), "counters": node.counters}, json_out)
        elif line.split(" ", 1)[0] in ("/mute", "/ban", "/unmute"):
            parts = line.split()
            secs = float(parts[2]) if len(parts) > 2 else 600.0
            _print("chat.moderated", await m.chat_moderate(ls.text_id, parts[1] if len(parts) > 1 else "",
                                                          parts[0][1:], secs), json_out)
        elif line.startswith("//"):  # a message that starts with a slash
            await m.chat_send(ls.text_id, line[1:])
        elif line.startswith("/"):  # a typo must not go out as public chat ("/dn PEER secret")
            raise ValueError(f"unknown command {word[:20]!r}: {COMMANDS}")
        else:
            await m.chat_send(ls.text_id, line)
    except RateLimited:
        if paced:
            raise
        _print("error", {"error": "RateLimited", "message": "chat rate limit: wait a moment"}, json_out)
    except (ValueError, LookupError, PermissionError) as exc:
        _print("error", {"error": type(exc).__name__, "message": str(exc)}, json_out)


async def _send_paced(node: Node, ls: LiveStream, line: str, dm_to: str | None, json_out: bool,
                      stop: asyncio.Event) -> None:
    """Lines read from stdin (typed, or a file) are all sent: one over the chat's rate limit
    (a burst of 5, then 1 a second per sender) waits for the limit instead of being dropped."""
    warned = False
    while not stop.is_set():
        try:
            await _command(node, ls, line, dm_to, json_out, paced=True)
            return
        except RateLimited:
            if not warned and not json_out:
                print("(chat rate limit: the next lines wait their turn)", file=sys.stderr)
            warned = True
            try:
                await asyncio.wait_for(stop.wait(), PACE_RETRY)
            except TimeoutError:
                pass


PACE_RETRY = 0.25  #: s between tries of a line held by the chat rate limit


def _skipped_long_line() -> None:
    print("oasis: a line over 4096 bytes was skipped (a chat message is at most 500 bytes, "
          "a DM 1,000)", file=sys.stderr)


async def _stdin_lines(queue: asyncio.Queue[str | None]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=4096, loop=loop)
    if not loop_can_watch(sys.stdin.fileno()):
        # a regular file or /dev/null (a script's background job): the loop cannot watch
        # it (uvloop would abort the process); its lines are read in a thread
        skipping = False  # the rest of a line longer than the limit (skipped, as below)
        while raw := await asyncio.to_thread(sys.stdin.buffer.readline, 4097):
            complete = raw.endswith(b"\n")
            if skipping or (not complete and len(raw) > 4096):
                if not skipping:
                    _skipped_long_line()
                skipping = not complete
                continue
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line:
                await queue.put(line)
        await queue.put(None)
        return
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        try:
            raw = await reader.readline()
        except ValueError:  # a line longer than the limit: skip it
            _skipped_long_line()
            continue
        if not raw:
            await queue.put(None)
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line:
            await queue.put(line)


async def talk(c: Common, *, stream: str, tracker_url: str | None, send: str | None,
               dm_to: str | None, wait: float) -> int:
    """Run ``oasis chat`` (``dm_to`` None) or ``oasis dm``; returns the exit status."""
    node, ls, finder = await _join(c, stream, tracker_url)
    status = 0
    printer = asyncio.create_task(_printer(node, c.json_out))
    emit({"peer_id": node.peer_id, "stream": ls.text_id, "oftp": f"{node.host}:{node.port}"})

    async def main(stop: asyncio.Event) -> None:
        nonlocal status
        linked = await _linked(node, ls.sid.key, wait)
        if linked:
            _print("linked", {"neighbours": node.neighbour_count()}, c.json_out)
        if send is not None:
            if not linked:
                _print("error", {"error": "NotLinked", "message": f"no peer of the stream within {wait:g} s"},
                       c.json_out)
                status = 1
                return
            if dm_to is None:
                await _command(node, ls, send, None, c.json_out)
                await asyncio.sleep(1.0)  # let the QUIC links carry it before closing them
                return
            acked = node.events.subscribe(["dm.acked"])
            sent = await node.messaging.dm_send(dm_to, send)
            _print("dm.sent", sent, c.json_out)
            if not c.json_out:
                print(f"waiting up to {wait:g} s for the recipient's acknowledgement (--wait)", file=sys.stderr)
            try:
                await asyncio.wait_for(acked.get(), wait)
            except TimeoutError:
                status = 0 if node.messaging.dm_state(sent["id"])["state"] == "stored" else 1
            finally:
                acked.close()
            return
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=64)
        reader = asyncio.create_task(_stdin_lines(queue))
        stopper = asyncio.create_task(stop.wait())
        try:
            while True:
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait([getter, stopper], return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    getter.cancel()
                    return
                line = getter.result()
                if line is None:  # stdin closed: keep listening until stopped
                    await stopper
                    return
                await _send_paced(node, ls, line, dm_to, c.json_out, stop)
        finally:
            reader.cancel()
            stopper.cancel()

    try:
        await run_until_stopped(main)
        if c.json_out:
            emit({"event": "counters", **node.messaging.counters()})
    finally:
        finder.cancel()
        printer.cancel()
        await asyncio.gather(finder, printer, return_exceptions=True)
        await node.close()
    return status
