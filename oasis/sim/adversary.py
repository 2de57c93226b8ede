"""Hostile peers in the simulator: what they are and what they send.

A scenario's ``hostile`` share of the viewers are adversaries (chosen from the
seed, apart from the population so the honest viewers are the same people on
the same links as in the run with ``hostile = 0``). Each runs a real
:class:`~oasis.core.swarm.Swarm`, so it joins, links, receives chunks and looks
like a peer; the engine (``oasis_run``) filters what that core emits and
injects crafted messages and chunks over the same modelled links. The honest
nodes always run the unmodified core and never learn who is hostile.

Modes (``hostile_mix`` weights them; default: all but ``sink`` equally):

* ``liar``: every STATUS it sends claims the impossible — half of the liars
  ``latest = 2^63-2`` with every bit of ``have`` and the keyframe far ahead,
  the other half a subtle 2 s beyond the live edge — a one-hop path and zero
  lag, so it looks like the best parent there is; otherwise it relays.
* ``withhold``: advertises its real chunks, zero lag and a one-hop path,
  accepts every SUBSCRIBE, and never forwards a chunk (no push, no answer to
  REQUEST, no MISSING).
* ``forge``: relays, and sends each neighbour forged chunks (the genuine
  header and signature over altered bytes) for seqs the neighbour holds and
  for seqs ahead of the live edge.
* ``replay``: relays, and sends each neighbour genuine old chunks: beyond the
  live window, inside it, and the latest again.
* ``flood``: relays, and sends each neighbour bursts of REQUESTs for chunks it
  holds and for seqs out of the window.
* ``silent``: completes the handshake (takes a neighbour slot) and never
  sends anything; dials as many links as a node accepts.
* ``sybil``: an honest relay until ``hostile_defect_s``, then all sybils stop
  forwarding at once (a coordinated defection of trusted relays).
* ``sink`` (a repair sink): an honest relay and parent (its own core decides), whose
  STATUS claims every chunk up to the live edge (refreshed ``hostile_rate`` times a second,
  ``SINK_AHEAD_S`` ahead so the claim still covers the edge until the next; plausible, within
  ``claim_slack``) with its real paths and lags and at least one free slot, so neighbours
  ask it for repairs first; it takes every REQUEST of a neighbour that plays and answers
  none, not even MISSING (with ``hostile_sink_late`` >= 0, it answers that long after the
  asker's deadline instead). A newcomer's start probes and JOIN start are answered by its
  core (a sink that wants to stay unnoticed).

What the engine counts: ``Counters`` (what the adversaries sent) and, at the
honest nodes, every delivered chunk is checked to be the broadcaster's own
(``forged_delivered`` must stay 0).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from oasis.core import wire

HONEST = 0
LIAR = 1
WITHHOLD = 2
FORGE = 3
REPLAY = 4
FLOOD = 5
SILENT = 6
SYBIL = 7
SINK = 8
MODES = {"liar": LIAR, "withhold": WITHHOLD, "forge": FORGE, "replay": REPLAY,
         "flood": FLOOD, "silent": SILENT, "sybil": SYBIL, "sink": SINK}
NAMES = {v: k for k, v in MODES.items()}
#: the modes of an empty ``hostile_mix`` (the sink, added later, only when named: the runs
#: of the scenarios without a mix stay what they were)
DEFAULT_MODES = (LIAR, WITHHOLD, FORGE, REPLAY, FLOOD, SILENT, SYBIL)
#: modes that inject traffic on a timer (``hostile_rate`` ticks per second)
INJECTORS = (FORGE, REPLAY, FLOOD, SINK)
HUGE = 0x7FFF_FFFF_FFFF_FFFF - 1  #: 2^63 - 2: the largest claim a U64 field takes, minus one
FLOOD_BURST = 16  #: REQUESTs per link per tick
SUBTLE_AHEAD_S = 2.0  #: a subtle liar's claim: this far beyond the live edge
SINK_AHEAD_S = 0.5  #: a repair sink's claim: this far beyond the live edge (s)


@dataclass
class Counters:
    """What the adversaries sent, and what became of it."""

    lies_sent: int = 0
    forged_sent: int = 0
    replayed_sent: int = 0
    requests_sent: int = 0
    pushes_withheld: int = 0
    requests_sunk: int = 0  #: REQUESTs a repair sink took and never answered
    answers_late: int = 0  #: ... or answered after the asker's deadline
    sent_dropped_silent: int = 0
    forged_delivered: int = 0  #: chunks delivered at an honest node that are not the broadcaster's


def assign(n_viewers: int, share: float, mix: dict[str, float], seed: int) -> dict[int, int]:
    """Viewer index -> hostile mode for ``share`` of the viewers (deterministic).

    Who is hostile is drawn from the seed; the modes go round in proportion to
    their weights (smooth weighted round robin), so a small run has every mode.
    """
    if share <= 0:
        return {}
    weights = {MODES[k]: float(v) for k, v in mix.items() if v > 0} if mix \
        else dict.fromkeys(DEFAULT_MODES, 1.0)
    total = sum(weights.values())
    current = dict.fromkeys(weights, 0.0)
    rng = random.Random(f"hostile/{seed}")
    out: dict[int, int] = {}
    for i in range(n_viewers):
        if rng.random() < share:
            for m, w in weights.items():
                current[m] += w
            pick = max(sorted(current), key=lambda m: current[m])
            current[pick] -= total
            out[i] = pick
    return out


def check_mix(mix: dict[str, float]) -> None:
    if not isinstance(mix, dict):
        raise ValueError("hostile_mix: a table of hostile mode = weight")
    unknown = sorted(set(mix) - set(MODES))
    if unknown:
        raise ValueError(f"unknown hostile modes: {', '.join(unknown)} (use {', '.join(MODES)})")
    for mode, w in mix.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1e9:
            raise ValueError(f"hostile_mix[{mode!r}] = {w!r}: a weight, 0 or more")
    if mix and not any(w > 0 for w in mix.values()):  # (max() of nothing: a traceback)
        raise ValueError("hostile_mix: at least one mode needs a weight above 0 (or leave it out: all equal)")


def lie(real: wire.Status, skey: bytes, src_tag: bytes, my_tag: bytes, subtle_top: int,
        substreams: int, huge: bool) -> wire.Status:
    """A liar's STATUS: an impossible (or subtly false) latest/keyframe, the best path."""
    if huge:
        latest, have, keyframe = HUGE, 0x7FFF_FFFF_FFFF_FFFF, HUGE - 1
    else:
        latest, have, keyframe = subtle_top, 0x7FFF_FFFF_FFFF_FFFF, subtle_top
    return wire.Status(stream=skey, latest=latest, have=have, keyframe=keyframe,
                       slots=max(real.slots, 16), paths=[[src_tag, my_tag]] * substreams,
                       lags=[0] * substreams)


def attractive(real: wire.Status, src_tag: bytes, my_tag: bytes, substreams: int) -> wire.Status:
    """A withholder's STATUS: its real chunks, but a one-hop path, zero lag, free slots."""
    return wire.Status(stream=real.stream, latest=real.latest, have=real.have,
                       keyframe=real.keyframe, slots=max(real.slots, 16),
                       paths=[[src_tag, my_tag]] * substreams, lags=[0] * substreams)


def sink_claim(real: wire.Status, top: int) -> wire.Status:
    """A repair sink's STATUS: every chunk up to ``top`` (a keyframe at most its real one's
    GOP later), its real paths and lags, at least one free slot."""
    return wire.Status(stream=real.stream, latest=top, have=0x7FFF_FFFF_FFFF_FFFF,
                       keyframe=real.keyframe, slots=max(real.slots, 1), paths=real.paths,
                       lags=real.lags)


def forge(genuine: wire.ChunkMsg) -> wire.ChunkMsg:
    """The genuine header and signature over altered bytes: fails verification."""
    p = genuine.payload
    altered = bytes([p[0] ^ 0xFF]) + p[1:] if p else b"\xff"
    return wire.ChunkMsg(stream=genuine.stream, seq=genuine.seq, time_us=genuine.time_us,
                         flags=genuine.flags, signature=genuine.signature, payload=altered)


def forge_ahead(skey: bytes, seq: int, time_us: int, flags: int, payload: bytes) -> wire.ChunkMsg:
    """A chunk for a seq not produced yet, with a signature that is noise."""
    sig = random.Random(f"forged/{seq}").randbytes(64)
    return wire.ChunkMsg(stream=skey, seq=seq, time_us=time_us, flags=flags, signature=sig,
                         payload=payload)
