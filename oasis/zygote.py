"""A fork server for the demo's node processes (``python -m oasis.zygote``).

Twenty viewer processes started at once on a 2-core machine spent ~10 s of both
cores importing the same modules (about 0.8 CPU-s each; with proof of relay the
EVM stack on top), so the demo's viewers were all up only 10.7-13.5 s after the
first was started. The launcher imports once and forks each node from there, as
a zygote or a forkserver does: every node is still its own process (own event
loop, sockets, keys; ``oasis.cli.main`` with its own argv), started in a few
milliseconds, and twenty are up in 1.1-2.8 s (docs/benchmarks.md, "The join
burst"; the newcomers' start-up in that burst is another matter, told there).

Protocol, over a ``SOCK_SEQPACKET`` socket pair (one JSON object a message):

* launcher → parent, once: ``{"ready": true, "pid": P}`` when the imports are done;
* parent → launcher: ``{"argv": [...], "env": {...}}`` (and ``"netns": name`` to run the
  child in that network namespace: the testbed's) with two file descriptors attached (the
  child's stdout and stderr); answered ``{"pid": N}`` or ``{"error": ...}``;
* launcher → parent, any time: ``{"exit": N, "code": C}`` (C as ``Popen.returncode``:
  negative for a signal).

The launcher dies with its parent (``PR_SET_PDEATHSIG``) and each child with the
launcher; when the parent closes its end, the launcher stops its children
(SIGTERM, then SIGKILL after ``STOP_GRACE`` s) and exits. Every child runs in a
session of its own, as a directly started node, so the parent can signal its
process group by its pid (and see ``_child`` on the kernel's autogroups).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

#: imported before the first fork: what ``oasis watch`` (and ``node``) import anyway
PRELOAD = ("oasis.cli", "oasis.node.runtime", "oasis.node.node", "oasis.node.http", "oasis.node.daemon",
           "aiohttp", "aiohttp.web", "uvloop",
           # imported when the node makes its QUIC stack (qh3 by default, aioquic on request)
           "qh3", "qh3.asyncio", "qh3.quic.connection", "qh3.tls", "aioquic.quic.connection")
MAX_MESSAGE = 64 * 1024  #: a spawn request (argv and environment) is at most this
STOP_GRACE = 10.0
REAP_EVERY = 0.2  #: how often the launcher looks for exited children when idle (s)
NETNS_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  #: a spawn's network namespace (the testbed's)
CLONE_NEWNET = 0x40000000


def die_with_parent() -> None:
    """This process gets SIGTERM when its parent (the thread that forked it) exits (Linux)."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's stop is the only stop
        pass


# ---- the launcher ---------------------------------------------------------------------


def _send(sock: socket.socket, obj: dict[str, Any]) -> None:
    try:
        sock.send(json.dumps(obj).encode())
    except OSError:  # the parent is gone; EOF ends the loop
        pass


def enter_netns(name: str) -> None:
    """Move this (single-threaded) process into the network namespace ``/run/netns/<name>``
    (``ip netns add``'s), as ``ip netns exec`` does for its command; needs CAP_SYS_ADMIN."""
    import ctypes
    if not NETNS_NAME.fullmatch(name):
        raise ValueError(f"not a network namespace name: {name!r}")
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _child(sock: socket.socket, argv: list[str], env: dict[str, str], out: int, err: int,
           netns: str | None = None) -> None:
    """In the forked child: become the node ``oasis <argv>`` (inside network namespace
    ``netns`` if given); never returns."""
    code = 1
    try:
        sock.close()
        # A session of its own, as a node started by the demo directly (so the parent can
        # signal its process group by its pid). With the kernel's autogroup scheduling each
        # session is a scheduling group with an equal share: in the 20-viewer join burst
        # the broadcaster (its own session) gets a twenty-first of the machine and makes
        # 3-6 chunks a second instead of 30 for 2-4 s. Putting the viewers in one group
        # instead (setpgid in the launcher's session) kept the broadcaster at 30 a second
        # but the machine then stayed saturated (2.1 cores against 1.5-1.7) and the swarm
        # collapsed (continuity 0.24-0.66 in 4 runs, against 0.92-0.94): measured, kept.
        os.setsid()
        die_with_parent()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in {null, out, err} - {0, 1, 2}:
            os.close(fd)
        # fresh text streams on the new descriptors (the launcher's are block-buffered)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        os.environ.update(env)
        if netns is not None:
            enter_netns(netns)
        sys.argv = ["oasis", *argv]
        from oasis.cli import main
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported, then the child exits with an error
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


def _spawn(sock: socket.socket, data: bytes, fds: list[int], children: set[int]) -> None:
    try:
        req = json.loads(data)
        argv, env, ns = req["argv"], req.get("env") or {}, req.get("netns")
        if len(fds) != 2 or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) \
                or not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                        for k, v in env.items()):
            raise ValueError("a spawn needs argv (strings), env (strings) and two descriptors")
        if ns is not None and not (isinstance(ns, str) and NETNS_NAME.fullmatch(ns)):
            raise ValueError("netns is a network namespace's name")
    except (ValueError, KeyError, TypeError) as exc:
        for fd in fds:
            os.close(fd)
        _send(sock, {"error": f"bad spawn request: {exc}"})
        return
    pid = os.fork()
    if pid == 0:
        _child(sock, argv, env, fds[0], fds[1], ns)
    for fd in fds:
        os.close(fd)
    children.add(pid)
    _send(sock, {"pid": pid})


def _reap(sock: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _stop_children(sock: socket.socket, children: set[int]) -> None:
    for pid in children:
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + STOP_GRACE
    while children and time.monotonic() < deadline:
        _reap(sock, children)
        time.sleep(0.05)  # bounded by STOP_GRACE; the children are not ours to await otherwise
    for pid in children:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    while children:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        children.discard(pid)


def serve(fd: int, extra: list[str]) -> int:
    die_with_parent()
    sock = socket.socket(fileno=fd)
    for name in (*PRELOAD, *extra):
        try:
            importlib.import_module(name)
        except ImportError:  # an optional stack not installed: the child imports what it needs
            pass
    if threading.active_count() != 1:  # a fork copies only the forking thread
        _send(sock, {"error": f"{threading.active_count()} threads after the imports; not forking"})
        return 1
    # The parent decides: Ctrl-C, a closed terminal (SIGHUP) or `kill -TERM -PGID` reach it
    # too, and it stops the children through us. Killed by them, we could not report the
    # children's exits (each was counted a failure); a parent that dies closes our socket.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    children: set[int] = set()
    _send(sock, {"ready": True, "pid": os.getpid()})
    try:
        while True:
            ready, _, _ = select.select([sock], [], [], REAP_EVERY)
            _reap(sock, children)
            if not ready:
                continue
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
            except OSError:
                break
            if not data:  # the parent closed its end, or died
                for fd in fds:
                    os.close(fd)
                break
            _spawn(sock, data, fds, children)
    finally:
        _stop_children(sock, children)
    return 0


# ---- the parent's side ----------------------------------------------------------------


class ForkedProcess:
    """A node forked by the launcher, with the part of ``subprocess.Popen`` the demo
    uses: ``pid``, ``stdout`` (a pipe), ``poll``, ``wait``, ``send_signal``, ``returncode``."""

    def __init__(self, zygote: Zygote, pid: int, stdout: io.BufferedReader) -> None:
        self.zygote = zygote
        self.pid = pid
        self.stdout: io.BufferedReader | None = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            z = self.zygote
            z.collect(0.0)
            if z.lost and self.pid not in z.codes:
                # the launcher died and took its children with it; nobody reports the code
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    z.codes[self.pid] = 1
                except PermissionError:
                    pass
            self.returncode = z.codes.get(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            if self.zygote.lost:
                time.sleep(0.05)  # no reports can come; poll() looks at the pid itself
            else:
                self.zygote.collect(0.5 if left is None else min(0.5, left))
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


class Zygote:
    """Start the launcher (``python -m oasis.zygote``, importing ``PRELOAD`` and
    ``preload``) and fork nodes from it; call
    :meth:`wait_ready` before the first :meth:`spawn` and :meth:`close` at the end.
    Create it in the thread that lives as long as its nodes: the launcher dies with
    that thread (``PR_SET_PDEATHSIG``)."""

    def __init__(self, env: dict[str, str] | None = None, preload: tuple[str, ...] = ()) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = mine
        self.codes: dict[int, int] = {}
        #: the launcher is gone (EOF): its children got SIGTERM with it (PR_SET_PDEATHSIG)
        self.lost = False
        self.proc = subprocess.Popen([sys.executable, "-m", "oasis.zygote", str(theirs.fileno()), *preload],
                                     pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, preexec_fn=die_with_parent)
        theirs.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for the launcher's imports (closes it and raises if it does not get there)."""
        msg = self._recv(timeout)
        if msg is None or not msg.get("ready"):
            self.close()
            raise RuntimeError(f"the node launcher did not start: {msg or 'no answer'}")

    def _recv(self, timeout: float) -> dict[str, Any] | None:
        """One message from the launcher within ``timeout`` s (None: none came, or EOF)."""
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return None
        data = self.sock.recv(MAX_MESSAGE)
        if not data:
            self.lost = True
            return None
        msg: dict[str, Any] = json.loads(data)
        if "exit" in msg:
            self.codes[int(msg["exit"])] = int(msg["code"])
        return msg

    def collect(self, timeout: float) -> None:
        """Take the exit reports that came (waiting up to ``timeout`` s for the first)."""
        while not self.lost and self._recv(timeout) is not None:
            timeout = 0.0

    def spawn(self, argv: list[str], stderr_path: str, env: dict[str, str] | None = None,
              timeout: float = 10.0, netns: str | None = None) -> ForkedProcess:
        """Fork ``oasis <argv>`` with ``env`` added, its stderr to ``stderr_path``; with
        ``netns``, inside that network namespace (the launcher must be privileged)."""
        if self.lost:
            raise RuntimeError("the node launcher exited")
        r, w = os.pipe()
        err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        req: dict[str, Any] = {"argv": argv, "env": env or {}}
        if netns is not None:
            req["netns"] = netns
        try:
            socket.send_fds(self.sock, [json.dumps(req).encode()], [w, err])
        finally:
            os.close(w)
            os.close(err)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and not self.lost:
            msg = self._recv(left)
            if msg is None:
                continue
            if "pid" in msg and "ready" not in msg:
                return ForkedProcess(self, int(msg["pid"]), os.fdopen(r, "rb"))
            if "error" in msg:
                os.close(r)
                raise RuntimeError(f"the node launcher refused: {msg['error']}")
        os.close(r)
        raise RuntimeError("the node launcher did not answer a spawn")

    def close(self) -> None:
        """Close our end: the launcher stops whatever children are left and exits."""
        try:
            self.sock.close()
        finally:
            try:
                self.proc.wait(STOP_GRACE + 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    raise SystemExit(serve(int(sys.argv[1]), sys.argv[2:]))
