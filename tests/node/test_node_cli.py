"""The ``oasis`` command line: what a node's process loads before it starts, and its
refusals."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from procs import OasisProcess


def test_a_viewer_does_not_load_the_simulator_or_the_testbed() -> None:
    """`oasis watch` parses its arguments without the simulator's and the testbed's
    modules (numpy among them: ~0.3 s of CPU per process start); `oasis sim` and
    `oasis testbed` still get their whole option sets."""
    code = ("import sys; from oasis.cli import build_parser\n"
            "a = build_parser(['watch', 'x.live']).parse_args(['watch', 'x.live'])\n"
            "assert a.cmd == 'watch' and a.stream_id == 'x.live', a\n"
            "print(sorted(m for m in ('oasis.sim.cli', 'oasis.testbed.runner', 'numpy') if m in sys.modules))\n"
            "s = build_parser(['sim']).parse_args(['sim', '--peers', '7'])\n"
            "t = build_parser(['testbed']).parse_args(['testbed', '--viewers', '3'])\n"
            "print(s.peers, t.viewers)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "7 3"], out.stdout


def test_broadcast_of_a_source_that_cannot_run_prints_no_start_line(tmp_path: Path) -> None:
    """A script reads the first line for the stream's link: a missing file or one that is
    not MPEG-TS is an error (exit 2) before any start line, not after one."""
    notts = tmp_path / "clip.mp4"
    notts.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000))
    for source, why in ((str(tmp_path / "missing.ts"), "no such file"), (str(notts), "MPEG-TS"),
                        (str(tmp_path), "not a regular file"),  # (was "no such file")
                        # an empty host bound every interface unsaid; an empty user, a "/"
                        ("udp://:5000", "udp://0.0.0.0:5000 (every interface)"),
                        ("udp://@:5000", "no user, path or fragment"),
                        ("udp://127.0.0.1:5000/", "no user, path or fragment")):
        out = subprocess.run([sys.executable, "-m", "oasis", "broadcast", source, "--data-dir",
                              str(tmp_path / "b"), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and why in out.stderr, out.stderr
        assert out.stdout == "" and "Traceback" not in out.stderr


def test_a_udp_source_that_cannot_be_bound_and_a_bad_area_print_no_start_line(tmp_path: Path) -> None:
    """Found 2026-12-06 from outside: `oasis broadcast udp://...` on a port in use (or an
    address not of this machine) printed its start line and link, then failed; `oasis
    watch --area` with a control character ran, every announce refused by the tracker,
    and a SIGTERM then exited 2 with the tracker's complaint."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        for args, why in ((["broadcast", f"udp://127.0.0.1:{port}"], "cannot bind UDP 127.0.0.1"),
                          (["broadcast", "udp://192.0.2.1:5000"], "not an address of this machine"),
                          (["broadcast", "test", "--area", "x\ty"], "--area must be printable"),
                          (["watch", "x.live", "--tracker", "http://127.0.0.1:9/tracker", "--area", "a\x1b[2J"],
                           "--area must be printable")):
            out = subprocess.run([sys.executable, "-m", "oasis", *args, "--data-dir", str(tmp_path / "n"),
                                  "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=120)
            assert out.returncode == 2 and why in out.stderr, (args, out.stderr)
            assert out.stdout == "" and "Traceback" not in out.stderr


def test_watch_with_its_gateway_port_taken_says_what_to_do(tmp_path: Path) -> None:
    """A second viewer on the default gateway port: a clear error (exit 2) naming the way
    out, and nothing left open behind it (no 'Unclosed client session')."""
    b = OasisProcess(["broadcast", "test", "--bitrate", "300", "--data-dir", str(tmp_path / "b")],
                     str(tmp_path / "b.log"))
    try:
        link = b.wait_info(60)["link"]
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            out = subprocess.run([sys.executable, "-m", "oasis", "watch", link, "--gateway", f"127.0.0.1:{port}",
                                  "--data-dir", str(tmp_path / "v")], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stderr
        assert "already in use" in out.stderr and "--gateway 127.0.0.1:0" in out.stderr
        assert "Traceback" not in out.stderr and "Unclosed" not in out.stderr
    finally:
        b.stop()


def test_a_taken_address_is_named_by_the_option_that_set_it(tmp_path: Path) -> None:
    """Every taken address was blamed on a --gateway (which `oasis node` does not have), and
    a taken OFTP port said only '[Errno 98] Address already in use'. Now the message names
    the address, the option that set it and the way out; `publish` and `get` leave nothing
    open behind it ('Unclosed client session')."""
    clip = tmp_path / "clip.ts"
    clip.write_bytes(b"\x47" * 188 * 10)
    cid = "of1" + "a" * 50
    from oasis.core.identity import Identity
    from oasis.core.stream import StreamId
    b = Identity.generate()
    short = f"oasis://{StreamId(b.public, 'live')}?b={b.peer_id}@127.0.0.1:9"
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as free:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        free.bind(("127.0.0.1", 0))
        t, u, f = (f"127.0.0.1:{s.getsockname()[1]}" for s in (tcp, udp, free))
        free.close()  # a port nobody holds: given twice, the second listener finds it taken
        cases = [
            (["node", "--api-listen", t], f"{t} (--api-listen, TCP) is already in use", "--api-listen 127.0.0.1:0"),
            (["node", "--http", t, "--api-listen", "off"], f"{t} (--http, TCP)", "--http 127.0.0.1:0"),
            (["node", "--http", f, "--api-listen", f], f"{f} is given to both --http and --api-listen", "ports"),
            (["broadcast", "test", "--listen", u], f"{u} (--listen, UDP) is already in use", "--listen 127.0.0.1:0"),
            (["broadcast", "test", "--api-listen", t], f"{t} (--api-listen, TCP)", "--api-listen 127.0.0.1:0"),
            (["watch", short, "--listen", u], f"{u} (--listen, UDP)", "--listen 127.0.0.1:0"),
            (["tracker", "--listen", t], f"{t} (--listen, TCP)", "--listen 127.0.0.1:0"),
            (["publish", str(clip), "--http", t], f"{t} (--http, TCP)", "--http 127.0.0.1:0"),
            (["get", cid, "--origin", "http://127.0.0.1:9", "--listen", u], f"{u} (--listen, UDP)", "port 0"),
        ]
        for i, (args, what, way_out) in enumerate(cases):
            data = [] if args[0] == "tracker" else ["--data-dir", str(tmp_path / f"d{i}")]
            out = subprocess.run([sys.executable, "-m", "oasis", *args, *data], capture_output=True, text=True,
                                 timeout=120, stdin=subprocess.DEVNULL)
            first = out.stderr.splitlines()[0] if out.stderr else ""
            assert out.returncode == 2, (args, out.stderr)
            assert first.startswith(f"oasis {args[0]}: error: ") and what in first and way_out in first, (args, first)
            assert "--gateway" not in first and "Traceback" not in out.stderr
            assert "Unclosed" not in out.stderr, (args, out.stderr)  # nothing left open behind it


def test_values_a_command_would_take_unsaid_are_refused_naming_the_option(tmp_path: Path) -> None:
    """Found 2026-12-06 from outside: ``--upload-mbps -1`` and ``--epoch -1`` were taken
    (as no limit, and unused or named ``epoch_length`` later); a port out of range was
    "must be HOST:PORT"; ``dm --via garbage`` did not name --via; a 300-character name was
    echoed whole."""
    from oasis.core.identity import Identity, peer_id_of

    peer = peer_id_of(Identity.generate().public)
    for args, said in ((["get", "of1x", "--upload-mbps", "-1"], "--upload-mbps must be 0 (unbounded)"),
                       (["publish", "x", "--upload-mbps", "nan"], "--upload-mbps must be 0 (unbounded)"),
                       (["broadcast", "test", "--epoch", "-1"], "--epoch must be 1 to 86400 s"),
                       (["broadcast", "test", "--http", "127.0.0.1:99999"], "the port must be 0-65535"),
                       (["dm", peer, "--via", "garbage", "--send", "hi"], "--via: stream id 'garbage'"),
                       (["broadcast", "test", "--name", "A" * 300], "... (300 characters)")):
        out = subprocess.run([sys.executable, "-m", "oasis", *args, "--data-dir", str(tmp_path / "n")],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and said in out.stderr, (args, out.stderr)
        assert len(out.stderr) < 400 and out.stdout == "" and "Traceback" not in out.stderr, (args, out.stderr)


def test_watch_of_a_bad_stream_id_says_the_code_a_bad_link_gets(tmp_path: Path) -> None:
    """`oasis watch http://example` said "not of the form ..." without the ``bad_stream_id``
    code that `oasis watch oasis://garbage` gets, and nothing of what to give instead."""
    for target, says in (("http://example", "a web address is not a stream"), ("oasis://garbage", ""),
                         ("garbage", "")):
        out = subprocess.run([sys.executable, "-m", "oasis", "watch", target, "--tracker",
                              "http://127.0.0.1:9/", "--data-dir", str(tmp_path / "d")],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stderr
        assert "error: bad_stream_id: stream id" in out.stderr and says in out.stderr, out.stderr


@pytest.mark.parametrize("raw", [b"\xef\xbb\xbfLINK\r\n", b"LINK\r\n", b"  LINK \n\n"])
def test_watch_takes_its_link_from_a_file_saved_on_windows(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """`oasis watch - < link.txt` with link.txt saved by Notepad as "UTF-8 with BOM": the
    byte-order mark was taken as part of the link, refused as a bad stream id (found
    2026-12-07 from outside). A CRLF line end and spaces were already taken."""
    import io

    from oasis.cli import _link_from_stdin

    link = "oasis://" + "a" * 52 + ".live?b=x"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw.replace(b"LINK", link.encode())),
                                                      encoding="utf-8"))
    assert _link_from_stdin() == link
