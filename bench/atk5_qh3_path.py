"""qh3 (the default stack) and a forged source address, in memory (docs/oftp.md §14.4).

Two real QUIC connections of the stack (``--quic``, through ``oasis.node.quicstack``), a
dialler and a listener, with datagrams handed over by hand. After the handshake the
dialler's packets reach the listener with a forged source address ``V`` (a victim's),
while the dialler still receives what the listener sends to its own address, as an
attacker forging its source on a network without ingress filtering would. The listener
has stream data to send meanwhile (a node always has: STATUS, pushes). Printed: whether
the listener's validated path (``Stack.path``, what the node counts the link at) moved to
``V``, the path events of qh3's core, what the listener sent to each address, and the
errors its ``datagrams_to_send`` raised (the node takes one as the end of the link).

Found 2026-12-03 (qh3 2.1.0): the path to V is *validated* though nothing sent to V ever
reached the dialler, so the per-address cap counts the link at the victim's address; and
until then polls fail with "packet builder capacity exhausted".

PYTHONPATH=. python bench/atk5_qh3_path.py [--quic qh3|aioquic] [--rounds 60]
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from oasis.core.identity import Identity
from oasis.node.quicstack import make_stack

CA, SA, V = ("10.0.0.1", 1000), ("10.0.0.2", 2000), ("10.0.0.9", 9999)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quic", default="qh3", choices=("qh3", "aioquic"))
    ap.add_argument("--rounds", type=int, default=60)
    a = ap.parse_args()
    st = make_stack(a.quic)
    kw = {"mds": 1350, "max_data": 2 << 20, "max_stream_data": 1 << 20}
    c = st.dialler(st.config(Identity.generate(), is_client=True, **kw))
    scfg = st.config(Identity.generate(), is_client=False, **kw)
    now = 1.0
    c.connect(SA, now)
    s: Any = None
    events: list[str] = []
    errors: list[str] = []
    sent_to: dict[str, int] = {}

    class Tap:  # qh3: record its core's path events (its Python wrapper drops them)
        def __init__(self, core: Any) -> None:
            self.core = core

        def __getattr__(self, n: str) -> Any:
            return getattr(self.core, n)

        def next_event(self) -> Any:
            e = self.core.next_event()
            if e is not None and e[0] in ("peer_migration", "path_validated"):
                events.append(f"{e[0]} -> active {self.core.active_path[2]}")
            return e

    def timers(q: Any) -> None:
        t = q.get_timer()
        if t is not None and t <= now:
            q.handle_timer(now)

    def pump(src: tuple[str, int], rounds: int) -> None:
        nonlocal s, now
        for _ in range(rounds):
            now += 0.01
            timers(c)
            for d, _to in c.datagrams_to_send(now=now):
                if s is None:
                    s = st.listener(scfg, st.header(d).destination_cid, None)
                s.receive_datagram(d, src, now)
                if a.quic == "qh3" and s._core is not None and not isinstance(s._core, Tap):
                    s._core = Tap(s._core)
            if s is None:
                continue
            try:
                timers(s)
                out = s.datagrams_to_send(now=now)
            except st.errors as exc:
                errors.append(str(exc)[:80])
                out = []
            for d, to in out:
                sent_to[str(tuple(to)[:2])] = sent_to.get(str(tuple(to)[:2]), 0) + 1
                if tuple(to)[:2] == CA:  # the forger hears only its own address
                    c.receive_datagram(d, SA, now)
            while s.next_event() is not None:
                pass
            while c.next_event() is not None:
                pass

    pump(CA, 100)
    before = st.path(s)
    sent_to.clear()
    for i in range(a.rounds):
        c.send_ping(i)  # a non-probing packet, from the forged address
        pump(V, 3)
        if i % 4 == 0:
            sid = s.get_next_available_stream_id(is_unidirectional=True)
            s.send_stream_data(sid, b"z" * 5000, end_stream=True)
    after = st.path(s)
    print(json.dumps({"quic": a.quic, "path_before": list(before or ()), "path_after": list(after or ()),
                      "moved_to_forged_address": after is not None and tuple(after)[:2] == V,
                      "core_path_events": events, "sent_to": sent_to, "poll_errors": len(errors),
                      "poll_error_first": errors[0] if errors else None}, sort_keys=True))


if __name__ == "__main__":
    main()
