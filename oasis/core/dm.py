"""Direct messages, sans-I/O: end-to-end encrypted, relayed and stored by peers, acknowledged.

Theory of operation
-------------------
**Keys.** A node's identity is an Ed25519 key; its X25519 key is the same key mapped
to the Montgomery curve (:func:`x25519_public_of`, :func:`x25519_private_of`, as
libsodium's ``crypto_sign_ed25519_*_to_curve25519``), so anybody can encrypt to a peer
id alone, even one never met. Each node also holds a **signed prekey** (X25519, signed
by its identity over :func:`prekey_signing_bytes`, rotated every ``prekey_rotate`` s,
its private half deleted ``prekey_keep`` s after it expired) and tells it to each
neighbour (``wire.DmPrekey``).

**Sealing** (:func:`seal`). Every message is its own session: a fresh ephemeral X25519
key ``E``; ``DH(E, recipient identity)`` and, when a valid prekey ``P`` of the
recipient is known, ``DH(E, P)`` go through HKDF-SHA256 to a ChaCha20-Poly1305 key used
once (nonce zero). The envelope (``wire.DmEnvelope``) shows relays only the recipient
key, ``E``, ``P``, an expiry and the ciphertext; the sender's key is inside, with the
sender's Ed25519 signature over a layout binding the recipient and ``E``
(:func:`inner_signing_bytes`), so an envelope cannot be re-addressed or forged. Forward
secrecy: ``E`` is forgotten at once; with a prekey, stealing the recipient's identity
key later does not open the message once ``P``'s private half is deleted. Without one
(first contact by a stranger) the secrecy rests on the recipient's identity key.

**Routing** (:class:`DmRouter`). To the recipient directly when linked; else to the
``k`` peers closest to the recipient's DHT id among those the executor offers
(``closest``: linked peers today, a DHT lookup later), which hold it (:class:`Mailbox`,
at most 24 h, bounded per recipient, per neighbour and recipient, and in total) and
hand it over when the recipient links to them. A relay forwards only to the recipient
itself, never to another relay: at most two hops, no loops. The recipient answers each
message with an ACK sealed the same way; the sender's state goes
``pending -> stored -> delivered``. Every table is bounded; every refusal is counted
(:class:`DmCounters`). Randomness for keys and ids comes from an injected ``entropy``.
"""

from __future__ import annotations

import hashlib
import heapq
import struct
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from msgspec import Meta, Struct

from . import wire
from .dhtrecord import node_id
from .identity import Identity

DM_TAG = b"oasis/dm/v1\x00"
PREKEY_TAG = b"oasis/dm-prekey/v1\x00"
NO_PREKEY = bytes(32)
KIND_MESSAGE, KIND_ACK = 0, 1
DAY = 86400.0
_P = 2**255 - 19
_U = struct.Struct(">BQ")

Verify = Callable[[bytes, bytes, bytes], bool]
Entropy = Callable[[int], bytes]


class DmInner(Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """The plaintext inside a box (never seen by relays)."""

    kind: Annotated[int, Meta(ge=0, le=1)]
    id: Annotated[bytes, Meta(min_length=16, max_length=16)]
    sender: wire.Key32
    time_ms: wire.U64
    text: Annotated[str, Meta(max_length=1000)]
    ref: Annotated[bytes, Meta(max_length=16)]  #: ACK: the id acknowledged
    signature: wire.Sig64


_inner_dec = msgspec.msgpack.Decoder(DmInner)
_enc = msgspec.msgpack.Encoder()


# ---- keys -------------------------------------------------------------------------
def x25519_public_of(ed_key: bytes) -> bytes:
    """The X25519 public key of an Ed25519 public key (birational map u = (1+y)/(1-y))."""
    if len(ed_key) != 32:
        raise ValueError("an Ed25519 key has 32 bytes")
    y = int.from_bytes(ed_key, "little") & ((1 << 255) - 1)
    if y >= _P or y == 1:
        raise ValueError("not a usable Ed25519 public key")
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return u.to_bytes(32, "little")


def can_seal_to(ed_key: bytes) -> bool:
    """Whether a message can be sealed to this Ed25519 key: its X25519 key is not one of
    the low-order points (an exchange with one gives all zeros, refused by X25519)."""
    try:
        X25519PrivateKey.from_private_bytes(bytes([8] + [1] * 31)).exchange(
            X25519PublicKey.from_public_bytes(x25519_public_of(ed_key)))
    except ValueError:
        return False
    return True


def x25519_private_of(identity: Identity) -> X25519PrivateKey:
    """The X25519 private key of an Ed25519 identity (the hashed seed's scalar half)."""
    return X25519PrivateKey.from_private_bytes(hashlib.sha512(identity.private_bytes()).digest()[:32])


def prekey_signing_bytes(key: bytes, prekey: bytes, expires_ms: int) -> bytes:
    """``"oasis/dm-prekey/v1\\0" | identity key (32) | prekey (32) | expires_ms u64``"""
    return PREKEY_TAG + key + prekey + expires_ms.to_bytes(8, "big")


def inner_signing_bytes(to: bytes, eph: bytes, kind: int, mid: bytes, time_ms: int, text: str,
                        ref: bytes) -> bytes:
    """``"oasis/dm/v1\\0" | recipient (32) | ephemeral (32) | kind u8 | time_ms u64 | id (16)
    | sha256(text) | ref (0 or 16)``"""
    return (DM_TAG + to + eph + _U.pack(kind, time_ms) + mid
            + hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest() + ref)


def _aead_key(shared: bytes, to: bytes, eph: bytes, prekey: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=DM_TAG, info=to + eph + prekey).derive(shared)


def _ad(env_to: bytes, eph: bytes, prekey: bytes, expires_ms: int) -> bytes:
    return DM_TAG + env_to + eph + prekey + expires_ms.to_bytes(8, "big")


def seal(sender: Identity, to: bytes, text: str, now: float, entropy: Entropy, *,
         kind: int = KIND_MESSAGE, ref: bytes = b"", prekey: bytes | None = None,
         mid: bytes | None = None, ttl: float = DAY) -> tuple[wire.DmEnvelope, bytes]:
    """Encrypt ``text`` to ``to`` (a 32-byte identity key): the envelope and the message id."""
    eph = X25519PrivateKey.from_private_bytes(entropy(32))
    eph_pub = eph.public_key().public_bytes_raw()
    shared = eph.exchange(X25519PublicKey.from_public_bytes(x25519_public_of(to)))
    pk = NO_PREKEY
    if prekey is not None:
        shared += eph.exchange(X25519PublicKey.from_public_bytes(prekey))
        pk = prekey
    mid = mid or entropy(16)
    time_ms = int(now * 1000)
    sig = sender.sign(inner_signing_bytes(to, eph_pub, kind, mid, time_ms, text, ref))
    inner = _enc.encode(DmInner(kind, mid, sender.public, time_ms, text, ref, sig))
    expires = int((now + ttl) * 1000)
    box = ChaCha20Poly1305(_aead_key(shared, to, eph_pub, pk)).encrypt(
        bytes(12), inner, _ad(to, eph_pub, pk, expires))
    if len(box) > wire.MAX_DM_BOX:
        raise ValueError("direct message too long")
    return wire.DmEnvelope(to=to, eph=eph_pub, prekey=pk, expires_ms=expires, box=box), mid


class OpenError(ValueError):
    """A box that does not open: ``code`` is the counter it goes to."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def open_box(me: bytes, x_priv: X25519PrivateKey, prekey_priv: X25519PrivateKey | None,
             env: wire.DmEnvelope, verify: Verify) -> DmInner:
    """Decrypt and check an envelope addressed to ``me``; raises :class:`OpenError`."""
    if env.to != me:
        raise OpenError("wrong_recipient")
    try:
        e = X25519PublicKey.from_public_bytes(env.eph)
        shared = x_priv.exchange(e)
        if env.prekey != NO_PREKEY:
            if prekey_priv is None:
                raise OpenError("unknown_prekey")
            shared += prekey_priv.exchange(e)
        raw = ChaCha20Poly1305(_aead_key(shared, me, env.eph, env.prekey)).decrypt(
            bytes(12), env.box, _ad(env.to, env.eph, env.prekey, env.expires_ms))
    except (InvalidTag, ValueError) as exc:
        if isinstance(exc, OpenError):
            raise
        raise OpenError("decrypt_failed") from None
    try:
        inner: DmInner = _inner_dec.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        raise OpenError("malformed") from None
    if not verify(inner.sender, inner.signature, inner_signing_bytes(
            me, env.eph, inner.kind, inner.id, inner.time_ms, inner.text, inner.ref)):
        raise OpenError("bad_signature")
    return inner


# ---- store-and-forward -------------------------------------------------------------
@dataclass
class DmConfig:
    k: int = 3  #: relays an envelope is handed to when the recipient is not linked
    hold_seconds: float = DAY  #: a held envelope is dropped after this (or its own expiry)
    max_per_recipient: int = 64
    max_per_link_recipient: int = 16  #: envelopes one neighbour may park for one recipient
    max_held: int = 4096
    link_rate: float = 20.0  #: envelopes per second accepted from one neighbour
    link_burst: float = 40.0
    max_skew: float = 30.0
    max_seen: int = 8192  #: ephemeral keys of envelopes relayed or held, remembered
    #: ids of messages opened for us, remembered (the oldest signed time forgotten first;
    #: a message no newer than one forgotten is refused as a possible replay)
    max_opened: int = 16384
    max_outbox: int = 256  #: our messages not yet acknowledged
    max_prekeys: int = 4096  #: neighbours' prekeys remembered
    prekey_rotate: float = DAY
    prekey_life: float = 2 * DAY  #: a prekey's signed expiry after its creation
    prekey_keep: float = DAY + 60.0  #: private half kept after expiry (held mail can open)
    max_text_bytes: int = 1000


@dataclass
class DmCounters:
    sent: int = 0
    received: int = 0  #: envelopes from neighbours
    delivered: int = 0  #: new messages opened for us
    acks_sent: int = 0
    acked: int = 0  #: our messages acknowledged
    relayed: int = 0  #: forwarded to a linked recipient
    #: not relayed at once (held): over what the recipient takes from one link (``link_rate``)
    relay_limited: int = 0
    #: of those, relayed later to the recipient still linked, as its bucket refilled
    relay_drained: int = 0
    #: our own envelopes (messages, ACKs, mail handed over at a link-up) that waited for the
    #: peer's rate, and those dropped past the queue's cap
    send_paced: int = 0
    send_queue_full: int = 0
    stored: int = 0  #: held for a recipient not linked
    handed_over: int = 0  #: held envelopes given to their recipient
    expired: int = 0
    duplicates: int = 0
    link_limited: int = 0
    mailbox_full: int = 0  #: refused: per recipient, per neighbour or total cap
    evicted: int = 0  #: held envelopes dropped for another neighbour's (the mailbox was full)
    open_failed: int = 0  #: decrypt, malformed, signature, unknown prekey
    stale: int = 0  #: inner time too far from ours
    prekeys_bad: int = 0
    prekeys_learnt: int = 0
    outbox_full: int = 0
    #: an unknown id no newer than the newest forgotten: possibly a replay (not shown, not acked)
    replays_refused: int = 0


@dataclass(frozen=True, slots=True)
class SendDm:
    peer: bytes
    message: wire.DmEnvelope | wire.DmPrekey


@dataclass(frozen=True, slots=True)
class DmReceived:
    id: bytes
    sender: bytes
    text: str
    time: float


@dataclass(frozen=True, slots=True)
class DmAcked:
    id: bytes
    to: bytes


DmAction = SendDm | DmReceived | DmAcked


@dataclass
class _Held:
    env: wire.DmEnvelope
    until: float
    via: bytes  #: the neighbour that parked it


@dataclass
class Outgoing:
    to: bytes
    env: wire.DmEnvelope
    state: str  #: pending | stored | delivered
    at: float
    handed: set[bytes] = field(default_factory=set)  #: peers it was sent to


class Mailbox:
    """Envelopes held for recipients that are not linked: bounded, expiring, shared fairly.

    Caps: per recipient, per (neighbour, recipient), and in all. When the whole mailbox is
    full, a new envelope evicts the oldest one of the neighbour that holds the most (if
    that is not the newcomer's own neighbour): a flooding neighbour, or a crowd of sybils,
    can take no more than a fair share, and an honest neighbour can always park mail.
    Expiry runs at most once a second (``expire``), so a flood costs O(1) per envelope."""

    def __init__(self, config: DmConfig, counters: DmCounters) -> None:
        self.config = config
        self.counters = counters
        self.boxes: dict[bytes, OrderedDict[bytes, _Held]] = {}  #: recipient -> eph -> held
        self.by_via: dict[bytes, OrderedDict[tuple[bytes, bytes], None]] = {}  #: neighbour -> (rcpt, eph), oldest first
        self.total = 0
        self._expired_at = float("-inf")
        #: recipient -> the neighbour whose mail ``take_fair`` relayed last (the next turn
        #: starts after it); forgotten with the recipient's box
        self._served: dict[bytes, bytes] = {}

    def hold(self, env: wire.DmEnvelope, via: bytes, now: float) -> bool:
        cfg = self.config
        if now - self._expired_at >= 1.0:
            self.expire(now)
        box = self.boxes.get(env.to)
        if box is not None and env.eph in box:
            self.counters.duplicates += 1
            return False
        mine = self.by_via.get(via)
        if box is not None:
            held_by: dict[bytes, int] = {}
            for h in box.values():
                held_by[h.via] = held_by.get(h.via, 0) + 1
            own = held_by.get(via, 0)
            if own >= cfg.max_per_link_recipient:
                self.counters.mailbox_full += 1
                return False
            if len(box) >= cfg.max_per_recipient:
                # the recipient's box is full: the neighbour that parked the most for it gives
                # up its oldest, as for the whole mailbox (until 2026-12-03 four flooding links
                # filled a linked viewer's 64 places and every honest message to it was refused)
                heavy = max(held_by, key=lambda v: held_by[v])
                if heavy == via or held_by[heavy] <= own + 1:
                    self.counters.mailbox_full += 1
                    return False
                self._remove(env.to, next(e for e, h in box.items() if h.via == heavy))
                self.counters.evicted += 1
                box = self.boxes.get(env.to)
        if self.total >= cfg.max_held:
            heavy = max(self.by_via, key=lambda v: len(self.by_via[v]))
            if heavy == via or len(self.by_via[heavy]) <= (len(mine) if mine else 0) + 1:
                self.counters.mailbox_full += 1
                return False
            rcpt, eph = next(iter(self.by_via[heavy]))
            self._remove(rcpt, eph)
            self.counters.evicted += 1
            box = self.boxes.get(env.to)
        until = min(env.expires_ms / 1000, now + cfg.hold_seconds)
        self.boxes.setdefault(env.to, OrderedDict())[env.eph] = _Held(env, until, via)
        self.by_via.setdefault(via, OrderedDict())[(env.to, env.eph)] = None
        self.total += 1
        self.counters.stored += 1
        return True

    def _remove(self, rcpt: bytes, eph: bytes) -> None:
        box = self.boxes[rcpt]
        held = box.pop(eph)
        if not box:
            del self.boxes[rcpt]
            self._served.pop(rcpt, None)
        mine = self.by_via[held.via]
        del mine[(rcpt, eph)]
        if not mine:
            del self.by_via[held.via]
        self.total -= 1

    def take_fair(self, recipient: bytes, n: int, now: float) -> list[wire.DmEnvelope]:
        """At most ``n`` of ``recipient``'s held envelopes, oldest first of each neighbour
        that parked them, one neighbour after another (a flooder's backlog does not go
        before an honest neighbour's message); expired ones are dropped on the way."""
        box = self.boxes.get(recipient)
        if not box or n <= 0:
            return []
        queues: dict[bytes, list[bytes]] = {}
        for eph, h in box.items():
            queues.setdefault(h.via, []).append(eph)
        vias = list(queues)
        last = self._served.get(recipient)
        if last in queues:  # the turn goes on after the neighbour served last
            k = vias.index(last) + 1
            vias = vias[k:] + vias[:k]
        out: list[wire.DmEnvelope] = []
        i = 0
        served = last
        while len(out) < n and vias:
            i %= len(vias)
            via = vias[i]
            q = queues[via]
            eph = q.pop(0)
            h = box[eph]
            self._remove(recipient, eph)
            served = via
            if h.until > now:
                out.append(h.env)
            else:
                self.counters.expired += 1
            if not q:
                vias.pop(i)
            else:
                i += 1
        if served is not None and recipient in self.boxes:
            self._served[recipient] = served
        return out

    def take(self, recipient: bytes, now: float) -> list[wire.DmEnvelope]:
        box = self.boxes.get(recipient)
        if not box:
            return []
        out = []
        for eph, h in list(box.items()):
            if h.until > now:
                out.append(h.env)
            else:
                self.counters.expired += 1
            self._remove(recipient, eph)
        return out

    def expire(self, now: float) -> None:
        self._expired_at = now
        for rcpt in list(self.boxes):
            for eph in [e for e, h in self.boxes[rcpt].items() if h.until <= now]:
                self._remove(rcpt, eph)
                self.counters.expired += 1


def closest(target: bytes, peers: Iterable[bytes], k: int) -> list[bytes]:
    """The ``k`` of ``peers`` closest to ``target``'s DHT id (XOR metric, dhtrecord.node_id)."""
    t = node_id(target)
    return sorted(peers, key=lambda p: node_id(p) ^ t)[:k]


#: we send a peer envelopes at this share of what it takes from one link (rate and burst)
SEND_MARGIN = 0.8
Closest = Callable[[bytes, int], list[bytes]]  #: (recipient key, k) -> peers to hand it to


class DmRouter:
    """A node's direct messages: sealing, routing, holding, opening, ACKs."""

    def __init__(self, identity: Identity, verify: Verify, entropy: Entropy,
                 config: DmConfig | None = None, *, now: float = 0.0) -> None:
        self.identity = identity
        self.me = identity.public
        self.verify = verify
        self.entropy = entropy
        self.config = config or DmConfig()
        self.counters = DmCounters()
        self.x_priv = x25519_private_of(identity)
        self.mailbox = Mailbox(self.config, self.counters)
        self.outbox: OrderedDict[bytes, Outgoing] = OrderedDict()
        self.seen: OrderedDict[bytes, None] = OrderedDict()  #: ephs relayed or held
        #: ids opened for us -> their signed time (ms); a heap of (time, id) forgets the oldest
        self.opened: dict[bytes, int] = {}
        self._opened_heap: list[tuple[int, bytes]] = []
        #: the newest signed time forgotten: an unknown id no newer may be a replay
        self.replay_floor_ms = 0
        self.links: dict[bytes, tuple[float, float]] = {}
        #: recipient -> (tokens, at) of the envelopes we relay it: at most what its link
        #: bucket takes (relaying the sum of many links' floods made the recipient's peer
        #: policy ban us for control messages over budget)
        self.out: dict[bytes, tuple[float, float]] = {}
        #: linked recipient -> when its bucket has room again, while mail over its rate is
        #: held for it (``on_timer`` relays it then). Until 2026-12-03 such mail waited for the
        #: recipient's *next* link: one that stayed linked never got it (bench/atk6_dm_held.py)
        self.backlog: dict[bytes, float] = {}
        #: peer -> our envelopes waiting for its rate (sent by ``on_timer``, oldest first):
        #: a peer takes 20/s from one link (burst 40) and drops the rest, so 60 messages
        #: posted at once lost 20 at the relay while their state said ``stored``
        self.queued: dict[bytes, deque[wire.DmEnvelope]] = {}
        self.queued_total = 0
        #: our prekeys: public -> (private, signed record); newest last
        self.prekeys: OrderedDict[bytes, tuple[X25519PrivateKey, wire.DmPrekey]] = OrderedDict()
        self.peer_prekeys: OrderedDict[bytes, tuple[bytes, int]] = OrderedDict()  #: peer -> (prekey, expires)
        self._rotate_at = now
        self._actions: list[DmAction] = []
        #: bumped whenever our own prekeys change (made, or a private half deleted): the
        #: node then saves them (:meth:`export_prekeys`), or mail held for us while we
        #: were away could not be opened after a restart
        self.prekeys_version = 0
        self.prekey(now)

    # ---- prekeys ---------------------------------------------------------------
    def prekey(self, now: float) -> wire.DmPrekey:
        """Our current signed prekey (rotated, old private halves deleted, here)."""
        cfg = self.config
        if now >= self._rotate_at or not self.prekeys:
            priv = X25519PrivateKey.from_private_bytes(self.entropy(32))
            pub = priv.public_key().public_bytes_raw()
            exp = int((now + cfg.prekey_life) * 1000)
            rec = wire.DmPrekey(key=self.me, prekey=pub, expires_ms=exp,
                                signature=self.identity.sign(prekey_signing_bytes(self.me, pub, exp)))
            self.prekeys[pub] = (priv, rec)
            self._rotate_at = now + cfg.prekey_rotate
            self.prekeys_version += 1
        for pub in [p for p, (_, r) in self.prekeys.items() if r.expires_ms / 1000 + cfg.prekey_keep <= now]:
            del self.prekeys[pub]  # forward secrecy: this prekey's mail can no longer be opened
            self.prekeys_version += 1
        return next(reversed(self.prekeys.values()))[1]

    def export_prekeys(self) -> bytes:
        """Our prekeys, private halves included, for the node to keep at rest (0600)."""
        return msgspec.msgpack.encode([[priv.private_bytes_raw(), wire.encode(rec)]
                                       for priv, rec in self.prekeys.values()])

    def import_prekeys(self, blob: bytes, now: float) -> int:
        """Take back prekeys saved by :meth:`export_prekeys` (a restart): those whose
        private half is still kept are added, so mail sealed to them while we were away
        opens. Each must be ours, correctly signed and match its private half; anything
        else raises ``ValueError`` (a damaged or foreign file). Returns how many were added."""
        try:
            items = msgspec.msgpack.decode(blob, type=list[tuple[bytes, bytes]])
        except ValueError as exc:  # (msgspec's errors, and UnicodeDecodeError)
            raise ValueError(f"not a prekey file: {exc}") from None
        if len(items) > 64:
            raise ValueError(f"{len(items)} prekeys: more than any node keeps")
        cfg = self.config
        added = []
        for raw_priv, raw_rec in items:
            try:
                rec = wire.decode_control(raw_rec)
                priv = X25519PrivateKey.from_private_bytes(raw_priv)
            except (wire.WireError, ValueError) as exc:
                raise ValueError(f"a damaged prekey: {exc}") from None
            if not isinstance(rec, wire.DmPrekey) or rec.key != self.me:
                raise ValueError("a prekey of another identity")
            if priv.public_key().public_bytes_raw() != rec.prekey or not self.verify(
                    rec.key, rec.signature, prekey_signing_bytes(rec.key, rec.prekey, rec.expires_ms)):
                raise ValueError("a prekey whose signature or private half does not match")
            if rec.expires_ms / 1000 + cfg.prekey_keep > now and rec.prekey not in self.prekeys:
                added.append((rec.expires_ms, rec.prekey, priv, rec))
        if added:
            mine = list(self.prekeys.items())
            self.prekeys.clear()
            for _, pub, priv, rec in sorted(added):  # older first: the current one stays newest
                self.prekeys[pub] = (priv, rec)
            self.prekeys.update(mine)
            self.prekeys_version += 1
        return len(added)

    def on_prekey(self, peer: bytes, rec: wire.DmPrekey, now: float) -> None:
        c = self.counters
        if (rec.key != peer or rec.expires_ms <= now * 1000
                or rec.expires_ms > (now + self.config.prekey_life + self.config.max_skew) * 1000
                or not self.verify(rec.key, rec.signature,
                                   prekey_signing_bytes(rec.key, rec.prekey, rec.expires_ms))):
            c.prekeys_bad += 1
            return
        c.prekeys_learnt += 1
        self.peer_prekeys.pop(peer, None)
        self.peer_prekeys[peer] = (rec.prekey, rec.expires_ms)
        if len(self.peer_prekeys) > self.config.max_prekeys:
            self.peer_prekeys.popitem(last=False)

    def _prekey_of(self, peer: bytes, now: float) -> bytes | None:
        got = self.peer_prekeys.get(peer)
        return got[0] if got is not None and got[1] > now * 1000 else None

    # ---- sending ---------------------------------------------------------------
    def send(self, to: bytes, text: str, now: float, linked: Callable[[bytes], bool],
             closest_peers: Closest) -> Outgoing:
        """Seal ``text`` for ``to`` and route it; ValueError on bad input."""
        if len(to) != 32 or to == self.me:
            raise ValueError("a direct message goes to another peer's id")
        if not text or len(text.encode("utf-8", "surrogatepass")) > self.config.max_text_bytes:
            raise ValueError(f"direct message text must be 1..{self.config.max_text_bytes} UTF-8 bytes")
        x25519_public_of(to)  # ValueError: not a usable key
        if len(self.outbox) >= self.config.max_outbox:
            old = next(iter(self.outbox))
            if self.outbox[old].state == "delivered" or self.outbox[old].at + DAY <= now:
                del self.outbox[old]
            else:
                self.counters.outbox_full += 1
                raise ValueError("too many direct messages waiting for an acknowledgement")
        env, mid = seal(self.identity, to, text, now, self.entropy, prekey=self._prekey_of(to, now))
        out = Outgoing(to, env, "pending", now)
        self.outbox[mid] = out
        self.counters.sent += 1
        self._route(out, now, linked, closest_peers)
        return out

    def _route(self, out: Outgoing, now: float, linked: Callable[[bytes], bool],
               closest_peers: Closest) -> None:
        if linked(out.to):
            if out.to not in out.handed:
                out.handed.add(out.to)
                self._emit(out.to, out.env, now)
            return
        if out.state != "pending":
            return
        for p in closest_peers(out.to, self.config.k):
            if p != out.to and p not in out.handed:
                out.handed.add(p)
                self._emit(p, out.env, now)
        if out.handed:
            out.state = "stored"

    def retry(self, now: float, linked: Callable[[bytes], bool], closest_peers: Closest) -> None:
        """A link came up: route what is not yet acknowledged (directly, or to relays)."""
        for out in self.outbox.values():
            if out.state != "delivered" and out.at + DAY > now:
                self._route(out, now, linked, closest_peers)

    # ---- input -----------------------------------------------------------------
    def on_link_up(self, peer: bytes, now: float, linked: Callable[[bytes], bool],
                   closest_peers: Closest) -> None:
        """``peer`` linked: our prekey to it, its held mail to it, our pending mail out."""
        self._actions.append(SendDm(peer, self.prekey(now)))
        for env in self.mailbox.take(peer, now):
            self.counters.handed_over += 1
            self._emit(peer, env, now)
        self.retry(now, linked, closest_peers)

    def on_envelope(self, peer: bytes, env: wire.DmEnvelope, now: float,
                    linked: Callable[[bytes], bool], closest_peers: Closest) -> None:
        c, cfg = self.counters, self.config
        c.received += 1
        tokens, t = self.links.get(peer, (cfg.link_burst, now))
        tokens = min(cfg.link_burst, tokens + max(0.0, now - t) * cfg.link_rate)
        if tokens < 1.0:
            self.links[peer] = (tokens, now)
            c.link_limited += 1
            return
        self.links[peer] = (tokens - 1.0, now)
        if len(self.links) > 4096:
            del self.links[next(iter(self.links))]
        if env.expires_ms <= now * 1000:
            c.expired += 1
            return
        if env.to == self.me:
            self._open(env, now, linked, closest_peers)
            return
        if env.eph in self.seen:
            c.duplicates += 1
            return
        self._remember(env.eph)
        if env.to != peer and linked(env.to):
            tokens = self._tokens(env.to, now)
            if tokens < 1.0 or env.to in self.backlog:
                # held instead (the mailbox's fair shares), and relayed from there as the
                # recipient's bucket refills (``on_timer``), behind no neighbour's backlog
                self._set_tokens(env.to, tokens, now)
                c.relay_limited += 1
                if self.mailbox.hold(env, peer, now) and env.to not in self.backlog:
                    self._wake(env.to, tokens, now)
                return
            self._set_tokens(env.to, tokens - 1.0, now)
            c.relayed += 1
            self._actions.append(SendDm(env.to, env))
        else:
            self.mailbox.hold(env, peer, now)

    def _tokens(self, peer: bytes, now: float) -> float:
        """What ``peer``'s bucket of our envelopes holds now: a little under what it takes
        from one link (``link_rate``/s, ``link_burst``), as the network bunches what we send."""
        cfg = self.config
        burst = cfg.link_burst * SEND_MARGIN
        tokens, t = self.out.get(peer, (burst, now))
        return min(burst, tokens + max(0.0, now - t) * cfg.link_rate * SEND_MARGIN)

    def _set_tokens(self, peer: bytes, tokens: float, now: float) -> None:
        """``peer``'s bucket holds ``tokens`` at ``now`` (the table keeps the 4,096 newest)."""
        self.out[peer] = (tokens, now)
        if len(self.out) > 4096:
            del self.out[next(iter(self.out))]

    def _wake(self, peer: bytes, tokens: float, now: float) -> None:
        """``on_timer`` looks at ``peer`` again when its bucket holds one envelope."""
        self.backlog[peer] = now + max(0.001, (1.0 - tokens) / (self.config.link_rate * SEND_MARGIN))

    def _emit(self, peer: bytes, env: wire.DmEnvelope, now: float) -> None:
        """Send one of our envelopes to ``peer`` within its rate, else queue it."""
        cfg = self.config
        tokens = self._tokens(peer, now)
        if tokens >= 1.0 and peer not in self.queued:
            self._set_tokens(peer, tokens - 1.0, now)
            self._actions.append(SendDm(peer, env))
            return
        if self.queued_total >= cfg.max_outbox * 4 or len(self.queued.get(peer, ())) >= cfg.max_outbox:
            self.counters.send_queue_full += 1
            return
        self.queued.setdefault(peer, deque()).append(env)
        self.queued_total += 1
        self.counters.send_paced += 1
        self._set_tokens(peer, tokens, now)
        if peer not in self.backlog:
            self._wake(peer, tokens, now)

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` has mail to relay (None: nothing waits)."""
        return min(self.backlog.values()) if self.backlog else None

    def on_timer(self, now: float, linked: Callable[[bytes], bool]) -> None:
        """Send our queued envelopes, then relay held mail to recipients still linked, each
        within the peer's rate, the neighbours that parked mail served in turn; a recipient
        no longer linked gets its held mail at its next link."""
        c = self.counters
        for rcpt, at in list(self.backlog.items()):
            if at > now:
                continue
            tokens = self._tokens(rcpt, now)
            q = self.queued.get(rcpt)
            while q and tokens + 1e-6 >= 1.0:  # our own first, oldest first
                tokens -= 1.0
                self.queued_total -= 1
                self._actions.append(SendDm(rcpt, q.popleft()))
            if q is not None and not q:
                del self.queued[rcpt]
                q = None
            if q is None and (not linked(rcpt) or rcpt not in self.mailbox.boxes):
                self._set_tokens(rcpt, tokens, now)
                del self.backlog[rcpt]  # held mail: handed over at its next link (``on_link_up``)
                continue
            for env in (self.mailbox.take_fair(rcpt, int(tokens + 1e-6), now) if q is None and linked(rcpt)
                        else []):
                tokens -= 1.0
                c.relayed += 1
                c.relay_drained += 1
                self._actions.append(SendDm(rcpt, env))
            self._set_tokens(rcpt, tokens, now)
            if q is not None or (rcpt in self.mailbox.boxes and linked(rcpt)):  # when one token is back
                self._wake(rcpt, tokens, now)
            else:
                del self.backlog[rcpt]

    def _open(self, env: wire.DmEnvelope, now: float, linked: Callable[[bytes], bool],
              closest_peers: Closest) -> None:
        c = self.counters
        pk = self.prekeys.get(env.prekey)
        try:
            inner = open_box(self.me, self.x_priv, pk[0] if pk is not None else None, env, self.verify)
        except OpenError:
            c.open_failed += 1
            return
        if abs(inner.time_ms / 1000 - now) > self.config.hold_seconds + self.config.max_skew:
            c.stale += 1
            return
        if inner.kind == KIND_ACK:
            out = self.outbox.get(inner.ref)
            if out is not None and out.to == inner.sender and out.state != "delivered":
                out.state = "delivered"
                c.acked += 1
                self._actions.append(DmAcked(inner.ref, out.to))
            return
        if len(inner.text.encode("utf-8", "surrogatepass")) > self.config.max_text_bytes or not inner.text:
            c.open_failed += 1
            return
        fresh = inner.id not in self.opened
        if fresh and inner.time_ms <= self.replay_floor_ms:
            # Until 2026-12-03 opened ids shared one 8,192-entry memory with the ephemeral keys
            # of envelopes relayed: a storer that kept a message for us flooded us with junk
            # envelopes for made-up recipients (no crypto, 20/s per link), our id was forgotten,
            # and the same message, replayed, was shown again as new. An id now leaves memory
            # only for a newer one, and nothing as old as what left is taken again.
            c.replays_refused += 1
            return
        if fresh:
            self._remember_opened(inner.id, inner.time_ms)
            c.delivered += 1
            self._actions.append(DmReceived(inner.id, inner.sender, inner.text, inner.time_ms / 1000))
        else:
            c.duplicates += 1  # acknowledged again: our first ACK may have been lost
        ack, _ = seal(self.identity, inner.sender, "", now, self.entropy, kind=KIND_ACK, ref=inner.id,
                      prekey=self._prekey_of(inner.sender, now))
        c.acks_sent += 1
        if linked(inner.sender):
            self._emit(inner.sender, ack, now)
        else:
            for p in closest_peers(inner.sender, self.config.k):
                self._emit(p, ack, now)

    def _remember_opened(self, mid: bytes, time_ms: int) -> None:
        self.opened[mid] = time_ms
        heapq.heappush(self._opened_heap, (time_ms, mid))
        while len(self.opened) > self.config.max_opened:
            t, old = heapq.heappop(self._opened_heap)
            if self.opened.get(old) == t:
                del self.opened[old]
                self.replay_floor_ms = max(self.replay_floor_ms, t)

    def remember_opened(self, items: Iterable[tuple[bytes, int]], floor_ms: int = 0) -> None:
        """After a restart: the ids (and signed times, ms) of messages received before, as
        kept at rest, and the newest time of those no longer kept (nothing as old is taken)."""
        for mid, t in items:
            if mid not in self.opened:
                self._remember_opened(mid, t)
        self.replay_floor_ms = max(self.replay_floor_ms, floor_ms)

    def _remember(self, key: bytes) -> None:
        self.seen[key] = None
        if len(self.seen) > self.config.max_seen:
            self.seen.popitem(last=False)

    def actions(self) -> list[DmAction]:
        out, self._actions = self._actions, []
        return out
