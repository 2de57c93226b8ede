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

A ``--send`` text (or command) and ``oasis dm``'s peer id are checked before anything
starts (:func:`parse_line`): a bad one is a one-line error and exit status 2. What goes
wrong later is an ``error`` line (event) whose ``error`` is a stable snake_case code
(:data:`ERROR_CODES`, docs/oftp.md §19.5); with ``--send`` it also makes the exit status 1.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any

from oasis.core import dm, wire
from oasis.core import peer as pp
from oasis.core.chat import ACTIONS, ChatConfig, RateLimited
from oasis.core.identity import key_of_peer_id
from oasis.core.stream import StreamIdError
from oasis.core.streamlink import LinkError
from oasis.datafiles import hold_data_dir
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
    set_stream_key,
    stop_event,
    swarm_config,
    unless_stopped,
    url_host,
)


async def _join(c: Common, stream: str, tracker_url: str | None,
                command: str = "chat") -> tuple[Node, LiveStream, asyncio.Task[None]]:
    hold_data_dir(c.data_dir, command)
    stop_event()  # a stop signal from here on is a clean stop (the waits below are cut by it)
    try:
        sid, desc, boots, tracker_url, key = await unless_stopped(resolve_stream(stream, tracker_url))
    except (StreamIdError, LinkError) as exc:  # (dm's stream is --via: name it; chat's is its argument)
        if command != "dm":
            raise
        code = exc.code if isinstance(exc, LinkError) else ""
        said = str(exc).removeprefix(f"{code}: ") if code else str(exc)
        raise (LinkError(code, f"--via: {said}") if code else StreamIdError(f"--via: {said}")) from None
    ident = load_or_create(c.data_dir)
    prekeys = read_prekeys(c.data_dir, ident)
    host, port = parse_hostport(c.listen, "--listen")
    node = Node(ident, swarm_config(c), host=host, port=port, rng=random.Random(c.seed),
                link_delay=c.link_delay_ms / 1000, quic=c.quic)
    try:  # a taken --listen, a short link the DHT has no descriptor for: nothing left open
        node.messaging.keep_prekeys(*prekeys)  # DMs held for us open after a restart
        await node.start()
        if desc is None:  # a short link: the stream record in the DHT carries it
            desc = await unless_stopped(dht_descriptor(node, sid, boots))
        apply_descriptor(c, desc)
        node.config = swarm_config(c)
        set_stream_key(node, desc, key)  # (an encrypted stream's media: relayed, opened only with k=)
        ls = node.add_stream(sid, is_source=ident.public == sid.broadcaster,
                             origin_url=desc.fetch_url)
    except BaseException:
        await node.close()
        raise
    if boots:
        node.offer_candidates([pp.Candidate(b.peer, b.host, b.port) for b in boots])
    if tracker_url is not None:
        task = asyncio.create_task(announce_loop(node, ls, tracker_url, area=c.area))
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
    overrides, zero-width) and line separators are shown as escapes (``\\x1b``, ``\\u202e``,
    ``\\U000e0041``)."""
    out = []
    for ch in text:
        if unicodedata.category(ch) in _UNSAFE and ch not in _JOINERS:
            o = ord(ch)
            # Python's forms: \U and eight digits past U+FFFF (\u and five read as two
            # characters: U+E0041 looked like U+E004 then "1")
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
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
    elif kind == "error":  # ERROR_CODES: the code scripts match, then what to do
        line = f"[error {data['error']}] {data['message']}"
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

#: the ``error`` codes of an ``error`` line (docs/oftp.md §19.5); stable: scripts match them
ERROR_CODES = {
    "bad_text": "a chat text not 1..500 UTF-8 bytes, a DM text not 1..1,000, or not UTF-8",
    "bad_peer_id": "not a peer id (52 base32 characters), one no DM can be sealed to, or your own",
    "usage": "a command without what it needs (/dm PEER TEXT, /mute PEER [SECONDS])",
    "unknown_command": "a line starting with / that is no command (not sent: // sends a leading slash)",
    "not_linked": "--send: no peer of the stream linked within --wait seconds",
    "rate_limited": "your own chat messages over the chat's rate (5 at once, then 1 a second)",
    "muted": "the broadcaster muted or banned you in this stream's chat",
    "forbidden": "moderation by a node that is not the stream's broadcaster",
    "not_delivered": "dm --send: neither acknowledged nor handed to a peer within --wait seconds",
    "refused": "the node refused the message (e.g. 256 DMs already wait for an acknowledgement)",
}


class SendError(ValueError):
    """A line that cannot be sent; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Line:
    """What one typed line (or ``--send``) asks for, checked."""

    kind: str  #: chat | dm | moderate | stats
    text: str = ""
    peer: str = ""
    action: str = ""  #: mute | ban | unmute
    seconds: float = 600.0


def _check_text(text: str, limit: int, what: str) -> str:
    try:
        n = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate (bytes that were not UTF-8 in argv)
        raise SendError("bad_text", f"{what} text is not valid UTF-8") from None
    if not 1 <= n <= limit or (what == "chat" and len(text) > wire.MAX_CHAT_TEXT):
        raise SendError("bad_text", f"{what} text must be 1..{limit} UTF-8 bytes (this one has {n})")
    if not text.strip():  # (was sent: a message of spaces)
        raise SendError("bad_text", f"{what} text is only white space")
    return text


def check_peer(peer: str, *, dm_to: bool = False) -> str:
    """A peer id as typed; raises :class:`SendError` ``bad_peer_id``. ``dm_to``: it must also
    be a key a direct message can be sealed to."""
    try:
        key = key_of_peer_id(peer)
    except ValueError as exc:
        raise SendError("bad_peer_id", f"bad peer id {shown(peer[:60])!r}: {exc}") from None
    if dm_to and not dm.can_seal_to(key):
        raise SendError("bad_peer_id", f"bad peer id {peer}: no message can be sealed to this key")
    return peer


def parse_line(line: str, dm_to: str | None) -> Line:
    """What ``line`` asks for (``dm_to``: every line is a DM to that peer), checked as far as
    it can be before the node runs; raises :class:`SendError`."""
    if dm_to is not None:
        return Line("dm", _check_text(line, dm.DmConfig.max_text_bytes, "direct message"), peer=dm_to)
    word = line.split(" ", 1)[0]
    if word == "/dm":
        _, peer, text = (line.split(" ", 2) + ["", ""])[:3]
        if not peer or not text:
            raise SendError("usage", "usage: /dm PEER TEXT")
        return Line("dm", _check_text(text, dm.DmConfig.max_text_bytes, "direct message"),
                    peer=check_peer(peer, dm_to=True))
    if line.strip() == "/stats":  # the node's counters (chat_*, dm_*, links, ...)
        return Line("stats")
    if word in ("/mute", "/ban", "/unmute"):
        parts = line.split()
        if len(parts) < 2 or len(parts) > 3:
            raise SendError("usage", f"usage: {word} PEER" + ("" if word == "/unmute" else " [SECONDS]"))
        secs = 600.0
        if len(parts) > 2:
            try:
                secs = float(parts[2])
            except ValueError:
                secs = -1.0
            if not 0 < secs <= ChatConfig.max_mod_seconds:
                raise SendError("usage", f"{word}: SECONDS must be a number in (0, "
                                         f"{ChatConfig.max_mod_seconds:g}], got {shown(parts[2][:20])!r}")
        assert word[1:] in ACTIONS
        return Line("moderate", peer=check_peer(parts[1]), action=word[1:], seconds=secs)
    if line.startswith("//"):  # a message that starts with a slash
        return Line("chat", _check_text(line[1:], ChatConfig.max_text_bytes, "chat"))
    if line.startswith("/"):  # a typo must not go out as public chat ("/dn PEER secret")
        raise SendError("unknown_command", f"unknown command {shown(word[:20])!r}: {COMMANDS}")
    return Line("chat", _check_text(line, ChatConfig.max_text_bytes, "chat"))


def _report(code: str, message: str, json_out: bool) -> str:
    _print("error", {"error": code, "message": message}, json_out)
    return code


async def _command(node: Node, ls: LiveStream, line: str, dm_to: str | None, json_out: bool,
                   paced: bool = False) -> str | None:
    """Send one line (a chat message, a DM, a command); None once done, else the code of
    the error it reported (an ``error`` line). ``paced``: a chat message over the sender's
    rate limit raises :class:`RateLimited` (the caller waits and sends it again) instead of
    being reported and dropped."""
    m = node.messaging
    try:
        cmd = parse_line(line, dm_to)
    except SendError as exc:
        return _report(exc.code, str(exc), json_out)
    try:
        if cmd.kind == "dm":
            if cmd.peer == node.peer_id:
                return _report("bad_peer_id", "a direct message goes to another peer's id", json_out)
            _print("dm.sent", await m.dm_send(cmd.peer, cmd.text), json_out)
        elif cmd.kind == "stats":
            _print("stats", {"neighbours": node.neighbour_count(), "counters": node.counters}, json_out)
        elif cmd.kind == "moderate":
            try:
                _print("chat.moderated", await m.chat_moderate(ls.text_id, cmd.peer, cmd.action, cmd.seconds),
                       json_out)
            except PermissionError as exc:  # not the stream's broadcaster
                return _report("forbidden", str(exc), json_out)
        else:
            try:
                await m.chat_send(ls.text_id, cmd.text)
            except RateLimited:
                if paced:
                    raise
                return _report("rate_limited", "chat rate limit: wait a moment", json_out)
            except PermissionError as exc:  # muted (or banned) by the broadcaster
                return _report("muted", str(exc), json_out)
    except (ValueError, LookupError) as exc:
        return _report("refused", str(exc), json_out)
    return None


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


def _line(raw: bytes) -> str:
    """A line read from stdin, decoded strictly: "" (skipped, said) if it is not UTF-8 -- it
    was sent with U+FFFD for its bad bytes, where `--send` refuses such text as `bad_text`
    (docs/oftp.md §19.5; found 2026-12-05 from outside)."""
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        print("oasis: a line that is not valid UTF-8 was skipped (bad_text)", file=sys.stderr)
        return ""


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
            line = _line(raw)
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
        line = _line(raw)
        if line:
            await queue.put(line)


async def talk(c: Common, *, stream: str, tracker_url: str | None, send: str | None,
               dm_to: str | None, wait: float) -> int:
    """Run ``oasis chat`` (``dm_to`` None) or ``oasis dm``; returns the exit status: 0, or 1
    when ``send`` was not sent (or, for a DM, neither delivered nor stored within ``wait``).
    The caller has checked ``send`` and ``dm_to`` (:func:`parse_line`, :func:`check_peer`)."""
    me = load_or_create(c.data_dir).peer_id
    to = dm_to
    if to is None and send is not None:  # `oasis chat --send "/dm PEER TEXT"`
        line = parse_line(send, None)
        to = line.peer if line.kind == "dm" else None
    if to is not None and to == me:  # before anything starts, as for `oasis dm`
        raise SendError("bad_peer_id", f"{to} is this node's own peer id (--data-dir {c.data_dir})")
    node, ls, finder = await _join(c, stream, tracker_url, "chat" if dm_to is None else "dm")
    status = 0
    printer = asyncio.create_task(_printer(node, c.json_out))
    emit({"peer_id": node.peer_id, "stream": ls.text_id, "oftp": f"{url_host(node.host)}:{node.port}"})

    async def main(stop: asyncio.Event) -> None:
        nonlocal status
        linked = await _linked(node, ls.sid.key, wait)
        if linked:
            _print("linked", {"neighbours": node.neighbour_count()}, c.json_out)
        if send is None:
            await _interactive(node, ls, dm_to, c.json_out, stop)
            return
        if not linked:
            _report("not_linked", f"no peer of the stream linked within {wait:g} s (--wait)", c.json_out)
            status = 1
            return
        if dm_to is None:
            if await _command(node, ls, send, None, c.json_out) is not None:
                status = 1
                return
            await asyncio.sleep(1.0)  # let the QUIC links carry it before closing them
            return
        acked = node.events.subscribe(["dm.acked"])
        try:
            try:
                sent = await node.messaging.dm_send(dm_to, send)
            except (ValueError, LookupError) as exc:
                _report("refused", str(exc), c.json_out)
                status = 1
                return
            _print("dm.sent", sent, c.json_out)
            try:
                try:  # (acknowledged already: no "waiting" line)
                    await asyncio.wait_for(acked.get(), 0.3)
                except TimeoutError:
                    if not c.json_out:
                        print(f"waiting up to {wait:g} s for the recipient's acknowledgement (--wait)",
                              file=sys.stderr)
                    await asyncio.wait_for(acked.get(), max(wait - 0.3, 0.01))
            except TimeoutError:
                state = node.messaging.dm_state(sent["id"])["state"]
                if state != "stored":  # stored: peers hold it for the recipient (up to 24 h)
                    _report("not_delivered", f"direct message {sent['id'][:8]} still {state} after "
                                             f"{wait:g} s: no peer took it (--wait)", c.json_out)
                    status = 1
        finally:
            acked.close()

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


async def _interactive(node: Node, ls: LiveStream, dm_to: str | None, json_out: bool,
                       stop: asyncio.Event) -> None:
    """Send each stdin line until ``stop``; at the end of stdin, listen on until ``stop``."""
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
            await _send_paced(node, ls, line, dm_to, json_out, stop)
    finally:
        reader.cancel()
        stopper.cancel()
