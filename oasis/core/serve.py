"""Answering pulls: serve, hold or refuse a REQUEST; and the pushes the upload releases.

Theory of operation
-------------------
A REQUEST names one seq. The node answers it from what it can verify, within
what the asking peer may take (:mod:`oasis.core.pull`):

1. Refused (MISSING, ``requests_out_of_window``) when the node holds no verified
   chunk yet, or the seq is not one a viewer could still play: at most
   ``latest - window``, signed (or estimated) time older than
   ``request_horizon``, or above the highest seq the signed clock allows
   (:meth:`oasis.core.claims.ClaimCheck.plausible_top`).
2. Refused (``requests_claimed``) when the peer's own last STATUS says it holds
   the seq: an honest node never asks for a chunk it has (it is a flood that
   would spend our upload on nothing).
3. Refused (``requests_refused``) when the peer's pull budget cannot pay for it:
   the chunk's size, or the mean chunk size if it is not here yet.
4. Served at once through the upload scheduler if held; else *held* until it
   arrives or its deadline passes (then MISSING), within the held caps
   (``held_refused`` when full).

Refusals of kinds 1-4 are answered MISSING with ``refused`` set, and the asker
owes us ``refusal_backoff`` of silence (it backs off on the flag). So a refusal is
a strike when it opens such an episode, or when the request came inside the
episode but after ``in_flight`` (the asker ignored the back-off); requests that
arrive within ``in_flight`` of the episode's start were sent before the asker
could have heard us, and are refused without a strike. (Each refusal a strike:
in the 30-node testbed on a saturated machine, requests in flight behind one
refusal cut off 183 honest links as flooders in 60 s.) A peer that piles up
``flood_limit`` strikes faster than they are forgiven is dropped (``DropPeer``,
TOO_MANY_ERRORS).
"""

from __future__ import annotations

from . import wire
from .chunklog import ChunkLog, status_holds
from .claims import ClaimCheck
from .pull import HeldRequests
from .repair import RepairPicker
from .swarmdefs import DropPeer, PeerState, Push, Send, SwarmAction, SwarmConfig, SwarmCounters
from .upload import UploadScheduler
from .wire import ErrorCode

#: requests that arrive this long (s) after a refusal opened an episode (the back-off
#: plus the peer's RTT) were in flight when we refused: 1.5 x the peer's RTT, at least
#: IN_FLIGHT_MIN, at most IN_FLIGHT_SHARE of the episode (the rest is the asker's silence)
IN_FLIGHT_MIN = 0.2
IN_FLIGHT_SHARE = 0.8


class PullServer:
    """The answers to REQUESTs and the held-request table (see the module docstring)."""

    def __init__(self, skey: bytes, config: SwarmConfig, *, log: ChunkLog,
                 upload: UploadScheduler, peers: dict[bytes, PeerState], claims: ClaimCheck,
                 repair: RepairPicker, counters: SwarmCounters,
                 actions: list[SwarmAction]) -> None:
        self.skey = skey
        self.config = config
        self.log = log
        self.upload = upload
        self.peers = peers  #: the swarm's peer table (shared)
        self.claims = claims
        self.repair = repair
        self.counters = counters
        self.actions = actions  #: the swarm's action list (shared)
        #: requests held for chunks not here yet (capped; a deadline heap for the timer)
        self.held = HeldRequests(config.max_held_per_peer, config.max_held_total)

    def expire(self, now: float) -> None:
        """Held requests whose deadline passed: MISSING."""
        for key, seq in self.held.expire(now):
            self.actions.append(Send(key, wire.Missing(stream=self.skey, seq=seq)))
            self.counters.missing_sent += 1

    def stream_rate(self) -> float:
        """The stream's rate in bytes/s: measured once known, never below nominal."""
        nominal = self.config.bitrate_kbps * 125.0
        return self.log.rate_bps if self.log.rate_bps > nominal else nominal

    def on_request(self, st: PeerState, msg: wire.Request, now: float) -> None:
        """Serve, hold or refuse a REQUEST. A peer may pull only chunks of the live
        window it could still play, at most ``request_share`` x the stream rate
        (bucket of ``request_burst`` s), with at most ``max_held_per_peer`` held
        (``max_held_total`` for all); each refusal is a strike, and a peer that keeps
        asking past its budget (``flood_limit`` strikes) is dropped."""
        cfg = self.config
        seq = msg.seq
        log = self.log
        chunk = log.get(seq)
        if log.anchor_seq < 0:  # nothing verified yet: no live window to serve from
            self.counters.requests_out_of_window += 1
            self.refuse(st, seq, now, strike=True)
            return
        if seq > self.claims.plausible_top(now) or log.time_of(seq) < now - cfg.request_horizon \
                or seq <= log.latest - cfg.window_chunks:
            self.counters.requests_out_of_window += 1
            self.refuse(st, seq, now, strike=True)
            return
        if st.status is not None and status_holds(st.status, seq):
            self.counters.requests_claimed += 1  # it says it holds the chunk
            self.refuse(st, seq, now, strike=True)
            return
        rate = self.stream_rate()
        cost = float(len(chunk.payload)) if chunk is not None else rate * log.chunk_interval
        if not st.budget.take(cost, cfg.request_share * rate, cfg.request_burst * rate, now):
            self.counters.requests_refused += 1
            self.refuse(st, seq, now, strike=True)
            return
        deadline = self.repair.deadline_of(seq)
        if chunk is not None:
            self.upload.enqueue(st.key, chunk, max(deadline, now + cfg.playout_delay))
            self.counters.requests_served += 1
            self.flush(now)
        elif deadline <= now:
            self.refuse(st, seq, now)  # too late to hold (already paid for: no strike)
        elif not self.held.hold(st.key, seq, deadline):
            self.counters.held_refused += 1
            self.refuse(st, seq, now, strike=True)

    def on_cancel(self, st: PeerState, seq: int) -> None:
        """CANCEL: the peer holds ``seq`` now; drop its held request or queued answer.
        The pull budget it paid is not given back (a REQUEST then CANCEL costs what a
        REQUEST costs: no way to hold requests for free)."""
        if self.held.take(st.key, seq) is not None:
            self.counters.cancels_held += 1
        elif self.upload.cancel(st.key, seq):
            self.counters.cancels_queued += 1
        else:
            self.counters.cancels_late += 1

    def on_start(self, st: PeerState, now: float) -> None:
        """JOIN(start): the joiner has not started, and its first REQUEST would be for our
        latest keyframe. Send it now if it is fresh, paid from the joiner's pull budget
        like that REQUEST. Not a request: nothing held, no MISSING, no strike (the joiner
        probes us after our STATUS if nothing came)."""
        cfg = self.config
        log = self.log
        seq = log.latest_keyframe
        if seq < 0 or log.latest - seq >= cfg.window_chunks:
            return
        chunk = log.get(seq)
        if chunk is None or now - log.time_of(seq) > cfg.start_max_age:
            return
        rate = self.stream_rate()
        if not st.budget.take(float(len(chunk.payload)), cfg.request_share * rate,
                              cfg.request_burst * rate, now):
            self.counters.starts_refused += 1
            return
        self.upload.enqueue(st.key, chunk, max(self.repair.deadline_of(seq), now + cfg.playout_delay))
        self.counters.starts_served += 1
        self.flush(now)

    def refuse(self, st: PeerState, seq: int, now: float, strike: bool = False) -> None:
        """Answer MISSING; with ``strike`` it is a refusal (``refused`` set), counted
        against the peer's flood score unless it was in flight behind the refusal
        that opened the current episode (see the module's notes)."""
        cfg = self.config
        refused = strike
        if strike:
            since = now - st.refusal_opened
            # the asker hears us half an RTT later and is silent for the back-off: its
            # next request arrives one RTT plus the back-off after ours at the earliest
            episode = cfg.refusal_backoff + (st.rtt if st.rtt > 0 else 0.0)
            if since >= episode:
                st.refusal_opened = now  # a new episode: its first refusal is a strike
            else:
                in_flight = 1.5 * st.rtt if 1.5 * st.rtt > IN_FLIGHT_MIN else IN_FLIGHT_MIN
                if in_flight > IN_FLIGHT_SHARE * episode:
                    in_flight = IN_FLIGHT_SHARE * episode
                if since < in_flight:
                    strike = False  # sent before the peer could have heard the first one
                    self.counters.refusals_in_flight += 1
        if strike and st.budget.strike(cfg.flood_limit, cfg.flood_window, now):
            if st.budget.strikes < cfg.flood_limit + 1:  # tell the adapter once
                self.counters.flooders_dropped += 1
                self.actions.append(DropPeer(st.key, ErrorCode.TOO_MANY_ERRORS,
                                              f"{cfg.flood_limit} REQUESTs refused in "
                                              f"{cfg.flood_window:g} s"))
            return
        self.counters.missing_sent += 1
        self.actions.append(Send(st.key, wire.Missing(stream=self.skey, seq=seq, refused=refused)))

    def flush(self, now: float) -> None:
        for peer, chunk, deadline in self.upload.release(now):
            if peer in self.peers:
                self.actions.append(Push(peer, chunk, deadline))
