"""``oasis publish FILE`` and ``oasis get CID|LINK``: a node that seeds or fetches one file.

Both print JSON lines on stdout (the first as soon as the gateway listens, so a player can
open ``url`` while the file downloads; on stderr when ``get -o -`` writes the file to stdout). On stderr, :class:`Progress`: a line at most every
second while ``publish`` hashes and ``get`` fetches (rewritten in place on a terminal; when
stderr is no terminal only with ``--progress``), and always a final line -- for an
interrupted ``get``, what is kept and that the same command again resumes.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import shutil
import stat
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from oasis.core import fileswarm as fs
from oasis.core import swarm as sw
from oasis.core.content import BLOCK_SIZE, safe_name
from oasis.datafiles import hold_data_dir

from . import http
from . import runtime as rt
from .files import DEFAULT_CAP, Files, parse_target
from .files_http import add_file_routes, share_link
from .keystore import load_or_create
from .node import Node
from .runtime import emit, parse_hostport, run_until_stopped, start_http, stop_event, url_host


@dataclass
class FileOptions:
    data_dir: str
    listen: str = "127.0.0.1:0"
    http_listen: str = "127.0.0.1:0"
    cap_bytes: int = DEFAULT_CAP
    origin: str | None = None
    seed: int | None = None
    upload_mbps: float = 0.0  #: serving budget per file, Mbit/s (0: the core's default, 512)
    progress: bool = False  #: progress lines on stderr even when it is not a terminal


def mb(n: float) -> str:
    """A size for a person: MB with a decimal, kB below 0.1 MB ("0.0 MB" said nothing of a
    7-kB file), bytes below 1 kB."""
    if n >= 100_000:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n:.0f} B"


class Progress:
    """Progress on ``stream`` (stderr): :meth:`update` writes a line at most every ``every``
    seconds, and only if ``stream`` is a terminal (the line rewritten in place) or ``force``
    (whole lines, for a log); :meth:`final` always writes its line. :meth:`rate` is the
    bytes per second of the last ``window`` seconds of samples."""

    def __init__(self, force: bool = False, every: float = 1.0, stream: TextIO | None = None,
                 window: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.live = self.tty or force
        self.every = every
        self.window = window
        self.started = time.monotonic()
        self._shown_at: float | None = None
        self._partial = False  #: a line rewritten in place is on the terminal
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, done: int) -> None:
        now = time.monotonic()
        self._samples.append((now, done))
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def update(self, text: str) -> None:
        now = time.monotonic()
        if not self.live or (self._shown_at is not None and now - self._shown_at < self.every):
            return
        self._shown_at = now
        self._write("\r" + text + "\x1b[K" if self.tty else text + "\n")
        self._partial = self.tty

    def final(self, text: str) -> None:
        self.clear()
        self._write(text + "\n")

    def clear(self) -> None:
        """Erase a line being rewritten in place (before another message is printed)."""
        if self._partial:
            self._write("\r\x1b[K")
            self._partial = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr gone (a closed terminal): the work goes on
            pass


async def _start(o: FileOptions, command: str) -> tuple[Node, Files, web.AppRunner, str]:
    # one node per data directory: two `get`s sharing one (the default ~/.local/share/oasis/get)
    # raced on its file store and one never finished; a live node on it has the same identity
    hold_data_dir(o.data_dir, command)
    stop_event()  # a stop signal from here on is a clean stop (it was lost while publish hashed)
    ident = load_or_create(o.data_dir)
    host, port = parse_hostport(o.listen, "--listen")
    ghost, gport = parse_hostport(o.http_listen, "--http")
    # a file node keeps no live neighbours: the policy dials nobody on its own (file swarms dial)
    node = Node(ident, sw.SwarmConfig(), host=host, port=port, rng=random.Random(o.seed), target_neighbours=0)
    try:  # a taken --listen or --http: the error, and nothing left open (the node's HTTP client)
        await node.start()
        cfg = fs.FileSwarmConfig()
        if o.upload_mbps > 0:
            rate = o.upload_mbps * 1e6 / 8
            cfg = fs.FileSwarmConfig(upload_bytes_per_s=rate, upload_burst=max(256 * 1024, rate / 4))
        files = Files(node, o.data_dir, cap_bytes=o.cap_bytes, origin_url=o.origin, config=cfg)
        node.files = files
        app = web.Application(client_max_size=64 * 1024)
        http.add_gateway_routes(app, node)
        add_file_routes(app, files)
        runner, gport = await start_http(app, ghost, gport)
    except BaseException:
        await node.close()
        raise
    gateway = f"http://{url_host(ghost)}:{gport}"
    files.gateway_url = gateway
    return node, files, runner, gateway


async def _publish_hashed(files: Files, path: str, progress: Progress) -> dict[str, Any] | None:
    """``files.publish(path)``, with a progress line while it copies and hashes the file;
    None if a stop signal came first (the copy is removed, nothing is published).
    How far it got is the size of the copy it writes (``<store>/.publish-<pid>-*/data``);
    a store that names its copies otherwise shows no fraction, only the time."""
    work = asyncio.ensure_future(files.publish(path))
    stopped = asyncio.ensure_future(stop_event().wait())
    name = safe_name(Path(path).name)
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0  # publish says why
    while True:
        done, _ = await asyncio.wait({work, stopped}, timeout=progress.every,
                                     return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            stopped.cancel()
            break
        if stopped in done:
            work.cancel()
            await asyncio.wait({work})
            progress.final(f"oasis publish: stopped while hashing {name}: nothing published")
            return None
        copied = 0
        for part in files.root.glob(f".publish-{os.getpid()}-*/data"):
            try:
                copied += part.stat().st_size
            except OSError:
                pass  # renamed into place meanwhile
        progress.sample(copied)
        took = time.monotonic() - progress.started
        if copied and size:
            progress.update(f"oasis publish: hashing {name}: {mb(copied)} of {mb(size)} "
                            f"({100 * copied // size} %), {mb(progress.rate())}/s")
        else:
            progress.update(f"oasis publish: hashing {name} ({mb(size)}): {took:.0f} s")
    info = work.result()
    took = time.monotonic() - progress.started
    progress.final(f"oasis publish: {name}: {mb(info['size'])} in {info['blocks']} blocks, hashed in "
                   f"{took:.1f} s ({mb(info['size'] / max(took, 1e-3))}/s); seeding {info['cid']}")
    return info


async def publish(o: FileOptions, path: str) -> int:
    """Publish ``path`` and seed it until stopped: 0, or 130 if stopped while hashing."""
    node, files, runner, gateway = await _start(o, "publish")
    try:
        info = await _publish_hashed(files, path, Progress(o.progress))
        if info is None:
            return 130
        link = share_link(info["cid"], (node.identity.public, node.host, node.port), gateway)
        emit(info | {"link": link, "url": f"{gateway}/files/{info['cid']}",
                     "gateway": gateway, "peer_id": node.peer_id, "oftp": f"{url_host(node.host)}:{node.port}"})

        async def main(stop: asyncio.Event) -> None:
            await stop.wait()

        await run_until_stopped(main)
        return 0
    finally:
        await node.close()
        await runner.cleanup()


def output_kind(out: str | None) -> str:
    """What ``-o`` names: ``"file"`` (a regular file, or none yet: written beside and renamed
    into place), ``"stdout"`` (``-``, or a pipe or terminal that is this process's stdout),
    ``"stream"`` (another pipe, a terminal or a character device: written into as it reads)."""
    if out is None:
        return "file"
    if out == "-":
        return "stdout"
    try:
        st = os.stat(out)
    except OSError:
        return "file"
    if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        return "file"
    try:
        mine = os.fstat(1)
    except OSError:
        return "stream"
    return "stdout" if (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino) else "stream"


def check_output(out: str | None) -> None:
    """``-o``: a file in a directory that exists (not a directory itself), ``-`` (stdout), a
    pipe or a character device; never a block device (a disk) or a socket."""
    if out is None or out == "-":
        return
    p = Path(out)
    if p.is_dir():
        raise ValueError(f"-o {out}: is a directory (give the file's path)")
    try:
        mode = os.stat(out).st_mode
    except OSError:
        mode = 0
    if stat.S_ISBLK(mode):
        raise ValueError(f"-o {out}: is a block device (a disk: not written by oasis get)")
    if stat.S_ISSOCK(mode):
        raise ValueError(f"-o {out}: is a socket")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"-o {out}: no directory {parent}")


def default_output(name: str, cid: str, folder: Path = Path(".")) -> Path:
    """Where a fetched file goes without ``-o``: the name its publisher gave it (a display
    name: the last path component, printable), never hidden (no leading dot: a publisher
    must not be able to drop a ``.bashrc`` or ``.profile`` here) and never over an existing
    file (``clip (1).mp4``, ...); the content id when nothing of the name is left."""
    base = safe_name(name).lstrip(". ") or cid
    stem, dot, ext = base.rpartition(".")
    if not stem:
        stem, dot, ext = base, "", ""
    if len(ext.encode()) > 16:  # no extension, only a dot in the name
        stem, dot, ext = base, "", ""
    for i in range(1000):
        tail = f"{'' if i == 0 else f' ({i})'}{dot}{ext}"
        cand = folder / (_fit(stem, NAME_MAX - len(tail.encode())) + tail)
        if not cand.exists() and not cand.is_symlink():
            return cand
    raise ValueError(f"{base}: 1,000 files of that name here already; give -o")


#: a file name's longest, in bytes (Linux's and macOS's NAME_MAX): a publisher's name of 255
#: characters, or 200 non-ASCII ones, failed the get after the whole download (ENAMETOOLONG)
NAME_MAX = 255


def _fit(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, at a character's boundary."""
    raw = text.encode()
    return text if len(raw) <= limit else raw[:max(0, limit)].decode(errors="ignore")


def write_output(src: Path, out: str | None, name: str, cid: str) -> Path:
    """Copy the verified file to ``-o`` (replaced, as asked) or to :func:`default_output`
    (created, never replacing anything, even a file that appeared meanwhile). The copy is
    made beside the destination and renamed into place once whole: a disk that filled up
    mid-copy destroyed an existing ``-o`` file and left a truncated one under the publisher's
    name (found 2026-12-05 from outside). A failed copy leaves nothing and says where the
    file still is."""
    if out is not None:
        dest = Path(os.path.realpath(out))  # (through a symlink, as a plain copy went)
        kept = _still_stored(cid)
        if dest.is_dir():  # (checked before the fetch too: a directory made there since)
            raise ValueError(f"cannot write {out}: is a directory; {kept}")
        if dest.exists() and not dest.is_file():  # (a pipe or device: write_stream's, from the start)
            raise ValueError(f"cannot write {out}: it became a pipe or device during the fetch; {kept}")
        _copy_into_place(src, dest, cid)
        return Path(out)
    for _ in range(5):
        dest = default_output(name, cid)
        try:
            open(dest, "xb").close()  # the name is ours (a file that appears meanwhile is not replaced)
        except FileExistsError:
            continue  # somebody made it first: the next free name
        try:
            _copy_into_place(src, dest, cid)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return dest
    raise ValueError(f"could not find a free name for {name or cid}; give -o")


def _copy_into_place(src: Path, dest: Path, cid: str) -> None:
    tmp = dest.with_name(_fit(f".{dest.name}", NAME_MAX - 20) + f".{os.getpid()}.part")
    try:
        with open(src, "rb") as fin, open(tmp, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        why = exc.strerror or type(exc).__name__
        raise ValueError(f"cannot write {dest}: {why}; {_still_stored(cid)}") from None


#: s between tries to open a pipe that nobody reads yet (``-o FIFO``)
READER_POLL = 0.2


async def write_stream(src: Path, out: str, cid: str, stop: asyncio.Event) -> bool:
    """Write the verified file into ``out`` as its reader takes it: ``-`` (our stdout), a
    pipe or a device (``-o /dev/stdout`` resolved to ``/proc/.../pipe:[...]`` and failed after
    the download; a pipe nobody read blocked the event loop in open(), Ctrl-C and SIGTERM
    unheard, for ever: found 2026-12-06 from outside). Non-blocking, so a stop signal is heard
    while it waits for a reader or for room in the pipe. True when all is written, False if
    stopped first; ValueError (saying where the file still is) on a write error."""
    loop = asyncio.get_running_loop()
    kept = _still_stored(cid)
    waiting = False
    while True:
        try:
            fd = os.dup(1) if out == "-" else os.open(out, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # (ENXIO: a pipe with no reader yet)
                raise ValueError(f"cannot write {out}: {exc.strerror or type(exc).__name__}; {kept}") from None
        if not waiting:
            waiting = True
            print(f"oasis get: waiting for a reader of {out} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        try:
            await asyncio.wait_for(stop.wait(), READER_POLL)
            return False
        except TimeoutError:
            pass
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)  # (a dup shares its file's mode: restored below)
    try:
        with open(src, "rb") as fin:
            while block := fin.read(1 << 16):
                view = memoryview(block)
                while view:
                    try:
                        view = view[os.write(fd, view):]
                        continue
                    except BlockingIOError:
                        pass
                    room: asyncio.Future[None] = loop.create_future()
                    loop.add_writer(fd, _set_once, room)
                    stopped: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait((room, stopped), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        loop.remove_writer(fd)
                        stopped.cancel()
                    if stop.is_set():
                        return False
    except OSError as exc:  # (a reader that closed: EPIPE)
        raise ValueError(f"cannot write {out}: {exc.strerror or type(exc).__name__}; {kept}") from None
    finally:
        os.set_blocking(fd, was_blocking)
        os.close(fd)
    return True


def _set_once(f: asyncio.Future[None]) -> None:
    if not f.done():
        f.set_result(None)


def _still_stored(cid: str) -> str:
    """Where a fetched file is when it could not be written out, and how to get it."""
    return f"the file is whole in this node's store: `oasis get {cid} -o PATH` (same --data-dir) writes it elsewhere"


class FetchFailed(RuntimeError):
    """The fetch ended without the file (refused, or nothing came for ``--timeout`` s)."""


async def get(o: FileOptions, target: str, *, out: str | None, peers: list[str], keep_seeding: bool,
              play: bool, stall_timeout: float = 60.0) -> int:
    """Fetch ``target``; 0 once it is whole (and written to ``out``), 1 if it failed (refused,
    or no block for ``stall_timeout`` s: 0 = wait for ever), 130 if stopped before."""
    check_output(out)  # before anything is fetched: a bad -o is no surprise at the end
    kind = output_kind(out)
    if kind == "stdout":
        rt.EMIT_TO[:] = [sys.stderr]  # stdout carries the file
    node, files, runner, gateway = await _start(o, "get")
    complete = False
    failed: list[str] = []
    player_proc: asyncio.subprocess.Process | None = None
    no_player = False
    try:
        link = parse_target(target)
        if not (link.peers or peers or link.origin or o.origin) and not files.holds(link.cid):
            # a getter's DHT is reached through its file peers: with none, nothing can come
            raise ValueError(f"nothing to fetch {target[:80]} from: give --peer PEER_ID@HOST:PORT, or a "
                             "link that names its peers (b=) or an origin (o=), as `oasis publish` prints")
        st = await files.fetch(target, peers)
        emit({"cid": st["cid"], "url": st["url"], "gateway": gateway, "peer_id": node.peer_id,
              "oftp": f"{url_host(node.host)}:{node.port}"})
        if play:
            player = shutil.which("ffplay") or shutil.which("mpv") or shutil.which("vlc")
            if player:
                player_proc = await asyncio.create_subprocess_exec(
                    player, st["url"], stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            else:  # the URL is served until Ctrl-C, even once the file is whole (it was dead)
                no_player = True
                print(f"oasis get: --play found no player (ffplay, mpv or vlc on PATH): open "
                      f"{st['url']} in one; it is served until Ctrl-C", file=sys.stderr)

        progress = Progress(o.progress)
        cid = st["cid"]
        kept = _bytes_held(files, cid)  # an earlier run's verified blocks (resumed)

        async def main(stop: asyncio.Event) -> None:
            nonlocal complete
            sub = node.events.subscribe(("file",))
            waiter = asyncio.ensure_future(stop.wait())
            have, progress_at = -1, time.monotonic()
            try:
                while True:
                    why = files.failure(cid)
                    if why is not None:
                        failed.append(why)
                        return
                    s = files.status(cid)
                    if s["state"] != "fetching":
                        break
                    if s["have_blocks"] != have:
                        have, progress_at = s["have_blocks"], time.monotonic()
                    progress.sample(_bytes_held(files, cid))
                    progress.update(_progress_line(s, _bytes_held(files, cid), progress.rate()))
                    left = None
                    if stall_timeout > 0:
                        left = progress_at + stall_timeout - time.monotonic()
                        if left <= 0:
                            failed.append(_stalled(files, cid, stall_timeout))
                            return
                    if progress.live:  # a line a second, even while nothing comes
                        left = progress.every if left is None else min(left, progress.every)
                    nxt = asyncio.ensure_future(sub.get())
                    done, _ = await asyncio.wait({nxt, waiter}, timeout=left,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if waiter in done:
                        nxt.cancel()
                        progress.final(_interrupted_line(files, cid, o.data_dir))
                        return
                    nxt.cancel()  # the loop reads the status itself; the event only woke it
            finally:
                if failed:
                    waiter.cancel()
                    progress.clear()  # the caller prints why, on a line of its own
                sub.close()
            complete = True
            s = files.status(st["cid"])
            e = files.entry(st["cid"])
            if out is not None and kind != "file":
                if not await write_stream(e.dir / "data", out, st["cid"], stop):
                    complete = False
                    progress.final(f"interrupted while writing {out}; {_still_stored(st['cid'])}")
                    return
                dest = Path(out)
            else:
                dest = write_output(e.dir / "data", out, s["name"], st["cid"])
            progress.final(_done_line(s, kept, time.monotonic() - progress.started, dest))
            emit(s | {"output": str(dest)})
            if no_player and not keep_seeding:
                print(f"oasis get: the file is {dest}; {st['url']} is still served for a player "
                      "until Ctrl-C", file=sys.stderr)
            if keep_seeding or no_player:
                await stop.wait()
            elif player_proc is not None and player_proc.returncode is None:
                # the player reads from our gateway: serve it until it is closed
                print("serving the player until it is closed (Ctrl-C to stop)", file=sys.stderr)
                closed = asyncio.ensure_future(player_proc.wait())
                await asyncio.wait({closed, waiter}, return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
            waiter.cancel()

        await run_until_stopped(main)
    finally:
        await node.close()
        await runner.cleanup()
    if failed:
        raise FetchFailed(failed[0])
    return 0 if complete else 130


def _bytes_held(files: Files, cid: str) -> int:
    """Bytes of ``cid`` held and verified (its blocks; the last one may be short)."""
    e = files.entry(cid)
    m = e.manifest
    if m is None:
        return 0
    have = e.swarm.have
    n = len(have) * BLOCK_SIZE
    if m.blocks - 1 in have:
        n -= BLOCK_SIZE - m.block_len(m.blocks - 1)
    return min(n, m.size)


def _peers(n: int) -> str:
    return f"{n} peer{'' if n == 1 else 's'}"


def _progress_line(s: dict[str, Any], held: int, rate: float) -> str:
    if not s["blocks"]:
        return f"oasis get: waiting for the manifest ({_peers(s['peers'])})"
    return (f"oasis get: {s['have_blocks']}/{s['blocks']} blocks, {mb(held)} of {mb(s['size'])} "
            f"({100 * held // max(s['size'], 1)} %), {mb(rate)}/s, {_peers(s['peers'])}")


def _done_line(s: dict[str, Any], kept: int, took: float, dest: Path) -> str:
    got = s["size"] - kept
    resumed = f", {mb(kept)} kept from an earlier run" if kept else ""
    return (f"oasis get: {mb(s['size'])} ({s['blocks']} blocks) in {took:.1f} s, {mb(got / max(took, 1e-3))}/s"
            f" ({mb(s['from_peers'])} from peers, {mb(s['from_origin'])} from the origin{resumed}); "
            f"written to {dest}")


def _interrupted_line(files: Files, cid: str, data_dir: str) -> str:
    s = files.status(cid)
    if not s["blocks"]:
        return "oasis get: interrupted before the file's manifest came: nothing kept"
    return (f"oasis get: interrupted: {s['have_blocks']} of {s['blocks']} blocks ({mb(_bytes_held(files, cid))} "
            f"of {mb(s['size'])}) kept in {data_dir}; run the same command again to resume")


def _stalled(files: Files, cid: str, seconds: float) -> str:
    """What a getter says when nothing came for ``seconds``: who was tried and how it went."""
    c = files.entry(cid).swarm.counters
    s = files.status(cid)
    got = f"{s['have_blocks']} of {s['blocks']} blocks" if s["blocks"] else "not even the manifest"
    return (f"no block of {cid[:16]}... for {seconds:g} s ({got}): {s['peers']} peers holding it "
            f"({c.peers_dropped} dropped as hostile, {c.request_timeouts} requests timed out), the "
            f"origin {c.origin_requests} requests ({c.origin_failures} failed, {c.origin_bad} bad"
            f"{', given up' if c.origin_dropped else ''}); --timeout 0 waits for ever"
            f"{'; the blocks held are kept: the same command again resumes' if s['have_blocks'] else ''}")
