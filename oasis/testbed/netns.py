"""The testbed's network: Linux network namespaces, veths, tc and iptables.

Theory of operation. One *core* namespace is the internet: every site hangs off it
on its own veth, a routed /31 out of 198.18.0.0/15 (the benchmarking range), and its
FORWARD chain sends every packet to NFQUEUE 0, where :mod:`oasis.testbed.delayer`
holds it for the one-way delay between the two sites' countries. A *site* is what
has a public address:

* a public node: the node's namespace itself (``eth0`` on the core);
* a home router (``eim`` / ``symmetric``): a namespace with ``wan`` on the core, a
  ``lan`` 192.168.1.0/24 with the node's namespace behind it, and MASQUERADE on
  ``wan`` (``--random-fully`` for symmetric);
* a carrier-grade NAT (``cgn``): one namespace per (country, mobile access kind);
  each subscriber's namespace hangs off it on a /31 out of 100.64.0.0/10.

The access link is shaped with tbf both ways: the site's (or the subscriber's) egress
is the upload cap, the egress of the other end the download cap. Loss is an
``iptables -m statistic`` DROP on the node's ``eth0``, both directions. Nothing is
routed to or from the namespace the testbed runs in: the runner reaches a node's HTTP
through a socket it opens inside the node's namespace (:func:`ns_socket`).

Every name starts with the run's prefix (``oas<pid>-``); :func:`cleanup` removes
namespaces (and any stray root-namespace links) of a prefix, or of every run whose
process is gone. A run holds a lock on its prefix (:func:`claim`, an flock on
``/run/oasis-testbed/<prefix>lock``) while it runs: a second run given the same
``--prefix`` is refused, and ``--cleanup`` leaves a run whose lock is held (the pid in
a prefix given by hand is no process: a live run's namespaces were removed by it).
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from oasis.sim.netmodel import CDN_EDGE_RTT_MS

from .topology import NodeSpec, Topology

CORE_NET = ipaddress.IPv4Address("198.18.0.0")
CGN_NET = ipaddress.IPv4Address("100.64.0.0")
HOME_GW, HOME_NODE = "192.168.1.1", "192.168.1.2"
#: a run's prefix, with its process's pid: ``oas<pid>-`` (``oasis testbed``), ``tf<pid>-`` and
#: ``pm<pid>-`` (bench/testbed_fidelity.py, bench/punch_matrix.py: ``--cleanup`` did not find
#: what they left when killed outright)
PREFIX_RE = re.compile(r"^(?:oas|tf|pm)(\d+)-")
CLONE_NEWNET = 0x40000000
QUEUE_NUM = 0
#: one-way delay inside a CDN edge's data centre (the core's country delay comes on top)
EDGE_LASTMILE_MS = 1.0
CMD_TIMEOUT = 30.0


class NetError(RuntimeError):
    """A command that builds the network failed (the message names it)."""


def run(cmd: list[str], *, stdin: str | None = None, check: bool = True) -> str:
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=CMD_TIMEOUT)
    if check and p.returncode != 0:
        raise NetError(f"{' '.join(cmd)}: {p.stderr.strip()[:400]}")
    return p.stdout


def available() -> str | None:
    """None if the testbed can run here, else why not (a sentence)."""
    if os.geteuid() != 0:
        return "the testbed needs root (network namespaces, tc, iptables)"
    for tool in ("ip", "tc", "iptables", "iptables-restore"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "/usr/sbin:/usr/bin").split(":") + ["/usr/sbin"]):
            return f"{tool} is missing (Debian: iptables, iproute2; `make setup` installs them as root)"
    try:
        run(["ip", "netns", "list"])
    except (NetError, OSError) as exc:
        return f"`ip netns` is unavailable: {exc}"
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "NetfilterQueue is not installed (needs libnetfilter-queue-dev; `make setup` as root)"
    return None


def _pair(base: ipaddress.IPv4Address, k: int) -> tuple[str, str]:
    """The k-th /31 of a range: (the upstream end, the downstream end)."""
    return str(base + 2 * k), str(base + 2 * k + 1)


def _site_pair(k: int) -> tuple[str, str]:
    """Site k's /31 on the core, the first of its own /24 of 198.18.0.0/15 (at most 512
    sites): as on the internet, peers' addresses lie in different networks, which a
    node's NAT mapping needs from two observers (docs/oftp.md §15.1)."""
    if not 0 <= k < 512:
        raise ValueError(f"site {k}: the core has room for 512 sites")
    return _pair(CORE_NET + 256 * k, 0)


@dataclass
class Placement:
    """Where one node ended up."""

    ns: str  #: the node's namespace
    addr: str  #: its own address (what it listens on)
    public: str  #: the address the internet sees for it (its site's)
    site: int  #: index of its site on the core


@dataclass
class Network:
    """Builds a topology's namespaces, and removes them (:meth:`teardown`)."""

    topo: Topology
    prefix: str
    core: str = ""
    namespaces: list[str] = field(default_factory=list)
    placement: dict[str, Placement] = field(default_factory=dict)
    #: site index -> (public address, country, last-mile ms, a CDN PoP?) for the delayer
    sites: list[tuple[str, str, float, bool]] = field(default_factory=list)
    on_progress: Callable[[str], None] = lambda _msg: None
    #: a CDN edge (PoP) in each viewer's country, fed by the origin: country -> its place
    #: (:meth:`build` makes them when ``edges`` is set)
    edges: bool = False
    shield: bool = False  #: (with ``edges``) also a PoP in the broadcaster's country
    #: a PoP's round trip to a site of its own country (ms, the PoP's 1 ms included): in the
    #: viewers' metro, as the simulator's ``CDN_EDGE_RTT_MS``; None: the country's RIPE Atlas
    #: same-country RTT, as between any two of its sites (``--far-edges``, before 2026-12-07)
    pop_rtt_ms: float | None = CDN_EDGE_RTT_MS
    edge_placement: dict[str, Placement] = field(default_factory=dict)
    #: the prefix's lock (:func:`claim`), held from :meth:`build` to :meth:`teardown`
    lock: PrefixLock | None = None

    def ns(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _netns(self, name: str) -> str:
        full = self.ns(name)
        run(["ip", "netns", "add", full])
        self.namespaces.append(full)
        run(["ip", "-n", full, "link", "set", "lo", "up"])
        return full

    def _veth(self, a: str, a_if: str, b: str, b_if: str) -> None:
        """A veth created straight inside its two namespaces (never in ours)."""
        run(["ip", "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b])
        run(["ip", "-n", a, "link", "set", a_if, "up"])
        run(["ip", "-n", b, "link", "set", b_if, "up"])

    def _site(self, ns: str, iface: str, country: str, lastmile_ms: float,
              pop: bool = False) -> tuple[int, str]:
        k = len(self.sites)
        core_ip, site_ip = _site_pair(k)
        self._veth(self.core, f"s{k}", ns, iface)
        run(["ip", "-n", self.core, "addr", "add", f"{core_ip}/31", "dev", f"s{k}"])
        run(["ip", "-n", ns, "addr", "add", f"{site_ip}/31", "dev", iface])
        run(["ip", "-n", ns, "route", "add", "default", "via", core_ip])
        self.sites.append((site_ip, country, lastmile_ms, pop))
        return k, site_ip

    def build(self) -> None:
        self.lock = claim(self.prefix)
        left = leftovers(self.prefix)
        if left:  # a dead run's, with the same prefix (the lock says none runs)
            self.on_progress(f"removing {len(left)} namespaces and links a dead run of {self.prefix} left")
            errors = cleanup(self.prefix)
            if errors:
                raise NetError(f"what a dead run of {self.prefix} left cannot be removed: {errors[0]}")
        self.core = self._netns("core")
        _sysctl(self.core, "net.ipv4.ip_forward", "1")
        _iptables(self.core, {"filter": [f"-A FORWARD -j NFQUEUE --queue-num {QUEUE_NUM}"]})
        cgns: dict[tuple[str, str], tuple[str, int, str]] = {}
        subscribers = 0
        g, m = "", 0
        for i, n in enumerate(self.topo.nodes):
            self.on_progress(f"network: node {i + 1}/{len(self.topo.nodes)} ({n.name}, {n.nat})")
            node_ns = self._netns(n.name)
            if n.nat == "public":
                k, ip = self._site(node_ns, "eth0", n.country, n.lastmile_ms)
                self.placement[n.name] = Placement(node_ns, ip, ip, k)
                _shape(node_ns, "eth0", n.up_kbps)
                _shape(self.core, f"s{k}", n.down_kbps)
            elif n.nat in ("eim", "symmetric"):
                r = self._netns(f"r{n.name}")
                k, ip = self._site(r, "wan", n.country, n.lastmile_ms)
                self._veth(r, "lan", node_ns, "eth0")
                run(["ip", "-n", r, "addr", "add", f"{HOME_GW}/24", "dev", "lan"])
                run(["ip", "-n", node_ns, "addr", "add", f"{HOME_NODE}/24", "dev", "eth0"])
                run(["ip", "-n", node_ns, "route", "add", "default", "via", HOME_GW])
                _sysctl(r, "net.ipv4.ip_forward", "1")
                rnd = " --random-fully" if n.nat == "symmetric" else ""
                _iptables(r, {"nat": [f"-A POSTROUTING -o wan -j MASQUERADE{rnd}"]})
                self.placement[n.name] = Placement(node_ns, HOME_NODE, ip, k)
                _shape(r, "wan", n.up_kbps)
                _shape(self.core, f"s{k}", n.down_kbps)
            elif n.nat == "cgn":
                key = (n.country, n.access)
                if key not in cgns:
                    g = self._netns(f"g{len(cgns)}")
                    k, ip = self._site(g, "wan", n.country, n.lastmile_ms)
                    _sysctl(g, "net.ipv4.ip_forward", "1")
                    _iptables(g, {"nat": ["-A POSTROUTING -o wan -j MASQUERADE"]})
                    cgns[key] = (g, k, ip)
                g, k, ip = cgns[key]
                m = subscribers
                subscribers += 1
                gw, addr = _pair(CGN_NET, m)
                self._veth(g, f"sub{m}", node_ns, "eth0")
                run(["ip", "-n", g, "addr", "add", f"{gw}/31", "dev", f"sub{m}"])
                run(["ip", "-n", node_ns, "addr", "add", f"{addr}/31", "dev", "eth0"])
                run(["ip", "-n", node_ns, "route", "add", "default", "via", gw])
                self.placement[n.name] = Placement(node_ns, addr, ip, k)
                _shape(node_ns, "eth0", n.up_kbps)
                _shape(g, f"sub{m}", n.down_kbps)
            else:
                raise NetError(f"node {n.name}: unknown NAT kind {n.nat!r}")
            if n.loss > 0:
                # In: the node's INPUT. Out: the next hop's FORWARD (a DROP in the node's own
                # OUTPUT would fail its sendto with EPERM, which a real lossy link never does).
                p = f"-m statistic --mode random --probability {n.loss:.6f} -j DROP"
                _iptables(node_ns, {"filter": [f"-A INPUT -i eth0 {p}"]})
                hop, hop_if = {"public": (self.core, f"s{self.placement[n.name].site}"),
                               "cgn": (g, f"sub{m}")}.get(n.nat, (self.ns(f"r{n.name}"), "lan"))
                _iptables(hop, {"filter": [f"-I FORWARD 1 -i {hop_if} {p}"]})
        if self.edges:
            # with a shield tier, the broadcaster's country has one too: the others follow it
            countries = {n.country for n in self.topo.viewers} | (
                {self.topo.broadcaster.country} if self.shield else set())
            for j, country in enumerate(sorted(countries)):
                # a PoP in a data centre of the country: on the core without an access link
                # (no cap, no loss), EDGE_LASTMILE_MS of its own, in its viewers' metro
                # (``pop_rtt_ms``; the delayer's table says which sites are PoPs)
                self.on_progress(f"network: CDN edge {j + 1} ({country})")
                e = self._netns(f"e{j}")
                k, ip = self._site(e, "eth0", country, EDGE_LASTMILE_MS, pop=True)
                self.edge_placement[country] = Placement(e, ip, ip, k)

    def rebind(self, name: str, port: int, new_port: int) -> None:
        """Give home-routed node ``name`` (listening on UDP ``port``) the new public port
        ``new_port``, as a NAT rebinding does (a router's reboot, a mapping's timeout; to its
        peers, a phone's change of network looks the same): an SNAT rule maps every flow
        from that port to ``new_port`` -- still endpoint-independent -- and the router's
        flows are forgotten (the kernel drops them when the WAN address goes; it is put back
        at once), so the node's next packet to anyone leaves from ``new_port``. The node's
        own socket is untouched: its peers see a new address (QUIC migration, §15.4)."""
        n = node_of(self.topo, name)
        if n.nat not in ("eim", "symmetric"):
            raise NetError(f"node {name}: only a node behind a home router can be rebound")
        r = self.ns(f"r{name}")
        core_ip, site_ip = _site_pair(self.placement[name].site)
        run(["ip", "netns", "exec", r, "iptables", "-t", "nat", "-I", "POSTROUTING", "1", "-o", "wan",
             "-p", "udp", "--sport", str(port), "-j", "SNAT", "--to-source", f"{site_ip}:{new_port}"])
        run(["ip", "-n", r, "addr", "del", f"{site_ip}/31", "dev", "wan"])
        run(["ip", "-n", r, "addr", "add", f"{site_ip}/31", "dev", "wan"])
        run(["ip", "-n", r, "route", "replace", "default", "via", core_ip])

    def delay_table(self) -> dict[str, object]:
        """What the delayer needs: each site's public address, country, last mile and
        whether it is a CDN PoP, and the PoPs' round trip within their country."""
        return {"sites": [{"addr": a, "country": c, "lastmile_ms": lm, "pop": pop}
                          for a, c, lm, pop in self.sites],
                "pop_rtt_ms": self.pop_rtt_ms}

    def teardown(self) -> list[str]:
        """Remove every namespace built (killing what still runs in it); returns errors.
        Nothing if :meth:`build` did not take the prefix's lock (another run holds it:
        what has the prefix is that run's)."""
        if self.lock is None:
            return []
        errors = cleanup(self.prefix)
        self.namespaces.clear()
        self.lock.release()
        self.lock = None
        return errors


def node_of(topo: Topology, name: str) -> NodeSpec:
    return next(n for n in topo.nodes if n.name == name)


def _sysctl(ns: str, key: str, value: str) -> None:
    run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"])


def _iptables(ns: str, tables: dict[str, list[str]]) -> None:
    """Load rules into a namespace in one iptables-restore (appending to what is there)."""
    text = "".join(f"*{t}\n" + "".join(r + "\n" for r in rules) + "COMMIT\n" for t, rules in tables.items())
    run(["ip", "netns", "exec", ns, "iptables-restore", "--noflush", "-w"], stdin=text)


def _shape(ns: str, dev: str, kbps: int) -> None:
    """tbf at ``kbps`` on ``dev``'s egress: burst 10 ms of the rate (>= 2 full frames),
    queue at most 200 ms of it (then drops, as an access link's buffer would)."""
    burst = max(3028, kbps * 1000 // 8 // 100)
    run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{kbps}kbit",
         "burst", str(burst), "latency", "200ms"])


# ---- cleanup -------------------------------------------------------------------

def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


LOCK_DIR = "/run/oasis-testbed"


class PrefixInUse(NetError):
    """Another live run holds this prefix (:func:`claim`)."""


class PrefixLock:
    """An flock on ``LOCK_DIR/<prefix>lock``, holding the pid of the run (see :func:`claim`)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.unlink(self.path)  # (while held: a run that opened it re-checks the inode)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1


def _lock_path(prefix: str) -> str:
    return os.path.join(LOCK_DIR, f"{prefix}lock")


def claim(prefix: str) -> PrefixLock:
    """Take ``prefix`` for this run, or raise :class:`PrefixInUse` naming the run that holds it."""
    os.makedirs(LOCK_DIR, mode=0o755, exist_ok=True)
    path = _lock_path(prefix)
    for _ in range(5):  # (a holder that unlinked the file between our open and our lock)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise PrefixInUse(f"prefix {prefix} is in use by a running testbed (pid {holder}): give "
                              "another --prefix, or leave the default (oas<pid>-)") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return PrefixLock(path, fd)
        os.close(fd)
    raise PrefixInUse(f"prefix {prefix}: its lock {path} keeps changing hands")


def prefix_locked(prefix: str) -> bool | None:
    """A run holds ``prefix``'s lock (True), its lock file is there but not held (False:
    the run died), or there is none (None)."""
    try:
        fd = os.open(_lock_path(prefix), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def prefix_live(prefix: str) -> bool:
    """A run of ``prefix`` is running: it holds the prefix's lock, or (a run that has none:
    older code, or killed before it took it) the pid in the prefix is a process."""
    locked = prefix_locked(prefix)
    if locked is not None:
        return locked
    m = PREFIX_RE.match(prefix)
    return m is not None and pid_alive(int(m.group(1)))


def run_prefixes() -> set[str]:
    """Prefixes of every testbed run that left a namespace or a root-namespace link."""
    out = set()
    for line in run(["ip", "netns", "list"], check=False).splitlines():
        m = PREFIX_RE.match(line.split()[0]) if line.strip() else None
        if m:
            out.add(m.group(0))
    for name in _root_links():
        m = PREFIX_RE.match(name)
        if m:
            out.add(m.group(0))
    return out


def _root_links() -> list[str]:
    names = []
    for line in run(["ip", "-o", "link", "show"], check=False).splitlines():
        parts = line.split(": ")
        if len(parts) > 1:
            names.append(parts[1].split("@")[0])
    return names


def leftovers(prefix: str) -> list[str]:
    """Namespaces and root-namespace links whose name starts with ``prefix``."""
    ns = [ln.split()[0] for ln in run(["ip", "netns", "list"], check=False).splitlines() if ln.strip()]
    return [n for n in ns + _root_links() if n.startswith(prefix)]


def cleanup(prefix: str | None = None) -> list[str]:
    """Remove the namespaces and root links of ``prefix``; with None, of every run that is
    not running (:func:`prefix_live`). Processes still inside are killed first."""
    prefixes = [prefix] if prefix else [p for p in run_prefixes() if not prefix_live(p)]
    errors = []
    for p in prefixes:
        names = [ln.split()[0] for ln in run(["ip", "netns", "list"], check=False).splitlines()
                 if ln.strip() and ln.split()[0].startswith(p)]
        for ns in names:
            for pid in run(["ip", "netns", "pids", ns], check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in names:
            try:
                run(["ip", "netns", "del", ns])
            except NetError as exc:
                errors.append(str(exc))
        for link in _root_links():
            if link.startswith(p):
                run(["ip", "link", "del", link], check=False)
        if prefix is None:  # a dead run's lock file
            try:
                os.unlink(_lock_path(p))
            except OSError:
                pass
    return errors


# ---- sockets inside a namespace -------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_setns_lock = threading.Lock()


def ns_socket(ns: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in namespace ``ns`` (a socket keeps the namespace it was
    created in): the runner talks to a node's HTTP without a route into the testbed."""
    with _setns_lock, open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{ns}") as target:
        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
        try:
            return socket.socket(socket.AF_INET, kind)
        finally:
            if _libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back failed: the runner is in the wrong namespace")
