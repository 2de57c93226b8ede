"""A viewer's clock against its broadcaster's, sans-I/O.

Every deadline in a live swarm is broadcaster time: a chunk signed at ``t`` is due at
``t + playout_delay``, and the swarm core compares that with the ``now`` it is given. A
viewer's wall clock that runs ahead of the broadcaster's by ``s`` makes every chunk look
``s`` older than it is: measured on 20 real viewers (docs/benchmarks.md, session 30), 0.3 s
ahead sent a third of the bytes to the origin (its fallback fired early), 1 s ahead lost every
chunk (each one late on arrival) while its origin fetches ran at 80 a second. A clock behind
plays late. Laptops and phones are off by that much often enough.

So the node asks the origin for the broadcaster's clock (``GET /origin/<stream>/time``, a
few times, as NTP does) and runs the stream's core on ``local - offset``. One exchange gives
``offset = (sent + received) / 2 - server`` with an error of at most half its round trip;
of several, the one with the shortest round trip is kept. An offset within what the exchange
can tell apart from 0 (:data:`MIN_OFFSET`, or its round trip) is taken as 0: a synchronised
clock is left alone. The origin is the one the signed descriptor names (or the user's CDN):
as trusted as the fallback's chunks' availability, not more -- a lying origin can make a
viewer play late or skip, which it can already do by not answering.
"""

from __future__ import annotations

#: offsets smaller than this (s) are taken as 0: NTP-synchronised clocks agree to a few ms
MIN_OFFSET = 0.05
#: an answer further off than this (s) is refused (not a clock a day off: a broken answer)
MAX_OFFSET = 24 * 3600.0
#: exchanges made at the start (the shortest round trip wins)
SAMPLES = 3


def offset_of(samples: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """From ``(sent, server, received)`` exchanges -- our clock when we asked, the server's
    clock in its answer, ours when it came -- ``(offset, round_trip)`` of the one with the
    shortest round trip (``offset`` = ours - the server's); None when none is usable (a round
    trip below 0, an answer beyond :data:`MAX_OFFSET`)."""
    best: tuple[float, float] | None = None
    for sent, server, received in samples:
        rtt = received - sent
        if rtt < 0:
            continue
        offset = (sent + received) / 2 - server
        if abs(offset) > MAX_OFFSET:
            continue
        if best is None or rtt < best[1]:
            best = (offset, rtt)
    return best


def correction(samples: list[tuple[float, float, float]]) -> float:
    """What to subtract from our clock to get the broadcaster's: the offset of
    :func:`offset_of`, or 0 when there is none or it is within what the exchange can tell
    (``MIN_OFFSET`` or half its round trip, whichever is larger)."""
    got = offset_of(samples)
    if got is None:
        return 0.0
    offset, rtt = got
    if abs(offset) <= max(MIN_OFFSET, rtt / 2):
        return 0.0
    return offset


def unsure(samples: list[tuple[float, float, float]]) -> bool:
    """Could more exchanges change :func:`correction`? True when none was usable, or the best
    one's offset is over :data:`MIN_OFFSET` but within half its round trip (taken as 0 for
    now: a round trip stretched by a busy start hides an offset it would show)."""
    got = offset_of(samples)
    if got is None:
        return True
    offset, rtt = got
    return MIN_OFFSET < abs(offset) <= rtt / 2

