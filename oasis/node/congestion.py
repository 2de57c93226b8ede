"""Congestion control for live chunks: aioquic's New Reno, warm from the first chunk.

A link carries app-limited traffic: one chunk (~6.2 kB at 1.5 Mbit/s and the default 33 ms
chunks, ~5 datagrams of :data:`~oasis.node.transport.DEFAULT_DATAGRAM_SIZE`) per chunk period,
~200 kB/s, and a chunk is worth something only until its playout deadline (a chunk
stream still unsent at its deadline is reset, never queued). aioquic's Reno starts at
RFC 9002's 10 datagrams and its pacer sends ``cwnd / srtt``, so the first chunks on a
fresh link were spread over more than one RTT (bench/hop_cost.py: ~100 ms at 80 ms RTT).

``"oasis"`` (registered on import; :class:`~oasis.node.transport.Endpoint` selects it
for every link, both sides) differs from aioquic's ``"reno"`` in three rules:

* **Initial window: 64 datagrams** (86.4 kB at 1,350 B). aioquic's pacer
  (``QuicPacketPacer.update_rate``) allows a burst of ``min(cwnd / 4, 16 datagrams)``
  and paces the rest at ``cwnd / srtt``; a chunk is ~14-15 datagrams, so it leaves in
  one burst only when ``cwnd >= 60`` datagrams, and 64 is where the burst reaches the
  pacer's 16-datagram ceiling (a larger window would buy no larger burst). 64 datagrams
  also hold two chunks plus control traffic. RFC 9002 section 7.2 makes the 10-datagram
  initial window a SHOULD (as RFC 6928's IW10 for TCP); CDNs run larger ones (CDN
  Planet's 2017 survey: Akamai 32, Edgecast 30, CloudFront 25, Highwinds 44, Level3 and
  CacheFly 46 segments of ~1.4 kB; Rüth et al. 2018 found up to 100), and ours is
  filled only by the stream itself: a link never has more than a couple of chunks
  queued, older ones are dropped at their deadline.
* **No growth while app-limited** (RFC 9002 section 7.8): the window grows (slow start
  or congestion avoidance) only while it is less than twice the largest number of
  bytes in flight seen since the last congestion event, so ~200 kB/s of ACKs cannot
  inflate it to megabytes that a backlog would later burst out at.
* **Loss floor: the initial window.** A congestion event halves the window as Reno
  does, but not below 64 datagrams (nor raises one that is below it). For an
  app-limited sender the window does not set the rate, the stream does (~200 kB/s a
  link, against 86.4 kB per RTT): halving it does not shed load, it only cuts the
  pacer's burst and rate so that each chunk is spread over more of the RTT, after
  every random loss on a mobile link, for the rest of the link's life (the window does
  not grow back while app-limited). The simulator (1,000 peers x 40 s, mobile-churn
  mix, playout 0.5 s) put offload at 0.29 with a 16-datagram floor, 0.45 with 32 and
  0.53 with 64. What sheds load on a path that cannot carry the stream is the deadline
  (a chunk stream unsent at its deadline is reset, not queued) and the swarm moving
  children to other parents; a backlog that grew the window above 64 datagrams is
  halved as by Reno; and persistent congestion (RFC 9002 section 7.6.2, a MUST) still
  collapses the window to the 2-datagram minimum, from which slow start regrows it (to
  the initial window while sending at all, beyond only while window-limited). This
  departs from RFC 9002's reduction factor (a RECOMMENDED 0.5) below 128 datagrams.
"""

from __future__ import annotations

from collections.abc import Iterable

from aioquic.quic.congestion.base import (
    K_MINIMUM_WINDOW,
    QuicCongestionControl,
    QuicRttMonitor,
    register_congestion_control,
)
from aioquic.quic.packet_builder import QuicSentPacket

NAME = "oasis"  #: the name QuicConfiguration.congestion_control_algorithm takes
INITIAL_WINDOW = 64  #: datagrams: one chunk fits the pacer's burst (cwnd / 4)
LOSS_FLOOR = INITIAL_WINDOW  #: datagrams: a congestion event does not shrink it below this
LOSS_REDUCTION = 0.5  #: as Reno


class OasisCongestionControl(QuicCongestionControl):
    """New Reno with a large initial window, a loss floor and no app-limited growth."""

    def __init__(self, *, max_datagram_size: int) -> None:
        super().__init__(max_datagram_size=max_datagram_size)
        self._mds = max_datagram_size
        self.congestion_window = INITIAL_WINDOW * max_datagram_size
        self._recovery_start = 0.0
        self._stash = 0
        self._max_in_flight = 0  #: since the last congestion event
        self._rtt_monitor = QuicRttMonitor()

    def _may_grow(self) -> bool:
        # back up to the initial window (after persistent congestion) while sending at
        # all; beyond it only while more than half of the window has been in flight
        return (self.congestion_window < INITIAL_WINDOW * self._mds
                or self.congestion_window < 2 * self._max_in_flight)

    def on_packet_acked(self, *, now: float, packet: QuicSentPacket) -> None:
        self.bytes_in_flight -= packet.sent_bytes
        if (packet.sent_time or 0.0) <= self._recovery_start:  # no growth in recovery
            return
        if not self._may_grow():  # app-limited: RFC 9002 section 7.8
            return
        if self.ssthresh is None or self.congestion_window < self.ssthresh:
            self.congestion_window += packet.sent_bytes  # slow start
        else:  # congestion avoidance: one datagram per window ACKed
            self._stash += packet.sent_bytes
            count = self._stash // self.congestion_window
            if count:
                self._stash -= count * self.congestion_window
                self.congestion_window += count * self._mds

    def on_packet_sent(self, *, packet: QuicSentPacket) -> None:
        self.bytes_in_flight += packet.sent_bytes
        if self.bytes_in_flight > self._max_in_flight:
            self._max_in_flight = self.bytes_in_flight

    def on_packets_expired(self, *, packets: Iterable[QuicSentPacket]) -> None:
        for packet in packets:
            self.bytes_in_flight -= packet.sent_bytes

    def on_packets_lost(self, *, now: float, packets: Iterable[QuicSentPacket]) -> None:
        lost_largest_time = 0.0
        for packet in packets:
            self.bytes_in_flight -= packet.sent_bytes
            lost_largest_time = packet.sent_time or 0.0
        # one congestion event per recovery period (packets sent after it started)
        if lost_largest_time > self._recovery_start:
            self._recovery_start = now
            # halve, but not below the floor (nor raise a window already below it)
            cwnd = self.congestion_window
            self.congestion_window = max(int(cwnd * LOSS_REDUCTION),
                                         min(cwnd, LOSS_FLOOR * self._mds))
            self.ssthresh = self.congestion_window
            self._max_in_flight = self.bytes_in_flight

    def on_persistent_congestion(self) -> None:
        self.congestion_window = K_MINIMUM_WINDOW * self._mds
        self._recovery_start = 0.0
        self._max_in_flight = self.bytes_in_flight

    def on_rtt_measurement(self, *, now: float, rtt: float) -> None:
        # HyStart-like exit from slow start when the RTT rises (as aioquic's Reno)
        if self.ssthresh is None and self._rtt_monitor.is_rtt_increasing(now=now, rtt=rtt):
            self.ssthresh = self.congestion_window


register_congestion_control(NAME, OasisCongestionControl)
