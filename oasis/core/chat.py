"""Stream chat, sans-I/O: signed messages flooded over a stream's swarm links.

Theory of operation
-------------------
A :class:`ChatRoom` is one node's view of the chat of one stream. A chat message
(``wire.ChatMsg``) carries its sender's key, a per-sender sequence number, the sender's
clock and the text, signed by the sender over a domain-separated layout
(:func:`chat_signing_bytes`). Moderation records (``wire.ChatMod``: mute, ban, unmute a
key until a time) are signed by the stream's broadcaster (:func:`mod_signing_bytes`).

Spreading is a flood over the stream's neighbours (the peers that JOINed the stream
with this node): a message new to the node is checked, delivered locally and forwarded
once to every neighbour except the one it came from. Every relay applies the same rules
before forwarding, so a message that breaks one dies at the first honest hop:

* size: text at most ``max_text_bytes`` UTF-8 bytes (the codec caps characters);
* time: the sender's clock within ``max_skew`` of ours (old replays die here);
* signature: Ed25519 by ``sender`` over the layout (forgeries die here);
* duplicates: (sender, seq) seen before, or older than the sender's dedup window;
* moderation: a sender muted or banned by the broadcaster;
* rate: a token bucket per sender key (``rate``/s, ``burst``; ``jitter_burst`` more for
  others' messages, which arrive with the network's jitter), and one per neighbour
  link (``link_rate``) so a peer minting identities is still bounded.

Ordering is per sender and without hold-back: messages are delivered as they arrive;
one that arrives after a later message of its sender is delivered with ``late=True``
(flooding over reliable QUIC streams reorders rarely, and a hold-back would add latency
to every message after a loss). Every table is bounded (senders, buckets, moderation
records); every refusal is counted in :class:`ChatCounters`.

The executor gives the neighbours at each input (its routing table is the truth), calls
:meth:`ChatRoom.on_message` / :meth:`post` / :meth:`moderate` / :meth:`on_neighbour`,
and executes :meth:`actions` (:class:`SendChat` to a neighbour, :class:`Delivered`,
:class:`Moderated`). The room needs no timer: tables age lazily on input.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import wire

CHAT_TAG = b"oasis/chat/v1\x00"
MOD_TAG = b"oasis/chat-mod/v1\x00"
UNMUTE, MUTE, BAN = 0, 1, 2
ACTIONS = {"unmute": UNMUTE, "mute": MUTE, "ban": BAN}
_HDR = struct.Struct(">QQ")
_MOD = struct.Struct(">BQQ")

Verify = Callable[[bytes, bytes, bytes], bool]  #: (key, signature, data) -> valid
Sign = Callable[[bytes], bytes]


def chat_signing_bytes(stream: bytes, sender: bytes, seq: int, time_ms: int, text: str) -> bytes:
    """``"oasis/chat/v1\\0" | stream key (8) | sender (32) | seq u64 | time_ms u64 | sha256(text)``"""
    return (CHAT_TAG + stream + sender + _HDR.pack(seq, time_ms)
            + hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())


def mod_signing_bytes(stream: bytes, target: bytes, action: int, until_ms: int, issued_ms: int) -> bytes:
    """``"oasis/chat-mod/v1\\0" | stream key (8) | target (32) | action u8 | until_ms u64 | issued_ms u64``"""
    return MOD_TAG + stream + target + _MOD.pack(action, until_ms, issued_ms)


class RateLimited(PermissionError):
    """Our own message over the chat's rate: try again in a moment (the API's 429)."""


class Silenced(PermissionError):
    """The broadcaster muted or banned us in this chat (the API's 403 ``muted``)."""


@dataclass
class ChatConfig:
    max_text_bytes: int = 500  #: UTF-8 bytes of one message's text
    max_skew: float = 30.0  #: s between the sender's clock and ours, either way
    rate: float = 1.0  #: messages per second per sender key, relayed (bucket refill)
    burst: float = 5.0
    #: more burst a relay allows another sender's messages than ``burst``: they come with
    #: the network's jitter, so two a sender spaced 1 s apart may arrive 0.3 s apart, and a
    #: sender that keeps to its own bucket (``post``) lost a message at a relay now and then
    #: (the suite's paced chat test on a loaded machine). Our own posts keep to ``burst``
    jitter_burst: float = 3.0
    link_rate: float = 50.0  #: chat messages per second accepted from one neighbour link
    link_burst: float = 100.0
    dedup_window: int = 256  #: seqs per sender remembered below its highest
    max_senders: int = 4096  #: senders (dedup and buckets) remembered, least recent evicted
    max_mods: int = 1024  #: moderation records held (the one expiring first evicted)
    max_mod_seconds: float = 7 * 86400.0  #: a record's ``until`` capped this far ahead


@dataclass
class ChatCounters:
    received: int = 0  #: chat messages from neighbours
    delivered: int = 0  #: new valid messages (own posts included)
    forwarded: int = 0  #: copies sent to neighbours
    late: int = 0  #: delivered after a later message of the same sender
    duplicates: int = 0
    too_old: int = 0  #: below the sender's dedup window (replay)
    bad_signature: int = 0
    bad_time: int = 0  #: sender's clock too far from ours
    oversize: int = 0
    rate_limited: int = 0  #: over the sender's bucket
    link_limited: int = 0  #: over the neighbour link's bucket
    #: copies not forwarded: over what the neighbour takes from one link (``link_rate``)
    forward_limited: int = 0
    muted_dropped: int = 0  #: from a muted or banned sender
    mods_received: int = 0
    mods_applied: int = 0
    mods_bad: int = 0  #: bad signature, wrong stream, unknown action, time too far
    mods_stale: int = 0  #: not newer than the record held for the target
    senders_evicted: int = 0
    #: from a sender not remembered, signed no later than a forgotten sender's last message
    #: (a replay after a sybil flood evicted its sender's dedup record)
    forgotten_refused: int = 0
    mods_evicted: int = 0


@dataclass(frozen=True, slots=True)
class SendChat:
    peer: bytes
    message: wire.ChatMsg | wire.ChatMod


@dataclass(frozen=True, slots=True)
class Delivered:
    message: wire.ChatMsg
    late: bool  #: arrived after a later message of its sender
    at: float


@dataclass(frozen=True, slots=True)
class Moderated:
    record: wire.ChatMod
    at: float


ChatAction = SendChat | Delivered | Moderated


class _Sender:
    __slots__ = ("top", "seen", "tokens", "t", "tmax")

    def __init__(self, burst: float, now: float) -> None:
        self.top = -1  #: highest seq delivered
        self.seen: set[int] = set()  #: seqs delivered within the window below ``top``
        self.tokens = burst
        self.t = now
        self.tmax = -1  #: highest ``time_ms`` delivered


def _bucket_take(tokens: float, t: float, now: float, rate: float, burst: float) -> tuple[bool, float]:
    tokens = min(burst, tokens + max(0.0, now - t) * rate)
    if tokens < 1.0:
        return False, tokens
    return True, tokens - 1.0


class ChatRoom:
    """The chat of one stream at one node; see the module docstring."""

    def __init__(self, stream: bytes, broadcaster: bytes, verify: Verify,
                 config: ChatConfig | None = None) -> None:
        self.stream = stream  #: the 8-byte wire stream key
        self.broadcaster = broadcaster  #: the key whose moderation records count
        self.verify = verify
        self.config = config or ChatConfig()
        self.counters = ChatCounters()
        self.senders: OrderedDict[bytes, _Sender] = OrderedDict()
        self.mods: dict[bytes, wire.ChatMod] = {}  #: target -> newest record
        self.links: dict[bytes, tuple[float, float]] = {}  #: neighbour -> (tokens, at)
        #: neighbour -> (tokens, at) of what we forward it: at most what its link bucket
        #: takes (a relay that forwarded a flood from several links at their sum made every
        #: neighbour's peer policy ban it for control messages over budget)
        self.out: dict[bytes, tuple[float, float]] = {}
        self.seq = 0  #: our own last seq
        #: the latest ``time_ms`` of an evicted sender's messages (capped at the eviction
        #: time): a message from a sender not remembered is refused unless newer
        self.forgotten_ms = -1
        self._actions: list[ChatAction] = []

    # ---- queries -------------------------------------------------------------
    def silenced(self, sender: bytes, now: float) -> int:
        """MUTE or BAN if a record in force silences ``sender``, else UNMUTE (0)."""
        m = self.mods.get(sender)
        if m is None or m.action == UNMUTE or m.until_ms <= now * 1000 or sender == self.broadcaster:
            return UNMUTE
        return m.action

    # ---- own input -----------------------------------------------------------
    def post(self, sender: bytes, sign: Sign, text: str, now: float,
             neighbours: Iterable[bytes]) -> wire.ChatMsg:
        """Sign and spread our message; raises ValueError (too long, empty) or
        PermissionError (muted, over our own rate) -- a relay would drop it anyway."""
        raw = text.encode("utf-8", "surrogatepass")
        if not text or len(raw) > self.config.max_text_bytes or len(text) > wire.MAX_CHAT_TEXT:
            raise ValueError(f"chat text must be 1..{self.config.max_text_bytes} UTF-8 bytes")
        if (how := self.silenced(sender, now)):
            raise Silenced(f"you are {'banned' if how == BAN else 'muted'} in this stream's chat")
        time_ms = int(now * 1000)
        seq = max(self.seq + 1, time_ms)  # survives restarts: never reuses a seq
        sig = sign(chat_signing_bytes(self.stream, sender, seq, time_ms, text))
        msg = wire.ChatMsg(stream=self.stream, sender=sender, seq=seq, time_ms=time_ms, text=text,
                           signature=sig)
        if not self._accept(None, msg, now):
            raise RateLimited("chat rate limit: wait a moment")
        self.seq = seq
        self._spread(None, msg, neighbours, now)
        return msg

    def moderate(self, sign: Sign, target: bytes, action: int, seconds: float, now: float,
                 neighbours: Iterable[bytes]) -> wire.ChatMod:
        """Sign (as the broadcaster) and spread a moderation record."""
        if action not in (UNMUTE, MUTE, BAN) or len(target) != 32:
            raise ValueError("action must be mute, ban or unmute and the target a peer key")
        if target == self.broadcaster:  # (it muted itself, and then could not post)
            raise ValueError("the broadcaster cannot moderate itself")
        if not 0 < seconds <= self.config.max_mod_seconds:
            raise ValueError(f"seconds must be in (0, {self.config.max_mod_seconds:g}]")
        issued = max(int(now * 1000), (self.mods[target].issued_ms + 1) if target in self.mods else 0)
        until = int((now + seconds) * 1000)
        sig = sign(mod_signing_bytes(self.stream, target, action, until, issued))
        rec = wire.ChatMod(stream=self.stream, target=target, action=action, until_ms=until,
                           issued_ms=issued, signature=sig)
        self.on_mod(None, rec, now, neighbours)
        return rec

    # ---- input from neighbours ---------------------------------------------
    def on_neighbour(self, peer: bytes, now: float) -> None:
        """A neighbour joined the stream: tell it the moderation records in force."""
        for m in self.mods.values():
            if m.until_ms > now * 1000:
                self._actions.append(SendChat(peer, m))

    def on_message(self, peer: bytes, msg: wire.ChatMsg | wire.ChatMod, now: float,
                   neighbours: Iterable[bytes]) -> None:
        if isinstance(msg, wire.ChatMod):
            self.on_mod(peer, msg, now, neighbours)
            return
        c = self.counters
        c.received += 1
        if msg.stream != self.stream:
            return
        ok, tokens = _bucket_take(*self.links.get(peer, (self.config.link_burst, now)), now,
                                  self.config.link_rate, self.config.link_burst)
        self.links[peer] = (tokens, now)
        if len(self.links) > 4 * self.config.max_senders:
            del self.links[next(iter(self.links))]
        if not ok:
            c.link_limited += 1
            return
        if self._accept(peer, msg, now):
            self._spread(peer, msg, neighbours, now)

    def _accept(self, peer: bytes | None, msg: wire.ChatMsg, now: float) -> bool:
        """All the rules a relay applies; True: new and valid (recorded as seen)."""
        c, cfg = self.counters, self.config
        if len(msg.text.encode("utf-8", "surrogatepass")) > cfg.max_text_bytes:
            c.oversize += 1
            return False
        if abs(msg.time_ms / 1000 - now) > cfg.max_skew:
            c.bad_time += 1
            return False
        s = self.senders.get(msg.sender)
        if s is not None:
            if msg.seq in s.seen or msg.seq == s.top:
                c.duplicates += 1
                return False
            if msg.seq <= s.top - cfg.dedup_window:
                c.too_old += 1
                return False
        elif peer is not None and msg.time_ms <= self.forgotten_ms:  # (our own post is no replay)
            # its sender may be one whose record a flood of senders evicted: this may be
            # a message already delivered (an honest newcomer's first message is newer)
            c.forgotten_refused += 1
            return False
        if self.silenced(msg.sender, now):
            c.muted_dropped += 1
            return False
        if not self.verify(msg.sender, msg.signature,
                           chat_signing_bytes(msg.stream, msg.sender, msg.seq, msg.time_ms, msg.text)):
            c.bad_signature += 1
            return False
        burst = cfg.burst if peer is None else cfg.burst + cfg.jitter_burst
        if s is None:
            s = self._new_sender(msg.sender, now, burst)
        self.senders.move_to_end(msg.sender)
        ok, s.tokens = _bucket_take(s.tokens, s.t, now, cfg.rate, burst)
        s.t = now
        if not ok:
            c.rate_limited += 1
            return False
        late = msg.seq < s.top
        s.tmax = max(s.tmax, msg.time_ms)
        if late:
            s.seen.add(msg.seq)
            c.late += 1
        else:
            if s.top >= 0:
                s.seen.add(s.top)
            s.top = msg.seq
            floor = s.top - cfg.dedup_window
            if len(s.seen) > cfg.dedup_window:
                s.seen = {q for q in s.seen if q > floor}
        c.delivered += 1
        self._actions.append(Delivered(msg, late, now))
        return True

    def _new_sender(self, key: bytes, now: float, burst: float) -> _Sender:
        if len(self.senders) >= self.config.max_senders:
            _, old = self.senders.popitem(last=False)
            self.counters.senders_evicted += 1
            # (capped at now: a sybil's message signed ahead of our clock must not shut
            # out every new sender for max_skew)
            self.forgotten_ms = max(self.forgotten_ms, min(old.tmax, int(now * 1000)))
        s = self.senders[key] = _Sender(burst, now)
        return s

    def on_mod(self, peer: bytes | None, rec: wire.ChatMod, now: float,
               neighbours: Iterable[bytes]) -> None:
        c, cfg = self.counters, self.config
        if peer is not None:
            c.mods_received += 1
        if (rec.stream != self.stream or rec.action not in (UNMUTE, MUTE, BAN) or rec.target == self.broadcaster
                or rec.issued_ms > (now + cfg.max_skew) * 1000
                or rec.until_ms > (now + cfg.max_mod_seconds + cfg.max_skew) * 1000):
            c.mods_bad += 1
            return
        held = self.mods.get(rec.target)
        if held is not None and held.issued_ms >= rec.issued_ms:
            c.mods_stale += 1
            return
        if rec.until_ms <= now * 1000:
            c.mods_stale += 1  # already over: nothing to enforce
            return
        if not self.verify(self.broadcaster, rec.signature, mod_signing_bytes(
                rec.stream, rec.target, rec.action, rec.until_ms, rec.issued_ms)):
            c.mods_bad += 1
            return
        if held is None and len(self.mods) >= cfg.max_mods:
            nowms = now * 1000
            for k in [k for k, m in self.mods.items() if m.until_ms <= nowms]:
                del self.mods[k]
            if len(self.mods) >= cfg.max_mods:
                del self.mods[min(self.mods, key=lambda k: self.mods[k].until_ms)]
                c.mods_evicted += 1
        self.mods[rec.target] = rec
        c.mods_applied += 1
        self._actions.append(Moderated(rec, now))
        self._spread(peer, rec, neighbours, now)

    def _spread(self, peer: bytes | None, msg: wire.ChatMsg | wire.ChatMod,
                neighbours: Iterable[bytes], now: float) -> None:
        for n in neighbours:
            if n == peer:
                continue
            if isinstance(msg, wire.ChatMsg) and n == msg.sender:
                continue  # its own message: it has it
            if isinstance(msg, wire.ChatMsg) and self.silenced(n, now) == BAN:
                continue  # a banned viewer gets no chat from relays (but the records: its ban
                # too, else it posted on, 201 each time, and nobody read it; found 2026-12-06)
            if isinstance(msg, wire.ChatMsg):
                cfg = self.config
                ok, tokens = _bucket_take(*self.out.get(n, (cfg.link_burst, now)), now,
                                          cfg.link_rate, cfg.link_burst)
                self.out[n] = (tokens, now)
                if len(self.out) > 4 * cfg.max_senders:
                    del self.out[next(iter(self.out))]
                if not ok:
                    self.counters.forward_limited += 1
                    continue
            self._actions.append(SendChat(n, msg))
            self.counters.forwarded += 1

    def actions(self) -> list[ChatAction]:
        out, self._actions = self._actions, []
        return out
