"""The simulator side's one executor of a swarm core's actions.

A :class:`oasis.core.swarm.Swarm` says what it wants done as actions
(``Send``, ``Push``, ``FetchOrigin``, ``Deliver``, ``Skip``, ``DropPeer``) and
when it wants to be woken (``get_timer``). The node executes them in
``oasis.node.node.LiveStream.pump``; everything that runs cores in virtual time
executes them here, with :func:`execute`: the simulator's engine
(``oasis.sim.oasis_run.OasisSim``, its link model) and the test harness
``tests/core/swarmnet.py`` (a fixed one-way delay). What differs between them is
only the network, the object whose methods carry out each kind of action
(:class:`Network`); which action goes where, in which order, and that the
node's timer is armed after every batch, is decided here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from oasis.core import swarm as sw

N = TypeVar("N")
N_contra = TypeVar("N_contra", contravariant=True)

class Network(Protocol[N_contra]):
    """Where a swarm's actions take effect; ``node`` is the network's handle of the
    swarm (a simulated node, a key). Each method gets the action itself."""

    def actions(self, node: N_contra) -> Iterable[sw.SwarmAction]:
        """Drain the node's swarm (``swarm.actions()``; a hook to record or filter)."""
        ...

    def send(self, node: N_contra, a: sw.Send) -> None:
        """A control message to ``a.peer`` over the link to it (none: dropped)."""
        ...

    def push(self, node: N_contra, a: sw.Push) -> None:
        """A chunk to ``a.peer`` over the link to it (none: dropped)."""
        ...

    def deliver(self, node: N_contra, a: sw.Deliver) -> None:
        """A chunk is the viewer's (record it, play it)."""
        ...

    def skip(self, node: N_contra, a: sw.Skip) -> None:
        """A chunk the viewer will not get."""
        ...

    def fetch_origin(self, node: N_contra, a: sw.FetchOrigin) -> None:
        """Ask the HTTP origin for ``a.seq`` (``ORIGIN_LATEST``: its latest keyframe, then
        that chunk); the answer (or None at ``a.deadline``) goes to ``swarm.on_origin``."""
        ...

    def drop_peer(self, node: N_contra, a: sw.DropPeer) -> bool:
        """The swarm gives up on ``a.peer``: True when the node's policy now has
        verdicts to execute (:meth:`run_policy`, once after the batch)."""
        ...

    def run_policy(self, node: N_contra) -> None:
        """Execute the policy's verdicts after a ``drop_peer`` asked for it."""
        ...

    def arm(self, node: N_contra) -> None:
        """Wake the swarm at ``swarm.get_timer()`` (after every batch)."""
        ...


#: the kinds of action and the network's method for each
METHODS: dict[type, str] = {sw.Push: "push", sw.Send: "send", sw.Deliver: "deliver",
                            sw.Skip: "skip", sw.FetchOrigin: "fetch_origin",
                            sw.DropPeer: "drop_peer"}


class _Table(dict[type, Callable[..., "bool | None"]]):
    """Action type -> the network class's (unbound) method for it: one look-up per
    action instead of a chain of isinstance tests (this module runs interpreted,
    called by the compiled engine for every batch of every node)."""

    def __missing__(self, kind: type) -> Callable[..., bool | None]:
        raise TypeError(f"unknown swarm action {kind.__name__}")


_tables: dict[type, _Table] = {}  #: network class -> its table


def _table(cls: type) -> _Table:
    table = _tables[cls] = _Table({kind: getattr(cls, name) for kind, name in METHODS.items()})
    return table


def execute(net: Network[N], node: N) -> None:
    """Drain ``node``'s actions and carry each out on ``net``, in the order the
    core emitted them; then the policy's verdicts (if a DropPeer asked for them)
    and the node's timer."""
    table = _tables.get(type(net)) or _table(type(net))
    policy = False
    for a in net.actions(node):
        if table[type(a)](net, node, a):  # only drop_peer returns a value
            policy = True
    if policy:
        net.run_policy(node)
    net.arm(node)
