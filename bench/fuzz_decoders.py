"""Benchmark: a million hostile inputs into every decoder that faces a peer.

    nice -n 10 .venv/bin/python bench/fuzz_decoders.py            # 10^6 inputs per target
    .venv/bin/python bench/fuzz_decoders.py --n 20000 --targets decode_control,session_preauth

Targets: ``decode_control``, ``decode_chunk``, ``frame_reader`` (pieces of a byte
stream), ``session_preauth`` (a listener's Session before authentication: control
bytes, control FIN, chunk streams), ``session_authed`` (the same after the
handshake) and ``ts_chunker`` (TsChunker.feed/flush). Inputs are mutations of
valid encodings (bit flips, byte changes, insertions, deletions, truncation,
splices of two messages, headers announcing huge lengths, nesting bombs up to
60,000 deep) plus uniformly random bytes. The recursion limit is raised first,
as importing the web3 stack does in a node (a nesting bomb once segfaulted
msgspec in exactly that setting).

For each target: inputs, how many were accepted, refused with the coded error
(WireError; TsError does not count for the chunker, which must not raise at
all), and every other exception by type (must be zero), with the first
offending input in hex. Also: RSS before and after (from /proc/self/statm), peak
RSS and the load average. Progress goes to stderr; one JSON object to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable

from oasis.core import session as ss
from oasis.core import wire
from oasis.core.identity import Identity
from oasis.core.stream import StreamId, sign_chunk
from oasis.media.chunker import TsChunker

PAGE = os.sysconf("SC_PAGE_SIZE")
HUGE_HEADERS = [b"\xdd\xff\xff\xff\xff", b"\xdc\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
                b"\xdf\xff\xff\xff\xff", b"\xc5\xff\xff", b"\xd9\xff", b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
                b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", b"\xc7\xff\x01", b"\xc9\xff\xff\xff\xff\x01"]


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Mutator:
    def __init__(self, rng: random.Random, seeds: list[bytes]) -> None:
        self.rng = rng
        self.seeds = seeds

    def bomb(self) -> bytes:
        depth = self.rng.choice([100, 1000, 3000, 40_000, 60_000])
        head = self.rng.choice([b"\x91", b"\xdc\x00\x01", b"\x81\x01", b"\x92\x0b"])
        return head * depth + b"\x01"

    def __call__(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.15:
            return rng.randbytes(rng.randrange(0, 300))
        if r < 0.17:
            return self.bomb()
        data = bytearray(rng.choice(self.seeds))
        for _ in range(rng.randint(1, 5)):
            op = rng.randrange(9)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[pos % len(data)] ^= 1 << rng.randrange(8)
            elif op == 1 and data:
                data[pos % len(data)] = rng.randrange(256)
            elif op == 2:
                data[pos:pos] = rng.randbytes(rng.randint(1, 8))
            elif op == 3:
                del data[pos : pos + rng.randint(1, 16)]
            elif op == 4:
                del data[pos:]
            elif op == 5:
                other = rng.choice(self.seeds)
                data[pos:] = other[rng.randrange(len(other) + 1):]
            elif op == 6:
                data[pos:pos] = rng.choice(HUGE_HEADERS)
            elif op == 7 and len(data) > 1:  # duplicate a slice (repeated fields/packets)
                a = rng.randrange(len(data))
                data[pos:pos] = data[a : a + rng.randint(1, 200)]
            elif op == 8 and rng.random() < 0.05:
                data[pos:pos] = self.bomb()
        return bytes(data)


def framed(rng: random.Random, body: bytes) -> bytes:
    r = rng.random()
    if r < 0.8:
        return len(body).to_bytes(4, "big") + body
    if r < 0.9:
        return rng.randrange(1 << 32).to_bytes(4, "big") + body
    return body


class Target:
    """Runs inputs, counts outcomes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inputs = 0
        self.accepted = 0
        self.coded = 0
        self.other: Counter[str] = Counter()
        self.first_other: dict[str, str] = {}

    def run(self, fn: Callable[[bytes], object], data: bytes) -> None:
        self.inputs += 1
        try:
            fn(data)
        except wire.WireError:
            self.coded += 1
        except Exception as exc:  # noqa: BLE001 - counting exactly these is the point
            name = type(exc).__name__
            self.other[name] += 1
            self.first_other.setdefault(name, f"{exc!r:.200} input={data[:64].hex()} len={len(data)}")
        else:
            self.accepted += 1

    def report(self, seconds: float) -> dict[str, object]:
        return {"inputs": self.inputs, "accepted": self.accepted, "coded_errors": self.coded,
                "other_exceptions": sum(self.other.values()), "by_type": dict(self.other),
                "first_by_type": self.first_other, "seconds": round(seconds, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000, help="inputs per target")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--recursion-limit", type=int, default=100_000)
    ap.add_argument("--targets", default="decode_control,decode_chunk,frame_reader,session_preauth,"
                                         "session_authed,ts_chunker")
    args = ap.parse_args()
    sys.setrecursionlimit(args.recursion_limit)
    rng = random.Random(args.seed)
    alice = Identity.from_private_bytes(rng.randbytes(32))
    bob = Identity.from_private_bytes(rng.randbytes(32))
    sid = StreamId(alice.public, "live")
    control_seeds = [wire.encode(m) for m in _samples(alice, sid)]
    chunk_seeds = [wire.encode(sign_chunk(alice, sid, i, i * 1000, i == 0, rng.randbytes(n)))
                   for i, n in enumerate((0, 10, 1000, 20_000))]
    mut = Mutator(rng, control_seeds + chunk_seeds)

    # -- session factories ---------------------------------------------------
    def new_pair() -> tuple[ss.Session, ss.Session]:
        a = ss.Session(alice, True, expected_key=bob.public, rng=random.Random(rng.random()))
        b = ss.Session(bob, False, rng=random.Random(rng.random()))
        return a, b

    def fresh() -> ss.Session:
        _, b = new_pair()
        b.begin(0.0)
        return b

    def authed() -> ss.Session:
        a, b = new_pair()
        a.start(0.0)
        b.start(0.0)
        for _ in range(2):
            for x, y in ((a, b), (b, a)):
                for act in x.actions():
                    if isinstance(act, ss.SendControl):
                        y.receive_control(act.data, 0.0)
        assert b.authenticated
        b.actions()
        while b.next_event() is not None:
            pass
        return b

    state: dict[str, ss.Session] = {}
    stream_ids = iter(range(3, 1 << 62, 4))
    session_stats: dict[str, Counter[str]] = {"pre": Counter(), "post": Counter()}

    def session_input(kind: str, factory: Callable[[], ss.Session]) -> Callable[[bytes], None]:
        stats = session_stats[kind]

        def feed(data: bytes) -> None:
            s = state.get(kind)
            if s is None or s.closed:
                s = state[kind] = factory()
                stats["sessions"] += 1
            r = rng.random()
            if r < 0.6:
                s.receive_control(framed(rng, data), 1.0, end=rng.random() < 0.02)
            elif r < 0.65:
                cut = rng.randrange(len(data) + 1)
                s.receive_control(framed(rng, data)[:cut], 1.0, end=True)
            else:
                sid_ = next(stream_ids) if rng.random() < 0.7 else rng.randrange(1 << 62)
                s.receive_chunk_stream(sid_, data, rng.random() < 0.8, 1.0)
                if rng.random() < 0.05:
                    s.chunk_stream_reset(sid_)
            s.handle_timer(1.0 + rng.random() * 10)
            for act in s.actions():
                if isinstance(act, ss.StopChunkStream):
                    stats["chunk_streams_stopped"] += 1
            while (ev := s.next_event()) is not None:
                if isinstance(ev, ss.Violation):
                    stats["violations"] += 1
                elif isinstance(ev, ss.Closed):
                    stats[f"closed_{ev.code.name}"] += 1
                elif isinstance(ev, (ss.MessageReceived, ss.ChunkReceived)):
                    stats[type(ev).__name__] += 1
            stats["max_chunk_bytes_buffered"] = max(stats["max_chunk_bytes_buffered"],
                                                    s.counters.chunk_bytes_buffered)
        return feed

    reader = [wire.FrameReader()]

    def reader_feed(data: bytes) -> None:
        try:
            for body in reader[0].feed(framed(rng, data)):
                wire.decode_control(body)
        except wire.WireError:
            reader[0] = wire.FrameReader()
            raise

    ts_seed = _ts_sample()
    ts_mut = Mutator(rng, [ts_seed[i : i + 188 * 20] for i in range(0, len(ts_seed) - 188 * 20, 188 * 7)])
    chunker = [TsChunker(chunk_ms=100, max_chunk_bytes=64 * 1024), 0.0]

    def chunker_feed(data: bytes) -> None:
        c = chunker[0]
        assert isinstance(c, TsChunker)
        chunker[1] = float(chunker[1]) + rng.random() * 0.05
        c.feed(data, float(chunker[1]))
        if rng.random() < 0.01:
            c.flush(float(chunker[1]))

    targets: dict[str, tuple[Callable[[bytes], object], Callable[[], bytes]]] = {
        "decode_control": (wire.decode_control, mut),
        "decode_chunk": (wire.decode_chunk, mut),
        "frame_reader": (reader_feed, mut),
        "session_preauth": (session_input("pre", fresh), mut),
        "session_authed": (session_input("post", authed), mut),
        "ts_chunker": (chunker_feed, lambda: ts_mut() if rng.random() < 0.9 else rng.randbytes(400)),
    }
    names = [t for t in args.targets.split(",") if t]
    out: dict[str, object] = {"n": args.n, "seed": args.seed, "recursion_limit": args.recursion_limit,
                              "rss_before_mb": round(rss() / 2**20, 1)}
    t_all = time.monotonic()
    for name in names:
        fn, gen = targets[name]
        t = Target(name)
        t0 = time.monotonic()
        step = max(1, args.n // 10)
        for i in range(args.n):
            t.run(fn, gen())
            if (i + 1) % step == 0:
                print(f"{name}: {i + 1}/{args.n} other={sum(t.other.values())} rss={rss() / 2**20:.1f} MB "
                      f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        res = t.report(time.monotonic() - t0)
        res["rss_after_mb"] = round(rss() / 2**20, 1)
        if name.startswith("session_"):
            res["session"] = dict(sorted(session_stats["pre" if name == "session_preauth" else "post"].items()))
        out[name] = res
    out["rss_after_mb"] = round(rss() / 2**20, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["other_exceptions_total"] = sum(int(out[n]["other_exceptions"]) for n in names)  # type: ignore[index]
    out["bench"] = {"wall_s": round(time.monotonic() - t_all, 1), "cores": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2), "python": sys.version.split()[0]}
    print(json.dumps(out))
    return 0


def _samples(alice: Identity, sid: StreamId) -> list[wire.Message]:
    sk = sid.key
    return [
        wire.Hello(versions=[1, 2], key=alice.public, nonce=b"n" * 16, agent="oasis/0.1"),
        wire.Auth(version=1, signature=b"s" * 64),
        wire.Join(stream=str(sid)), wire.Leave(stream=sk),
        wire.Status(stream=sk, latest=99, have=7, keyframe=90, slots=3, paths=[[b"t" * 8] * 4] * 4,
                    lags=[10, 20, 30, wire.LAG_UNKNOWN]),
        wire.Subscribe(stream=sk, mask=5, substreams=4), wire.SubscribeAck(stream=sk, accepted=1, rejected=4),
        wire.Unsubscribe(stream=sk, mask=1), wire.Request(stream=sk, seq=5), wire.Missing(stream=sk, seq=5),
        wire.Goodbye(code=13, reason="bye"), wire.Error(code=1, reason="bad"),
        wire.WalletBind(binding=b"b" * 181), wire.TicketMsg(ticket=b"t" * 200), wire.ReceiptMsg(receipt=b"r" * 138),
    ]


def _ts_sample() -> bytes:
    from oasis.media.testsource import TestSource

    src = TestSource(300, width=160, height=96, fps=10)
    data = b"".join(src.next_frame_ts(1_700_000_000.0 + n / 10) for n in range(20))
    return data + src.close()


if __name__ == "__main__":
    raise SystemExit(main())
