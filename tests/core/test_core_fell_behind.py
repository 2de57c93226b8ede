"""A viewer that fell behind by more than its wanting window -- its process stopped (a
laptop asleep, SIGSTOP) or its event loop blocked -- accounts for every seq it passed
over: each is played or skipped (found 2026-12-06 from outside: after a 25-s stop 215-280
seqs were neither, continuity was overstated, and the gateway's player waited on the first
of them until it left the 20-s window)."""

from __future__ import annotations

from swarmnet import SwarmNet

from oasis.core import swarm as sw

INTERVAL = 0.1


def _net() -> SwarmNet:
    net = SwarmNet(4, seed=51, config=sw.SwarmConfig(chunk_ms=100, upload_kbps=6000),
                   source_config=sw.SwarmConfig(chunk_ms=100, upload_kbps=3000))
    net.run_until(net.now + 1.0, produce_every=INTERVAL)
    keys = [net.bid.public]
    for v in net.viewers:
        net.join(v, keys[-2:])
        keys.append(v)
        net.run_until(net.now + 0.5, produce_every=INTERVAL)
    net.run_until(net.now + 10.0, produce_every=INTERVAL)
    return net


def test_every_seq_passed_over_while_stopped_is_played_or_skipped() -> None:
    net = _net()
    v = net.viewers[-1]
    node = net.nodes[v]
    window_s = node.config.window_chunks * node.config.chunk_ms / 1000
    assert not net.skipped[v] and node.start_seq is not None
    before = node.counters.skipped
    stopped_at = net.next_seq
    # stopped for longer than its window: nothing reaches it, none of its timers fire
    del net.nodes[v]
    net.run_until(net.now + window_s + 10.0, produce_every=INTERVAL)
    net.nodes[v] = node
    net.arm(v)
    net.run_until(net.now + 5.0, produce_every=INTERVAL)
    woke_upto = net.next_seq - 20  # (the last 2 s may still be on their way)
    got, skipped = net.delivered[v], set(net.skipped[v])
    neither = [s for s in range(node.start_seq, woke_upto) if s not in got and s not in skipped]
    assert neither == [], (len(neither), neither[:5])  # was: ~100 seqs of the 40-s stop
    assert node.counters.skipped - before >= (woke_upto - stopped_at) - 2 * node.config.window_chunks
    assert not node.repair.wants or min(node.repair.wants) > stopped_at


def test_a_viewer_that_keeps_up_passes_nothing_over() -> None:
    # the rule is for a node that fell behind: one that keeps up skips nothing by it
    net = _net()
    net.run_until(net.now + 40.0, produce_every=INTERVAL)
    for v in net.viewers:
        assert net.nodes[v].counters.skipped == 0 and not net.skipped[v], v.hex()[:6]
