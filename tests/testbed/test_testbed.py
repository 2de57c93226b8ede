"""The namespace testbed keeps its promises: delays from the country table, access caps,
loss, NAT mappings of each kind, and nothing left behind -- also when killed mid-run.

Real namespaces, a real NFQUEUE delayer and, at the end, a real (small) swarm run.
Needs root and ``ip netns``; skipped otherwise. Every wait has a timeout.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oasis.node.udp import send_with_ttl
from oasis.sim.netmodel import World
from oasis.testbed import netns, probe, runner
from oasis.testbed.topology import NodeSpec, Topology, build, one_way_ms

REPO = Path(__file__).resolve().parents[2]


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the namespace testbed needs root"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns` is unavailable here: {exc}"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")

LOSSY = 0.1
CAP_KBPS = 2000


def _topology() -> Topology:
    def n(name: str, role: str, cc: str, nat: str, up: int = 50_000, loss: float = 0.0) -> NodeSpec:
        return NodeSpec(name, role, cc, "broadband", up, 50_000, loss, 4.5, nat)
    return Topology(seed=0, bitrate_kbps=1500, nodes=(
        n("b", "broadcaster", "DE", "public"),
        n("v0", "viewer", "US", "public", up=CAP_KBPS),
        n("v1", "viewer", "US", "eim"),
        n("v2", "viewer", "DE", "symmetric"),
        n("v3", "viewer", "US", "cgn"),
        n("v4", "viewer", "DE", "public", loss=LOSSY),
    ))


class _Quiet:
    def status(self, _text: str) -> None:
        pass


@pytest.fixture(scope="module")
def bed() -> Iterator[runner.Testbed]:
    prefix = f"oas{os.getpid()}-"
    tb = runner.Testbed(_topology(), prefix=prefix, duration=0, chunk_ms=33, delay_scale=1.0,
                 progress=_Quiet())
    try:
        tb.build()
        yield tb
    finally:
        problems = tb.close()
    assert problems == []
    assert netns.leftovers(prefix) == []


def _echo(tb: runner.Testbed, name: str, port: int) -> tuple[probe.EchoServer, tuple[str, int]]:
    p = tb.net.placement[name]
    return probe.EchoServer(p.ns, p.addr, port), (p.addr, port)


def test_a_running_testbed_s_prefix_is_neither_taken_nor_cleaned_up(
        bed: runner.Testbed, capsys: pytest.CaptureFixture[str]) -> None:
    """Found 2026-12-06 from outside: a second run given a running one's ``--prefix`` failed
    on "File exists" and its clean-up removed the first run's namespaces; ``--cleanup``
    took the digits of a prefix given by hand for a dead pid and removed a live run."""
    prefix = bed.prefix
    built = netns.leftovers(prefix)
    assert built and netns.prefix_live(prefix)
    with pytest.raises(netns.PrefixInUse, match=f"prefix {prefix} is in use by a running testbed"):
        netns.claim(prefix)
    code = runner.run_testbed(runner.parse_args(["--prefix", prefix, "--viewers", "2", "--duration", "5"]))
    assert code == 2 and "is in use by a running testbed" in capsys.readouterr().err
    # a second Testbed object on the prefix (a race past that check): refused at its build,
    # and its close removes nothing of the first
    other = runner.Testbed(_topology(), prefix=prefix, duration=0, chunk_ms=33, delay_scale=1.0,
                           progress=_Quiet())
    with pytest.raises(netns.PrefixInUse):
        other.build()
    assert other.close() == []
    assert netns.cleanup(None) == []  # (every run not running: not this one)
    assert sorted(netns.leftovers(prefix)) == sorted(built)
    # a prefix whose lock is free (its run killed outright) is a dead run's, whatever its digits
    # (pid 1 is always alive; a lock file nobody holds says its run is gone)
    path = Path(netns.LOCK_DIR) / "oas1-lock"
    path.write_text("12345\n")
    try:
        assert netns.prefix_locked("oas1-") is False and not netns.prefix_live("oas1-")
    finally:
        path.unlink()


def test_rtt_follows_the_country_table(bed: runner.Testbed) -> None:
    world = World()
    nodes = {n.name: n for n in bed.topo.nodes}
    srv, addr = _echo(bed, "b", 7001)
    try:
        for name in ("v0", "v1", "v3"):
            want = 2 * one_way_ms(world, nodes[name], nodes["b"])
            got = probe.ping(bed.net.placement[name].ns, addr, count=10).median_ms
            # the delayer never releases early; a loaded machine may add a few ms
            assert want - 1.0 <= got <= want * 1.2 + 15, (name, want, got)
        assert want > 50  # US <-> DE: the table's transatlantic delay, not loopback's
    finally:
        srv.close()


def test_a_viewer_s_cdn_pop_is_in_its_metro(bed: runner.Testbed) -> None:
    """The PoP of a viewer's country answers within the simulator's CDN_EDGE_RTT_MS plus the
    viewer's last mile, not the country's median round trip (US: 31 ms on top)."""
    from oasis.sim.netmodel import CDN_EDGE_RTT_MS

    world = World()
    v0 = next(n for n in bed.topo.nodes if n.name == "v0")
    us = world.index("US")
    pop = bed.net.edge_placement["US"]
    srv = probe.EchoServer(pop.ns, pop.addr, 7002)
    try:
        want = CDN_EDGE_RTT_MS + 2 * v0.lastmile_ms
        far = world.rtt_ms[us][us] + 2 * v0.lastmile_ms + 2.0
        got = probe.ping(bed.net.placement["v0"].ns, (pop.addr, 7002), count=10).median_ms
        assert want - 1.0 <= got <= want * 1.2 + 15 and got < far - 5, (want, far, got)
    finally:
        srv.close()


def test_delayer_wakes_once_a_tick_and_never_releases_early() -> None:
    # A burst of datagrams, many to a tick: the delayer reads and releases them a tick at a
    # time (woken for each packet, it spent most of its CPU switching in and out), and
    # every one still crosses in no less than its pair's delay.
    topo = Topology(seed=0, bitrate_kbps=1500, nodes=(
        NodeSpec("b", "broadcaster", "DE", "fibre", 200_000, 200_000, 0.0, 2.5),
        NodeSpec("v0", "viewer", "US", "fibre", 200_000, 200_000, 0.0, 2.5)))
    prefix = f"oas{os.getpid()}t-"
    tb = runner.Testbed(topo, prefix=prefix, duration=0, chunk_ms=33, delay_scale=1.0,
                        progress=_Quiet())
    n, got = 3000, []
    try:
        tb.build()
        b, v = tb.net.placement["b"], tb.net.placement["v0"]
        rx = netns.ns_socket(b.ns, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE (root): past rmem_max
        rx.bind((b.addr, 9300))
        tx = netns.ns_socket(v.ns, socket.SOCK_DGRAM)
        for _ in range(n):
            tx.sendto(struct.pack("!d", time.monotonic()) + bytes(300), (b.addr, 9300))
        deadline = time.monotonic() + 20
        while len(got) < n and (left := deadline - time.monotonic()) > 0:
            if select.select([rx], [], [], left)[0]:
                got.append(time.monotonic() - struct.unpack("!d", rx.recv(2048)[:8])[0])
        rx.close()
        tx.close()
    finally:
        problems = tb.close()
    assert problems == [] and netns.leftovers(prefix) == []
    assert len(got) == n  # none lost (the links are lossless and uncapped here)
    want = one_way_ms(World(), topo.nodes[1], topo.nodes[0]) / 1000
    assert min(got) >= want, (min(got), want)  # held at least the pair's delay
    st = tb.delayer_stats
    assert st is not None and st["packets"] >= n and st["tick_ms"] == 0.5
    # woken for each packet this burst would take ~n wake-ups; a tick at a time, a few
    # hundred (the burst spans tens of ms each way, plus the idle loop's 5 a second)
    assert st["wakeups"] < n / 3, st


def test_upload_cap_holds(bed: runner.Testbed) -> None:
    b = bed.net.placement["b"]
    rate = probe.bulk_rate(bed.net.placement["v0"].ns, b.ns, (b.addr, 9001), seconds=2.5)
    assert 0.3 * CAP_KBPS * 1000 <= rate <= 1.05 * CAP_KBPS * 1000, rate


def test_loss_rate_roughly_as_set(bed: runner.Testbed) -> None:
    srv, addr = _echo(bed, "b", 7002)
    try:
        # in batches: 600 datagrams at once can overflow the delayer's queue on a loaded
        # machine, and those drops are not the loss under test
        r = probe.ping(bed.net.placement["v4"].ns, addr, count=600, timeout=2.0, batch=30)
    finally:
        srv.close()
    want = 1 - (1 - LOSSY) ** 2  # dropped on the way out or on the way back
    assert abs(r.lost / r.sent - want) < 0.07, (r.lost, r.sent, want)


def test_nat_mappings_behave_as_their_kind(bed: runner.Testbed) -> None:
    s1, a1 = _echo(bed, "b", 7003)
    s2, a2 = _echo(bed, "v0", 7003)
    try:
        pl = bed.net.placement
        eim = probe.mapping(pl["v1"].ns, [a1, a2], port=5001)
        sym = probe.mapping(pl["v2"].ns, [a1, a2], port=5001)
        cgn = probe.mapping(pl["v3"].ns, [a1, a2], port=5001)
        public = probe.mapping(pl["v4"].ns, [a1, a2], port=5001)
    finally:
        s1.close()
        s2.close()
    assert eim[0] == eim[1] == f"{pl['v1'].public}:5001"  # mapping kept, port preserved
    assert cgn[0] == cgn[1] == f"{pl['v3'].public}:5001"
    assert sym[0].split(":")[0] == sym[1].split(":")[0] == pl["v2"].public
    assert sym[0] != sym[1]  # a new external port per destination
    assert public == [f"{pl['v4'].addr}:5001"] * 2


def test_nat_drops_unsolicited_inbound(bed: runner.Testbed) -> None:
    pl = bed.net.placement
    s1, a1 = _echo(bed, "v1", 7004)  # behind the EIM router
    try:
        r = probe.ping(pl["v0"].ns, (pl["v1"].public, 7004), count=5, timeout=1.0)
        assert r.rtt_ms == []
        r = probe.ping(pl["v2"].ns, a1, count=1, timeout=1.0)  # 192.168.1.2 from another home
        assert r.rtt_ms == []
    finally:
        s1.close()


def _heard(sock: socket.socket, wait: float) -> set[tuple[str, int]]:
    """Where the datagrams ``sock`` received within ``wait`` seconds came from."""
    out = set()
    end = time.monotonic() + wait
    while (left := end - time.monotonic()) > 0:
        r, _, _ = select.select([sock], [], [], left)
        if r:
            out.add(sock.recvfrom(2048)[1][:2])
    return out


def test_a_punch_works_only_if_neither_packet_reaches_the_far_nat_first(bed: runner.Testbed) -> None:
    """Hole punching between two NATed nodes (docs/oftp.md §15.3) against the testbed's
    Linux NATs: both sides sending at once open both; but a packet that reaches the far
    NAT before that NAT's own node sent leaves a conntrack entry there (unreplied, 30 s,
    refreshed by every further packet), the late node's flow is mapped to a new port, and
    the early side's NAT drops it -- a punch fails both ways, and so does a retry while
    the entry lives (why a node holds a failed punch off: NatConfig.punch_retry_after)."""
    pl = bed.net.placement
    e, c = pl["v1"], pl["v3"]  # the home router (eim) and the carrier-grade NAT

    def pair(pe: int, pc: int) -> tuple[socket.socket, socket.socket]:
        se, sc = netns.ns_socket(e.ns, socket.SOCK_DGRAM), netns.ns_socket(c.ns, socket.SOCK_DGRAM)
        se.bind(("0.0.0.0", pe))
        sc.bind(("0.0.0.0", pc))
        return se, sc

    se, sc = pair(5201, 5203)  # at once: both punches get through
    try:
        for _ in range(3):
            se.sendto(b"e", (c.public, 5203))
            sc.sendto(b"c", (e.public, 5201))
        assert _heard(se, 1.0) == {(c.public, 5203)}
        assert _heard(sc, 0.2) == {(e.public, 5201)}
    finally:
        se.close()
        sc.close()
    se, sc = pair(5301, 5303)  # the home side first, the carrier-grade side 0.5 s later
    try:
        se.sendto(b"e", (c.public, 5303))
        assert _heard(sc, 0.5) == set()  # unsolicited: dropped (its conntrack entry stays)
        for _ in range(3):
            sc.sendto(b"c", (e.public, 5301))
            se.sendto(b"e", (c.public, 5303))
        assert _heard(se, 1.0) == set()  # the late flow left on another port: dropped
        assert _heard(sc, 0.2) == set()
    finally:
        se.close()
        sc.close()


def _flows(ns: str) -> list[tuple[str, ...]]:
    """The UDP flows of namespace ``ns``'s conntrack table: (src, dst, sport, dport) of the
    original direction, then of the reply direction (as the NAT maps it)."""
    out = []
    for line in netns.run(["ip", "netns", "exec", ns, "cat", "/proc/net/nf_conntrack"],
                          check=False).splitlines():
        if " udp " in line:
            kv = [w.split("=", 1)[1] for w in line.split()
                  if w.split("=", 1)[0] in ("src", "dst", "sport", "dport")]
            out.append(tuple(kv[:8]))
    return out


def test_a_low_ttl_prime_opens_its_own_nat_and_dies_before_the_far_one(bed: runner.Testbed) -> None:
    """What hole punching's priming datagram relies on (oasis.core.nat ``prime_ttl``): a node
    sits one hop behind its NAT, the core is the second hop and the far NAT the third, so a
    datagram with TTL 2 opens the sender's NAT towards the peer (a conntrack entry mapping it
    to the port the peer was told) and dies in the core -- the far NAT never sees it. The
    failing order of the test above then works: the carrier-grade side primes, the home side
    sends first, the carrier-grade side later, and both get through. TTL 3 reaches the far
    NAT (delivered to the router itself: no TTL check) and would leave the entry that
    breaks the punch."""
    pl = bed.net.placement
    e, c = pl["v1"], pl["v3"]  # the home router (eim) and the carrier-grade NAT
    e_router, c_nat = bed.net.ns("rv1"), bed.net.ns("g0")
    se, sc = netns.ns_socket(e.ns, socket.SOCK_DGRAM), netns.ns_socket(c.ns, socket.SOCK_DGRAM)
    ttl3 = netns.ns_socket(c.ns, socket.SOCK_DGRAM)
    try:
        se.bind(("0.0.0.0", 5401))
        sc.bind(("0.0.0.0", 5403))
        ttl3.bind(("0.0.0.0", 5405))
        send_with_ttl(sc, b"\0", (e.public, 5401), 2)
        send_with_ttl(ttl3, b"\0", (e.public, 5401), 3)
        se.sendto(b"e", (c.public, 5403))  # the home side first ...
        assert _heard(sc, 1.0) == {(e.public, 5401)}  # ... passes the primed CGN
        # (the core keeps each pair's packets in order: the two primes, sent before the home
        # side's datagram crossed it, have reached wherever they were going by now)
        far = [f[:4] for f in _flows(e_router)]
        assert (c.public, e.public, "5405", "5401") in far  # TTL 3 reached the far NAT
        assert (c.public, e.public, "5403", "5401") not in far  # TTL 2 did not
        own = [f for f in _flows(c_nat) if f[:4] == (c.addr, e.public, "5403", "5401")]
        assert [f[4:] for f in own] == [(e.public, c.public, "5401", "5403")]  # port preserved
        for _ in range(3):
            sc.sendto(b"c", (e.public, 5401))
        assert _heard(se, 1.0) == {(c.public, 5403)}
    finally:
        se.close()
        sc.close()
        ttl3.close()


def test_topology_is_plain_data() -> None:
    topo = build(7, 20, nat_share=0.7, symmetric_share=0.2)
    again = Topology.from_json(json.loads(topo.dumps()))
    assert again == topo
    nat = [v for v in topo.viewers if v.nat != "public"]
    assert len(nat) == 14 and sum(v.nat == "symmetric" for v in nat) == 3
    assert all(v.nat == "public" for v in build(7, 20, nat_share=0.0).viewers)


def _wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float) -> list[str]:
    """stderr lines until one contains ``text`` (or the timeout, or EOF)."""
    import selectors
    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not sel.select(left):
            break
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} within {timeout} s: {''.join(lines)[-2000:]}")


def _testbed(*extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(REPO / "bench" / "testbed.py"), "--viewers", "5",
                             "--countries", "DE,US", "--nat-share", "0.4", "--symmetric-share", "0.5",
                             "--json", *extra], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finished(p: subprocess.Popen[str], timeout: float) -> dict:
    """A testbed run's JSON once it ended well (bounded), checking it left nothing behind."""
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err[-2000:]
    assert netns.leftovers(f"oas{p.pid}-") == []
    r: dict = json.loads(out)
    return r


def test_sigterm_mid_run_leaves_nothing() -> None:
    p = _testbed("--duration", "60")
    try:
        _wait_for_line(p, "broadcaster up", 60)
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 143  # 128 + SIGTERM, as a shell reports a process it stopped
    assert netns.leftovers(f"oas{p.pid}-") == []


def test_small_run_reports_per_nat_kind_and_viewers_need_no_tracker() -> None:
    # The viewers get the broadcaster's link without its tracker: the DHT, bootstrapped at
    # the broadcaster, is how they find each other (each site its own /24, as in the world).
    r = _finished(_testbed("--duration", "8", "--discovery", "link", "--broadcaster-nice", "-3"), 150)
    assert set(r["by_nat"]) == {"public", "eim", "symmetric"}
    assert r["by_nat"]["public"]["viewers"] == 3
    assert r["chunks_produced"] > 0 and r["delayer"]["packets"] > 0
    assert r["errors"] == 0
    assert r["testbed"]["discovery"] == "link"
    # the broadcaster's scheduling group got the weight asked for (read back from the kernel)
    assert r["testbed"]["broadcaster_nice"] == -3
    # the viewers were forked inside their namespaces by the launcher (oasis.zygote)
    assert r["testbed"]["viewers_forked"] is True
    assert r["dht"]["found_providers"] >= 4, r["dht"]  # of 5 viewers, in 8 s
    assert r["dht"]["dht_records_rejected"] == 0
    # a CDN edge in each viewer country followed the origin's feed and answered fallbacks
    cdn = r["cdn"]
    assert 1 <= cdn["edges"] <= 2 and cdn["answered"] == cdn["edges"] == r["testbed"]["cdn_edges"]
    assert cdn["feed_connects"] >= cdn["edges"] and cdn["feed_bad_chunks"] == 0
    # the chunks it answered, and of them those a viewer took from the origin before any peer
    assert cdn["chunks_served"] == cdn["hits"] + cdn["hold_hits"] + cdn["pulls"]
    assert cdn["chunks_taken_first"] == sum(sum(v["origin_chunks"].values()) for v in r["by_viewer"].values())
    assert cdn["chunks_served"] >= cdn["chunks_taken_first"]  # (every viewer's origin is its PoP)
    # ... warmed for the broadcast: each followed the stream from its start (``--follow``),
    # and the viewers joined once every edge held a keyframe of it
    assert r["testbed"]["edges_warm"] is True and r["testbed"]["edges_cold"] == []
    assert all(st["pinned"] for e in cdn["per_edge"].values() for st in e["streams"].values())
    # every node's event-loop lag, from its /stats
    lag = r["testbed"]["loop_lag_ms"]
    assert lag["broadcaster"]["n"] >= 1 and lag["viewers_p95_max"] is not None
    assert all(e["loop_lag_ms"]["n"] >= 1 for e in cdn["per_edge"].values())


def test_viewers_behind_nats_learn_their_mapping_and_punch_to_each_other(tmp_path: Path) -> None:
    # Four viewers behind endpoint-independent NATs (home routers and a carrier-grade NAT),
    # one public viewer, real nodes: each learns from OBSERVED the address peers see,
    # announces it, and links to the other NATed viewers through an introducer (PUNCH).
    def n(name: str, role: str, cc: str, nat: str) -> NodeSpec:
        return NodeSpec(name, role, cc, "broadband", 50_000, 50_000, 0.0, 4.5, nat)
    topo = Topology(seed=0, bitrate_kbps=1000, nodes=(
        n("b", "broadcaster", "DE", "public"), n("v0", "viewer", "US", "public"),
        n("v1", "viewer", "US", "eim"), n("v2", "viewer", "DE", "eim"),
        n("v3", "viewer", "US", "cgn"), n("v4", "viewer", "DE", "eim")))
    path = tmp_path / "topo.json"
    path.write_text(topo.dumps())
    r = _finished(subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "testbed.py"), "--topology", str(path), "--duration", "20",
         "--rebind-at", "12", "--rebind", "1", "--json"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True), 240)
    natted = {k: r["by_nat"][k] for k in ("eim", "cgn")}
    learnt: dict[str, int] = {}
    for kind, f in natted.items():
        # every NATed viewer got the stream from peers
        assert f["with_neighbours"] == f["viewers"], (kind, f)
        assert f["bytes"]["p2p"] > 0, (kind, f)
        for k, c in f["mapping_learnt"].items():
            learnt[k] = learnt.get(k, 0) + c
    # they learnt an endpoint-independent mapping, and none was taken for symmetric; on a
    # loaded machine one may still lack the third observer that settles two disagreeing
    # reports (a punched flow's remapped port, or the rebinding below) when the run ends
    total = sum(f["viewers"] for f in natted.values())
    assert "symmetric" not in learnt and learnt.get("eim", 0) >= total - 1, natted
    # NATed viewers were introduced to each other, and the introductions were answered
    assert sum(f["punches_sent"] for f in natted.values()) > 0
    assert sum(f["punches_answered"] for f in natted.values()) > 0
    assert sum(f["punches_accepted"] for f in natted.values()) > 0
    # their announces were answered while their mapping was unknown, then listed
    assert r["tracker"]["events"]["answered_unlisted"] > 0
    # v1's home router gave it a new public port mid-run (a NAT rebinding): its peers
    # followed the new address on the same QUIC links and it kept playing
    m = r["migration"]
    assert m["rebound"] == ["v1"] and m["link_migrations"] >= 1, m
    assert m["gap_s"]["v1"] is not None and m["gap_s"]["v1"] < 5.0, m


def test_longest_gap_counts_chunks_that_missed_their_time() -> None:
    produced = {i: 100.0 + i * 0.1 for i in range(50)}
    on_time = set(range(50)) - {10, 11, 12, 30, 40, 41}
    assert runner.longest_gap(on_time, produced, 100.0, 105.0) == 3
    assert runner.longest_gap(on_time, produced, 102.0, 105.0) == 2  # 10-12 before the window
    assert runner.longest_gap(set(range(50)), produced, 100.0, 105.0) == 0
