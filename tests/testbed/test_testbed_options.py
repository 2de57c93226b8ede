"""`oasis testbed` refuses options no run can use before it builds anything: a clear
error (exit 2), no traceback, nothing created. Needs no root (nothing is built)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oasis.testbed import runner


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    args = runner.parse_args(argv)
    code = runner.run_testbed(args)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("argv", "says"), [
    (["--viewers", "-3"], "--viewers -3"),
    (["--viewers", "0"], "--viewers 0"),
    (["--nat-share", "1.5"], "--nat-share"),
    (["--symmetric-share", "-0.1"], "--nat-share and --symmetric-share"),
    (["--countries", "XX,DE"], "unknown XX"),
    (["--duration", "0"], "--duration 0"),
    (["--duration", "-5"], "--duration -5"),
    (["--loss", "1.5"], "--loss 1.5"),
    (["--playout-delay", "-1"], "--playout-delay"),
    (["--timeout", "0"], "--timeout 0"),
    (["--rebind-at", "100", "--duration", "40"], "--rebind-at 100"),
    (["--topology", "/nonexistent/topo.json"], "No such file"),
    (["--rebind", "3"], "give --rebind-at too"),
    (["--broadcaster-nice", "5"], "--broadcaster-nice 5"),
    (["--broadcaster-nice", "-21"], "--broadcaster-nice -21"),
    (["--delayer-tick-ms", "-1"], "--delayer-tick-ms -1"),
    (["--delayer-tick-ms", "50"], "--delayer-tick-ms 50"),
    # found 2026-12-06: taken, and the run would have failed deep in its build (or never ended)
    (["--viewers", "100000"], "--viewers 100000: 1 to 400"),
    (["--duration", "nan"], "--duration nan"),
    (["--playout-delay", "nan"], "--playout-delay nan"),
    (["--join-spread", "inf"], "--join-spread inf"),
    (["--delay-scale", "nan"], "--delay-scale nan"),
    (["--prefix", "../x"], "--prefix '../x'"),
    # found 2026-12-06 from outside: taken, the network built, then "b exited before it
    # started (exit 2)" with the reason in b.log alone; an empty country; a rebinding of
    # nobody run to the end
    (["--bitrate", "5"], "--bitrate 5: 10 to 1,000,000"),
    (["--bitrate", "2000000"], "--bitrate 2000000"),
    (["--chunk-ms", "1"], "--chunk-ms 1: 10 to 10,000"),
    (["--chunk-ms", "100000000"], "--chunk-ms 100000000"),
    (["--countries", "DE,"], "--countries: an empty name"),
    (["--countries", "DE,,US"], "--countries: an empty name"),
    (["--rebind-at", "4", "--nat-share", "0"], "no viewer of this topology sits behind a home router"),
])
def test_bad_options_are_refused_before_anything_is_built(argv: list[str], says: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run([*argv, "--dump-topology"], capsys)
    assert code == 2 and says in err and "Traceback" not in err, err


def test_bad_topology_files_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = json.loads(runner.make_topology(runner.parse_args(["--viewers", "2"])).dumps())
    cases = {"broken.json": "{", "list.json": "[]", "nonat.json": None, "cap.json": None, "cc.json": None,
             # a node's name names its namespace; NaN passed the range checks; no bound on
             # the nodes; a deep array hit the recursion limit (found 2026-12-06)
             "name.json": None, "nan.json": None, "role.json": None, "many.json": None,
             "deep.json": "[" * 100_000 + "]" * 100_000, "huge.json": " " * (runner.MAX_TOPOLOGY_BYTES + 1),
             # a broadcaster behind a NAT was built and failed ~30 s later; `true` was a 1 kbit/s
             # cap; a bitrate --bitrate took was refused here (found 2026-12-06)
             "bnat.json": None, "boolcap.json": None, "rate.json": None}
    for name, text in cases.items():
        data = json.loads(json.dumps(good))
        if name == "nonat.json":
            data["nodes"][1]["nat"] = "fullcone"
        elif name == "cap.json":
            data["nodes"][1]["up_kbps"] = -5  # tc took it as no cap at all
        elif name == "cc.json":
            data["nodes"][1]["country"] = "ZZ"
        elif name == "name.json":
            data["nodes"][1]["name"] = "../x"
        elif name == "nan.json":
            data["nodes"][1]["lastmile_ms"] = float("nan")  # (json.dumps writes NaN)
        elif name == "role.json":
            data["nodes"][1]["role"] = "king"
        elif name == "bnat.json":
            data["nodes"][0]["nat"] = "cgn"
        elif name == "boolcap.json":
            data["nodes"][1]["up_kbps"] = True
        elif name == "rate.json":
            data["bitrate_kbps"] = 5
        elif name == "many.json":
            data["nodes"] += [dict(data["nodes"][1], name=f"x{i}") for i in range(400)]
        (tmp_path / name).write_text(text if text is not None else json.dumps(data))
        code, err = _run(["--topology", str(tmp_path / name), "--dump-topology"], capsys)
        assert code == 2 and "Traceback" not in err, (name, err)
        assert str(tmp_path / name) in err, (name, err)
    # lower-case country codes are the same countries
    code, _ = _run(["--countries", "de,us", "--viewers", "2", "--dump-topology"], capsys)
    assert code == 0
    # what --dump-topology writes at the edges of --bitrate's range is taken back
    for rate in ("10", "1000000"):
        assert runner.run_testbed(runner.parse_args(["--viewers", "2", "--bitrate", rate, "--dump-topology"])) == 0
        dumped = tmp_path / f"r{rate}.json"
        dumped.write_text(capsys.readouterr().out)
        code, err = _run(["--topology", str(dumped), "--dump-topology"], capsys)
        assert code == 0, err


def test_cleanup_removes_the_directories_of_killed_runs_and_keeps_kept_ones(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)  # a pid whose process is gone, like a run killed outright
    killed = tmp_path / f"oas{gone.pid}-testbed-aaaa"
    kept = tmp_path / f"oas{gone.pid}-testbed-bbbb"
    running = tmp_path / f"oas{os.getpid()}-testbed-cccc"  # a run still going
    other = tmp_path / "oas1-somethingelse"
    bench = tmp_path / f"tf{gone.pid}-testbed-dddd"  # bench/testbed_fidelity.py's runs
    for d in (killed, kept, running, other, bench):
        d.mkdir()
        (d / "v1.log").write_text("log")
    (kept / runner.KEPT_MARK).write_text("kept on purpose: --keep\n")
    removed, left = runner.cleanup_logs(str(tmp_path))
    assert sorted(removed) == sorted([str(killed), str(bench)]) and left == [str(kept)]
    assert not killed.exists() and (kept / "v1.log").exists()
    assert (running / "v1.log").exists() and (other / "v1.log").exists()


def test_ctrl_c_while_a_command_imports_is_exit_130_without_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Found 2026-12-06 from outside: SIGINT in the first ~0.2 s of `oasis testbed` (its
    runner still importing) printed a bare KeyboardInterrupt traceback."""
    import builtins

    from oasis import cli

    real = builtins.__import__

    def interrupted(name: str, *args: object, **kw: object) -> object:
        if name == "oasis.testbed.runner":
            raise KeyboardInterrupt
        return real(name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", interrupted)
    assert cli.main(["testbed", "--viewers", "2", "--dump-topology"]) == 130
    assert capsys.readouterr().err == "oasis: interrupted\n"


def test_a_cdn_pop_sits_in_its_viewers_metro_unless_far_edges() -> None:
    """The delayer's table: a PoP and a site of its own country are the simulator's
    ``CDN_EDGE_RTT_MS`` apart (plus the site's last mile), not the country's median round
    trip between any two of its sites; a PoP and a site of another country, and two
    viewers, keep the country table. ``--far-edges`` (no ``pop_rtt_ms``) is the old way."""
    from oasis.sim.netmodel import CDN_EDGE_RTT_MS, World
    from oasis.testbed.delayer import delay_matrix

    world = World()
    br, us = world.index("BR"), world.index("US")
    assert world.rtt_ms[br][br] > 3 * CDN_EDGE_RTT_MS  # (a country the change matters for)
    sites = [{"addr": "198.18.0.1", "country": "BR", "lastmile_ms": 17.5, "pop": False},
             {"addr": "198.18.1.1", "country": "BR", "lastmile_ms": 1.0, "pop": True},
             {"addr": "198.18.2.1", "country": "BR", "lastmile_ms": 2.5, "pop": False},
             {"addr": "198.18.3.1", "country": "US", "lastmile_ms": 1.0, "pop": True}]
    _, d = delay_matrix({"sites": sites, "pop_rtt_ms": CDN_EDGE_RTT_MS}, world)
    ms = [[x * 1000 for x in row] for row in d]
    assert ms[0][1] == pytest.approx(CDN_EDGE_RTT_MS / 2 + 17.5) == pytest.approx(ms[1][0])
    assert ms[2][1] == pytest.approx(CDN_EDGE_RTT_MS / 2 + 2.5)
    assert ms[0][2] == pytest.approx(world.rtt_ms[br][br] / 2 + 17.5 + 2.5)  # two viewers
    assert ms[0][3] == pytest.approx(world.rtt_ms[br][us] / 2 + 17.5 + 1.0)  # another country's PoP
    assert ms[1][3] == pytest.approx(world.rtt_ms[br][us] / 2 + 2.0)  # PoP to PoP: the table
    _, far = delay_matrix({"sites": sites, "pop_rtt_ms": None}, world)
    assert far[0][1] * 1000 == pytest.approx(world.rtt_ms[br][br] / 2 + 17.5 + 1.0)
    # a table written before PoPs were marked: every pair by the country table
    old = [{k: v for k, v in s.items() if k != "pop"} for s in sites]
    _, d_old = delay_matrix({"sites": old}, world)
    assert d_old == far
    assert not runner.parse_args([]).far_edges and runner.parse_args(["--far-edges"]).far_edges
