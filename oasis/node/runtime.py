"""Process roles: broadcaster, viewer and stand-alone tracker.

Each role builds a :class:`~oasis.node.node.Node`, an aiohttp server with the
faces it needs, and the loops that feed it (media ingest, tracker announces),
then runs until cancelled (SIGINT/SIGTERM), closing everything it opened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import json
import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

import aiohttp
import msgspec
from aiohttp import web

from oasis.core import clocksync
from oasis.core import peer as pp
from oasis.core import swarm as sw
from oasis.core.announce import Announce, sign_announce, verified_peer_records
from oasis.core.descriptor import (
    MAX_JSON,
    Descriptor,
    DescriptorError,
    sign_descriptor,
    verified_descriptor,
    verified_descriptor_json,
)
from oasis.core.dialplan import dialable
from oasis.core.identity import peer_id_of
from oasis.core.stream import StreamId, StreamIdError
from oasis.core.streamlink import MAX_BOOTSTRAP, Bootstrap, LinkError, StreamLink, is_link
from oasis.core.streamlink import parse as parse_link
from oasis.core.tracker import Tracker
from oasis.datafiles import hold_data_dir

from . import http, outbound
from .files_http import attach_files
from .keystore import load_or_create
from .messaging import read_prekeys
from .metrics import discovery_counters
from .node import LiveStream, Node

log = logging.getLogger("oasis.runtime")


@dataclass
class Common:
    data_dir: str
    listen: str = "127.0.0.1:0"  # OFTP (UDP)
    #: None: the node's own guess, :data:`UPLOAD_X` x the bitrate, probed between
    #: :data:`UPLOAD_MIN_X` x and :data:`UPLOAD_PROBE_X` x (:mod:`oasis.core.uplink`); a
    #: number (the user's): fixed
    upload_kbps: int | None = 0
    bitrate_kbps: int = 1500
    chunk_ms: int = sw.DEFAULT_CHUNK_MS
    substreams: int = 4
    playout_delay: float = 0.5
    json_out: bool = False
    seed: int | None = None
    rewards: Any = None  #: oasis.node.rewards.RewardsConfig, or None: no proof of relay
    link_delay_ms: float = 0.0  #: emulated one-way delay on all QUIC datagrams sent (testing)
    clock_skew_ms: float = 0.0  #: the node's clock this far ahead of the system's (testing)
    area: str = ""  #: locality label sent to the tracker (e.g. a country code)
    quic: str | None = None  #: QUIC stack: qh3 or aioquic (None: $OASIS_QUIC, else qh3)
    #: stream parameters the user gave explicitly (a viewer reports those its descriptor overrides)
    given: dict[str, int] = field(default_factory=dict)
    api_listen: str | None = None  #: the local API's HOST:PORT (loopback); None/"off": no API
    #: serve /metrics, /stats, GET /rewards and the full stream listings to any client, not
    #: only to this machine's (``--public-metrics``; the testbed reads them across namespaces)
    public_metrics: bool = False


def unspecified(host: str) -> bool:
    """``--http 0.0.0.0:P`` (or ``::``): bound on every interface, but no address anyone
    can dial, so no origin a signed descriptor may name (viewers fetch chunks there)."""
    return host.strip("[]") in ("0.0.0.0", "::", "")


def origin_on_every_interface(http_listen: str, port: int) -> str:
    """What to say of an origin bound on every interface (see :func:`unspecified`)."""
    return (f"--http {http_listen}: a broadcaster's origin goes into its stream's signed "
            "descriptor, where viewers fetch chunks, and 0.0.0.0 is no address they can "
            f"reach: give --http this machine's address they reach (e.g. 192.168.1.10:{port or 8080})")


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):
        raise ValueError(f"{what} must be HOST:PORT, got {text[:200]!r}")
    if not 0 <= int(port) < 65536:
        raise ValueError(f"{what} {text[:200]!r}: the port must be 0-65535 (0: any free port)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host:
        try:  # a name was looked up late and failed as "[Errno -2] Name or service not known"
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{what} {text!r}: HOST must be an IP address of this machine "
                             "(e.g. 127.0.0.1), not a name") from None
    return host or "127.0.0.1", int(port)


def url_host(host: str) -> str:
    """``host`` as a URL's authority has it: an IPv6 address in brackets (``http://::1:8080``
    was printed for ``--listen [::1]:8080``; found 2026-12-05 from outside)."""
    return f"[{host}]" if ":" in host else host


#: a relay's upload cap when the user gave none: this many times the bitrate ...
UPLOAD_X = 4
#: ... raised while its children's chunks keep their pace, up to this many (1,000 simulated
#: mobile-churn viewers x 40 s at 0.5 s, 70 % behind NATs: offload 0.910, 0.911, 0.908 ->
#: 0.919, 0.924, 0.921 on seeds 1-3; docs/simulation.md, *The uplink probe*)
UPLOAD_PROBE_X = 8
#: ... and cut, while they lag or its copies to them are dropped, down to this many (a
#: stream's worth: a 4G uplink carries less than 4 x a 4 Mbit/s stream; 1,000 simulated
#: stress-4mbit viewers x 40 s: offload 0.93434 with 1.5 x, 0.94337 with 1 x;
#: docs/simulation.md, *The uplink probe, downward*)
UPLOAD_MIN_X = 1.0


def swarm_config(c: Common, *, use_origin: bool = True) -> sw.SwarmConfig:
    least = 0
    if c.upload_kbps is None:  # the node's own guess: probed (SwarmConfig.upload_max_kbps)
        upload, most = UPLOAD_X * c.bitrate_kbps, UPLOAD_PROBE_X * c.bitrate_kbps
        least = max(1, int(UPLOAD_MIN_X * c.bitrate_kbps))
    else:  # the user's: fixed
        upload, most = c.upload_kbps, 0
    return sw.SwarmConfig(chunk_ms=c.chunk_ms, substreams=c.substreams, bitrate_kbps=c.bitrate_kbps,
                          upload_kbps=upload, upload_max_kbps=most, upload_min_kbps=least,
                          playout_delay=c.playout_delay, use_origin=use_origin)


async def start_http(app: web.Application, host: str, port: int, *, check_host: bool = True,
                     error_body: Callable[[int, str, str], bytes] | None = None
                     ) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: any free port); returns the runner and the port.
    Every face is guarded alike: a connection must send each request head within
    ``http.IDLE_TIMEOUT`` s (idle and half-sent ones were kept for ever), and open
    connections are capped in all and per source address (:class:`http.ConnectionGuard`); on
    loopback, requests must name a loopback host (``check_host=False``: the app checks it).
    A request the HTTP parser refuses is answered in JSON too, ``error_body(status, code,
    message)`` (default: the flat ``{"error": code, "message": ...}``), and the connection
    closed (:func:`http.json_parser_errors`)."""
    counters: dict[str, int] = app[http.HTTP_COUNTERS] if http.HTTP_COUNTERS in app else {}
    if http.HTTP_COUNTERS not in app:
        app[http.HTTP_COUNTERS] = counters
    try:
        loopback_only = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback_only = host == "localhost"
    if check_host and loopback_only and http.loopback_host not in app.middlewares:
        app.middlewares.insert(0, http.loopback_host)  # DNS rebinding: see the middleware
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                           handler_cancellation=True, keepalive_timeout=http.IDLE_TIMEOUT,
                           lingering_time=http.LINGER_TIME)
    await runner.setup()
    assert runner.server is not None
    http.ConnectionGuard(runner.server, counters, total=_max_connections(),
                         per_ip=http.MAX_CONNECTIONS_PER_IP)
    http.json_parser_errors(runner.server, counters, error_body)
    # a request the parser refuses (a 400 to a stranger) is no error of ours: aiohttp logged
    # a whole traceback for each (730 bytes a request, unbounded)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(f"{host}:{port} is already in use (another node or viewer?): give another "
                             "HTTP address, or port 0 for any free one (e.g. 127.0.0.1:0)") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ValueError(f"{host}:{port} (TCP) is not an address of this machine: give one of its "
                             "addresses (e.g. 127.0.0.1)") from None
        raise
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, bound


def _max_connections() -> int:
    """Connections per HTTP face: ``http.MAX_CONNECTIONS``, within a quarter of the file
    descriptors this process may open (its soft limit raised to the hard one first: the
    common soft limit of 1,024 let 1,008 idle connections take a tracker offline)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    except (ImportError, ValueError, OSError):  # not POSIX, or not allowed: keep what we have
        return 256
    if soft == resource.RLIM_INFINITY:
        return http.MAX_CONNECTIONS
    return min(http.MAX_CONNECTIONS, max(64, soft // 4))


TRACKER_WARN_EVERY = 60.0  #: a tracker that keeps failing is logged at most this often (s)


class AnnounceClock:
    """Milliseconds for signed announces: wall clock, but strictly increasing per stream."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        self.last = max(self.last + 1, int(time.time() * 1000))
        return self.last


MAX_TRACKER_REPLY = 256 * 1024  #: bytes of a tracker reply read at most
SHORT_LINK_TIMEOUT = 15.0  #: s a short link's descriptor may take to come from the DHT


async def ask_tracker(node: Node, tracker_url: str, a: Announce, d: Descriptor | None,
                      counters: dict[str, int],
                      on_descriptor: Callable[[Descriptor], None] | None = None
                      ) -> tuple[list[Announce], float]:
    """POST one signed announce; the verified peer records of the reply and its interval.

    The reply is hostile until checked: size-capped, nesting-bounded and decoded into
    :class:`~oasis.node.http.TrackerReply` (a bad shape raises ``BadJson``); records
    and descriptor are then verified one by one, the refused ones counted.
    """
    body = a.to_json() | ({"descriptor": d.to_json()} if d is not None else {})
    async with node.http.post(f"{tracker_url.rstrip('/')}/announce", json=body,
                              timeout=aiohttp.ClientTimeout(total=5)) as r:
        if r.status >= 400:
            raise ValueError(f"HTTP {r.status}: {(await r.content.read(300))[:300]!r}")
        reply = await http.read_reply(r, MAX_TRACKER_REPLY, http.TrackerReply)
    records = verified_peer_records(a.stream, reply.peers, time.time())
    counters["tracker_records_refused"] += min(len(reply.peers), 50) - len(records)
    if reply.descriptor is not None and on_descriptor is not None:
        try:
            on_descriptor(verified_descriptor(reply.descriptor, a.stream))
            counters["descriptors_accepted"] += 1
        except DescriptorError as exc:
            counters["descriptors_refused"] += 1
            log.warning("tracker %s gave a bad descriptor: %s", tracker_url, exc)
    iv = reply.interval
    interval = min(max(iv, 1.0), 60.0) if math.isfinite(iv) else http.ANNOUNCE_INTERVAL
    return records, interval


async def announce_loop(node: Node, ls: LiveStream, tracker_url: str, *,
                        local: Tracker | None = None,
                        descriptor: Callable[[], Descriptor | None] | None = None,
                        on_descriptor: Callable[[Descriptor], None] | None = None,
                        clock: AnnounceClock | None = None, area: str = "",
                        announced: asyncio.Event | None = None) -> None:
    """Announce (signed) to the tracker whenever the node's policy wants candidates, forever.

    The cadence is the policy's (:meth:`Node.announce_due`: at once, every second while
    short of neighbours, the tracker's interval once linked, a watchdog); the verified
    records go to :meth:`Node.offer_candidates` and the policy dials those it wants. Only
    records that carry a valid signature for this stream are offered; a descriptor in the
    reply is passed on only if the stream's key signed it. Any failure of the tracker --
    unreachable, an HTTP error, a reply of the wrong shape, size or nesting -- is counted
    (``tracker_errors``) and retried (:meth:`Node.announce_failed`); the loop never dies of
    it. Only our own announce failing to sign (a bad --listen) ends it.
    """
    clock = clock or AnnounceClock()
    counters = discovery_counters(node)
    failing, quiet_until = 0, 0.0  # tries failed in a row; no repeat of the warning before
    while True:
        await node.announce_due()
        ls.mark("announce")  # (a step of the viewer's start: LiveStream.start_trace)
        host, port = node.announce_address()
        a = sign_announce(node.identity, ls.sid, host, port, clock(), area=area)
        d = descriptor() if descriptor is not None else None
        try:
            if local is not None:
                found = local.submit(a, node.host, time.time(), d)
                records = [p.record for p in found if p.record is not None]
                interval = http.ANNOUNCE_INTERVAL
            else:
                records, interval = await ask_tracker(node, tracker_url, a, d, counters, on_descriptor)
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            counters["tracker_errors"] += 1
            failing += 1
            if failing == 1 or time.monotonic() >= quiet_until:  # not a line every 2 s
                more = f" (failing since {failing} tries; the swarm goes on without it)" if failing > 1 else ""
                log.warning("tracker %s: %s%s", tracker_url, outbound.reason(exc), more)
                quiet_until = time.monotonic() + TRACKER_WARN_EVERY
            node.announce_failed()
            continue
        except Exception:  # a bug on this path must not end discovery: counted, logged, retried
            counters["tracker_errors"] += 1
            log.exception("announce to %s failed", tracker_url)
            node.announce_failed()
            continue
        if failing:
            log.warning("tracker %s answers again (after %d failed tries)", tracker_url, failing)
            failing = 0
        node.offer_candidates([pp.Candidate(r.peer, r.host, r.port) for r in records],
                              interval=interval)
        if announced is not None:
            announced.set()


async def fetch_descriptor(session: aiohttp.ClientSession, tracker_url: str, sid: StreamId, *,
                           timeout: float = 30.0, per_try: float = 5.0) -> Descriptor:
    """The stream's signed descriptor from the tracker, verified; retried until ``timeout``
    (0: one try), each try cut after ``per_try`` s."""
    url = f"{tracker_url.rstrip('/')}/descriptor/{sid}"
    deadline = time.monotonic() + timeout
    why = "no answer"
    told = timeout <= 0  # (one try: the caller says what it does next)
    while True:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=per_try)) as r:
                if r.status == 200:
                    return verified_descriptor(await http.read_reply(r, MAX_JSON, Any), sid)
                why = f"HTTP {r.status}"
        except DescriptorError as exc:
            why = f"refused: {exc}"
            log.warning("descriptor from %s %s", url, why)
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            why = outbound.reason(exc)  # (not aiohttp's "ssl:default [Connect call failed ...]")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no valid descriptor for {sid} at {url} ({why}); is the "
                               "broadcaster up and announcing to this tracker?")
        if not told:  # a user waiting for the stream sees why, once, not 30 s of silence
            told = True
            log.warning("no descriptor for %s at %s yet (%s): retrying for up to %.0f s",
                        sid, url, why, deadline - time.monotonic())
        await asyncio.sleep(0.5)


def apply_descriptor(c: Common, d: Descriptor) -> list[str]:
    """Take the stream parameters from ``d``; returns the flags the user gave that disagree."""
    mismatch = []
    for attr, flag, value in (("bitrate_kbps", "--bitrate", d.bitrate_kbps),
                              ("chunk_ms", "--chunk-ms", d.chunk_ms),
                              ("substreams", "--substreams", d.substreams)):
        given = c.given.get(attr)
        if given is not None and given != value:
            mismatch.append(f"{flag} {given} ignored: the stream's signed descriptor says {value}")
        setattr(c, attr, value)
    return mismatch


#: where :func:`emit` writes its JSON lines: stdout, unless stdout carries something else
#: (``oasis get -o -`` writes the file there, and its lines go to stderr)
EMIT_TO: list[TextIO] = []


def emit(obj: dict[str, Any]) -> None:
    """A JSON line on stdout. A reader that went away (``oasis broadcast test | head -1``,
    which takes the start line and leaves) does not stop the node: stdout goes to /dev/null
    from then on (before, BrokenPipeError ended it with exit 2 and unclosed sessions)."""
    out = EMIT_TO[0] if EMIT_TO else sys.stdout
    try:
        out.write(json.dumps(obj) + "\n")
        out.flush()
    except BrokenPipeError:
        if out is sys.stdout:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
        log.info("stdout's reader went away: its lines are dropped from now on")


_STOP: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}


def stop_event() -> asyncio.Event:
    """Set by SIGINT, SIGTERM or SIGHUP (the terminal closed): a clean stop like Ctrl-C.
    The handlers are installed at the first call -- a role calls it before it prints its
    start line, so a signal sent as soon as that line is read is not the default's kill
    (SIGHUP killed a node at once, leaving api.json behind and unsettled work unsaved)."""
    loop = asyncio.get_running_loop()
    ev = _STOP.get(loop)
    if ev is None:
        ev = _STOP[loop] = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, ev.set)
    return ev


async def run_until_stopped(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    await main(stop_event())


class Stopped(Exception):
    """A stop signal (Ctrl-C, SIGTERM, SIGHUP) came while a command was still starting: a
    clean stop, exit status 0 (the CLI's)."""


_T = TypeVar("_T")


async def unless_stopped(aw: Awaitable[_T]) -> _T:
    """``aw``'s result, or :class:`Stopped` (``aw`` cancelled) if a stop signal comes first.
    A start that waits (a tracker that does not answer: 30 s of retries; a short link's DHT
    lookup) is cut by the signal: `oasis watch` ignored Ctrl-C and SIGTERM for ~28 s there,
    its handlers installed (found 2026-12-05 from outside)."""
    task = asyncio.ensure_future(aw)
    stop = asyncio.ensure_future(stop_event().wait())
    try:
        await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))  # (its own clean-up runs; its outcome is dropped)
    if task.cancelled() and stop_event().is_set():
        raise Stopped
    return task.result()


async def _close_started(node: Node) -> None:
    """Undo a start that failed half-way (the error is the caller's to raise)."""
    if node.rewards is not None:
        node.rewards.close()
    await node.close()


async def _start_or_close(node: Node) -> None:
    """``node.start()``; if it fails (a taken --listen), the node is closed before the error
    goes on (its HTTP client session was reported unclosed at exit)."""
    try:
        await node.start()
    except BaseException:
        await _close_started(node)
        raise


async def broadcast(c: Common, *, source: str, name: str, http_listen: str,
                    tracker_url: str | None, cdn_url: str | None, encrypt: bool = False) -> int:
    """Run a broadcaster until stopped (0) or until its source ends (a file loops; stdin
    ends at its end): 0 after it said so on stderr, 1 if the source gave not one chunk."""
    from oasis.media.ingest import check_udp_source, open_source

    # the source is checked first: no start line (with a link) for a stream that cannot run
    src = open_source(source, c.bitrate_kbps)
    if source.startswith("udp://"):
        await check_udp_source(source)  # (its port taken, an address not ours)
    hold_data_dir(c.data_dir, "broadcast")
    stop_event()  # a stop signal from here on is a clean stop
    ident = load_or_create(c.data_dir)
    prekeys = read_prekeys(c.data_dir, ident)
    # the name and the addresses before the node: a refusal leaves nothing to close
    sid = StreamId(ident.public, name)
    from .streaming import content_key, refuse_plain_after_key
    if encrypt:
        key: bytes | None = content_key(c.data_dir, sid)  # (a damaged key file: refused here)
    else:
        refuse_plain_after_key(c.data_dir, sid)  # (it was encrypted: not in clear by oversight)
        key = None
    host, port = parse_hostport(c.listen, "--listen")
    hhost, hport = parse_hostport(http_listen, "--http")
    if unspecified(hhost):  # (refused later, it left the node and its HTTP server open)
        raise ValueError(origin_on_every_interface(http_listen, hport))
    node = Node(ident, swarm_config(c), host=host, port=port,
                max_neighbours=2 * pp.PolicyConfig.max_neighbours,
                rng=random.Random(c.seed), link_delay=c.link_delay_ms / 1000, quic=c.quic)
    node.messaging.keep_prekeys(*prekeys)  # DMs held for us open after a restart
    await _start_or_close(node)
    if key is not None:
        node.stream_keys[sid.key] = key
    ls = node.add_stream(sid, is_source=True)
    app = web.Application(client_max_size=64 * 1024)
    tracker = Tracker() if tracker_url is None else None
    descriptors: dict[str, Descriptor] = {}
    http.add_origin_routes(app, node, descriptors)
    http.add_gateway_routes(app, node, tracker=tracker)
    files = attach_files(node, app, c.data_dir)  # node.files: short videos (docs/oftp.md §18)
    if tracker is not None:
        http.add_tracker_routes(app, tracker, own=http.own_streams(node))
    http.set_public_views(app, c.public_metrics)
    try:
        if c.rewards is not None:
            from . import rewards_http  # imports the EVM stack: only with --rewards
            from .rewards import Rewards
            node.rewards = Rewards(c.rewards, ident, stream_text_id=str(sid))
            if tracker is not None:  # viewers not linked to us directly are members too
                node.rewards.member_hook = tracker_member(tracker, sid)
            await node.rewards.start_broadcaster(c.bitrate_kbps)
            rewards_http.add_rewards_routes(app, node, broadcaster=True)
        runner, hport = await start_http(app, hhost, hport)
    except BaseException:  # a damaged wallet, a chain error, a taken port: nothing left open
        await _close_started(node)
        raise
    base = f"http://{url_host(hhost)}:{hport}"
    files.gateway_url = base
    origin = f"{base}/origin"
    tickets = f"{base}/tickets" if c.rewards is not None else None
    tracker_url = tracker_url or f"{base}/tracker"
    try:
        descriptors[str(sid)] = stream_descriptor(c, node, sid, origin=origin, cdn_url=cdn_url,
                                                  tickets=tickets, encrypted=key is not None)
    except BaseException:  # (a refused origin or CDN URL): nothing left open behind the error
        await runner.cleanup()
        await _close_started(node)
        raise
    if node.dht is not None:  # our stream record carries it: a link needs no tracker
        node.dht.set_descriptor(sid, msgspec.json.encode(descriptors[str(sid)].to_json()))
    # a restart after a crash: dial the viewers that still hold their dead links to us (they
    # would find us only at their next announce, up to 10 s on, and only with a tracker;
    # oasis.node.neighbourfile)
    node.keep_neighbours(Path(c.data_dir))
    announced = asyncio.Event()
    announcer = asyncio.create_task(announce_loop(
        node, ls, tracker_url, local=tracker, descriptor=lambda: descriptors.get(str(sid)),
        area=c.area, announced=announced))
    # Viewers look the descriptor up at the tracker: be there before saying we are up.
    first = asyncio.create_task(announced.wait())
    await asyncio.wait([announcer, first], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    first.cancel()
    if announcer.done():  # it failed (e.g. --listen is not an address peers can dial)
        await node.close()
        await runner.cleanup()
        if node.rewards is not None:
            node.rewards.close()
        announcer.result()
    if not announced.is_set():
        log.warning("tracker %s has not taken our announce yet; going on", tracker_url)
    from .daemon import serve_api
    link_text = stream_link(node, sid, descriptors[str(sid)], tracker_url, key=key).format()
    try:
        api = await serve_api(c, node, base=base, tracker=tracker, tracker_url=tracker_url,
                              descriptors=descriptors, links={str(sid): link_text})
    except BaseException:  # a taken --api-listen: nothing left open behind the error
        announcer.cancel()
        await runner.cleanup()
        await _close_started(node)
        raise
    emit({"stream_id": str(sid), "tracker": tracker_url, "origin": origin, "cdn": cdn_url,
          "web_url": f"{base}/watch/{sid}",
          "oftp": f"{url_host(node.host)}:{node.port}", "peer_id": node.peer_id, "http": base,
          "tickets": tickets, "descriptor": f"{origin}/{sid}/descriptor",
          "link": link_text, "api": api.url if api is not None else None,
          # stream id + this node as bootstrap: the descriptor comes from the DHT
          "short_link": dataclasses.replace(stream_link(node, sid, descriptors[str(sid)], None, key=key),
                                            descriptor=None).format(),
          "encrypted": key is not None})

    status = 0

    async def ingest() -> None:
        from .streaming import ingest as run_ingest
        from .streaming import seq_file
        nonlocal status
        done = await run_ingest(ident, ls, src, c.chunk_ms, clock_file=seq_file(c.data_dir, sid))
        what = "stdin" if source == "-" else f"the source {source!r}"
        if done.chunks and not done.keyframes:
            # (random bytes gave a chunk or two: two 0x47 bytes 188 apart, by chance)
            status = 1
            say(f"oasis broadcast: {what} ended after {done.chunks} chunks, none with a video "
                "keyframe (not MPEG-TS video?): nothing a viewer could play; stopping")
        elif done.chunks:
            say(f"oasis broadcast: {what} ended after {done.chunks} chunks ({done.seconds:.1f} s "
                "of stream); stopping")
        else:
            status = 1
            say(f"oasis broadcast: {what} ended before a first chunk (no MPEG-TS in it?); "
                "nothing was broadcast; stopping")

    async def main(stop: asyncio.Event) -> None:
        from .streaming import end_stream, linger, seq_file

        tasks = [asyncio.create_task(ingest()), announcer]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for t in [*tasks, stopper]:
            t.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        # The end marker (the source's end already made it): its viewers learn that the
        # stream ended, rather than skipping chunk after chunk that never comes
        told = end_stream(ident, ls, clock_file=seq_file(c.data_dir, sid))
        if ls.swarm.end_seq >= 0:
            await linger([ls])
        if told is not None:  # stopped by a signal (a source that ended said so already)
            n = len(ls.swarm.peers)
            say(f"oasis broadcast: stopped after chunk {told - 1}; the end of the stream was sent to "
                f"{n} neighbour{'' if n == 1 else 's'}")
        for t in done:
            if t is not stopper and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    try:
        await run_until_stopped(main)
    finally:
        if api is not None:
            await api.close()
        await node.close()
        await runner.cleanup()
        if node.rewards is not None:
            node.rewards.close()
    return status


def stream_link(node: Node, sid: StreamId, desc: Descriptor, tracker_url: str | None,
                extra: list[Bootstrap] | None = None, key: bytes | None = None) -> StreamLink:
    """The ``oasis://`` link of a stream this node carries: its descriptor, this node as a
    bootstrap peer (if its address is one peers can dial), ``extra`` peers, the tracker,
    and an encrypted stream's content ``key``."""
    boots: list[Bootstrap] = []
    host, port = node.announce_address()
    if dialable(host, port):
        boots.append(Bootstrap(node.identity.public, host, port))
    for b in extra or []:
        if len(boots) < MAX_BOOTSTRAP and b.peer != node.identity.public:
            boots.append(b)
    return StreamLink(sid, desc, tuple(boots), tracker_url, key)


def check_key(desc: Descriptor, key: bytes | None, *, relay_only: bool = False) -> None:
    """Refuse (LinkError ``no_key``, a ValueError) to watch an encrypted stream without its
    content key, unless only to relay it (docs/oftp.md §7.2)."""
    if desc.encrypted and key is None and not relay_only:
        raise LinkError("no_key", f"stream {desc.stream} is end-to-end encrypted: its link carries the content key "
                         "as k=..., and this one has none (is the link complete? the broadcaster's link and "
                         "short link end in &k=...; a bare stream id has no key). Ask the broadcaster for the link it printed, or "
                         "give --relay-only to relay the stream's ciphertext without playing it")


def set_stream_key(node: Node, desc: Descriptor, key: bytes | None) -> None:
    """What ``node`` knows of the stream's sealing from its newest signed descriptor: an
    encrypted stream's content key (None: relayed without it), or plain. A key given is
    kept either way (``Node.link_keys``): an older descriptor that says "plain" (any
    holder of one can hand it out) does not make the node play ciphertext as media."""
    skey = desc.stream.key
    if key is not None:
        node.link_keys[skey] = key  # (tried first on every chunk, whatever a descriptor says)
    if desc.encrypted:
        node.stream_keys[skey] = key or node.link_keys.get(skey)
    else:
        node.stream_keys.pop(skey, None)


async def dht_descriptor(node: Node, sid: StreamId, boots: tuple[Bootstrap, ...]) -> Descriptor:
    """A short link's descriptor: from the broadcaster's stream record in the DHT, reached
    through the link's bootstrap peers, verified against the stream key. On failure the
    node is closed and ``LinkError`` ``no_descriptor`` (a ValueError) says why."""
    raw = None
    t0 = time.monotonic()
    before = node.counters if node.dht is not None else {}
    if node.dht is not None:
        raw = await node.dht.find_descriptor(
            sid, [pp.Candidate(b.peer, b.host, b.port) for b in boots], SHORT_LINK_TIMEOUT)
    took = time.monotonic() - t0
    try:
        if raw:
            return verified_descriptor_json(raw, sid)
    except DescriptorError as exc:
        log.warning("DHT gave a bad descriptor: %s", exc)
    after = node.counters if node.dht is not None else {}
    await node.close()

    def delta(k: str) -> int:
        return int(after.get(k, 0)) - int(before.get(k, 0))

    # what happened, so a user can tell a dead link from a hostile or stale one
    seen = (f"{delta('dht_answers_in')} answers, {delta('dht_dials')} dials "
            f"({delta('dht_dial_failures')} failed), {delta('dht_timeouts')} requests timed out, "
            f"{delta('dht_records_rejected') + delta('dht_descriptors_rejected')} records or descriptors "
            f"refused as forged or foreign, {delta('dht_records_expired')} records expired, "
            f"{delta('dht_lookups_started')} lookups")
    why = (f"in {SHORT_LINK_TIMEOUT:g} s" if took >= SHORT_LINK_TIMEOUT - 0.5
           else f"(the DHT lookup ended after {took:.1f} s)")
    raise LinkError("no_descriptor", f"no descriptor for {sid} from the link's bootstrap peers {why}: "
                    f"{seen}; give a full link or a tracker")


def start_discovery(node: Node, ls: LiveStream, boots: tuple[Bootstrap, ...], tracker_url: str | None,
                    *, on_descriptor: Callable[[Descriptor], None], clock: AnnounceClock,
                    area: str) -> asyncio.Task[None]:
    """A viewer's peers: the link's bootstrap peers offered now (they answer even when no
    tracker does), then the tracker's announce loop, or the bootstrap loop without one."""
    if boots:
        node.offer_candidates([pp.Candidate(b.peer, b.host, b.port) for b in boots])
    if tracker_url is not None:
        return asyncio.create_task(announce_loop(node, ls, tracker_url, on_descriptor=on_descriptor,
                                                 clock=clock, area=area))
    return asyncio.create_task(bootstrap_loop(node, boots))


async def bootstrap_loop(node: Node, boots: tuple[Bootstrap, ...]) -> None:
    """Without a tracker: whenever the policy wants candidates, offer the link's bootstrap
    peers (keys pinned); more peers come from their NEIGHBOURS (docs/oftp.md §15.2)."""
    while True:
        await node.announce_due()
        node.offer_candidates([pp.Candidate(b.peer, b.host, b.port) for b in boots],
                              interval=http.ANNOUNCE_INTERVAL)


#: s a short link's tracker has to give the descriptor before the link's peers are asked
#: (the DHT): before 2026-12-07 a link naming a dead tracker failed after 30 s with its
#: bootstrap peers alive (found by an audit from the docs)
LINK_TRACKER_TRY = 2.0


async def resolve_stream(stream: str, tracker_url: str | None,
                         connector: aiohttp.BaseConnector | None = None
                         ) -> tuple[StreamId, Descriptor | None, tuple[Bootstrap, ...], str | None, bytes | None]:
    """What a viewer is given -- an ``oasis://`` link, or a stream id and a tracker -- as
    (stream, descriptor, bootstrap peers, tracker). The descriptor comes from the link, else
    from the tracker; None for a short link without a tracker (then :func:`dht_descriptor`
    once the node runs), and the link's content key, if any. ``connector``: the pool to
    fetch it through (left open: the node's, whose first announce then goes on the same
    connection)."""
    boots: tuple[Bootstrap, ...] = ()
    desc: Descriptor | None = None
    key: bytes | None = None
    if is_link(stream):
        link = parse_link(stream)
        sid, desc, boots, key = link.sid, link.descriptor, link.bootstrap, link.key
        tracker_url = tracker_url or link.tracker
    else:
        try:
            sid = StreamId.parse(stream)
        except StreamIdError as exc:  # (the code a link's bad id gets: one answer to one mistake)
            hint = ("; a web address is not a stream: give the stream's link (oasis://...) or its id"
                    if "://" in stream else "")
            raise LinkError("bad_stream_id", f"{exc}{hint}") from None
        if tracker_url is None:
            raise ValueError("give a stream link (oasis://...) or --tracker URL with a stream id")
    if desc is None and tracker_url is not None:
        async with outbound.session(connector=connector, connector_owner=connector is None) as session:
            if not boots:
                desc = await fetch_descriptor(session, tracker_url, sid)
            else:  # a link's tracker is a bootstrap among others: one try, then the DHT
                try:
                    desc = await fetch_descriptor(session, tracker_url, sid, timeout=0,
                                                  per_try=LINK_TRACKER_TRY)
                except RuntimeError:
                    log.warning("the link's tracker %s gave no descriptor: asking the link's "
                                "peers (DHT)", tracker_url)
    return sid, desc, boots, tracker_url, key


#: `oasis watch` says so on stderr when nothing arrived this long after start, or no new chunk
#: came this long while playing (the broadcaster stopped, the link is stale, the network is down)
WATCH_NOTHING_AFTER = 15.0
WATCH_STALL_AFTER = 10.0
WATCH_REMIND_EVERY = 60.0


def say(text: str) -> None:
    """A line for the person at the terminal (stderr; stdout carries the JSON lines)."""
    print(text, file=sys.stderr, flush=True)


def reaches(listen_host: str, peer_host: str) -> bool:
    """A node whose UDP socket is bound to ``listen_host`` can send to ``peer_host``: one
    address family (the wildcard ``::`` takes both), and from a loopback address only to
    loopback."""
    try:
        me = ipaddress.ip_address(listen_host.strip("[]"))
        peer = ipaddress.ip_address(peer_host.strip("[]").split("%", 1)[0])
    except ValueError:
        return True  # (not ours to judge)
    if me.version != peer.version and not (me.version == 6 and me.is_unspecified):
        return False
    return not (me.is_loopback and not peer.is_loopback)


def unreachable_boots_warning(listen: str, boots: tuple[Bootstrap, ...]) -> str | None:
    """What to tell a viewer whose ``--listen`` cannot reach any of its link's peers (a
    default ``127.0.0.1`` given a link that names other machines, an IPv4 address given an
    IPv6 broadcaster): it played from the origin alone, linked to no peer, and said nothing
    (found 2026-12-07 from outside). None when one is reachable, or the link names none."""
    host, _ = parse_hostport(listen, "--listen")
    if not boots or any(reaches(host, b.host) for b in boots):
        return None
    peers = ", ".join(f"{url_host(b.host)}:{b.port}" for b in boots[:3])
    return (f"oasis watch: warning: this node's --listen {listen} cannot reach the link's peers "
            f"({peers}): unless the tracker names others it can, it will play from the origin "
            "alone and relay nothing; give --listen an address of this machine that they can "
            "reach (port 0: any free one)")


async def watch_health(node: Node, sid: StreamId, *, check_every: float = 1.0) -> None:
    """Tell the viewer's user when the stream does not flow, and when it flows again: the
    player's response ends after a long stall, and without this the terminal said nothing
    while a stopped broadcaster's viewer skipped chunk after chunk."""
    loop = asyncio.get_running_loop()
    last_at = said_at = loop.time()
    last = -1
    stalled = False
    while True:
        await asyncio.sleep(check_every)
        ls = node.streams.get(sid.key)  # (a newer descriptor may have rejoined the stream)
        if ls is None:
            continue
        now = loop.time()
        latest = ls.swarm.log.latest
        end = ls.swarm.end_seq
        if end >= 0:
            if not stalled or last != latest:
                say(f"oasis watch: the broadcaster ended the stream (its last chunk: {end - 1}). "
                    "Waiting in case it starts again (Ctrl-C to stop).")
            stalled, last, last_at = True, latest, now
            continue
        if latest != last:
            if stalled and latest >= 0:  # (a rejoin starts from nothing: -1 is no chunk)
                say(f"oasis watch: the stream flows again (chunk {latest})")
                stalled = False
            last, last_at = latest, now
            continue
        never = latest < 0
        quiet = now - last_at
        if quiet < (WATCH_NOTHING_AFTER if never else WATCH_STALL_AFTER):
            continue
        if stalled and now - said_at < WATCH_REMIND_EVERY:
            continue
        stalled, said_at = True, now
        origin = (f"origin {ls.origin_url}: {ls.origin_failures} fetches failed"
                  f"{f' (last: {ls.origin_error})' if ls.origin_error else ''}"
                  if ls.origin_url else "no origin")
        what = ("nothing received" if never else f"no new chunk after chunk {latest}")
        say(f"oasis watch: {what} for {quiet:.0f} s: {node.neighbour_count()} neighbours, {origin}; "
            "the broadcaster may have stopped or be unreachable. Still trying (Ctrl-C to stop).")


class OriginClock(msgspec.Struct):
    """What a node reads of ``GET /origin/<stream>/time`` (other fields ignored)."""

    now_us: int


#: bytes of an origin's time answer (about 30 when honest)
MAX_TIME_JSON = 256
#: each exchange with the origin's clock may take this long (s)
CLOCK_TIMEOUT = 1.0
#: the join waits at most this long for the origin's clock (s): a slower answer rejoins the
#: stream on it when it comes, if our clock is off
CLOCK_WAIT = 0.3
#: a late answer rejoins the stream only for an offset this large (s)
CLOCK_REJOIN = 0.25
#: more exchanges this long after the join, and again after as long, while a round trip
#: stretched by our own start (a busy machine, a slow link) left the first ones unsure (s)
CLOCK_RECHECK = 2.0
CLOCK_ROUNDS = 3


def fetch_urls(d: Descriptor) -> list[str]:
    """Every URL a viewer may fetch the stream's chunks from: the descriptor's CDNs in order,
    then its origin (signed by the broadcaster; a failover goes down this list)."""
    return [u for u in (*d.cdn, d.origin) if u]


async def origin_samples(origin: str, text_id: str, clock: Callable[[], float] = time.time
                         ) -> list[tuple[float, float, float]]:
    """``clocksync.SAMPLES`` exchanges with the origin's ``/time``: (sent, server, received)
    each (fewer, or none, when it does not answer)."""
    url = f"{origin.rstrip('/')}/{text_id}/time"
    samples: list[tuple[float, float, float]] = []
    try:
        async with outbound.session() as session:
            for _ in range(clocksync.SAMPLES):
                sent = clock()
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=CLOCK_TIMEOUT)) as r:
                    if r.status != 200:
                        raise ValueError(f"HTTP {r.status}")
                    got = await http.read_reply(r, MAX_TIME_JSON, OriginClock)
                samples.append((sent, got.now_us / 1e6, clock()))
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
        where = url.rsplit("/", 2)[0]
        if not samples and where not in _SILENT_ORIGINS_SAID:
            # (said: a --cdn-url to a dead port ran on in silence, every fallback fetch failing;
            # found 2026-12-06 from outside. Once an origin: the clock's re-asks said it 3
            # times in 6 s, found the same day)
            if len(_SILENT_ORIGINS_SAID) < 64:
                _SILENT_ORIGINS_SAID.add(where)
            log.warning("the stream's origin %s does not answer (%s): chunks the peers do not "
                        "bring in time cannot be fetched from it; the clock is taken as in sync",
                        where, outbound.reason(exc)[:200])
    return samples


#: origins whose silence at /time was said (once each; bounded)
_SILENT_ORIGINS_SAID: set[str] = set()


async def origin_offset(origin: str, text_id: str,
                        clock: Callable[[], float] = time.time) -> float:
    """Our clock minus the broadcaster's, asked of the origin's ``/time``
    (:func:`oasis.core.clocksync.correction`: 0 when in sync, unreachable or unusable)."""
    return clocksync.correction(await origin_samples(origin, text_id, clock))


def say_offset(offset: float) -> None:
    if abs(offset) >= 0.1:
        say(f"oasis watch: this machine's clock is {abs(offset):.2f} s "
            f"{'ahead of' if offset > 0 else 'behind'} the broadcaster's: the stream runs on the "
            "broadcaster's (set the system clock right, e.g. with NTP)")


async def watch(c: Common, *, stream_id: str, tracker_url: str | None, gateway: str,
                cdn_url: str | None, relay_only: bool = False) -> None:
    """Join a stream given by its id (and a tracker) or by an ``oasis://`` link."""
    hold_data_dir(c.data_dir, "watch")  # first: a second node on this directory waits for nothing
    stop_event()  # a stop signal from here on is a clean stop
    # The node's HTTP pool from the start: the connection that fetched the descriptor from
    # the tracker carries the first announce (a TCP handshake less: 0.2-0.35 s of the
    # testbed's far trackers). The origin's clock below has a connection of its own.
    pool = aiohttp.TCPConnector()
    try:
        sid, desc, boots, tracker_url, key = await unless_stopped(resolve_stream(stream_id, tracker_url, pool))
        if desc is not None:
            check_key(desc, key, relay_only=relay_only)  # (before anything starts)
    except BaseException:
        await pool.close()
        raise
    # the broadcaster's clock, asked while the node starts (deadlines are its time)
    wall: Callable[[], float] = time.time  # the node's clock
    if c.clock_skew_ms:
        skew = c.clock_skew_ms / 1000

        def wall() -> float:
            return time.time() + skew
    timing: asyncio.Task[list[tuple[float, float, float]]] | None = None
    if desc is not None and (cdn_url or desc.fetch_url):
        timing = asyncio.create_task(origin_samples(cdn_url or desc.fetch_url or "", str(sid), wall))
    try:
        ident = load_or_create(c.data_dir)
        prekeys = read_prekeys(c.data_dir, ident)
        host, port = parse_hostport(c.listen, "--listen")
        ghost, gport = parse_hostport(gateway, "--gateway")  # (before the node: nothing to close)
        if (warning := unreachable_boots_warning(c.listen, boots)) is not None:
            say(warning)
        # the swarm's configuration is replaced below, once the descriptor is known
        node = Node(ident, swarm_config(c), host=host, port=port, rng=random.Random(c.seed),
                    link_delay=c.link_delay_ms / 1000, quic=c.quic, clock=wall, http_connector=pool)
    except BaseException:  # (the node owns the pool once made)
        await pool.close()
        raise
    node.messaging.keep_prekeys(*prekeys)  # DMs held for us open after a restart
    await _start_or_close(node)
    # The local API's modules are imported before the join, not after it (~0.2 CPU-s: the
    # event loop was blocked while the first announce waited to go out; h-join6).
    from .daemon import serve_api
    if desc is None:  # a short link, no tracker: the stream record in the DHT carries it
        try:
            desc = await unless_stopped(dht_descriptor(node, sid, boots))
        except Stopped:
            await node.close()
            raise
        if cdn_url or desc.fetch_url:
            timing = asyncio.create_task(origin_samples(cdn_url or desc.fetch_url or "", str(sid), wall))
        try:
            check_key(desc, key, relay_only=relay_only)
        except ValueError:
            if timing is not None:
                timing.cancel()
            await node.close()
            raise
    set_stream_key(node, desc, key)
    mismatch = apply_descriptor(c, desc)
    for line in mismatch:  # ("oasis watch: warning: ..." on stderr; it was said twice)
        log.warning("%s", line)
    node.config = swarm_config(c)
    app = web.Application(client_max_size=64 * 1024)
    http.add_gateway_routes(app, node)
    http.set_public_views(app, c.public_metrics)
    files = attach_files(node, app, c.data_dir)  # node.files: short videos (docs/oftp.md §18)
    rewards_ready: asyncio.Task[None] | None = None
    discovery: asyncio.Task[None] | None = None
    clock = AnnounceClock()
    current = desc
    ls: LiveStream | None = None

    async def join_rewards(url: str) -> None:
        r = node.rewards
        await r.start_viewer(node.http, url)
        await r.loop(node.send_to)

    def set_tickets(url: str) -> None:
        nonlocal rewards_ready
        if node.rewards is not None and rewards_ready is None:
            rewards_ready = asyncio.create_task(join_rewards(url))

    def set_descriptor(d: Descriptor) -> None:
        nonlocal current, ls
        if ls is None or d.issued_at_ms <= current.issued_at_ms:
            return  # (the stream is added before discovery starts: no answer comes sooner)
        old, current = current, d
        if node.rewards is not None:
            node.rewards.descriptor = d
        if d.encrypted != old.encrypted:
            say(f"oasis watch: the stream's signed descriptor is newer and says it is "
                f"{'now end-to-end encrypted' if d.encrypted else 'no longer encrypted'}"
                f"{'; this link has no content key: relaying without playing' if d.encrypted and key is None else ''}")
        set_stream_key(node, d, key)
        if (d.bitrate_kbps, d.chunk_ms, d.substreams) != (old.bitrate_kbps, old.chunk_ms, old.substreams):
            # The newest signed descriptor wins in full, not only its origin: a newcomer handed
            # an old one (a liar's answer, an old link) played with the old chunking for its
            # whole session, every chunk late or skipped. Rejoin with the stream's parameters.
            for line in apply_descriptor(c, d):
                log.warning("%s", line)
            say(f"oasis watch: the stream's signed descriptor is newer ({d.bitrate_kbps} kbit/s, "
                f"{d.chunk_ms} ms chunks, {d.substreams} substreams): rejoining with it")
            discovery_counters(node)["descriptor_rejoins"] += 1
            offset = ls.clock_offset
            node.remove_stream(sid)
            node.config = swarm_config(c)
            ls = node.add_stream(sid, is_source=False, origin_url=cdn_url or d.fetch_url,
                                 clock_offset=offset)
        ls.set_origin(cdn_url or d.fetch_url, fetch_urls(d))  # (the user's --cdn-url first)
        if d.tickets:
            set_tickets(d.tickets)

    try:  # a damaged wallet or chain, a taken gateway port: nothing left open behind the error
        if c.rewards is not None:
            # Open wallet and chain first (slow: imports the EVM stack), then join.
            from . import rewards_http
            from .rewards import Rewards
            node.rewards = Rewards(c.rewards, ident, stream_text_id=str(sid))
            node.rewards.descriptor = desc  # ticket terms are checked against the signed descriptor
            await node.rewards.open()
            rewards_http.add_rewards_routes(app, node, broadcaster=False)
        # The origin a viewer fetches from comes only from the signed descriptor (or the user).
        offset = 0.0
        if timing is not None:
            try:
                offset = clocksync.correction(await asyncio.wait_for(asyncio.shield(timing), CLOCK_WAIT))
            except TimeoutError:
                pass  # joined on our clock; the answer rejoins on the broadcaster's (late_clock)
        say_offset(offset)
        ls = node.add_stream(sid, is_source=False, origin_url=cdn_url or desc.fetch_url,
                             clock_offset=offset)
        ls.set_origin(cdn_url or desc.fetch_url, fetch_urls(desc))
        # Peers at once: the join is now, and the gateway, the local API and the first line
        # below can come up while the tracker answers and the first links are dialled (they
        # took 0.15 s of a lone viewer's start, 0.3-0.66 s in a join burst of 20 processes).
        discovery = start_discovery(node, ls, boots, tracker_url, on_descriptor=set_descriptor,
                                    clock=clock, area=c.area)
        node.keep_neighbours(Path(c.data_dir))  # (dials the last run's, if fresh: no tracker needed)
        runner, gport = await start_http(app, ghost, gport)
        ls.mark("gateway")
    except BaseException:
        if discovery is not None:
            discovery.cancel()
        await _close_started(node)
        raise
    try:
        api = await serve_api(c, node, base=None, gateway=f"http://{url_host(ghost)}:{gport}")
    except BaseException:  # a taken --api-listen: nothing left open behind the error
        discovery.cancel()
        await runner.cleanup()
        await _close_started(node)
        raise
    files.gateway_url = f"http://{url_host(ghost)}:{gport}"
    emit({"peer_id": node.peer_id, "api": api.url if api is not None else None, "gateway": f"http://{url_host(ghost)}:{gport}",
          "player_url": f"http://{url_host(ghost)}:{gport}/live/{ls.text_id}.ts", "oftp": f"{url_host(node.host)}:{node.port}",
          "web_url": f"http://{url_host(ghost)}:{gport}/watch/{ls.text_id}",
          "descriptor": desc.to_json(), "mismatch": mismatch,
          # end-to-end encrypted (§7.2); playable false: relayed without the content key
          "encrypted": desc.encrypted, "playable": ls.playable})

    if desc.tickets:
        set_tickets(desc.tickets)
    if node.dht is not None:
        def from_dht(skey: bytes, raw: bytes) -> None:
            if skey != sid.key:
                # another stream's record (one the API added to this node): its own path
                # keeps it; it is no bad descriptor of ours (it was logged as one)
                return
            try:  # the DHT checked it already; checked again here against our stream
                set_descriptor(verified_descriptor_json(raw, sid))
            except DescriptorError as exc:
                log.warning("DHT gave a bad descriptor: %s", exc)
        node.dht.on_descriptor = from_dht

    async def late_clock(timing: asyncio.Task[list[tuple[float, float, float]]]) -> None:
        """The origin's clock after the join: the first exchanges if they came late, and
        more while they left it unsure; rejoin on the broadcaster's clock if ours is off."""
        nonlocal ls
        samples = await timing
        for round_ in range(CLOCK_ROUNDS):
            offset = clocksync.correction(samples)
            if ls is not None and abs(offset - ls.clock_offset) >= CLOCK_REJOIN:
                say_offset(offset)
                discovery_counters(node)["clock_rejoins"] += 1
                origin, others = ls.preferred_origin, ls.origin_others
                node.remove_stream(sid)
                ls = node.add_stream(sid, is_source=False, origin_url=origin, clock_offset=offset)
                ls.set_origin(origin, others)
            origin = ls.origin_url if ls is not None else None
            if not clocksync.unsure(samples) or round_ == CLOCK_ROUNDS - 1 or not origin:
                return
            await asyncio.sleep(CLOCK_RECHECK * (round_ + 1))
            samples += await origin_samples(origin, str(sid), wall)

    async def main(stop: asyncio.Event) -> None:
        task = discovery
        health = asyncio.create_task(watch_health(node, sid))
        clocked = asyncio.create_task(late_clock(timing)) if timing is not None else None
        await stop.wait()
        task.cancel()
        tasks = ([task, health] + ([rewards_ready] if rewards_ready is not None else [])
                 + ([clocked, timing] if clocked is not None and timing is not None else []))
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for res in results:
            if isinstance(res, Exception) and not isinstance(res, asyncio.CancelledError):
                log.warning("stopped with: %r", res)
        if tracker_url is None:
            return
        leave = sign_announce(ident, sid, *node.announce_address(), clock(), area=c.area, leaving=True)
        try:
            async with node.http.post(f"{tracker_url.rstrip('/')}/announce", json=leave.to_json(),
                                      timeout=aiohttp.ClientTimeout(total=1)):
                pass
        except (aiohttp.ClientError, TimeoutError):
            pass

    try:
        await run_until_stopped(main)
    finally:
        if api is not None:
            await api.close()
        await node.close()
        await runner.cleanup()
        if node.rewards is not None:
            node.rewards.close()


def tracker_member(tracker: Tracker, sid: StreamId) -> Callable[[bytes], bool]:
    """``Rewards.member_hook`` for a broadcaster with its own tracker: a peer key is a member
    while its signed announce for ``sid`` is held there and not older than the tracker's ttl
    (a viewer of the swarm need not be linked to the broadcaster to get a ticket)."""
    stream = str(sid)

    def member(key: bytes) -> bool:
        sp = tracker.streams.get(stream)
        if sp is None or not isinstance(key, bytes) or len(key) != 32:
            return False
        tp = sp.peers.get(peer_id_of(key))
        return tp is not None and tp.record is not None and tp.seen >= time.time() - tracker.ttl

    return member


def stream_descriptor(c: Common, node: Node, sid: StreamId, *, origin: str, cdn_url: str | None,
                      tickets: str | None, encrypted: bool = False) -> Descriptor:
    """The broadcaster's signed descriptor: parameters, origin/CDN, ticket URL and terms."""
    r = node.rewards
    dep = getattr(getattr(r, "chain", None), "deployment", None)
    return sign_descriptor(node.identity, Descriptor(
        sid, c.bitrate_kbps, c.chunk_ms, c.substreams, int(time.time() * 1000), origin=origin,
        cdn=(cdn_url,) if cdn_url else (), tickets=tickets,
        price_per_mb=getattr(r.cfg, "price_per_mb", None) if r is not None else None,
        epoch_length=getattr(r.cfg, "epoch_length", None) if r is not None else None,
        chain_id=getattr(dep, "chain_id", None), contract=getattr(dep, "pool", None),
        encrypted=encrypted))


async def tracker_only(listen: str, *, public_metrics: bool = False) -> None:
    host, port = parse_hostport(listen, "--listen")
    app = web.Application(client_max_size=64 * 1024)
    http.add_tracker_routes(app, Tracker(), metrics=True)
    http.set_public_views(app, public_metrics)
    runner, port = await start_http(app, host, port)
    if host in ("0.0.0.0", "::", ""):  # every address: 0.0.0.0 is no URL anyone can use
        emit({"tracker": f"http://127.0.0.1:{port}/tracker", "listening": f"{host or '0.0.0.0'}:{port}",
              "note": "listening on every address: other machines use http://<this machine's address>"
                      f":{port}/tracker"})
    else:
        emit({"tracker": f"http://{url_host(host)}:{port}/tracker"})

    async def main(stop: asyncio.Event) -> None:
        await stop.wait()

    try:
        await run_until_stopped(main)
    finally:
        await runner.cleanup()


def default_data_dir(role: str) -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "oasis" / role)
