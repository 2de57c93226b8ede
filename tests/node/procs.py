"""Start and stop real oasis processes on loopback for integration tests."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from oasis.demo import die_with_parent


class OasisProcess:
    def __init__(self, args: list[str], log_path: str, env: dict[str, str] | None = None,
                 stdin: bytes | None = None) -> None:
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.log_path = log_path
        self.popen = subprocess.Popen([sys.executable, "-m", "oasis", *args], stdout=subprocess.PIPE,
                                      stderr=self.log,
                                      stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                      start_new_session=True, env={**os.environ, **(env or {})},
                                      preexec_fn=die_with_parent,
                                      bufsize=0)  # unbuffered: select() sees every line
        self.info: dict[str, Any] = {}
        if stdin is not None:  # given whole, then closed (``oasis watch -`` reads its link there)
            assert self.popen.stdin is not None
            self.popen.stdin.write(stdin)
            self.popen.stdin.close()

    def wait_info(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait (bounded) for the JSON line the process prints when it is up."""
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no start line within {timeout}s")
        line = self.popen.stdout.readline()
        if not line:
            # what it said on its way out, so a failure says why (a flake included)
            with open(self.log_path, "rb") as f:
                tail = f.read()[-1500:].decode("utf-8", "replace")
            raise RuntimeError(f"process exited early with {self.popen.poll()}; its log ends: {tail}")
        self.info = json.loads(line)
        return self.info

    def stop(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if self.popen.stdout:
            self.popen.stdout.close()
        self.log.close()
        return self.popen.returncode


def start_broadcaster(tmp_path: Any, procs: list[OasisProcess], bitrate: int = 800) -> OasisProcess:
    """``oasis broadcast test`` in ``tmp_path/b``, added to ``procs`` (the test stops them);
    its start line read (``.info``)."""
    b = OasisProcess(["broadcast", "test", "--json", "--bitrate", str(bitrate), "--data-dir", str(tmp_path / "b")],
                     str(tmp_path / "b.log"))
    procs.append(b)
    b.wait_info()
    return b


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port free now (``kind``: SOCK_DGRAM for a node's --listen, SOCK_STREAM for
    --http): for a process that must come back on the same ports after a restart."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float, interval: float = 0.2) -> None:
    """Poll a condition with a bounded deadline (the condition itself does I/O)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(interval)


async def until(predicate: Any, timeout: float, interval: float = 0.02,
                what: str = "condition") -> None:
    """Wait (bounded) for a condition the event loop makes true (in-process nodes) and
    that has no event of its own; where there is one (a future), await it instead."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout:g} s")
        await asyncio.sleep(interval)


def udp_receiver() -> socket.socket:
    """A non-blocking UDP socket on 127.0.0.1 (any port), to catch what a node sends."""
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))
    r.setblocking(False)
    return r


async def drain(r: socket.socket, n: int, timeout: float = 5.0) -> list[bytes]:
    """Read datagrams from ``r`` until ``n`` have come (bounded by ``timeout``)."""
    got: list[bytes] = []

    def read() -> bool:
        while True:
            try:
                got.append(r.recv(65536))
            except BlockingIOError:
                return len(got) >= n

    await until(read, timeout)
    return got


async def serve(app: Any) -> tuple[Any, str]:
    """Run an aiohttp application on 127.0.0.1 (any port): (runner, base URL)."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def produce(node: Any, src: Any, sid: Any, *, period: float = 0.1, size: int = 2500,
            gop: int = 10) -> _Producing:
    """Start publishing signed test chunks on ``src`` (the broadcaster ``node``'s
    LiveStream of ``sid``): one every ``period`` s on the event loop's timer -- the media
    clock -- a keyframe every ``gop``. Returns the pending timer; ``stop_producing`` ends it."""
    from oasis.core.stream import sign_chunk

    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"seq": 0}

    def tick() -> None:
        seq = state["seq"]
        chunk = sign_chunk(node.identity, sid, seq, int(time.time() * 1e6), seq % gop == 0, b"\x47" * size)
        src.swarm.publish(chunk, time.time())
        src.pump()
        state["seq"] = seq + 1
        state["handle"] = loop.call_later(period, tick)

    state["handle"] = loop.call_later(0.0, tick)
    return _Producing(state)


class _Producing:
    """The running producer: ``cancel()`` stops its timer (whichever tick is pending)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def cancel(self) -> None:
        self.state["handle"].cancel()


def stderr_lines_until(p: subprocess.Popen[bytes], pattern: str, timeout: float) -> list[str]:
    """stderr lines of ``p`` up to the first that matches the regex ``pattern`` (bounded by
    ``timeout``); TimeoutError or RuntimeError (the process ended) with the last lines."""
    import re

    assert p.stderr is not None
    seen: list[str] = []
    end = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([p.stderr], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            raise TimeoutError(f"no line matching {pattern!r} within {timeout} s: {seen[-5:]}")
        raw = p.stderr.readline()
        if not raw:
            raise RuntimeError(f"exited with {p.poll()} before {pattern!r}: {seen[-10:]}")
        seen.append(raw.decode().rstrip("\n"))
        if re.search(pattern, seen[-1]):
            return seen


def chunks_received(node: Any) -> list[Any]:
    """The chunks an in-process ``Node``'s links will receive from now on (appended as
    they come): its endpoint's event handler wrapped."""
    from oasis.core import session as ss

    got: list[Any] = []
    on_event = node.endpoint.on_event

    def record(link: Any, ev: Any) -> None:
        if isinstance(ev, ss.ChunkReceived):
            got.append(ev.chunk)
        on_event(link, ev)

    node.endpoint.on_event = record
    return got


def ts_clip(seconds: float, fps: int = 10) -> bytes:
    """``seconds`` of real MPEG-TS (H.264 + AAC, with PCRs, 160x96), encoded as fast as it goes."""
    from oasis.media.testsource import TestSource

    src = TestSource(200, width=160, height=96, fps=fps)
    frames = [src.next_frame_ts(1_700_000_000.0 + n / fps) for n in range(round(seconds * fps))]
    return b"".join(frames) + src.close()
