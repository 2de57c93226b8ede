"""`oasis sim` refuses a scenario no run can use before it runs: one line, exit 2, no
traceback; a wrong baseline or key must not cost a long run first."""

from __future__ import annotations

from pathlib import Path

import pytest

from oasis.sim.cli import main


@pytest.mark.parametrize(("argv", "says"), [
    (["--peers", "0"], "peers = 0"),
    (["--duration", "-1"], "duration_s = -1.0"),
    (["--hostile", "1.5"], "hostile = 1.5"),
    (["--nat", "1.5"], "shares in [0, 1]"),
    (["--churn", "-1"], "churn_per_min"),
    (["--baselines", "cdn_only,bogus"], "unknown baseline 'bogus'"),
    (["/nonexistent/scenario.toml"], "No such file"),
])
def test_bad_options_are_one_line_errors(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err


@pytest.mark.parametrize(("toml", "says"), [
    ("[protocol]\nplayout_dealy = 0.5\n", "unknown [protocol] keys: playout_dealy"),
    ("[protocol]\nplayout_delay = 0\n", "playout_delay = 0"),
    ("[network]\naccess_mix = { \"3g\" = 1 }\n", "unknown access kind '3g'"),
    ("[network]\nbroadcaster_country = \"XX\"\n", "broadcaster_country 'XX'"),
    ("[stream]\nchunk_ms = 0\n", "chunk_ms"),
    ("bogus_key = 3\n", "unknown scenario keys: bogus_key"),
    ("peers = [", "Invalid value"),  # not TOML
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
