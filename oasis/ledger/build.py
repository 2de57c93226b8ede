"""Compile the Vyper contracts in ``contracts/`` into committed JSON artifacts.

Theory of operation: the Vyper compiler is a pure-Python package pinned in
pyproject, so a build is reproducible offline. Each artifact records the ABI,
the deploy bytecode, the compiler version and the SHA-256 of the source it
came from. ``python -m oasis.ledger.build`` rewrites the artifacts;
``python -m oasis.ledger.build --check`` (and ``tests/ledger/test_artifacts.py``)
recompiles and fails if a committed artifact differs from a fresh compile.
At run time :func:`load_artifact` only reads JSON, so nodes do not need the
compiler loaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = ROOT / "contracts"
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
CONTRACTS = ("OasisToken", "RewardsPool")


def compile_contract(name: str) -> dict[str, Any]:
    """Fresh compile of ``contracts/<name>.vy`` into an artifact dict."""
    import vyper  # imported lazily: only the build and its test need it

    path = CONTRACTS_DIR / f"{name}.vy"
    source = path.read_text()
    out = vyper.compile_code(source, contract_path=path.name, output_formats=["abi", "bytecode"])
    return {
        "contractName": name,
        "compiler": f"vyper-{vyper.__version__}",
        "sourceSha256": hashlib.sha256(source.encode()).hexdigest(),
        "abi": out["abi"],
        "bytecode": out["bytecode"],
    }


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def artifact_path(name: str) -> Path:
    return ARTIFACTS_DIR / f"{name}.json"


def load_artifact(name: str) -> dict[str, Any]:
    """The committed artifact (ABI + bytecode) of a contract."""
    art: dict[str, Any] = json.loads(artifact_path(name).read_text())
    return art


def stale_artifacts() -> list[str]:
    """Names whose committed artifact differs from a fresh compile."""
    stale = []
    for name in CONTRACTS:
        p = artifact_path(name)
        if not p.exists() or p.read_text() != render(compile_contract(name)):
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if artifacts are stale")
    args = ap.parse_args(argv)
    if args.check:
        stale = stale_artifacts()
        for name in stale:
            print(f"stale artifact: {artifact_path(name)}", file=sys.stderr)
        return 1 if stale else 0
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    for name in CONTRACTS:
        artifact_path(name).write_text(render(compile_contract(name)))
        print(f"wrote {artifact_path(name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
