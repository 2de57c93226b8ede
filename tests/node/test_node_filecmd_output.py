"""Where ``oasis get`` writes a fetched file: the publisher names it, so without ``-o`` the
name is a display name only: never a hidden file (a published ``.bashrc`` overwrote the
user's), never over an existing file, never a path. ``-o`` is checked before any fetch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oasis.node.filecmd import check_output, default_output, output_kind, write_output, write_stream

CID = "of1" + "a" * 50


def test_a_publishers_name_cannot_hide_overwrite_or_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "fetched"
    src.write_bytes(b"the publisher's bytes")
    Path(".bashrc").write_text("MINE")
    Path("clip.mp4").write_text("MINE too")
    assert write_output(src, None, ".bashrc", CID) == Path("bashrc")
    assert Path(".bashrc").read_text() == "MINE"
    assert write_output(src, None, ".bashrc", CID) == Path("bashrc (1)")
    assert write_output(src, None, "clip.mp4", CID) == Path("clip (1).mp4")
    assert Path("clip.mp4").read_text() == "MINE too"
    assert write_output(src, None, "../../etc/passwd", CID) == Path("passwd")
    assert write_output(src, None, "...", CID) == Path(CID)  # nothing left of the name
    assert write_output(src, None, "", CID).name == CID + " (1)"
    assert Path("passwd").read_bytes() == b"the publisher's bytes"
    os.symlink("/nonexistent/target", "dangling.txt")  # a dangling link is taken, not followed
    assert default_output("dangling.txt", CID) == Path("dangling (1).txt")
    # -o is what the user asked for: replaced
    assert write_output(src, "clip.mp4", "whatever", CID) == Path("clip.mp4")
    assert Path("clip.mp4").read_bytes() == b"the publisher's bytes"


def test_a_copy_that_fails_midway_leaves_the_old_file_and_no_part(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up while the fetched file is copied out (found 2026-12-05 from
    outside: `-o keep.ts` was left a 1 MB prefix of the video, the old content gone; without
    -o a truncated file stayed under the publisher's name). The copy goes beside the
    destination and is renamed into place whole: a failure leaves what was there."""
    import errno
    import shutil

    monkeypatch.chdir(tmp_path)
    src = tmp_path / "fetched"
    src.write_bytes(os.urandom(3 << 20))
    Path("keep.ts").write_text("precious old content")
    real = shutil.copyfileobj

    def fill_up(fin: object, fout: object, length: int = 0) -> None:
        fout.write(b"x" * 1000)  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shutil, "copyfileobj", fill_up)
    for out in ("keep.ts", None):
        with pytest.raises(ValueError, match=f"No space left on device.*oasis get {CID} -o PATH"):
            write_output(src, out, "clip.mp4", CID)
    assert Path("keep.ts").read_text() == "precious old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fetched", "keep.ts"]  # no part, no clip.mp4
    monkeypatch.setattr(shutil, "copyfileobj", real)
    assert write_output(src, "keep.ts", "clip.mp4", CID) == Path("keep.ts")
    assert Path("keep.ts").read_bytes() == src.read_bytes()
    os.mkfifo("pipe")  # -o a pipe (or /dev/stdout): written into, no file beside it
    import threading
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(Path("pipe").read_bytes()))
    reader.start()
    import asyncio

    assert asyncio.run(write_stream(src, "pipe", CID, asyncio.Event())) is True
    reader.join(10)
    assert got == [src.read_bytes()] and Path("pipe").is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fetched", "keep.ts", "pipe"]
    os.symlink("keep.ts", "link.ts")  # -o through a link writes where it points, as before
    src.write_bytes(b"new")
    write_output(src, "link.ts", "clip.mp4", CID)
    assert Path("link.ts").is_symlink() and Path("keep.ts").read_bytes() == b"new"


def test_a_long_or_non_ascii_name_fits_a_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest name may have 255 characters; a file name 255 bytes. 200 × 'é' + '.mp4'
    (404 bytes), or a 251-character name whose file exists ('... (1).mp4', 259), failed the
    get after the whole download with ENAMETOOLONG (found 2026-12-05 from outside)."""
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "fetched"
    src.write_bytes(b"bytes")
    got = write_output(src, None, "é" * 200 + ".mp4", CID)
    assert got.suffix == ".mp4" and len(got.name.encode()) <= 255 and got.name.startswith("é" * 100)
    long = "a" * 247 + ".mp4"
    first, second = write_output(src, None, long, CID), write_output(src, None, long, CID)
    assert first.name == long and second.name.endswith(" (1).mp4") and len(second.name.encode()) <= 255
    assert first.read_bytes() == second.read_bytes() == b"bytes"


def test_a_bad_output_path_is_refused_before_the_fetch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        check_output(str(tmp_path))
    with pytest.raises(ValueError, match="no directory"):
        check_output(str(tmp_path / "missing" / "x.mp4"))
    check_output(str(tmp_path / "x.mp4"))
    check_output("x.mp4")
    check_output(None)
    check_output("-")  # stdout
    for disk in ("/dev/loop0", "/dev/sda", "/dev/vda"):  # a block device: never written
        if Path(disk).is_block_device():
            with pytest.raises(ValueError, match="is a block device"):
                check_output(disk)
    import socket

    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        with pytest.raises(ValueError, match="is a socket"):
            check_output(str(sock_path))


def test_a_get_with_nothing_to_fetch_from_gives_up_and_says_why(tmp_path: Path) -> None:
    """A link whose origin is dead (and no peer): ``oasis get`` went on for ever, silent,
    asking the origin hundreds of times a second. Now it backs the origin off and, after
    ``--timeout`` seconds without a block, exits 1 naming what it tried."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    link = f"oasis://file/{CID[:3]}2wtwgemwoiohfcnpu3na7v7rtriywhlpzahwvrdk5cbungqcgncq?o=http://127.0.0.1:{dead}"
    r = subprocess.run([sys.executable, "-m", "oasis", "get", link, "--data-dir", str(tmp_path / "g"),
                        "--timeout", "3", "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "no block of" in r.stderr and "for 3 s (not even the manifest)" in r.stderr, r.stderr
    asked = int(r.stderr.split("the origin ")[1].split(" requests")[0])
    assert 1 <= asked <= 10, r.stderr  # backed off, not hammered
    assert not (tmp_path / "out").exists()


def test_a_second_get_in_the_same_data_directory_is_refused_not_left_hanging(tmp_path: Path) -> None:
    """Two ``oasis get`` sharing a data directory (the default one) raced on its file store
    and one never finished: the second is now refused at once, naming the directory."""
    import fcntl
    import subprocess
    import sys

    (tmp_path / "g").mkdir(mode=0o700)
    with open(tmp_path / "g" / "node.lock", "a+") as held:  # as a running `oasis get` holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("`oasis get` (pid 4242)\n")
        held.flush()
        r = subprocess.run([sys.executable, "-m", "oasis", "get", CID, "--origin", "http://127.0.0.1:9",
                            "--data-dir", str(tmp_path / "g"), "--timeout", "5"],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is in use by `oasis get` (pid 4242)" in r.stderr, r.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_publish_stopped_while_hashing_stops_publishes_nothing_and_leaves_no_copy(
        tmp_path: Path, sig: str) -> None:
    """Ctrl-C while ``oasis publish`` copied and hashed its file was lost: the copy went on
    and the file was published and seeded; SIGTERM killed it outright, leaving the half-made
    copy in the store. Now either stops the copy at its next block, removes it, and exits 130."""
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "big.bin"
    with open(src, "wb") as f:  # 200 MB: several tenths of a second to copy and hash
        block = os.urandom(1 << 20)
        for _ in range(200):
            f.write(block)
    store = tmp_path / "p" / "files"
    for _attempt in range(3):  # an attempt whose copy ended before we saw it begin: again
        proc = subprocess.Popen([sys.executable, "-m", "oasis", "publish", str(src), "--data-dir",
                                 str(tmp_path / "p")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            deadline = time.monotonic() + 60
            while not list(store.glob(".publish-*/data")) and proc.poll() is None:
                assert time.monotonic() < deadline, "the copy never began"
                time.sleep(0.002)
            proc.send_signal(getattr(signal, sig))
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if out:  # published before the signal came: not the case under test
            continue
        assert proc.returncode == 130, err
        assert "stopped while hashing big.bin: nothing published" in err, err
        assert "Traceback" not in err, err
        assert sorted(p.name for p in store.iterdir()) == [], "a copy or an entry was left"
        return
    pytest.fail("three copies of 200 MB ended before their start was seen")


def test_get_play_without_a_player_says_so_and_serves_the_url_until_ctrl_c(tmp_path: Path) -> None:
    """Found 2026-12-02 by a new user: ``oasis get --play`` with no player installed printed
    "open <url>", and the URL was dead by the time it was read (the download had ended)."""
    import json
    import select
    import shutil
    import signal
    import subprocess
    import sys
    import urllib.request

    from procs import OasisProcess

    clip = tmp_path / "clip.ts"
    clip.write_bytes(bytes(range(256)) * 400)
    pub = OasisProcess(["publish", str(clip), "--data-dir", str(tmp_path / "p")], str(tmp_path / "p.log"))
    bare = tmp_path / "bin"  # a PATH with python and no player on it
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    assert not any(shutil.which(p, path=str(bare)) for p in ("ffplay", "mpv", "vlc"))
    get = None
    try:
        link = pub.wait_info(60)["link"]
        get = subprocess.Popen([sys.executable, "-m", "oasis", "get", link, "--play", "-o", str(tmp_path / "out.ts"),
                                "--data-dir", str(tmp_path / "g")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "PATH": str(bare)})
        assert get.stdout is not None
        lines = []
        for _ in range(2):  # the start line, then the file's (written) line
            ready, _, _ = select.select([get.stdout], [], [], 60)
            assert ready, "no line within 60 s"
            lines.append(json.loads(get.stdout.readline()))
        url = lines[0]["url"]
        assert lines[1]["output"] == str(tmp_path / "out.ts") and get.poll() is None
        with urllib.request.urlopen(url, timeout=10) as r:  # still served, after the download
            assert r.status == 200 and r.read() == clip.read_bytes()
        get.send_signal(signal.SIGINT)
        _, err = get.communicate(timeout=30)
        text = err.decode()
        assert get.returncode == 0, text
        assert "--play found no player (ffplay, mpv or vlc on PATH)" in text and url in text
        assert f"the file is {tmp_path / 'out.ts'}" in text and "Traceback" not in text
    finally:
        if get is not None and get.poll() is None:
            get.kill()
            get.communicate()
        pub.stop()


def test_an_output_that_became_a_directory_or_cannot_take_the_bytes_is_refused_with_the_way_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-o` is checked before the fetch (test above), but the path can change while the file
    comes: a directory made there since, or a device that cannot take the bytes, gave an
    IsADirectoryError / OSError from deep in the copy. Now one line that says where
    the file still is; nothing is written into or beside the directory."""
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "fetched"
    src.write_bytes(b"the video")
    Path("out").mkdir()
    with pytest.raises(ValueError, match=f"cannot write out: is a directory.*oasis get {CID} -o PATH"):
        write_output(src, "out", "clip.mp4", CID)
    assert list(Path("out").iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["fetched", "out"]
    if Path("/dev/full").exists():  # a device (written into, as /dev/stdout is) that cannot take it
        import asyncio

        assert output_kind("/dev/full") == "stream"
        with pytest.raises(ValueError, match=f"cannot write /dev/full: No space left on device.*oasis get {CID}"):
            asyncio.run(write_stream(src, "/dev/full", CID, asyncio.Event()))
        with pytest.raises(ValueError, match=f"cannot write /dev/full: it became a pipe or device.*oasis get {CID}"):
            write_output(src, "/dev/full", "clip.mp4", CID)  # (a regular file when the get began)


async def test_a_pipe_is_written_as_its_reader_takes_it_and_a_stop_is_heard_while_none_reads(
        tmp_path: Path) -> None:
    """Found 2026-12-06 from outside: ``-o FIFO`` that nobody read blocked the event loop in
    open() for ever, Ctrl-C and SIGTERM unheard (only SIGKILL ended it). Now it waits for a
    reader without blocking, hears the stop, and writes as the reader reads."""
    import asyncio
    import threading

    src = tmp_path / "fetched"
    src.write_bytes(os.urandom(1 << 20))  # more than a pipe holds: the writer must wait for room
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert output_kind(str(fifo)) == "stream"
    stop = asyncio.Event()
    task = asyncio.ensure_future(write_stream(src, str(fifo), CID, stop))
    done, _ = await asyncio.wait({task}, timeout=0.5)  # no reader: still waiting, loop alive
    assert not done
    stop.set()
    assert await asyncio.wait_for(task, 5) is False  # the stop is heard
    got = bytearray()

    def read() -> None:
        with open(fifo, "rb") as f:
            while block := f.read(65536):
                got.extend(block)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert await asyncio.wait_for(write_stream(src, str(fifo), CID, asyncio.Event()), 30) is True
    await asyncio.to_thread(reader.join, 10)
    assert bytes(got) == src.read_bytes()


def test_get_to_stdout_writes_the_file_there_and_its_json_lines_to_stderr(tmp_path: Path) -> None:
    """``oasis get LINK -o -`` (and ``-o /dev/stdout``) into a pipe: the file's bytes on
    stdout, nothing else; the JSON lines on stderr (before, ``-o /dev/stdout`` failed after
    the download with "cannot write /proc/.../pipe:[...]" and ``-o -`` wrote a file named -)."""
    import json
    import subprocess
    import sys

    from procs import OasisProcess

    clip = tmp_path / "clip.ts"
    clip.write_bytes(os.urandom(300_000))
    pub = OasisProcess(["publish", str(clip), "--data-dir", str(tmp_path / "p")], str(tmp_path / "p.log"))
    try:
        link = pub.wait_info(60)["link"]
        for i, out in enumerate(("-", "/dev/stdout")):
            got = subprocess.run([sys.executable, "-m", "oasis", "get", link, "-o", out,
                                  "--data-dir", str(tmp_path / f"g{i}")], capture_output=True, timeout=60,
                                 cwd=tmp_path, stdin=subprocess.DEVNULL)
            assert got.returncode == 0, got.stderr.decode()
            assert got.stdout == clip.read_bytes(), (out, len(got.stdout))
            lines = [json.loads(x) for x in got.stderr.decode().splitlines() if x.startswith("{")]
            assert lines and lines[-1]["output"] == out, got.stderr.decode()
        assert not (tmp_path / "-").exists()
    finally:
        pub.stop()


def test_get_into_a_pipe_nobody_reads_stops_on_sigterm(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from procs import OasisProcess, stderr_lines_until

    clip = tmp_path / "clip.ts"
    clip.write_bytes(os.urandom(100_000))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    pub = OasisProcess(["publish", str(clip), "--data-dir", str(tmp_path / "p")], str(tmp_path / "p.log"))
    get = None
    try:
        link = pub.wait_info(60)["link"]
        get = subprocess.Popen([sys.executable, "-m", "oasis", "get", link, "-o", str(fifo),
                                "--data-dir", str(tmp_path / "g")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        stderr_lines_until(get, "waiting for a reader of", 60)
        get.send_signal(signal.SIGTERM)
        _, err = get.communicate(timeout=15)
        assert get.returncode == 130, err.decode()
        assert f"interrupted while writing {fifo}" in err.decode() and "oasis get of1" in err.decode()
    finally:
        if get is not None and get.poll() is None:
            get.kill()
            get.communicate()
        pub.stop()
