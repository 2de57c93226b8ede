"""A viewer whose origin does not answer its clock's /time says so once per origin: the
clock asks again while unsure, and each round said it again (3 times in 6 s before the
15-s summary; found 2026-12-06 by a new user's first run)."""

from __future__ import annotations

import logging

import pytest

from oasis.node import runtime as rt
from tests.node.procs import free_port


async def test_a_silent_origin_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}/origin"  # (bound and let go: nothing listens)
    other = f"http://127.0.0.1:{free_port()}/origin"
    rt._SILENT_ORIGINS_SAID.discard(dead)
    rt._SILENT_ORIGINS_SAID.discard(other)
    with caplog.at_level(logging.WARNING, logger="oasis.runtime"):
        for _ in range(3):
            assert await rt.origin_samples(dead, "x.live") == []
        assert await rt.origin_samples(other, "x.live") == []
    said = [r.getMessage() for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(said) == 2 and dead in said[0] and other in said[1], said
