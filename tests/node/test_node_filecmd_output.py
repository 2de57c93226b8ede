"""Where ``oasis get`` writes a fetched file: the publisher names it, so without ``-o`` the
name is a display name only: never a hidden file (a published ``.bashrc`` overwrote the
user's), never over an existing file, never a path. ``-o`` is checked before any fetch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oasis.node.filecmd import check_output, default_output, write_output

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


def test_a_bad_output_path_is_refused_before_the_fetch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        check_output(str(tmp_path))
    with pytest.raises(ValueError, match="no directory"):
        check_output(str(tmp_path / "missing" / "x.mp4"))
    check_output(str(tmp_path / "x.mp4"))
    check_output("x.mp4")
    check_output(None)
