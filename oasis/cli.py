"""Command line: ``oasis demo | broadcast | watch | node | chat | dm | tracker``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any

from oasis.core import swarm as sw
from oasis.core.announce import MAX_AREA
from oasis.core.stream import StreamIdError


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on uvloop (plain asyncio where there is none); returns its result."""
    try:
        import uvloop
    except ImportError:  # not Linux/macOS: plain asyncio
        return asyncio.run(coro)
    return uvloop.run(coro)


VERBOSE = "log at debug level on stderr"
#: the range of --playout-delay (s)
MIN_PLAYOUT_DELAY, MAX_PLAYOUT_DELAY = 0.05, 60.0
#: options of the other node commands that ``chat`` and ``dm`` do not list (nor use)
NOT_FOR_TALK: dict[str, type] = {"--bitrate": int, "--chunk-ms": int, "--substreams": int, "--upload-kbps": int,
                                 "--rewards": bool, "--epoch": int, "--chain-rpc": str, "--chain-dir": str}


PUBLIC_METRICS = ("serve /metrics, /stats, GET /rewards and every stream in /streams and "
                  "/tracker/streams to any client (default: only to clients on this machine, "
                  "over loopback and not through a proxy; others get 403 local_only)")


#: a role's default data directory is named after its command (``broadcast``, ``watch``): the
#: help said ``broadcaster`` / ``viewer``, where nothing was kept (found 2026-12-06 from outside)
DIR_OF = {"broadcaster": "broadcast", "viewer": "watch"}


def _link_from_stdin() -> str:
    """The first line of stdin, as ``oasis watch -`` takes its link (bounded: a link is at
    most 8,192 characters)."""
    from oasis.core.streamlink import MAX_LINK

    line = sys.stdin.readline(MAX_LINK + 2)
    # a file saved with a byte-order mark (Windows Notepad's "UTF-8 with BOM"): its link was
    # refused as a bad stream id (found 2026-12-07 from outside)
    line = line.removeprefix("\ufeff")
    if not line.strip():
        raise ValueError("STREAM is -, but stdin gave no link on its first line")
    if len(line) > MAX_LINK + 1 and not line.endswith("\n"):
        raise ValueError(f"the link on stdin is longer than {MAX_LINK} characters")
    return line.strip()


def _data_dir(text: str) -> str:
    """``--data-dir``: not empty (an empty one fell back to the default directory, unsaid)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a directory (omit it for the default)")
    return text


def _common(p: argparse.ArgumentParser, role: str) -> None:
    """The options of the node commands. ``chat`` and ``dm`` take the stream's parameters
    from its descriptor and run no rewards: those options are not theirs (:data:`NOT_FOR_TALK`:
    still accepted, for scripts that gave them, but not listed, and ignored with a note)."""
    talk = role in ("chat", "dm")
    p.add_argument("--data-dir", type=_data_dir,
                   help=f"key and state directory (default: ~/.local/share/oasis/{DIR_OF.get(role, role)})")
    p.add_argument("--listen", default="127.0.0.1:0", help="OFTP (UDP) address, HOST:PORT")
    if talk:
        for flag, kind in NOT_FOR_TALK.items():
            if kind is bool:
                p.add_argument(flag, action="store_true", default=None, help=argparse.SUPPRESS)
            else:
                p.add_argument(flag, type=kind, default=None, help=argparse.SUPPRESS)
    else:
        p.add_argument("--upload-kbps", type=int, default=None,
                       help="upload cap for relaying, kbit/s, fixed (default: 4x the bitrate, raised up to 8x while "
                            "the children's chunks keep their pace, cut down to 1x while they lag; 0 = none)")
        later = " (a viewer takes it from the stream's signed descriptor; kept for compatibility)"
        p.add_argument("--bitrate", type=int, default=None,
                       help="stream bitrate, kbit/s (default 1500)" + (later if role == "viewer" else ""))
        p.add_argument("--chunk-ms", type=int, default=None,
                       help=f"chunk duration, ms (default {sw.DEFAULT_CHUNK_MS})" + (later if role == "viewer" else ""))
        p.add_argument("--substreams", type=int, default=None,
                       help="push substreams per stream (default 4)" + (later if role == "viewer" else ""))
    p.add_argument("--playout-delay", type=float, default=0.5,
                   help=f"deadline after a chunk is complete, seconds ({MIN_PLAYOUT_DELAY:g}..{MAX_PLAYOUT_DELAY:g})")
    if talk:
        p.add_argument("--json", action="store_true",
                       help="print JSON lines (one object per message, state change or error, then the "
                            "counters at exit) instead of text; the start line is JSON either way")
    else:
        p.add_argument("--json", action="store_true",
                       help="no effect, accepted for scripts: this command prints one JSON start line "
                            "and nothing else on stdout")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the node's pseudo-random choices (which peers it picks and dials, "
                        "the swarm's scheduling), for repeatable test runs; handshake nonces always "
                        "come from the OS (default: random)")
    p.add_argument("-v", "--verbose", action="store_true", help=VERBOSE)
    # `oasis node` has no stream of its own, and proof of relay is per stream (a node's
    # Rewards belongs to the stream it broadcasts or watches): it takes no rewards options.
    if not talk and role != "node":
        _chain(p)
        p.add_argument("--rewards", action="store_true",
                       help="take part in proof of relay (tickets, receipts, settlement)")
        p.add_argument("--epoch", type=int, default=10, help="rewards epoch length, seconds (broadcaster)")
    p.add_argument("--link-delay-ms", type=float, default=0.0,
                   help="emulate this one-way delay on everything this node sends "
                        "(testing; kernel netem is unavailable here)")
    if role == "viewer":
        p.add_argument("--clock-skew-ms", type=float, default=0.0,
                       help="run this node's clock this far ahead of the system's (negative: "
                            "behind; testing: a viewer's clock off the broadcaster's)")
    p.add_argument("--quic", choices=("aioquic", "qh3"), default=None,
                   help="QUIC implementation (also $OASIS_QUIC): qh3 (default; Rust packet "
                        "layer, ~3x less CPU per relayed byte; its TLS server cannot ask for "
                        "the dialler's certificate: AUTH alone identifies it) or aioquic (pure "
                        "Python; the node's own congestion control)")
    p.add_argument("--area", default="", help="locality label sent to the tracker (e.g. a country "
                   "code); peers of the same area are preferred as neighbours")
    if talk:  # a chat session serves no local API (its stdin is the interface)
        return
    p.add_argument("--public-metrics", action="store_true", help=PUBLIC_METRICS)
    p.add_argument("--api-listen", default="127.0.0.1:7480" if role == "node" else "127.0.0.1:0",
                   help="local API address, loopback only (docs/api.md; default: %(default)s); port 0: "
                        "any free port (printed as \"api\" and written to <data-dir>/api.json); 'off': no API")


class _Version(argparse.Action):
    """``oasis --version``: the version of the installed package (its metadata), read only
    when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("oasis")
        except PackageNotFoundError:  # run from a source tree that was never installed
            text = "unknown (not installed: pip install -e .)"
        print(f"oasis {text}")
        parser.exit()


def _chain(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chain-rpc", default=None,
                   help="EVM JSON-RPC URL (default: the embedded chain in the data directory)")
    p.add_argument("--chain-dir", default=None, help="embedded chain directory (shared by local nodes)")


def _command(argv: list[str] | None) -> str | None:
    """The sub-command asked for: the first argument that is not an option."""
    for a in sys.argv[1:] if argv is None else argv:
        if not a.startswith("-"):
            return a
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the simulator's and the testbed's options (whose modules import
    numpy and the testbed's runner: ~0.9 s of CPU) only when that command is asked
    for, so a viewer's process does not pay for them at every start."""
    cmd = _command(argv)
    ap = argparse.ArgumentParser(prog="oasis", description="Oasis live video over OFTP/QUIC")
    ap.add_argument("--version", action=_Version, help="print the installed version and exit")
    sub = ap.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="a live swarm on this machine: tracker, broadcaster, N viewers")
    d.add_argument("--viewers", type=int, default=10,
                   help="viewer processes to start, each a real node on loopback (default 10)")
    d.add_argument("--duration", type=float, default=30, help="seconds to run after all viewers joined (default 30)")
    d.add_argument("--bitrate", type=int, default=1500, help="the test stream's bitrate, kbit/s (default 1500)")
    d.add_argument("--chunk-ms", type=int, default=sw.DEFAULT_CHUNK_MS,
                   help=f"chunk duration of the test stream, ms (default {sw.DEFAULT_CHUNK_MS})")
    d.add_argument("--upload-kbps", type=int, default=None, help="viewers' upload cap, fixed (default: the node's, 4x the "
                   "bitrate probed between 1x and 8x)")
    d.add_argument("--broadcaster-upload-kbps", type=int, default=None,
                   help="broadcaster's upload cap (default 2x bitrate)")
    d.add_argument("--source", default="test", help="test | FILE | - | udp://HOST:PORT")
    d.add_argument("--encrypt", action="store_true",
                   help="end-to-end encrypt the stream (docs/oftp.md §7.2): the viewers join with the "
                        "broadcaster's link, which carries the content key")
    d.add_argument("--json", action="store_true",
                   help="print one JSON summary object on stdout (progress goes to stderr); an "
                        "interrupted demo prints what it measured, with \"interrupted\"")
    d.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    d.add_argument("--no-rewards", dest="rewards", action="store_false",
                   help="no proof of relay (by default: a local anvil chain, receipts, settlement)")
    d.add_argument("--epoch", type=int, default=10, help="rewards epoch length, seconds")
    d.add_argument("--link-delays-ms", type=lambda t: [float(x) for x in t.split(",")], default=None,
                   help="testing: emulated one-way delay per process, comma-separated, broadcaster "
                        "first (each node's --link-delay-ms)")

    b = sub.add_parser("broadcast", help="publish a live stream")
    b.add_argument("source", help="test | FILE (looped) | - (stdin) | udp://HOST:PORT")
    b.add_argument("--name", default="live", help="stream name")
    b.add_argument("--http", default="127.0.0.1:0", help="HTTP origin/tracker address HOST:PORT")
    b.add_argument("--tracker", default=None, help="external tracker URL (default: embedded)")
    b.add_argument("--cdn-url", default=None, help="CDN base URL in front of this origin")
    b.add_argument("--encrypt", action="store_true",
                   help="end-to-end encrypt the stream: its media is sealed with a content key kept in "
                        "the data directory and carried only by the link (k=); relays, the origin and "
                        "CDNs see ciphertext (docs/oftp.md §7.2)")
    _common(b, "broadcaster")

    w = sub.add_parser("watch", help="join a stream and serve it to a local player")
    w.add_argument("stream_id", metavar="STREAM",
                   help="a stream link (oasis://..., what `oasis broadcast` prints as \"link\"), "
                        "or a stream id with --tracker, or - to read the link from stdin's first line "
                        "(an encrypted stream's link carries its key: on a shared machine, other users "
                        "see command lines)")
    w.add_argument("--tracker", default=None,
                   help="tracker URL; with a bare stream id the stream's signed descriptor (bitrate, "
                        "chunking, origin) is fetched from it and checked against the stream id")
    w.add_argument("--gateway", default="127.0.0.1:8080",
                   help="player gateway HOST:PORT (default 127.0.0.1:8080; port 0: any free port)")
    w.add_argument("--cdn-url", default=None,
                   help="fetch late chunks from this CDN/origin base URL (default: the descriptor's)")
    w.add_argument("--relay-only", action="store_true",
                   help="an encrypted stream whose link carries no content key (k=): join and relay "
                        "its ciphertext without playing it (without this flag, such a link is refused)")
    _common(w, "viewer")

    n = sub.add_parser("node", help="a node with no stream of its own, driven by programs through "
                       "its local API (docs/api.md)")
    n.add_argument("--http", default="127.0.0.1:0", help="HTTP origin/gateway/tracker address HOST:PORT")
    n.add_argument("--tracker", default=None, help="tracker URL for published streams (default: embedded)")
    _common(n, "node")
    ch = sub.add_parser("chat", help="join a stream's chat: print messages, send stdin lines")
    ch.add_argument("stream_id", metavar="STREAM", help="a stream link (oasis://...) or a stream id with --tracker")
    ch.add_argument("--tracker", default=None, help="tracker URL (with a bare stream id)")
    ch.add_argument("--send", default=None, metavar="TEXT",
                    help="send this one line (a message, or a command such as /dm PEER TEXT) and exit: "
                         "0 once sent, 1 if it could not be (no peer within --wait, muted), 2 if it is "
                         "not one to send (checked before the node starts)")
    ch.add_argument("--wait", type=float, default=20.0,
                    help="seconds to wait for a peer (and an ACK) (default 20)")
    _common(ch, "chat")

    dmp = sub.add_parser("dm", help="end-to-end encrypted direct messages to a peer id")
    dmp.add_argument("peer_id", metavar="PEER", help="the recipient's peer id")
    dmp.add_argument("--via", required=True, metavar="STREAM",
                     help="a stream link (or id with --tracker) whose swarm reaches the peer")
    dmp.add_argument("--tracker", default=None, help="tracker URL (with a bare stream id)")
    dmp.add_argument("--send", default=None, metavar="TEXT",
                     help="send this one message, wait for its ACK, exit: 0 once delivered or held by "
                          "peers for the recipient, 1 if neither within --wait, 2 if PEER or TEXT is bad "
                          "(checked before the node starts)")
    dmp.add_argument("--wait", type=float, default=20.0, help="seconds to wait for a peer and the ACK (default 20)")
    _common(dmp, "dm")
    for name, helptext in (("publish", "seed a file (short video) under its content id"),
                           ("get", "fetch a file by content id or link, verified, playable meanwhile")):
        f = sub.add_parser(name, help=helptext)
        if name == "publish":
            f.add_argument("file", metavar="FILE", help="the file to seed (at most 256 MiB)")
        else:
            f.add_argument("target", metavar="CID|LINK", help="a content id (of1...) or oasis://file/ link")
            f.add_argument("-o", "--output", default=None,
                           help="where to write the file (replaced if it exists; '-': stdout, the JSON lines "
                                "then on stderr; a pipe or device: written into; default: the name its "
                                "publisher gave it, without leading dots, never over an existing file)")
            f.add_argument("--peer", action="append", default=[], help="PEER_ID@HOST:PORT holding it")
            f.add_argument("--origin", default=None, help="fallback: the HTTP base URL that /origin/files/<cid>/... is appended to (a "
                                "publisher's gateway root, http://HOST:PORT, or a CDN in front of it; not .../origin)")
            f.add_argument("--seed", dest="keep_seeding", action="store_true",
                           help="keep seeding after the download (until Ctrl-C)")
            f.add_argument("--play", action="store_true", help="open ffplay/mpv/vlc on the gateway URL (none on PATH: the URL is served until Ctrl-C)")
            f.add_argument("--timeout", type=float, default=60.0,
                           help="give up (exit 1) when no block has come for this many seconds "
                                "(default 60; 0: never)")
        f.add_argument("--progress", action="store_true",
                       help="progress lines on stderr (at most one a second) even when stderr is not a "
                            "terminal (on a terminal: always); a final line is printed either way")
        f.add_argument("--data-dir", type=_data_dir, help=f"key and store directory (default: ~/.local/share/oasis/{name})")
        f.add_argument("--listen", default="127.0.0.1:0", help="OFTP (UDP) address, HOST:PORT")
        f.add_argument("--http", default="127.0.0.1:0", help="gateway/origin HTTP address HOST:PORT")
        f.add_argument("--disk-cap-mb", type=int, default=4096, help="files kept, MiB (LRU beyond)")
        f.add_argument("--upload-mbps", type=float, default=0.0,
                       help="upload budget for serving files to peers (all files together), Mbit/s (default: unbounded)")
        f.add_argument("-v", "--verbose", action="store_true", help=VERBOSE)

    t = sub.add_parser("tracker", help="run a stand-alone tracker")
    t.add_argument("--listen", default="127.0.0.1:7000",
                   help="HTTP address HOST:PORT to serve the tracker on (default 127.0.0.1:7000; port 0: "
                        "any free port); its URL, <address>/tracker, is printed as \"tracker\"")
    t.add_argument("--public-metrics", action="store_true",
                   help="serve /metrics and every stream in /tracker/streams to any client (default: "
                        "only to clients on this machine, over loopback and not through a proxy; others "
                        "get 403 local_only)")

    e = sub.add_parser("edge", help="a CDN edge near viewers: follows the origin's streams and "
                       "answers their fallback (point viewers at it with --cdn-url)")
    e.add_argument("--origin", required=True,
                   help="the origin's base URL, as `oasis broadcast` prints it (http://HOST:PORT/origin)")
    e.add_argument("--listen", default="127.0.0.1:8090",
                   help="HTTP address HOST:PORT to serve on (default 127.0.0.1:8090; port 0: any free "
                        "port); viewers use http://<address>/origin as their --cdn-url")
    e.add_argument("--public-metrics", action="store_true",
                   help="serve /stats and /metrics to any client (default: only to clients on this "
                        "machine, over loopback and not through a proxy; others get 403 local_only)")
    e.add_argument("--feeds", type=int, default=2, choices=(1, 2),
                   help="feed connections per stream to the origin, each carrying every chunk (default "
                        "2: a lost packet stalls one TCP connection a round trip, seldom both at once)")
    e.add_argument("--hold", type=float, default=1.0, metavar="S",
                   help="seconds a request for a chunk just ahead of the feed waits for it, answered "
                        "the moment it arrives (default 1.0; 0: answer 404 at once, and the viewer asks "
                        "again after its retry interval)")
    e.add_argument("--follow", action="append", default=[], metavar="STREAM_ID",
                   help="follow this stream from the start, whether or not viewers ask for it yet (a "
                        "CDN warmed for a broadcast: its first viewer here does not wait for the edge's "
                        "round trips to the origin); repeatable, at most 16")

    wl = sub.add_parser("wallet", help="wallet address, token balance, pending and settled rewards")
    wl.add_argument("--data-dir", type=_data_dir,
                    help="node directory (default: ~/.local/share/oasis/watch, `oasis watch`'s)")
    wl.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    wl.add_argument("--offline", action="store_true", help="do not open the chain (no balances)")
    wl.add_argument("--deploy", action="store_true",
                    help="deploy the token and pool contracts to --chain-rpc (paid by the key in "
                         "OASIS_DEV_FAUCET_KEY, else this wallet's) and write <data-dir>/ledger/"
                         "deployment.json; copy that file into every node's <data-dir>/ledger/")
    _chain(wl)

    tb = sub.add_parser("testbed", help="real nodes in network namespaces with world "
                        "delays, access links and NATs (root; docs/testbed.md)",
                        description="Real Oasis nodes in network namespaces this command makes and "
                        "removes: world delays between countries, capped and lossy access links, "
                        "NATs (root; docs/testbed.md).")
    if cmd == "testbed":
        from oasis.testbed.runner import add_arguments as testbed_arguments
        testbed_arguments(tb)
    sm = sub.add_parser("sim", help="simulate a swarm: Oasis vs baselines on a network model")
    if cmd == "sim":
        from oasis.sim.cli import add_arguments as sim_arguments
        sim_arguments(sm)
    return ap


def _wallet(args: argparse.Namespace) -> int:
    """``oasis wallet``: the chain's own errors as one line (they were web3 tracebacks: an
    unfunded --deploy, a deployment of accounts or swapped addresses; found 2026-12-06)."""
    from web3.exceptions import Web3Exception

    try:
        return _wallet_report(args)
    except OSError as exc:
        if not type(exc).__module__.startswith(("requests", "urllib3")):
            raise  # (a local file's error says what it is)
        raise RuntimeError(f"--chain-rpc {args.chain_rpc}: the chain does not answer "
                           f"({type(exc).__name__})") from None
    except Web3Exception as exc:
        raise RuntimeError(f"the chain refused: {' '.join(str(exc).split())[:200]}") from None


def _wallet_report(args: argparse.Namespace) -> int:
    import json

    from oasis.ledger.chain import open_chain
    from oasis.ledger.wallet import wallet_report
    from oasis.node.runtime import default_data_dir

    data_dir = args.data_dir or default_data_dir("watch")  # (`oasis watch`'s default: its wallet)
    if args.deploy:
        return _deploy(args, data_dir)
    if args.data_dir and not os.path.isdir(args.data_dir):
        # (a mistyped one was made, with a new wallet, ledger.db and chain, and printed zeros:
        # found 2026-12-06 from outside)
        raise ValueError(f"--data-dir {args.data_dir}: no such directory (the data directory of a "
                         "node that ran `oasis broadcast/watch --rewards`)")
    if not args.offline and not args.chain_rpc and not args.chain_dir:
        print(f"oasis wallet: balances on this node's own embedded chain ({data_dir}/ledger/chain); give "
              "--chain-dir DIR or --chain-rpc URL for the chain your nodes settle on", file=sys.stderr)
    chain = None if args.offline else open_chain(data_dir, rpc_url=args.chain_rpc, chain_dir=args.chain_dir)
    report = wallet_report(data_dir, chain)
    own_chain = chain is not None and not args.chain_rpc and not args.chain_dir
    if own_chain and report["settled_rewards"] > (report["token_balance"] or 0):
        # the rewards were settled on the chain the node ran with, not this fresh one
        print(f"oasis wallet: {report['settled_rewards']} wei of rewards were settled on the chain this "
              f"node ran with, not on the embedded one opened here ({data_dir}/ledger/chain, chain id "
              f"{report.get('chain_id')}): give that chain's --chain-dir or --chain-rpc to see the balance "
              "they paid", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            amount = k in ("token_balance", "eth_balance", "pending_rewards", "settled_rewards")
            unit = ("OAS" if k != "eth_balance" else "ETH")
            shown = (f"{v} wei ({v / 10**18:.6f} {unit})" if amount and isinstance(v, int)
                     else "not read (--offline)" if v is None and args.offline
                     else "-" if v is None else v)
            print(f"{k:>18}: {shown}")
    return 0


def _deploy(args: argparse.Namespace, data_dir: str) -> int:
    """``oasis wallet --deploy``: fresh contracts on a JSON-RPC chain, their addresses in
    ``<data-dir>/ledger/deployment.json`` (never overwritten)."""
    import json
    import os

    from eth_utils import to_checksum_address

    from oasis.datafiles import write_new
    from oasis.ledger import eip712
    from oasis.ledger.chain import RpcChain
    from oasis.ledger.wallet import Wallet, ledger_dir

    if not args.chain_rpc:
        raise ValueError("--deploy needs --chain-rpc URL (the embedded chain deploys its contracts itself)")
    path = ledger_dir(data_dir) / "deployment.json"
    if path.exists():
        raise ValueError(f"{path} exists: this node is bound to a deployment already (remove the "
                         "file to deploy anew)")
    faucet = os.environ.get("OASIS_DEV_FAUCET_KEY")
    try:
        key = bytes.fromhex(faucet.removeprefix("0x")) if faucet else Wallet.load_or_create(data_dir).key
        if len(key) != 32:
            raise ValueError
    except ValueError:
        raise ValueError("OASIS_DEV_FAUCET_KEY is not a secp256k1 secret (64 hex digits)") from None
    chain = RpcChain(args.chain_rpc)
    payer = eip712.address_of_key(key)
    if chain.w3.eth.get_balance(to_checksum_address(payer)) == 0:
        raise ValueError(f"the deployment's gas is paid by 0x{payer.hex()} ("
                         + ("OASIS_DEV_FAUCET_KEY" if faucet else "this wallet")
                         + "), which holds no ETH on this chain: fund it, or give OASIS_DEV_FAUCET_KEY "
                         "the key of a funded account")
    deployment = chain.deploy(key)
    write_new(path, deployment.to_json().encode())
    out = json.loads(deployment.to_json()) | {"deployment": str(path)}
    print(json.dumps(out) if args.json else "\n".join(f"{k:>18}: {v}" for k, v in out.items()))
    return 0


def _rewards_config(args: argparse.Namespace, data_dir: str) -> object | None:
    if not args.rewards:
        return None
    import os

    from oasis.node.rewards import RewardsConfig

    faucet = os.environ.get("OASIS_DEV_FAUCET_KEY")
    return RewardsConfig(data_dir=data_dir, chain_rpc=args.chain_rpc, chain_dir=args.chain_dir,
                         epoch_length=args.epoch,
                         dev_faucet_key=bytes.fromhex(faucet.removeprefix("0x")) if faucet else None)


def _files(args: argparse.Namespace, rt: Any) -> int:
    from oasis.node import filecmd

    if args.disk_cap_mb < 1:
        raise ValueError("--disk-cap-mb must be at least 1")
    if not 0 <= args.upload_mbps <= 100_000:  # (-1 was taken as "no limit", unsaid; nan too)
        raise ValueError("--upload-mbps must be 0 (unbounded) to 100000")
    o = filecmd.FileOptions(data_dir=args.data_dir or rt.default_data_dir(args.cmd), listen=args.listen,
                            http_listen=args.http, cap_bytes=args.disk_cap_mb * 1024 * 1024,
                            origin=getattr(args, "origin", None), upload_mbps=args.upload_mbps,
                            progress=args.progress)
    if args.cmd == "publish":
        published: int = _run(filecmd.publish(o, args.file))
        return published
    else:
        if not 0 <= args.timeout <= 86_400:  # (nan and inf waited for ever, unsaid)
            raise ValueError("--timeout must be 0 (never) to 86400 s")
        if args.origin:  # the rule of a file link's o= (found 2026-12-05: taken, then waited out)
            from oasis.core.urls import base_url_problem
            problem = base_url_problem(args.origin, "origin URL")
            if problem is not None:
                raise ValueError(f"--origin {problem}")
        try:
            status: int = _run(filecmd.get(o, args.target, out=args.output, peers=args.peer,
                                           keep_seeding=args.keep_seeding, play=args.play,
                                           stall_timeout=args.timeout))
        except filecmd.FetchFailed as exc:
            print(f"oasis get: {exc}", file=sys.stderr)
            return 1
        return status
    return 0


#: the options that set a listening address, per command: (option, attribute, UDP?, default)
_LISTENS: dict[str, tuple[tuple[str, str, bool, str | None], ...]] = {
    "broadcast": (("--http", "http", False, None), ("--api-listen", "api_listen", False, None),
                  ("--listen", "listen", True, None)),
    "watch": (("--gateway", "gateway", False, "127.0.0.1:8080"), ("--api-listen", "api_listen", False, None),
              ("--listen", "listen", True, None)),
    "node": (("--http", "http", False, None), ("--api-listen", "api_listen", False, "127.0.0.1:7480"),
             ("--listen", "listen", True, None)),
    "chat": (("--listen", "listen", True, None),),
    "dm": (("--listen", "listen", True, None),),
    "publish": (("--http", "http", False, None), ("--listen", "listen", True, None)),
    "get": (("--http", "http", False, None), ("--listen", "listen", True, None)),
    "tracker": (("--listen", "listen", False, "127.0.0.1:7000"),),
}


def _address_in_use(args: argparse.Namespace, exc: BaseException) -> str | None:
    """For a bind refused because the address is taken (``EADDRINUSE``), the message naming
    the option that set that address; None for any other error. An HTTP face's refusal
    (``start_http``) names the address; the OFTP socket's (UDP) is the bare ``OSError``."""
    import errno
    import re

    from oasis.node.http import address_in_use

    if not any(isinstance(e, OSError) and e.errno == errno.EADDRINUSE
               for e in (exc, exc.__context__, exc.__cause__)):
        return None
    m = re.match(r"(.*):(\d+) is already in use", str(exc))
    udp = m is None
    found = []
    for option, attr, is_udp, default in _LISTENS.get(args.cmd, ()):
        value = getattr(args, attr, None)
        if is_udp != udp or not isinstance(value, str):
            continue
        host, _, port = value.rpartition(":")
        if not port.isdigit() or int(port) == 0:
            continue  # any free port: never the one taken
        if m is None or (int(port) == int(m.group(2)) and (host or "127.0.0.1") == m.group(1)):
            found.append((option, value, value == default))
    if len(found) > 1:
        return (f"{found[0][1]} is given to both {found[0][0]} and {found[1][0]}: one address, one "
                "listener; give them different ports (or port 0 for any free one)")
    if not found:
        return None
    option, value, is_default = found[0]
    extra = "; --api-listen off: no API" if option == "--api-listen" else ""
    return address_in_use(value if m is None else f"{m.group(1)}:{m.group(2)}", option, udp=udp,
                          default=is_default, extra=extra)


def _check_talk(args: argparse.Namespace) -> None:
    """``oasis chat`` and ``oasis dm``: the peer id and the ``--send`` text, checked before
    anything starts (a bad one was refused only after joining the swarm)."""
    from oasis.node.msgcli import SendError, check_peer, parse_line

    if not 0 < args.wait <= 3600:  # (nan sent the DM, then failed converting it; -1 was taken)
        raise ValueError("--wait must be more than 0 and at most 3600 s")
    dm_to = args.peer_id if args.cmd == "dm" else None
    if dm_to is not None:
        check_peer(dm_to, dm_to=True)
    if args.send is not None:
        try:
            parse_line(args.send, dm_to)
        except SendError as exc:
            raise SendError(exc.code, f"--send: {exc}") from None


def _check_demo(args: argparse.Namespace) -> None:
    """The demo's numbers, before anything starts (``--duration nan`` printed a summary with
    NaN in it, which is not JSON; -5 and ``--viewers -1`` or 0 ran and reported nothing; a
    bitrate the broadcaster refuses failed as "exited before it started (exit None)")."""
    if not 1 <= args.viewers <= 200:
        raise ValueError("--viewers must be 1 to 200")
    if not 0 < args.duration <= 86_400:  # (False for nan)
        raise ValueError("--duration must be more than 0 and at most 86400 s")
    if not (10 <= args.bitrate <= 1_000_000 and 10 <= args.chunk_ms <= 10_000):
        raise ValueError("--bitrate must be 10..1000000 kbit/s and --chunk-ms 10..10000")
    for flag in ("upload_kbps", "broadcaster_upload_kbps"):
        v = getattr(args, flag)
        if v is not None and not 0 <= v <= 10_000_000:
            raise ValueError(f"--{flag.replace('_', '-')} must be 0 (no cap) to 10000000")
    if args.rewards and not 1 <= args.epoch <= 86_400:
        raise ValueError("--epoch must be 1 to 86400 s")


def _standard_fds() -> None:
    """Open /dev/null on whichever of fds 0-2 is closed (``oasis broadcast - <&-``, a
    service manager's closed stdout): else the event loop's own descriptors land there,
    and libuv aborts the process when it closes them (exit 134; found 2026-12-06 from
    outside). A closed stdin then reads as empty, a closed stdout takes what is written."""
    import os

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if fd == 0 and sys.stdin is None:
                sys.stdin = open(0, closefd=False)  # noqa: SIM115 - fd 0 for the process's life
            elif fd == 1 and sys.stdout is None:
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            elif fd == 2 and sys.stderr is None:
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def main(argv: list[str] | None = None) -> int:
    _standard_fds()
    prof_dir = os.environ.get("OASIS_CPROFILE")
    if prof_dir:  # a developer's tool: where each process's CPU goes (docs/testbed.md)
        return _profiled(prof_dir, argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:  # (before a command's own handling: during its imports, ~0.2 s)
        print("oasis: interrupted", file=sys.stderr)
        return 130


def _profiled(prof_dir: str, argv: list[str] | None) -> int:
    """``main`` under cProfile on a CPU-time clock (time waiting for the network or the
    scheduler is not counted), the statistics written to ``prof_dir``/``<cmd>-<pid>.prof``
    when the command returns (a node stopped by SIGTERM or SIGINT returns)."""
    import cProfile
    import time

    prof = cProfile.Profile(time.process_time)
    args = argv if argv is not None else sys.argv[1:]
    cmd = args[0] if args and args[0].isalpha() else "oasis"  # (not "--help" as a file name)
    prof.enable()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("oasis: interrupted", file=sys.stderr)
        return 130
    finally:
        prof.disable()
        try:
            os.makedirs(prof_dir, exist_ok=True)
            prof.dump_stats(os.path.join(prof_dir, f"{cmd}-{os.getpid()}.prof"))
        except OSError as exc:
            print(f"oasis: OASIS_CPROFILE: {exc}", file=sys.stderr)


def _main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    # a user's stderr: "oasis watch: warning: ..." like the commands' own lines; --verbose
    # keeps the time and the logger's name
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s" if verbose
                        else f"oasis {args.cmd}: %(levelname)s: %(message)s")
    if not verbose:
        for level in (logging.WARNING, logging.ERROR, logging.CRITICAL):
            logging.addLevelName(level, logging.getLevelName(level).lower())
    if os.environ.get("OASIS_TRACE_PUNCH"):
        logging.getLogger("oasis.punch").setLevel(logging.INFO)  # oasis.node.node.trace
    if args.cmd == "testbed":
        from oasis.testbed.runner import run_testbed
        return run_testbed(args)
    if args.cmd == "sim":
        from oasis.sim.cli import run as run_sim
        return run_sim(args)
    from oasis.node import runtime as rt

    try:
        if args.cmd == "demo":
            from oasis.demo import run_demo
            _check_demo(args)
            return run_demo(args)
        if args.cmd == "tracker":
            _run(rt.tracker_only(args.listen, public_metrics=args.public_metrics))
            return 0
        if args.cmd == "edge":
            from oasis.node.edge import run_edge
            _run(run_edge(args.origin, args.listen, public_metrics=args.public_metrics, feeds=args.feeds,
                             hold=args.hold, follow=args.follow))
            return 0
        if args.cmd == "wallet":
            return _wallet(args)
        if args.cmd in ("publish", "get"):
            return _files(args, rt)
        talk = args.cmd in ("chat", "dm")
        if talk:
            _check_talk(args)
            ignored = [f for f in NOT_FOR_TALK if getattr(args, f[2:].replace("-", "_")) is not None]
            if ignored:
                what = "not an option" if len(ignored) == 1 else "not options"
                print(f"oasis {args.cmd}: {', '.join(ignored)} ignored, {what} of `oasis {args.cmd}` "
                      "(the stream's signed descriptor sets its parameters; chat earns no rewards)",
                      file=sys.stderr)
        # chat and dm have no media options: the stream's descriptor gives them
        media = {k: None if talk else getattr(args, k) for k in ("bitrate", "chunk_ms", "substreams", "upload_kbps")}
        given = {k: v for k, v in (("bitrate_kbps", media["bitrate"]), ("chunk_ms", media["chunk_ms"]),
                                   ("substreams", media["substreams"])) if v is not None}
        bitrate = 1500 if media["bitrate"] is None else media["bitrate"]
        chunk_ms = sw.DEFAULT_CHUNK_MS if media["chunk_ms"] is None else media["chunk_ms"]
        substreams = 4 if media["substreams"] is None else media["substreams"]
        if not 1 <= substreams <= 16:
            raise ValueError("--substreams must be between 1 and 16")
        if not 10 <= chunk_ms <= 10_000 or not 10 <= bitrate <= 1_000_000:
            raise ValueError("--chunk-ms must be 10..10000 and --bitrate 10..1000000")
        if not 0 <= args.link_delay_ms <= 10_000:
            raise ValueError("--link-delay-ms must be between 0 and 10000")
        # (the comparisons are False for nan; inf made the origin fallback's timers raise)
        if not MIN_PLAYOUT_DELAY <= args.playout_delay <= MAX_PLAYOUT_DELAY:
            raise ValueError(f"--playout-delay must be between {MIN_PLAYOUT_DELAY:g} and "
                             f"{MAX_PLAYOUT_DELAY:g} s")
        if media["upload_kbps"] is not None and not 0 <= media["upload_kbps"] <= 10_000_000:
            raise ValueError("--upload-kbps must be between 0 (no cap) and 10000000")
        if not abs(getattr(args, "clock_skew_ms", 0.0)) <= 86_400_000:
            raise ValueError("--clock-skew-ms must be within a day")
        epoch = getattr(args, "epoch", None)  # (None: chat and dm, which take none)
        if epoch is not None and not 1 <= epoch <= 86_400:  # (-1 was taken unsaid without --rewards)
            raise ValueError("--epoch must be 1 to 86400 s")
        if len(args.area) > MAX_AREA or not args.area.isprintable():
            # (a control character was taken by `watch` and refused by the tracker at every
            # announce, unsaid until a stop exited 2 with it: found 2026-12-06 from outside)
            raise ValueError(f"--area must be printable (no control characters), at most {MAX_AREA} characters")
        from oasis.core.urls import base_url_problem
        # URLs the node will request, checked before anything starts: --tracker by the rule of
        # a link's t= and the API's tracker, --cdn-url by a descriptor's (docs/oftp.md §10.1)
        for flag, what in (("tracker", "tracker URL"), ("cdn_url", "CDN URL")):
            url = getattr(args, flag, None)
            problem = base_url_problem(url, what) if url else None
            if problem is not None:
                raise ValueError(f"--{flag.replace('_', '-')} {problem}")
        # None: the node's own guess, probed (rt.swarm_config; a viewer's bitrate comes from the
        # stream's descriptor); `oasis broadcast`'s is fixed at 4x (what it gives is its choice)
        upload = media["upload_kbps"] if media["upload_kbps"] is not None or args.cmd in ("watch", "node") or talk \
            else rt.UPLOAD_X * bitrate
        data_dir = args.data_dir or rt.default_data_dir(args.cmd)
        c = rt.Common(data_dir=data_dir, listen=args.listen,
                      rewards=None if talk or args.cmd == "node" else _rewards_config(args, data_dir),
                      upload_kbps=upload, bitrate_kbps=bitrate, chunk_ms=chunk_ms,
                      substreams=substreams, playout_delay=args.playout_delay,
                      json_out=args.json, seed=args.seed, link_delay_ms=args.link_delay_ms,
                      area=args.area, given=given, api_listen=getattr(args, "api_listen", None), quic=args.quic,
                      public_metrics=getattr(args, "public_metrics", False),
                      clock_skew_ms=getattr(args, "clock_skew_ms", 0.0))
        if args.cmd == "broadcast":
            ended: int = _run(rt.broadcast(c, source=args.source, name=args.name, http_listen=args.http,
                                           tracker_url=args.tracker, cdn_url=args.cdn_url,
                                           encrypt=args.encrypt))
            return ended
        elif args.cmd == "node":
            from oasis.node.daemon import run_node
            _run(run_node(c, http_listen=args.http, tracker_url=args.tracker))
        elif talk:
            from oasis.node.msgcli import talk as run_talk

            status: int = _run(run_talk(c, stream=args.via if args.cmd == "dm" else args.stream_id,
                                        tracker_url=args.tracker, send=args.send,
                                        dm_to=args.peer_id if args.cmd == "dm" else None, wait=args.wait))
            return status
        elif args.cmd == "watch":
            if args.stream_id == "-":  # the link on stdin: kept out of argv (ps shows argv to all)
                args.stream_id = _link_from_stdin()
            _run(rt.watch(c, stream_id=args.stream_id, tracker_url=args.tracker,
                          gateway=args.gateway, cdn_url=args.cdn_url, relay_only=args.relay_only))
    except rt.Stopped:  # a stop signal while it was still starting: a clean stop
        return 0
    except (ValueError, StreamIdError, OSError, RuntimeError) as exc:
        print(f"oasis {args.cmd}: error: {_address_in_use(args, exc) or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
