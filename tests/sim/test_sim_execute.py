"""The simulator side's one executor of swarm actions (oasis/sim/execute.py): every
action goes to its network method in the order the core emitted it; the policy runs
once after a DropPeer asked for it; the timer is armed after every batch."""

from __future__ import annotations

import pytest

from oasis.core import swarm as sw
from oasis.core import wire
from oasis.core.wire import ErrorCode
from oasis.sim.execute import execute


class LogNet:
    """A network that records what the executor asks of it."""

    def __init__(self, acts: list, drop_needs_policy: bool = True) -> None:
        self.acts = acts
        self.drop_needs_policy = drop_needs_policy
        self.log: list[tuple[str, object]] = []

    def actions(self, node: str) -> list:
        out, self.acts = self.acts, []
        return out

    def send(self, node: str, a: sw.Send) -> None:
        self.log.append(("send", a))

    def push(self, node: str, a: sw.Push) -> None:
        self.log.append(("push", a))

    def deliver(self, node: str, a: sw.Deliver) -> None:
        self.log.append(("deliver", a))

    def skip(self, node: str, a: sw.Skip) -> None:
        self.log.append(("skip", a))

    def fetch_origin(self, node: str, a: sw.FetchOrigin) -> None:
        self.log.append(("fetch_origin", a))

    def drop_peer(self, node: str, a: sw.DropPeer) -> bool:
        self.log.append(("drop_peer", a))
        return self.drop_needs_policy

    def run_policy(self, node: str) -> None:
        self.log.append(("run_policy", node))

    def arm(self, node: str) -> None:
        self.log.append(("arm", node))


def _chunk(seq: int) -> wire.ChunkMsg:
    return wire.ChunkMsg(stream=b"s" * 32, seq=seq, time_us=seq, flags=0, signature=b"\0" * 64,
                         payload=b"x")


def test_each_action_to_its_method_in_order_then_policy_once_then_timer() -> None:
    c = _chunk(3)
    acts = [sw.Push(b"p", c, 1.0), sw.Send(b"q", wire.Missing(stream=b"s" * 32, seq=3)),
            sw.DropPeer(b"q", ErrorCode.BAD_CHUNK, "bad"), sw.Deliver(c, sw.SOURCE_P2P, b"p", 2.0),
            sw.Skip(4), sw.FetchOrigin(5, 3.0), sw.DropPeer(b"r", ErrorCode.TOO_MANY_ERRORS, "x")]
    net = LogNet(list(acts))
    execute(net, "n1")
    assert [k for k, _ in net.log] == ["push", "send", "drop_peer", "deliver", "skip", "fetch_origin",
                                       "drop_peer", "run_policy", "arm"]
    assert [a for _, a in net.log[:7]] == acts
    assert net.log[-2:] == [("run_policy", "n1"), ("arm", "n1")]


def test_no_policy_run_unless_a_drop_asks_for_it_and_the_timer_even_for_no_action() -> None:
    net = LogNet([sw.DropPeer(b"q", ErrorCode.BAD_CHUNK, "bad")], drop_needs_policy=False)
    execute(net, "n")
    assert [k for k, _ in net.log] == ["drop_peer", "arm"]
    net.log.clear()
    execute(net, "n")
    assert net.log == [("arm", "n")]


def test_an_unknown_action_is_an_error() -> None:
    net = LogNet([object()])
    with pytest.raises(TypeError, match="unknown swarm action"):
        execute(net, "n")
