"""``oasis --help`` and each command's: every option says what it does, each command lists
only options that do something there, and ``oasis --version`` answers."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import version

from oasis.cli import NOT_FOR_TALK, build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    ap = build_parser(["demo"])  # not sim/testbed: their options live in their own modules
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _help_of(p: argparse.ArgumentParser, flag: str) -> str:
    return next(str(a.help) for a in p._actions if flag in a.option_strings)


def test_every_option_of_the_node_commands_has_help() -> None:
    for name, p in _commands().items():
        if name in ("sim", "testbed"):
            continue
        for a in p._actions:
            assert a.help, f"oasis {name} {'/'.join(a.option_strings) or a.dest}: no help text"


def test_chat_and_dm_offer_only_their_own_options() -> None:
    """chat and dm listed --bitrate, --chunk-ms, --substreams, --upload-kbps, --rewards and
    --epoch (and the chain's), none of which they use; they are no longer offered (a script
    that gives one still runs, with a note on stderr)."""
    cmds = _commands()
    for name in ("chat", "dm"):
        text = cmds[name].format_help()
        for flag in NOT_FOR_TALK:
            assert flag not in text, (name, flag)
        assert "--api-listen" not in text
        argv = [name, "L"] if name == "chat" else [name, "PEER", "--via", "L"]
        args = build_parser(argv).parse_args([*argv, "--bitrate", "9"])
        assert args.bitrate == 9  # accepted (scripts), ignored with a note
    assert "--bitrate" in cmds["broadcast"].format_help()


def test_json_says_what_it_does_on_each_command() -> None:
    """--json was described everywhere as 'JSON lines for what chat and dm print'."""
    cmds = _commands()
    for name in ("broadcast", "watch", "node"):
        h = _help_of(cmds[name], "--json")
        assert "chat" not in h and "no effect" in h and "start line" in h, (name, h)
    for name in ("chat", "dm"):
        assert "JSON lines" in _help_of(cmds[name], "--json")
    assert "summary" in _help_of(cmds["demo"], "--json")
    assert "seed" in _help_of(cmds["watch"], "--seed") and "repeatable" in _help_of(cmds["watch"], "--seed")
    assert "HOST:PORT" in _help_of(cmds["tracker"], "--listen")
    for flag in ("--viewers", "--bitrate", "--chunk-ms"):
        assert "default" in _help_of(cmds["demo"], flag)


def test_oasis_version_is_the_installed_packages() -> None:
    r = subprocess.run([sys.executable, "-m", "oasis", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"oasis {version('oasis')}"


def test_node_offers_no_rewards_options_it_would_ignore() -> None:
    """`oasis node --rewards` was accepted and did nothing (its help said "take part in
    proof of relay"; GET /v1/rewards answered 501): proof of relay is per stream and
    `oasis node` has none of its own. The option (and --epoch, --chain-rpc, --chain-dir)
    is not offered there, and giving it is a usage error, not a silent no-op."""
    text = _commands()["node"].format_help()
    for flag in ("--rewards", "--epoch", "--chain-rpc", "--chain-dir"):
        assert flag not in text, flag
    for name in ("broadcast", "watch"):
        assert "proof of relay" in _help_of(_commands()[name], "--rewards")
    out = subprocess.run([sys.executable, "-m", "oasis", "node", "--rewards", "--api-listen", "off"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--rewards" in out.stderr


def test_api_listen_says_its_default_per_command() -> None:
    """Found 2026-12-02 by a new user: --api-listen's help gave no default (7480 for `node`,
    any free port for broadcast and watch)."""
    cmds = _commands()
    assert "default: 127.0.0.1:7480" in " ".join(cmds["node"].format_help().split())
    for name in ("broadcast", "watch"):
        assert "default: 127.0.0.1:0" in " ".join(cmds[name].format_help().split()), name


def test_the_default_data_directory_said_is_the_one_used(tmp_path: object, monkeypatch: object) -> None:
    """Found 2026-12-06 from outside: ``--help`` named ``~/.local/share/oasis/broadcaster`` and
    ``.../viewer`` while the commands kept their keys in ``.../broadcast`` and ``.../watch``,
    and ``oasis wallet`` read ``.../viewer``: a viewer's wallet was never where it looked.
    ``--data-dir ""`` silently meant the default."""
    import pytest

    from oasis.node.runtime import default_data_dir

    cmds = _commands()
    for name in ("broadcast", "watch", "node", "chat", "dm", "publish", "get"):
        said = _help_of(cmds[name], "--data-dir")
        assert said.endswith(f"~/.local/share/oasis/{name})"), (name, said)
        assert default_data_dir(name).endswith(f"/oasis/{name}")
    assert "~/.local/share/oasis/watch" in _help_of(cmds["wallet"], "--data-dir")
    for name in ("broadcast", "watch", "get", "wallet"):
        args = [name, "x"] if name in ("watch", "get") else [name]
        with pytest.raises(SystemExit) as exc:
            build_parser([name]).parse_args([*args, "--data-dir", ""])
        assert exc.value.code == 2
    # and `oasis wallet` opens `oasis watch`'s directory (the viewer's wallet)
    import os
    from pathlib import Path

    home = Path(str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "oasis", "wallet", "--offline", "--json"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "XDG_DATA_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert (home / "oasis" / "watch").is_dir() and not (home / "oasis" / "viewer").exists()
    # a --data-dir that does not exist is a typo, not a new wallet (it was made, with a new
    # wallet, ledger.db and chain, and zeros printed: found 2026-12-06 from outside)
    typo = home / "oasis" / "wacth"
    out = subprocess.run([sys.executable, "-m", "oasis", "wallet", "--offline", "--data-dir", str(typo)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no such directory" in out.stderr and not typo.exists(), out.stderr
