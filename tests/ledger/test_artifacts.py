from oasis.ledger.build import CONTRACTS, artifact_path, stale_artifacts


def test_committed_artifacts_match_a_fresh_compile():
    assert all(artifact_path(n).exists() for n in CONTRACTS)
    assert stale_artifacts() == [], "run: python -m oasis.ledger.build"
