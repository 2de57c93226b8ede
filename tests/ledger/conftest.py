from __future__ import annotations

import pytest

from oasis.ledger.chain import EmbeddedChain

from .world import World


@pytest.fixture
def chain(tmp_path) -> EmbeddedChain:
    return EmbeddedChain(tmp_path / "chain")


@pytest.fixture
def world(chain, tmp_path) -> World:
    return World(chain, chain.faucet_key, str(tmp_path))
