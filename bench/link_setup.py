"""Benchmark: how many round trips a new OFTP link costs (issue 9, the simulator's hop model).

Two real :class:`~oasis.node.transport.Endpoint` s in one process on loopback, each with
an egress delay of ``--delay-ms`` (``link_delay``: the RTT is twice it). The dialler dials
the listener ``--dials`` times, one after the other, and we time each dial until the
dialler's session is authenticated (``Link.handshake_done``: QUIC's handshake, then
HELLO/AUTH), and until the listener's is (its ``Authenticated`` event: the dialler's AUTH
has arrived). Printed, one JSON line per listener setting: the p50/max in ms and in RTTs,
the listener's p50, and the Retries the listener sent.

    python bench/link_setup.py --delay-ms 40 --dials 15
    python bench/link_setup.py --dialler aioquic --listener qh3

The listener's stateless Retry (``Endpoint(retry=True)``, the default) costs the dialler one
RTT: on 2026-12-04 3.09 RTT with it, 2.06 without (40 ms each way); the listener half an RTT
after the dialler (3.61 and 2.59 RTT). ``--no-retry`` also runs without the Retry; that is not
a node default: a qh3 listener that skips the Retry fails an aioquic
dialler's handshake ("packet builder capacity exhausted", see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

import uvloop

from oasis.core import session as ss
from oasis.core.identity import Identity
from oasis.node.transport import Endpoint


async def run(delay_ms: float, dials: int, retry: bool, dialler: str | None,
              listener: str | None, timeout: float) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    a_id, b_id = Identity.generate(), Identity.generate()
    authed: asyncio.Future[float] = loop.create_future()

    def on_listener(link: object, ev: ss.Event) -> None:
        if isinstance(ev, ss.Authenticated) and not authed.done():
            authed.set_result(loop.time())

    a = Endpoint(a_id, on_event=lambda link, ev: None, clock=loop.time, link_delay=delay_ms / 1000,
                 quic=dialler)
    b = Endpoint(b_id, on_event=on_listener, clock=loop.time, link_delay=delay_ms / 1000,
                 quic=listener, retry=retry)
    times: list[float] = []
    listener_times: list[float] = []
    failed: list[str] = []
    try:
        await a.listen("127.0.0.1", 0)
        _, port = await b.listen("127.0.0.1", 0)
        for _ in range(dials):
            authed = loop.create_future()
            t0 = loop.time()
            link = a.dial(("127.0.0.1", port), b_id.public)
            try:
                await asyncio.wait_for(asyncio.shield(link.handshake_done), timeout)
            except (TimeoutError, ConnectionError) as exc:
                failed.append(str(exc)[:120] or type(exc).__name__)
                continue
            times.append(loop.time() - t0)
            try:  # the dialler's AUTH reaches the listener after that
                listener_times.append(await asyncio.wait_for(authed, timeout) - t0)
            except TimeoutError:
                failed.append("the listener never authenticated")
    finally:
        a.close()
        b.close()
    rtt = 2 * delay_ms / 1000
    out: dict[str, object] = {"delay_ms": delay_ms, "rtt_ms": 2 * delay_ms, "retry": retry,
                              "dialler": a.stack.name, "listener": b.stack.name,
                              "dials": dials, "ok": len(times), "failed": len(failed),
                              "retry_sent": b.counters["retry_sent"]}
    if times:
        out |= {"ms_p50": round(statistics.median(times) * 1000, 1),
                "ms_max": round(max(times) * 1000, 1),
                "rtts_p50": round(statistics.median(times) / rtt, 2) if rtt else None}
    if listener_times:
        med = statistics.median(listener_times)
        out |= {"listener_ms_p50": round(med * 1000, 1),
                "listener_rtts_p50": round(med / rtt, 2) if rtt else None}
    if failed:
        out["first_failure"] = failed[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay-ms", type=float, default=40.0, help="egress delay of each side")
    ap.add_argument("--dials", type=int, default=15)
    ap.add_argument("--dialler", choices=("qh3", "aioquic"), default=None)
    ap.add_argument("--listener", choices=("qh3", "aioquic"), default=None)
    ap.add_argument("--no-retry", action="store_true", help="also run with the listener's Retry off")
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args()
    for retry in (True, False) if a.no_retry else (True,):
        res = uvloop.run(run(a.delay_ms, a.dials, retry, a.dialler, a.listener, a.timeout))
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
