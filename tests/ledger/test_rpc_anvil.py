"""The JSON-RPC path against a real local node: anvil from the npm registry.

The test installs anvil through ``scripts/install_anvil.sh`` (idempotent), starts
it on 127.0.0.1 on a free port, deploys the contracts with anvil's first dev
key and runs ingestion + settlement with the same code as the embedded chain.
It skips only if the installer itself fails (e.g. no npm, unsupported platform).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from eth_account import Account

from oasis.ledger.chain import Deployment, RpcChain, open_chain

from .world import ALLOWANCE, World

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def anvil(tmp_path_factory):
    inst = subprocess.run(["bash", str(ROOT / "scripts" / "install_anvil.sh")],
                          capture_output=True, text=True, timeout=300)
    if inst.returncode != 0:
        pytest.skip(f"anvil not installable: {inst.stderr.strip()[-500:]}")
    binary = inst.stdout.strip().splitlines()[-1]
    port = _free_port()
    cfg = tmp_path_factory.mktemp("anvil") / "anvil.json"
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--accounts", "3",
                             "--config-out", str(cfg), "--silent"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                if cfg.exists() and RpcChain(url).w3.eth.chain_id:
                    break
            except Exception:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"anvil did not start: {proc.stderr.read().decode()[-500:]}")
            time.sleep(0.1)
        keys = [bytes.fromhex(k[2:]) for k in json.loads(cfg.read_text())["private_keys"]]
        yield url, keys
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_rpc_chain_settles_like_the_embedded_one(anvil, tmp_path):
    url, keys = anvil
    chain = RpcChain(url)
    deployment = chain.deploy(keys[0])
    # a node finds the deployment in its data dir
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "deployment.json").write_text(deployment.to_json())
    node_chain = open_chain(tmp_path, rpc_url=url)
    assert isinstance(node_chain, RpcChain) and node_chain.deployment == deployment
    assert Deployment.from_json(deployment.to_json()) == deployment

    world = World(node_chain, keys[0], str(tmp_path))
    r1, r2 = world.relay("r1"), world.relay("r2")
    vk, t = world.viewer()
    vk2, t2 = world.viewer()
    for relay in (r1, r2):
        relay.accept_ticket(t.encode())
        relay.accept_ticket(t2.encode())
    assert r1.accept_receipt(world.receipt(vk, t, r1, 1_000_000).encode()).accepted
    assert r1.accept_receipt(world.receipt(vk2, t2, r1, ALLOWANCE * 3).encode()).accepted
    assert r2.accept_receipt(world.receipt(vk2, t2, r2, 777).encode()).accepted
    res1 = r1.settle_due()
    res2 = r2.settle_due()
    # r1 is capped at one relay's share (4/5) of viewer 2's allowance; r2 gets the rest
    cap = ALLOWANCE * 4 // 5
    assert node_chain.token_balance(r1.address) == world.pay(1_000_000) + world.pay(cap)
    assert node_chain.token_balance(r2.address) == world.pay(777)
    assert res2[0].rejected == []
    assert r1.settle_due() == []  # settled once
    assert res1[0].gas_used > 0
    paid = node_chain.events("Paid")
    assert sorted(e["bytes_paid"] for e in paid) == sorted([1_000_000, cap, 777])


def test_wallet_deploy_writes_the_deployment_a_node_then_uses(anvil, tmp_path):
    """`oasis wallet --deploy --chain-rpc URL`: contracts deployed with the faucet key,
    their addresses in <data-dir>/ledger/deployment.json, which open_chain then binds to;
    a second deploy refuses to overwrite it (exit 2)."""
    import os
    import sys

    url, keys = anvil
    data = tmp_path / "node"
    env = {**os.environ, "OASIS_DEV_FAUCET_KEY": "0x" + keys[0].hex()}
    cmd = [sys.executable, "-m", "oasis", "wallet", "--deploy", "--chain-rpc", url, "--data-dir", str(data), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-800:]
    printed = json.loads(out.stdout)
    path = data / "ledger" / "deployment.json"
    assert printed["deployment"] == str(path)
    deployment = Deployment.from_json(path.read_text())
    assert printed["pool"] == deployment.pool and deployment.chain_id == RpcChain(url).w3.eth.chain_id
    chain = open_chain(data, rpc_url=url)
    assert isinstance(chain, RpcChain) and chain.deployment == deployment
    assert chain.w3.eth.get_code(deployment.pool) not in (b"", None)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    assert Deployment.from_json(path.read_text()) == deployment


def test_wallet_against_a_bad_deployment_or_an_unfunded_deploy_is_one_line(anvil, tmp_path):
    """Found 2026-12-06 from outside: `oasis wallet --chain-rpc` with a deployment.json that
    names accounts, has token and pool swapped, lacks a key or is garbage, and `--deploy`
    from an unfunded wallet, a bad OASIS_DEV_FAUCET_KEY or a port nothing answers on, ended in
    web3 tracebacks or bare decoder messages. Each is now one line naming the problem (exit 2)."""
    import os
    import sys

    url, keys = anvil
    deployment = RpcChain(url).deploy(keys[0])
    accounts = [Account.from_key(k).address for k in keys[1:3]]
    cases = {
        "accounts": json.dumps({"chain_id": deployment.chain_id, "token": accounts[0], "pool": accounts[1]}),
        "swapped": json.dumps({"chain_id": deployment.chain_id, "token": deployment.pool, "pool": deployment.token}),
        "no token": json.dumps({"chain_id": deployment.chain_id, "pool": deployment.pool}),
        "garbage": b"\x9a\xff\x00junk",
        "nested": "[" * 2000 + "]" * 2000,
        "huge": " " * 100_000_000,
        "empty": "",
    }
    says = {"accounts": "no contract at that address", "swapped": "is not a rewards pool of its token",
            "no token": "is not a deployment", "garbage": "is not UTF-8 text", "nested": "is not a deployment", "huge": "the deployment is larger than 4096 bytes",
            "empty": "is not JSON"}
    env = {k: v for k, v in os.environ.items() if k != "OASIS_DEV_FAUCET_KEY"}
    for name, content in cases.items():
        data = tmp_path / name.replace(" ", "_")
        (data / "ledger").mkdir(parents=True)
        path = data / "ledger" / "deployment.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        out = subprocess.run([sys.executable, "-m", "oasis", "wallet", "--chain-rpc", url, "--data-dir", str(data)],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (name, out.stderr[-600:])
        assert says[name] in out.stderr and out.stderr.count("\n") <= 2, (name, out.stderr)
    deploy = [sys.executable, "-m", "oasis", "wallet", "--deploy", "--chain-rpc", url]
    out = subprocess.run([*deploy, "--data-dir", str(tmp_path / "poor")], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 2 and "holds no ETH on this chain" in out.stderr and "Traceback" not in out.stderr, \
        out.stderr[-600:]
    out = subprocess.run([*deploy, "--data-dir", str(tmp_path / "badkey")], capture_output=True, text=True,
                         timeout=120, env={**env, "OASIS_DEV_FAUCET_KEY": "0xnothex"})
    assert out.returncode == 2 and "OASIS_DEV_FAUCET_KEY is not a secp256k1 secret" in out.stderr, out.stderr
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    out = subprocess.run([sys.executable, "-m", "oasis", "wallet", "--deploy", "--chain-rpc", dead, "--data-dir",
                          str(tmp_path / "dead")], capture_output=True, text=True, timeout=120,
                         env={**env, "OASIS_DEV_FAUCET_KEY": "0x" + keys[0].hex()})
    assert out.returncode == 2 and "the chain does not answer" in out.stderr and "Traceback" not in out.stderr, \
        out.stderr[-600:]
