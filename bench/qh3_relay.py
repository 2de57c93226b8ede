"""Benchmark helper: the relay of ``bench/transport_cost.py --mode relay`` over qh3.

A measuring prototype, not the node's transport: qh3 (PyPI ``qh3``, an aioquic
fork whose packet layer is Rust) driven by the node's own UDP socket
(:class:`oasis.node.udp.UdpSocket`: batched reads, GSO writes), the same chunk
framing (msgspec), the same Ed25519 check of every chunk, TLS 1.3 with Ed25519
certificates and the dialler pinning the listener's key. What it leaves out:
Retry/admission, the OFTP session (HELLO/AUTH), and the listener checking the
dialler's certificate, which qh3 2.1.0 cannot request (its TLS server has no
CertificateRequest path). Used only with ``--stack qh3``; qh3 is imported here
and nowhere in ``oasis``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from qh3._hazmat import pull_quic_header
from qh3.quic import events as qe
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.tls import SignatureAlgorithm, load_pem_private_key, load_pem_x509_certificates

from oasis.core import wire
from oasis.core.identity import Identity
from oasis.node.keystore import certificate_key, make_certificate
from oasis.node.udp import UdpSocket

Addr = tuple[str, int]


def _config(ident: Identity, is_client: bool, mds: int) -> QuicConfiguration:
    cert = make_certificate(ident)
    c = QuicConfiguration(is_client=is_client, alpn_protocols=[wire.ALPN], max_datagram_size=mds,
                          idle_timeout=20.0, max_data=2 * 1024 * 1024,
                          max_stream_data=1024 * 1024, probe_datagram_size=False)
    c.certificate = load_pem_x509_certificates(cert.public_bytes(serialization.Encoding.PEM))[0]
    c.private_key = load_pem_private_key(ident.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    c.verify_mode = ssl.CERT_NONE  # pinning on the key, below
    if is_client:
        c.signature_algorithms = [SignatureAlgorithm.ED25519]
        c.server_name = "oasis"
    return c


class QLink:
    """One qh3 connection: chunk streams in (whole, then ``on_chunk``), chunks out."""

    def __init__(self, ep: QEndpoint, quic: QuicConnection, addr: Addr,
                 expected_key: bytes | None) -> None:
        self.ep, self.quic, self.addr, self.expected_key = ep, quic, addr, expected_key
        self.up = asyncio.get_running_loop().create_future()
        self._bufs: dict[int, bytearray] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def received(self, data: bytes, now: float) -> None:
        self.quic.receive_datagram(data, self.addr, now)
        self._events()
        self.ep.want_flush(self)

    def _events(self) -> None:
        while (ev := self.quic.next_event()) is not None:
            if isinstance(ev, qe.StreamDataReceived):
                buf = self._bufs.setdefault(ev.stream_id, bytearray())
                buf += ev.data
                if ev.end_stream:
                    del self._bufs[ev.stream_id]
                    self.ep.on_chunk(self, wire.decode_chunk(bytes(buf)))
            elif isinstance(ev, qe.HandshakeCompleted):
                if self.expected_key is not None:
                    cert = self.quic.get_peercert()
                    key = None if cert is None else certificate_key(
                        x509.load_der_x509_certificate(cert.public_bytes()))
                    if key != self.expected_key:
                        self.quic.close(error_code=0x100, reason_phrase="wrong peer")
                        continue
                if not self.up.done():
                    self.up.set_result(True)
            elif isinstance(ev, qe.ConnectionIdIssued):
                self.ep.links_by_cid[ev.connection_id] = self
            elif isinstance(ev, qe.ConnectionIdRetired):
                self.ep.links_by_cid.pop(ev.connection_id, None)

    def send_chunk(self, chunk: wire.ChunkMsg) -> None:
        sid = self.quic.get_next_available_stream_id(is_unidirectional=True)
        self.quic.send_stream_data(sid, wire.encode(chunk), end_stream=True)
        self.ep.want_flush(self)

    def transmit_now(self) -> None:
        loop = self.ep.loop
        out = self.quic.datagrams_to_send(now=loop.time())
        if out:
            self.ep.sock.send_many([d for d, _ in out], self.addr)
        t = self.quic.get_timer()
        if t == self._timer_at and (t is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = t
        self._timer = loop.call_at(t, self._on_timer) if t is not None else None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.quic.handle_timer(now=self.ep.loop.time())
        self._events()
        self.transmit_now()


class QEndpoint:
    """One UDP socket, qh3 links demultiplexed by destination connection id."""

    def __init__(self, ident: Identity, mds: int, on_chunk: Callable[[QLink, wire.ChunkMsg], None]) -> None:
        self.ident, self.mds, self.on_chunk = ident, mds, on_chunk
        self.loop = asyncio.get_running_loop()
        self.links_by_cid: dict[bytes, QLink] = {}
        self._server_cfg = _config(ident, False, mds)
        self._dirty: dict[QLink, None] = {}
        self._batching = False
        self._last: QLink | None = None
        self.sock: Any = None

    def listen(self) -> Addr:
        self.sock = UdpSocket.bind("127.0.0.1", 0, on_datagram=self._datagram,
                                   on_batch_end=self._end_batch)
        name = self.sock.get_extra_info("sockname")
        return name[0], name[1]

    def dial(self, addr: Addr, key: bytes) -> QLink:
        quic = QuicConnection(configuration=_config(self.ident, True, self.mds))
        link = QLink(self, quic, addr, key)
        self.links_by_cid[quic.host_cid] = link
        quic.connect(addr, now=self.loop.time())
        link.transmit_now()
        return link

    def want_flush(self, link: QLink) -> None:
        if self._batching:
            self._dirty[link] = None
        else:
            link.transmit_now()

    def _flush(self) -> None:
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            for link in dirty:
                link.transmit_now()

    def _end_batch(self) -> None:
        self._batching = False
        self._last = None
        self._flush()

    def _datagram(self, data: bytes, addr: Addr) -> None:
        self._batching = True
        try:
            header = pull_quic_header(data, 0, 8)
        except Exception:
            return
        dcid = header[3]
        link = self.links_by_cid.get(dcid)
        if link is None:
            if header[1] != 0 or len(data) < 1200:  # only an Initial opens a connection
                return
            quic = QuicConnection(configuration=self._server_cfg,
                                  original_destination_connection_id=dcid)
            link = QLink(self, quic, addr, None)
            self.links_by_cid[dcid] = link
            self.links_by_cid[quic.host_cid] = link
        if link is not self._last:
            self._flush()
            self._last = link
        link.received(data, self.loop.time())


def now() -> float:
    return time.time()
