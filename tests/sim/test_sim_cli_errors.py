"""`oasis sim` refuses a scenario no run can use before it runs: one line, exit 2, no
traceback; a wrong baseline or key must not cost a long run first."""

from __future__ import annotations

from pathlib import Path

import pytest

from oasis.sim.cli import main


@pytest.mark.parametrize(("argv", "says"), [
    (["--peers", "0"], "peers = 0"),
    (["--peers", "1000000000000"], "peers = 1000000000000: a whole number, 1 to 1,000,000"),  # (hung)
    (["--duration", "1e9"], "at most 86,400"),
    (["--duration", "-1"], "duration_s = -1.0"),
    (["--hostile", "1.5"], "hostile = 1.5"),
    (["--nat", "1.5"], "shares in [0, 1]"),
    (["--churn", "-1"], "churn_per_min"),
    (["--baselines", "cdn_only,bogus"], "unknown baseline 'bogus'"),
    (["/nonexistent/scenario.toml"], "No such file"),
    # found 2026-12-06 from outside: exit 1 (a SystemExit's), a raw errno, a throw-away run
    (["--nat", "bogus"], "--nat 'bogus': a share in [0, 1] or 'published'"),
    (["--playout", "0"], "--playout must be between 0.05 and 60 s"),
    (["--playout", "nan"], "--playout must be between 0.05 and 60 s"),
    (["/"], "/: Is a directory"),
    (["--peers", "5", "--duration", "2", "--plots", "/proc/nope"], "--plots /proc/nope: cannot make the directory"),
])
def test_bad_options_are_one_line_errors(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err


@pytest.mark.parametrize(("toml", "says"), [
    # found 2026-12-06 from outside: AttributeError tracebacks, exit 1
    ("protocol = []\n", "protocol = []: a table of settings"),
    ("nat_by_access = []\n", "nat_by_access = []: a table of settings"),
    ("nat_by_access = 5\n", "nat_by_access = 5: a table of settings"),
    ("hostile_mix = 1\n", "hostile_mix = 1: a table of settings"),
    ("[protocol]\nplayout_dealy = 0.5\n", "unknown [protocol] keys: playout_dealy"),
    ("[protocol]\nplayout_delay = 0\n", "playout_delay = 0"),
    ("[network]\naccess_mix = { \"3g\" = 1 }\n", "unknown access kind '3g'"),
    ("[network]\nbroadcaster_country = \"XX\"\n", "broadcaster_country 'XX'"),
    ("[stream]\nchunk_ms = 0\n", "chunk_ms"),
    ("bogus_key = 3\n", "unknown scenario keys: bogus_key"),
    ("peers = [", "Invalid value"),  # not TOML
    # found 2026-12-06 by setting each number to 0, -1, NaN and a huge value: each of these
    # ran into a traceback (division by zero, NaN to int), hung, or took a trillion peers
    ("[stream]\ngop_chunks = 0\n", "gop_chunks = 0"),
    ("[stream]\nchunk_ms = 5000\n", "shorter than one chunk (5000 ms)"),
    ("[join]\nramp_s = nan\n", "ramp_s = nan"),
    ("[churn]\nchurn_per_min = inf\n", "churn_per_min = inf"),
    ("[network]\naccess_mix = { broadband = -1, wifi = 2 }\n", "access_mix['broadband'] = -1"),
    ("neighbours = 10000000\n", "neighbours = 10000000"),
    ("max_neighbours = -1\n", "max_neighbours = -1"),
    ("upload_share = nan\n", "upload_share = nan"),
    ("tracker = \"x\"\n", "tracker = 'x'"),
    ("[baseline]\nsegment_s = 0\n", "segment_s = 0"),
    ("[protocol]\nsubstreams = 0\n", "[protocol] substreams = 0: a whole number, 1 to 16"),
    ("[protocol]\nwindow_chunks = 10000000\n", "[protocol] window_chunks"),
    ("[protocol]\nstatus_interval = 0\n", "[protocol] status_interval = 0"),
    ("[protocol]\nrepair_after = nan\n", "[protocol] repair_after = nan"),
    # found 2026-12-07 in review: the uplink probe's ValueError at the first join, a traceback
    ("[protocol]\nprobe_interval = 0\n", "[protocol] probe_interval = 0"),
    ("[protocol]\nprobe_quiet = 0.5\n", "probe_quiet = 0.5 is above probe_busy = 0.08"),
    ("[protocol]\nchunk_ms = 20\n", "set it in [stream]"),
    ("[protocol]\nrepair_guard = 1\n", "true or false"),
    ("[protocol]\none_hop_doubt = 1.5\n", "[protocol] one_hop_doubt = 1.5: a whole number"),
    # found 2026-12-06 from outside: a traceback, or a run that ate 4 GB and hung
    ("[stream]\nbitrate_kbps = 1000000000\n", "bitrate_kbps is an integer in 10..1000000"),
    ("[adversary]\nhostile = 0.2\nhostile_mix = { liar = 0 }\n", "at least one mode needs a weight"),
    ("[adversary]\nhostile_mix = { liar = -1 }\n", "hostile_mix['liar'] = -1"),
    ("x = " + "[" * 2000 + "]" * 2000 + "\n", "nested too deep"),
    ('baselines = [["cdn_only"]]\n', "baselines: a list of names"),  # ("unhashable type: 'list'")
    ('baselines = "cdn_only"\n', "baselines: a list of names"),  # (read letter by letter)
    ("[[stream]]\nbitrate_kbps = 300\n", "[stream] is a table of settings, not list ([[stream]])"),
    ("stream = 5\n", "[stream] is a table of settings, not int"),
])
def test_bad_scenario_files_are_one_line_errors(toml: str, says: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.toml"
    f.write_text("peers = 5\nduration_s = 2\n" + toml)
    assert main([str(f)]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err


def test_plots_into_a_file_is_refused_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["--peers", "5", "--duration", "2", "--plots", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_a_flash_crowd_that_would_join_after_the_stream_is_refused(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.toml"
    f.write_text("peers = 5\nduration_s = 20\n[join]\njoin_pattern = \"flash\"\nflash_start_s = 5\n"
                 "flash_window_s = 30\n")
    assert main([str(f)]) == 2
    err = capsys.readouterr().err
    assert "joins from 5 to 35 s, after the stream's 20 s" in err and "Traceback" not in err, err


def test_a_shorter_duration_compresses_the_flash_crowd_so_every_viewer_joins_in_time(
        capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from oasis.sim.cli import add_arguments, scenario_from
    from oasis.sim.netmodel import World
    from oasis.sim.population import build

    p = argparse.ArgumentParser()
    add_arguments(p)
    root = Path(__file__).resolve().parents[2]
    s = scenario_from(p.parse_args([str(root / "scenarios" / "flash-5k.toml"), "--peers", "300",
                                    "--duration", "20"]))
    assert "flash crowd joins in 1.667...11.667 s" in capsys.readouterr().err
    assert s.flash_start_s + s.flash_window_s <= s.duration_s
    _, viewers = build(s, World(), 1)
    assert len(viewers) == 300 and max(v.join for v in viewers) <= 11.667


def test_steady_joins_stay_within_a_run_shorter_than_the_ramp() -> None:
    from oasis.sim.netmodel import World
    from oasis.sim.population import build
    from oasis.sim.scenario import from_dict

    s = from_dict({"peers": 200, "duration_s": 3.0, "ramp_s": 10.0, "baselines": []})
    _, viewers = build(s, World(), 1)
    assert max(v.join for v in viewers) < 3.0


def test_a_scenario_file_that_is_not_utf8_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.toml"
    f.write_bytes(b"name = \"\xff\"\n")
    assert main([str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}: not UTF-8 text" in err and err.count("\n") == 1, err


def test_ctrl_c_ends_a_run_in_one_line_exit_130(tmp_path: Path) -> None:
    """Found 2026-12-06 from outside: Ctrl-C printed a KeyboardInterrupt traceback through
    the engine (every other command stops cleanly)."""
    import signal
    import subprocess
    import sys

    from tests.node.procs import stderr_lines_until

    p = subprocess.Popen([sys.executable, "-m", "oasis", "sim", "--peers", "300", "--duration", "600",
                          "--baselines", "none", "--progress-every", "0.5"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        stderr_lines_until(p, r"\] sim +[0-9.]+/600 s", 120)  # running: a progress line
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    text = err.decode()
    assert p.returncode == 130, text
    assert "Traceback" not in text and "interrupted; nothing to report" in text, text[-500:]


def test_a_run_far_past_the_machine_s_memory_is_refused_and_one_past_it_is_warned(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Found 2026-12-06: 1,000,000 peers were taken: past 4 GiB within 0.05 s of stream.
    The estimate (docs/simulation.md, Speed) against what this machine has available."""
    from oasis.sim import cli

    monkeypatch.setattr(cli, "memory_available", lambda: 8.0 * 2**30)
    assert main(["--peers", "1000000", "--duration", "0.05"]) == 2
    err = capsys.readouterr().err
    assert "would need about" in err and "8.0 GiB available" in err and err.count("\n") == 1, err
    # past what is available but not twice it: a warning, and the run goes on (here a
    # tiny one, the memory made to look scarce)
    monkeypatch.setattr(cli, "memory_available", lambda: 0.1 * 2**30)
    assert main(["--peers", "5", "--duration", "1", "--baselines", "none", "--json"]) == 0
    err = capsys.readouterr().err
    assert "warning: this run may need about" in err, err


def test_every_scenario_key_is_in_the_docs_key_table_with_its_default() -> None:
    """A scenario written from docs/simulation.md alone: every key the loader takes is in the
    table of *Scenario keys*, and the table names none it refuses (they were in code only)."""
    import dataclasses
    import re

    from oasis.sim.scenario import Scenario, from_dict

    doc = (Path(__file__).resolve().parents[2] / "docs" / "simulation.md").read_text()
    part = doc.split("### Scenario keys", 1)[1].split("\n## ", 1)[0]
    named = set()
    for line in part.splitlines():
        if line.startswith("| `"):
            named |= set(re.findall(r"`([a-z_0-9]+)`", line.split("|")[1]))
    fields = {f.name for f in dataclasses.fields(Scenario)}
    assert fields <= named, sorted(fields - named)
    assert named <= fields, sorted(named - fields)
    defaults = Scenario()
    assert (defaults.peers, defaults.duration_s, defaults.chunk_ms, defaults.upload_max_x) == (100, 60.0, 33, 4.0)
    with pytest.raises(ValueError, match="unknown scenario keys"):
        from_dict({"peers": 5, "not_a_key": 1})
