"""What ``oasis publish`` and ``oasis get`` say on stderr: progress lines (on a terminal, or
with ``--progress``), always a final line, and on Ctrl-C what is kept and that the same
command resumes -- which it does. (A 35 MB get was silent for 30 s, and silent when
interrupted.) Real processes: a publisher paced by ``--upload-mbps``, a getter."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from procs import OasisProcess, stderr_lines_until

from oasis.demo import die_with_parent


def test_get_shows_progress_and_an_interrupted_get_resumes(tmp_path: Path) -> None:
    src = tmp_path / "clip.bin"
    src.write_bytes(os.urandom(3_000_000))  # 92 blocks of 32 KiB
    pub = OasisProcess(["publish", str(src), "--data-dir", str(tmp_path / "pub"), "--upload-mbps", "8"],
                       str(tmp_path / "pub.log"))  # 1 MB/s: the get takes ~3 s
    getter: subprocess.Popen[bytes] | None = None
    try:
        link = pub.wait_info(60)["link"]
        published = (tmp_path / "pub.log").read_text()  # written before the start line
        assert re.search(r"oasis publish: clip.bin: 3.0 MB in 92 blocks, hashed in [0-9.]+ s \(", published)
        out = tmp_path / "out.bin"
        cmd = [sys.executable, "-m", "oasis", "get", link, "-o", str(out), "--data-dir", str(tmp_path / "get")]
        getter = subprocess.Popen([*cmd, "--progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent,
                                  bufsize=0)
        lines = stderr_lines_until(getter, r"oasis get: [1-9][0-9]*/92 blocks", 30)
        line = lines[-1]
        assert re.search(r"/92 blocks, [0-9.]+ MB of 3.0 MB \([0-9]+ %\), [0-9.]+ MB/s, 1 peer$", line), line
        getter.send_signal(signal.SIGINT)
        assert getter.wait(20) == 130
        assert getter.stderr is not None
        last = getter.stderr.read().decode().strip().splitlines()[-1]
        kept = re.search(r"^oasis get: interrupted: ([0-9]+) of 92 blocks \([0-9.]+ MB of 3.0 MB\) kept in "
                         + re.escape(str(tmp_path / "get")) + "; run the same command again to resume$", last)
        assert kept and 0 < int(kept.group(1)) < 92, last
        assert not out.exists()

        # the same command again: resumes; stderr is no terminal and no --progress: the final line only
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert again.returncode == 0, again.stderr
        final = again.stderr.strip().splitlines()
        assert len(final) == 1, final
        size = r"[0-9.]+ (?:MB|kB|B)"  # (below 0.1 MB in kB, below 1 kB in bytes: filecmd.mb)
        assert re.search(rf"^oasis get: 3.0 MB \(92 blocks\) in [0-9.]+ s, {size}/s \({size} from peers, "
                         rf"0 B from the origin, {size} kept from an earlier run\); written to ", final[0]), final[0]
        assert out.read_bytes() == src.read_bytes()
    finally:
        if getter is not None:
            if getter.poll() is None:
                getter.kill()
                getter.wait()
            for f in (getter.stdout, getter.stderr):
                if f is not None:
                    f.close()
        pub.stop()
