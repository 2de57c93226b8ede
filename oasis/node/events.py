"""The node's event feed: what happened, for local programs (the API's WebSocket).

Theory of operation
-------------------
Parts of a node (streams, messaging, files, rewards) ``publish(kind, data)``;
local subscribers (one per WebSocket client of the local API, or a test) read
an :class:`Subscription`. Publishing never blocks and never grows without
bound: each subscription has a bounded queue, and a subscriber that falls
behind loses the oldest events and is told how many with a ``lagged`` event
(``{"dropped": n}``, seq 0) before the next one it does get. Each event carries a
node-wide sequence number (gaps are visible) and the time it was published.

Kinds are dotted names (``stream.started``, ``chat.message``, ``dm.received``,
``file.progress`` ...); a subscriber may take all kinds or a set of prefixes.
``data`` must be JSON-serialisable; the bus does not copy it, so publishers hand
over a fresh dict.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_SUBSCRIBERS = 64  #: concurrent subscriptions (the API refuses more)
QUEUE_CAP = 1024  #: events held for one subscriber before the oldest are dropped
MAX_KIND = 64  #: characters in a kind


@dataclass(frozen=True, slots=True)
class Event:
    seq: int  #: node-wide publish order, from 1
    time: float  #: when published (the bus's clock, unix seconds by default)
    kind: str  #: dotted name, e.g. ``chat.message``
    data: dict[str, Any]  #: JSON-serialisable payload

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "kind": self.kind, "data": self.data}


class TooManySubscribers(Exception):
    """The bus already has ``MAX_SUBSCRIBERS`` subscriptions."""


@dataclass(eq=False)
class Subscription:
    """One reader's bounded queue. Iterate it (``async for ev in sub``) or ``await get()``."""

    bus: EventBus
    prefixes: tuple[str, ...]  #: empty: every kind
    cap: int = QUEUE_CAP
    _queue: deque[Event] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0  #: events lost to a full queue (total)
    _unreported: int = 0  #: dropped since the last ``lagged`` event
    closed: bool = False

    def wants(self, kind: str) -> bool:
        return not self.prefixes or any(kind == p or kind.startswith(p + ".") for p in self.prefixes)

    def _put(self, ev: Event) -> None:
        if len(self._queue) >= self.cap:
            self._queue.popleft()
            self.dropped += 1
            self._unreported += 1
        self._queue.append(ev)
        self._ready.set()

    def pending(self) -> int:
        return len(self._queue)

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; raises ``TimeoutError`` after ``timeout`` s, ``EOFError`` once closed."""
        while not self._queue:
            if self.closed:
                raise EOFError("subscription closed")
            self._ready.clear()
            if timeout is None:
                await self._ready.wait()
            else:
                await asyncio.wait_for(self._ready.wait(), timeout)
        if self._unreported:
            n, self._unreported = self._unreported, 0
            head = self._queue[0]
            return Event(0, head.time, "lagged", {"dropped": n})
        return self._queue.popleft()

    def get_nowait(self) -> Event | None:
        if not self._queue:
            return None
        if self._unreported:
            n, self._unreported = self._unreported, 0
            head = self._queue[0]
            return Event(0, head.time, "lagged", {"dropped": n})
        return self._queue.popleft()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._ready.set()
            self.bus._subs.discard(self)
            self.bus._notify()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except EOFError:
            raise StopAsyncIteration from None


class EventBus:
    """Fan-out of node events to bounded subscriptions; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.time, *,
                 max_subscribers: int = MAX_SUBSCRIBERS, queue_cap: int = QUEUE_CAP) -> None:
        self.clock = clock
        self.max_subscribers = max_subscribers
        self.queue_cap = queue_cap
        self.seq = 0
        self._subs: set[Subscription] = set()
        self._changed: asyncio.Event | None = None  #: set (and replaced) when subscribers come or go
        self.published = 0
        self.dropped = 0  #: events lost by slow subscribers (all subscriptions)

    def publish(self, kind: str, data: dict[str, Any]) -> Event:
        if not kind or len(kind) > MAX_KIND:
            raise ValueError(f"bad event kind {kind!r}")
        self.seq += 1
        self.published += 1
        ev = Event(self.seq, self.clock(), kind, data)
        for sub in self._subs:
            if sub.wants(kind):
                before = sub.dropped
                sub._put(ev)
                self.dropped += sub.dropped - before
        return ev

    def subscribe(self, prefixes: Iterable[str] = ()) -> Subscription:
        if len(self._subs) >= self.max_subscribers:
            raise TooManySubscribers(f"at most {self.max_subscribers} event subscriptions")
        sub = Subscription(self, tuple(prefixes), cap=self.queue_cap)
        self._subs.add(sub)
        self._notify()
        return sub

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_subscribers(self, pred: Callable[[int], bool], timeout: float) -> None:
        """Until ``pred(subscribers)`` holds; ``TimeoutError`` after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred(len(self._subs)):
            if self._changed is None:
                self._changed = asyncio.Event()
            await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - loop.time()))

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def close(self) -> None:
        for sub in list(self._subs):
            sub.close()
