"""Attack (loopback only): a file peer whose FILE_HAVE claims every block of a file and
that then answers no BLOCK_REQUEST, beside an honest source; how long `oasis get` takes.

Found 2026-12-06 by an outside audit (docs/oftp.md §18.2): with such a peer first and the
publisher beside it an 8 MB get took 16.6 s (0.56 s without it), and with only the origin
beside it the download stood at 16 of 245 blocks for 12 s. Real processes: one
`oasis publish`, then for each case a fresh `oasis get` (wall time to exit 0); the staller
is a real node in this process whose file service is replaced by the lie.

A second outside audit (2026-12-06) ran many stallers at once (``--stallers N``, each its
own node in this process; ``--have-rate R``: each also re-sends its FILE_HAVE R times a
second, within the message budget): 23 of them held an 8 MB get 13.6-16.5 s, 32 listed
first stopped it, and 22 re-sending 20 a second stopped a 64 MB one.

python bench/atk9_file_staller.py [--mb 8] [--runs 2] [--stallers 1] [--have-rate 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from oasis.core import content, wire  # noqa: E402
from oasis.core import swarm as sw  # noqa: E402
from oasis.core.filelink import parse as parse_file_link  # noqa: E402
from oasis.core.identity import Identity, peer_id_of  # noqa: E402
from oasis.node.node import Node  # noqa: E402


class Staller:
    """A node's file service that claims every block of ``cid`` and serves none."""

    def __init__(self, cid: bytes, manifest: bytes, blocks: int) -> None:
        self.cid, self.manifest = cid, manifest
        self.have = bytes([0xFF] * (blocks // 8)) + (bytes([(0xFF << (8 - blocks % 8)) & 0xFF]) if blocks % 8 else b"")
        self.requests = 0
        self.links: list[Any] = []  #: links a FILE_WANT came on (``--have-rate`` floods them)

    def on_message(self, link: Any, peer: bytes, msg: wire.Message) -> None:
        if isinstance(msg, wire.FileWant) and msg.cid == self.cid:
            link.send(wire.FileHave(cid=self.cid, manifest=self.manifest, have=self.have))
            self.links.append(link)
            del self.links[:-64]
        elif isinstance(msg, wire.BlockRequest):
            self.requests += len(msg.indices)  # and never an answer

    def flood(self) -> None:
        for link in self.links:
            if not link.closed:
                link.send(wire.FileHave(cid=self.cid, manifest=b"", have=self.have))

    def __getattr__(self, name: str) -> Any:  # link_up, link_down, ...: nothing to do
        return lambda *a, **k: None


async def get(link: str, peers: list[str], out: Path, data_dir: Path) -> dict[str, Any]:
    args = [sys.executable, "-m", "oasis", "get", link, "-o", str(out), "--timeout", "60", "--progress",
            "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]
    for p in peers:
        args += ["--peer", p]
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    took = time.monotonic() - began
    return {"exit": proc.returncode, "wall_s": round(took, 2),
            "stderr_tail": stderr.decode(errors="replace").strip().splitlines()[-12:]}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    ap.add_argument("--stallers", type=int, default=1, help="stalling nodes (each its own key)")
    ap.add_argument("--have-rate", type=float, default=0.0, help="FILE_HAVEs a second each staller re-sends")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="atk9-"))
    src = tmp / "clip.bin"
    src.write_bytes(random.Random(9).randbytes(int(args.mb * 2**20)))
    pub = subprocess.Popen([sys.executable, "-m", "oasis", "publish", str(src), "--data-dir", str(tmp / "pub"),
                            "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    nodes: list[Node] = []
    flooding: asyncio.Task[None] | None = None
    try:
        assert pub.stdout is not None
        info = json.loads(pub.stdout.readline())
        link = parse_file_link(info["link"])
        cid = link.cid
        manifest_raw = urllib.request.urlopen(f"{link.origin}/origin/files/{content.cid_text(cid)}/manifest",
                                              timeout=10).read()
        m = content.decode_manifest(manifest_raw, cid)
        stallers: list[Staller] = []
        for _ in range(args.stallers):
            node = Node(Identity.generate(), sw.SwarmConfig())
            await node.start()
            nodes.append(node)
            stallers.append(Staller(cid, manifest_raw, m.blocks))
            node.files = stallers[-1]  # type: ignore[assignment]
        if args.have_rate > 0:
            async def flood() -> None:
                while True:
                    await asyncio.sleep(1 / args.have_rate)  # the attacker's own pace
                    for st in stallers:
                        st.flood()
            flooding = asyncio.create_task(flood())
        bads = [f"{n.peer_id}@127.0.0.1:{n.port}" for n in nodes]
        k, h, p = link.peers[0]
        good = f"{peer_id_of(k)}@{h}:{p}"
        text = f"oasis://file/{content.cid_text(cid)}"
        many = f"{args.stallers} stallers" if args.stallers > 1 else "staller"
        cases = {
            "publisher alone": (text, [good]),
            f"{many} first, then the publisher": (text, [*bads, good]),
            f"publisher first, then the {many}": (text, [good, *bads]),
            "origin alone": (f"{text}?o={link.origin}", []),
            f"{many} and the origin": (f"{text}?o={link.origin}", bads),
        }
        out: dict[str, Any] = {"mb": args.mb, "blocks": m.blocks, "stallers": args.stallers,
                               "have_rate": args.have_rate, "cases": {}}
        for name, (target, peers) in cases.items():
            if args.only not in name:
                continue
            runs = []
            for r in range(args.runs):
                res = await get(target, [p for p in peers if p], tmp / f"out-{len(runs)}-{r}",
                                tmp / f"get-{abs(hash(name))}-{r}")
                runs.append(res)
            out["cases"][name] = runs
            print(f"{name}: {[r['wall_s'] for r in runs]} s (exit {[r['exit'] for r in runs]})", file=sys.stderr)
        out["staller_requests"] = sum(st.requests for st in stallers)
        print(json.dumps(out))
    finally:
        if flooding is not None:
            flooding.cancel()
        for node in nodes:
            await node.close()
        pub.terminate()
        pub.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)  # (the publisher's copy, the gets' outputs: MBs a run)


if __name__ == "__main__":
    asyncio.run(main())
