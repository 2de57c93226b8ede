"""Chain adapter: the ledger's only I/O with an EVM, through web3.py.

Theory of operation: :class:`LedgerChain` speaks to the OasisToken and
RewardsPool contracts over any web3 provider. Every transaction is built
locally with an explicit gas limit, EIP-1559 fees and the local nonce,
signed with the sender's wallet key (never an unlocked node account) and sent
raw; so the same code path works on the embedded chain and on any JSON-RPC
node (anvil in tests, a real network in production).

* :class:`EmbeddedChain` -- py-evm through eth-tester, in process. Genesis is
  fixed (timestamp and accounts, in ``genesis.json``); every transaction is
  journaled (:mod:`journal`) and replayed on open, so balances survive a
  restart and processes sharing a chain directory share one chain. The
  first eth-tester account is the dev faucet, which deploys the contracts
  (addresses are its nonce-0 and nonce-1 creations) and tops up wallets.
* :class:`RpcChain` -- a JSON-RPC URL and a :class:`Deployment` (or deploy
  one with a funded key, for dev chains).

Use :func:`open_chain` from a node.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode

_RECURSION_LIMIT = sys.getrecursionlimit()
from eth_account import Account  # noqa: E402  (imports py_ecc, which sets the limit to 100,000)
from eth_typing import ChecksumAddress  # noqa: E402
from eth_utils import to_checksum_address  # noqa: E402
from hexbytes import HexBytes  # noqa: E402
from web3 import Web3  # noqa: E402

from oasis.datafiles import DataFileError, private_file, read_small, replace, write_new  # noqa: E402

from . import eip712  # noqa: E402
from .build import load_artifact  # noqa: E402
from .journal import Journal, Record, file_header  # noqa: E402

# py_ecc/__init__.py runs sys.setrecursionlimit(max(100000, ...)) at import (for its own
# deep pairing arithmetic, which the ledger never uses), and py-evm's eth/__init__.py
# sets 12,288 (for 1,024 nested EVM calls; our contracts nest two). A limit that high
# lets a runaway recursion anywhere in the node overflow the C stack and kill the
# process instead of raising RecursionError, so we put the interpreter's limit back
# after importing either.
sys.setrecursionlimit(_RECURSION_LIMIT)

GAS_TRANSFER = 21_000
GAS_DEPLOY = 3_000_000
GAS_CALL = 150_000
GAS_SETTLE_BASE = 120_000
GAS_SETTLE_PER_ENTRY = 60_000
PRIORITY_FEE = 10**9
FAUCET_TOPUP = 10 * 10**18
REASONS = {1: "window", 2: "malleable", 3: "no-ticket", 4: "replay", 5: "allowance", 6: "unfunded",
           7: "relay-cap", 8: "closed"}
#: Rejections that a later resubmission may turn into a payment (the pool was topped up).
RETRYABLE = frozenset({"unfunded"})
# Bounds the contract enforces too (contracts/RewardsPool.vy).
MAX_PRICE_PER_MB = 10**24
MAX_EPOCH_LENGTH = 86_400
REFUND_DELAY = 86_400
RELAY_SHARE_NUM, RELAY_SHARE_DEN = 4, 5


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    token: str
    pool: str

    def domain(self) -> eip712.Domain:
        return eip712.Domain(self.chain_id, bytes.fromhex(self.pool[2:]))

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        """Strict: a JSON object with an integer ``chain_id`` and two addresses, else ValueError."""
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"is not JSON ({str(exc)[:80]})") from None
        if not (isinstance(d, dict) and isinstance(d.get("chain_id"), int) and not isinstance(d["chain_id"], bool)
                and 0 < d["chain_id"] < 2**64 and isinstance(d.get("token"), str) and isinstance(d.get("pool"), str)):
            raise ValueError('is not a deployment: {"chain_id": <integer>, "token": "0x...", "pool": "0x..."}')
        try:
            return cls(d["chain_id"], to_checksum_address(d["token"]), to_checksum_address(d["pool"]))
        except ValueError:
            raise ValueError("has a token or pool that is not an address (0x and 40 hex digits)") from None

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """``deployment.json``: a damaged or foreign file is a :class:`DataFileError` naming it
        (a missing key was a KeyError traceback, garbage a bare UnicodeDecodeError)."""
        raw = read_small(path, "the deployment", DEPLOYMENT_MAX)
        try:
            return cls.from_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            why = "is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise DataFileError(path, why, "restore it from the node that deployed the contracts, or "
                                "deploy anew (oasis wallet --deploy)") from None


@dataclass
class SettleResult:
    tx_hash: bytes
    gas_used: int
    amount: int  # tokens paid to the relay
    paid: list[dict[str, Any]] = field(default_factory=list)  # Paid events
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)


class ChainError(RuntimeError):
    pass


DEPLOYMENT_MAX = 4096  #: bytes of a deployment.json (~130 are used)


class JournalWriteError(ChainError):
    """The embedded chain could not journal a transaction (disk full, I/O error): the
    transaction was rolled back in memory too, so nothing happened."""


class LedgerChain:
    """Contract operations over a web3 instance; subclasses supply the provider."""

    w3: Web3
    deployment: Deployment

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def _bind(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.token = self.w3.eth.contract(_addr(deployment.token), abi=load_artifact("OasisToken")["abi"])
        self.pool = self.w3.eth.contract(_addr(deployment.pool), abi=load_artifact("RewardsPool")["abi"])

    # -- transport -------------------------------------------------------
    def _sync(self) -> None:
        """Bring local state up to date before a read (embedded: replay others)."""

    def _send_raw(self, raw: bytes) -> dict[str, Any]:
        h = self.w3.eth.send_raw_transaction(raw)
        return dict(self.w3.eth.wait_for_transaction_receipt(h, timeout=120))

    def transact(
        self, key: bytes, to: str | None, data: bytes, gas: int, value: int = 0,
        on_signed: Callable[[bytes], None] | None = None,
    ) -> dict[str, Any]:
        """Sign and send one transaction with explicit gas; the mined receipt.
        ``on_signed(tx_hash)`` runs after signing and before sending."""
        return self._send_signed(key, to, data, gas, value, on_signed)

    def _send_signed(self, key: bytes, to: str | None, data: bytes, gas: int, value: int,
                     on_signed: Callable[[bytes], None] | None = None) -> dict[str, Any]:
        sender = to_checksum_address(eip712.address_of_key(key))
        base = self.w3.eth.get_block("latest")["baseFeePerGas"]
        tx: dict[str, Any] = {
            "chainId": self.deployment.chain_id if hasattr(self, "deployment") else self.chain_id,
            "nonce": self.w3.eth.get_transaction_count(sender, "pending"),
            "gas": gas,
            "maxFeePerGas": 2 * base + PRIORITY_FEE,
            "maxPriorityFeePerGas": PRIORITY_FEE,
            "value": value,
            "data": data,
            "type": 2,
        }
        if to is not None:
            tx["to"] = to_checksum_address(to)
        signed = Account.sign_transaction(tx, key)
        if on_signed is not None:
            on_signed(bytes(signed.hash))
        return self._send_raw(bytes(signed.raw_transaction))

    def _call_data(self, contract: Any, fn: str, *args: Any) -> bytes:
        return bytes.fromhex(contract.encode_abi(fn, args=list(args))[2:])

    def _ok(self, rcpt: dict[str, Any], what: str) -> dict[str, Any]:
        if rcpt["status"] != 1:
            raise ChainError(f"{what} reverted (tx {rcpt['transactionHash'].hex()})")
        return rcpt

    # -- deployment ------------------------------------------------------
    def deploy_contracts(self, deployer_key: bytes) -> Deployment:
        tok = load_artifact("OasisToken")
        rc = self._ok(self._send_signed(deployer_key, None, bytes.fromhex(tok["bytecode"][2:]), GAS_DEPLOY, 0), "deploy token")
        token = rc["contractAddress"]
        pool_art = load_artifact("RewardsPool")
        data = bytes.fromhex(pool_art["bytecode"][2:]) + abi_encode(["address"], [token])
        rc = self._ok(self._send_signed(deployer_key, None, data, GAS_DEPLOY, 0), "deploy pool")
        return Deployment(self.chain_id, to_checksum_address(token), to_checksum_address(rc["contractAddress"]))

    # -- writes ----------------------------------------------------------
    def send_eth(self, key: bytes, to: bytes | str, wei: int) -> None:
        self._ok(self._send_signed(key, _addr(to), b"", GAS_TRANSFER, wei), "send eth")

    def mint(self, minter_key: bytes, to: bytes | str, amount: int) -> None:
        data = self._call_data(self.token, "mint", _addr(to), amount)
        self._ok(self.transact(minter_key, self.deployment.token, data, GAS_CALL), "mint")

    def open_stream(self, broadcaster_key: bytes, key: bytes, price_per_mb: int, epoch_length: int) -> bytes:
        """Open the stream ``stream_id(broadcaster, key)`` and return that id."""
        data = self._call_data(self.pool, "open_stream", key, price_per_mb, epoch_length)
        self._ok(self.transact(broadcaster_key, self.deployment.pool, data, GAS_CALL), "open_stream")
        return stream_id(eip712.address_of_key(broadcaster_key), key)

    def close_stream(self, owner_key: bytes, stream: bytes) -> None:
        data = self._call_data(self.pool, "close_stream", stream)
        self._ok(self.transact(owner_key, self.deployment.pool, data, GAS_CALL), "close_stream")

    def withdraw(self, sponsor_key: bytes, stream: bytes) -> int:
        """Take back this sponsor's share of a closed stream's balance; the amount."""
        data = self._call_data(self.pool, "withdraw", stream)
        rc = self._ok(self.transact(sponsor_key, self.deployment.pool, data, GAS_CALL), "withdraw")
        evs = self._events(rc, "Withdrawn")
        return int(evs[0]["args"]["amount"]) if evs else 0

    def deposit(self, sponsor_key: bytes, stream: bytes, amount: int) -> None:
        """Approve then deposit ``amount`` tokens into ``stream``'s pool."""
        data = self._call_data(self.token, "approve", self.deployment.pool, amount)
        self._ok(self.transact(sponsor_key, self.deployment.token, data, GAS_CALL), "approve")
        data = self._call_data(self.pool, "deposit", stream, amount)
        self._ok(self.transact(sponsor_key, self.deployment.pool, data, GAS_CALL), "deposit")

    def settle(self, relay_key: bytes, stream: bytes, epoch: int, entries: list[list[int]],
               on_signed: Callable[[bytes], None] | None = None) -> SettleResult:
        """Submit one batch (see :func:`settlement.pack_entry`); parse what it paid."""
        if not 0 < len(entries) <= 256:
            raise ValueError("a batch holds 1..256 entries")
        data = self._call_data(self.pool, "settle", stream, epoch, entries)
        gas = GAS_SETTLE_BASE + GAS_SETTLE_PER_ENTRY * len(entries)
        rc = self._ok(self.transact(relay_key, self.deployment.pool, data, gas, 0, on_signed), "settle")
        return self.settle_result(rc)

    def settle_result(self, rc: dict[str, Any]) -> SettleResult:
        paid = [dict(ev["args"]) for ev in self._events(rc, "Paid")]
        rejected = [(ev["args"]["position"], REASONS[ev["args"]["reason"]]) for ev in self._events(rc, "Rejected")]
        settled = self._events(rc, "Settled")
        amount = settled[0]["args"]["amount"] if settled else 0
        return SettleResult(bytes(rc["transactionHash"]), rc["gasUsed"], amount, paid, rejected)

    def _events(self, rc: dict[str, Any], name: str) -> list[Any]:
        from web3.logs import DISCARD

        return list(getattr(self.pool.events, name)().process_receipt(rc, errors=DISCARD))

    def tx_receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        self._sync()
        try:
            return dict(self.w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
        except Exception:  # TransactionNotFound
            return None

    # -- reads -----------------------------------------------------------
    def token_balance(self, who: bytes | str) -> int:
        self._sync()
        return int(self.token.functions.balanceOf(_addr(who)).call())

    def eth_balance(self, who: bytes | str) -> int:
        self._sync()
        return int(self.w3.eth.get_balance(_addr(who)))

    def stream_info(self, stream: bytes) -> dict[str, Any]:
        self._sync()
        b, price, epoch_length, balance, closed_at, deposited, _ = self.pool.functions.streams(stream).call()
        return {"broadcaster": b, "price_per_mb": price, "epoch_length": epoch_length, "balance": balance,
                "closed_at": closed_at, "deposited": deposited}

    def relay_paid(self, relay: bytes | str, stream: bytes, epoch: int, index: int) -> int:
        self._sync()
        return int(self.pool.functions.relay_paid(_addr(relay), stream, epoch, index).call())

    def events(self, name: str, from_block: int = 0) -> list[dict[str, Any]]:
        """All ``name`` events of the pool (Paid, Rejected, Settled, Deposited, ...)."""
        self._sync()
        logs = getattr(self.pool.events, name).get_logs(from_block=from_block)
        return [dict(ev["args"], tx=bytes(ev["transactionHash"]), block=ev["blockNumber"]) for ev in logs]

    def timestamp(self) -> int:
        self._sync()
        return int(self.w3.eth.get_block("latest")["timestamp"])


class RpcChain(LedgerChain):
    """Any EVM JSON-RPC node, e.g. ``RpcChain(url, Deployment.from_json(...))``."""

    def __init__(self, url: str, deployment: Deployment | None = None, timeout: float = 30.0) -> None:
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
        if deployment is not None:
            if deployment.chain_id != self.w3.eth.chain_id:
                raise ChainError("deployment is for another chain id")
            self._bind(deployment)
            self._check_contracts()

    def _check_contracts(self) -> None:
        """The deployment's addresses hold our contracts, each in its place: no code there
        (an account, another chain's deployment) or the two swapped were a
        BadFunctionCallOutput / "execution reverted" traceback from `oasis wallet`, and a
        node that logged "settlement failed" every epoch (found 2026-12-06 from outside)."""
        d = self.deployment
        for name, addr in (("token", d.token), ("pool", d.pool)):
            if not bytes(self.w3.eth.get_code(_addr(addr))):
                raise ChainError(f"deployment.json names {addr} as the {name}, but there is no contract "
                                 f"at that address on chain id {d.chain_id}: the deployment is another "
                                 "chain's, or damaged")
        try:
            token_of_pool = self.pool.functions.token().call()
        except Exception:  # noqa: BLE001 - web3 raises a dozen kinds for "not this contract"
            token_of_pool = None
        if token_of_pool is None or to_checksum_address(token_of_pool) != d.token:
            raise ChainError(f"deployment.json's pool {d.pool} is not a rewards pool of its token {d.token} "
                             "(swapped, or another deployment's): restore it, or deploy anew")

    def deploy(self, deployer_key: bytes) -> Deployment:
        """Dev chains: deploy fresh contracts with a funded key and bind to them."""
        d = self.deploy_contracts(deployer_key)
        self._bind(d)
        return d


def _genesis_check(timestamp: int, chain_id: int | None) -> str:
    return hashlib.sha256(f"oasis-genesis/v1:{timestamp}:{chain_id}".encode()).hexdigest()[:16]


def _genesis_json(timestamp: int, chain_id: int) -> bytes:
    return json.dumps({"timestamp": timestamp, "chain_id": chain_id,
                       "check": _genesis_check(timestamp, chain_id)}).encode()


GENESIS_MAX = 4096  #: bytes of a genesis.json (~90 are used)


def _read_genesis(path: Path) -> dict[str, Any]:
    """``genesis.json``, checked: its chain id is part of every signature on the chain, and
    one flipped digit made a new chain under the old journal -- every balance 0, silently
    (found 2026-12-06 from outside). A file from before the check gets one (it is trusted
    once, as the key files' first formats are)."""
    advice = "restore journal.bin and genesis.json from one backup"
    raw = read_small(path, "the genesis", GENESIS_MAX)
    try:
        g = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        g = None
    ints = isinstance(g, dict) and all(isinstance(g.get(k), int) and not isinstance(g.get(k), bool)
                                       for k in ("timestamp", *(("chain_id",) if "chain_id" in g else ())))
    if not ints:
        raise DataFileError(path, "is damaged: not a genesis (a JSON object with an integer timestamp "
                            "and chain_id)", advice)
    assert isinstance(g, dict)
    check = _genesis_check(g["timestamp"], g.get("chain_id"))
    if "check" not in g:
        g["check"] = check
        replace(path, json.dumps(g).encode())
    elif g["check"] != check:
        raise DataFileError(path, "is damaged: its check value does not match its timestamp and chain id", advice)
    return g


class EmbeddedChain(LedgerChain):
    """In-process py-evm chain persisted by a transaction journal in ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        limit = sys.getrecursionlimit()
        from eth_tester import EthereumTester, PyEVMBackend
        from web3.providers.eth_tester import EthereumTesterProvider

        sys.setrecursionlimit(limit)  # py-evm raised it at import: see the top of this module

        self.dir = Path(directory)
        self.journal = Journal(self.dir)
        with self.journal.locked():
            genesis = self.dir / "genesis.json"
            if not genesis.exists() and self.journal.path.exists() \
                    and self.journal.path.stat().st_size > len(file_header()):
                # a new genesis would be a new chain id under the old transactions: every
                # balance gone, silently (a damaged journal is reported first, as it would be)
                self.journal.read_from(0)
                raise DataFileError(genesis, "is missing but the journal holds transactions (its "
                                    "chain id is part of every signature on this chain)",
                                    "restore it from a backup")
            if not genesis.exists():
                # A random chain id per chain directory: the EIP-712 domain (chain id, pool)
                # of every embedded chain differs, so a ticket or receipt signed for one
                # node's chain is worth nothing on another's.
                cid = EMBEDDED_CHAIN_ID_BASE + int.from_bytes(os.urandom(4), "big")
                write_new(genesis, _genesis_json(int(time.time()) - 86_400, cid))
            private_file(genesis)  # older chains wrote it 0644
            g = _read_genesis(genesis)
            self.genesis_ts = int(g["timestamp"])
            backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params({"timestamp": self.genesis_ts}))
            # Older chain directories have no chain_id: they keep eth-tester's default.
            self._chain_id = int(g.get("chain_id", type(backend.chain).chain_id))
            type(backend.chain).chain_id = self._chain_id  # a class made per backend: ours alone
            self.tester = EthereumTester(backend)
            self.w3 = Web3(EthereumTesterProvider(self.tester))
            self.faucet_key = backend.account_keys[0].to_bytes()
            self._offset = 0
            self._catch_up()
            self._bind(self._deployment_or_deploy())

    def _deployment_or_deploy(self) -> Deployment:
        import rlp
        from eth_utils import keccak

        faucet = eip712.address_of_key(self.faucet_key)
        token, pool = (to_checksum_address(keccak(rlp.encode([faucet, n]))[12:]) for n in (0, 1))
        d = Deployment(self.chain_id, token, pool)
        if not self.w3.eth.get_code(pool):
            d = self.deploy_contracts(self.faucet_key)
        replace(self.dir / "deployment.json", d.to_json().encode())  # whole, 0600
        return d

    @property
    def chain_id(self) -> int:
        return self._chain_id

    def _catch_up(self) -> None:
        records, offset = self.journal.read_from(self._offset)
        for n, rec in enumerate(records):
            self._replay_clock(rec.timestamp)
            try:
                h = self.w3.eth.send_raw_transaction(rec.raw)
                status = self.w3.eth.get_transaction_receipt(h)["status"]
            except Exception as exc:  # py-evm's ValidationError (a nonce gap, ...), RLP, ...
                what = str(exc).splitlines()[0][:160] if str(exc) else ""
                raise DataFileError(self.journal.path, f"transaction {n + 1} after byte offset {self._offset} "
                                    f"cannot be replayed ({type(exc).__name__}: {what}); the journal does not "
                                    "belong to this genesis.json or lost a transaction",
                                    "stop every node sharing this chain directory and restore journal.bin "
                                    "from a backup; if you have none, move the chain directory away to start "
                                    "a fresh chain (its balances are lost)") from None
            if status != rec.status:
                raise DataFileError(self.journal.path, f"replay diverged at tx {h.hex()} (it "
                                    f"{'succeeded' if status else 'reverted'}, the journal says it "
                                    f"{'succeeded' if rec.status else 'reverted'}): the journal does "
                                    "not belong to this genesis.json or contract code",
                                    "restore journal.bin and genesis.json from one backup")
        self._offset = offset

    def _replay_clock(self, ts: int) -> None:
        """The next block runs at ``ts``, the time its transaction first ran. Replay must not
        run it later (at the wall clock, as a new block would): a transaction that reverted
        because of the time (a settle of an epoch not yet begun) would then succeed, the
        replay would diverge and the chain directory could never be opened again."""
        latest = self.tester.get_block_by_number("latest")["timestamp"]
        if ts <= latest:
            raise ChainError(f"journal {self.journal.path}: a block at {ts}, not after its parent "
                             f"({latest}); the journal was not written by this chain")
        chain = self.tester.backend.chain
        chain.header = chain.header.copy(timestamp=ts)

    def _advance_clock(self, ts: int) -> None:
        pending = self.tester.get_block_by_number("pending")["timestamp"]
        if ts > pending:
            self.tester.time_travel(ts)

    def _sync(self) -> None:
        if self.journal.path.stat().st_size != self._offset:
            with self.journal.locked():
                self._catch_up()

    def transact(self, key: bytes, to: str | None, data: bytes, gas: int, value: int = 0,
                 on_signed: Callable[[bytes], None] | None = None) -> dict[str, Any]:
        with self.journal.locked():
            self._catch_up()
            return self._send_signed(key, to, data, gas, value, on_signed)

    def _send_raw(self, raw: bytes) -> dict[str, Any]:
        # Memory must never get ahead of the journal: if the append fails (a full disk,
        # an I/O error) the block is rolled back, and the caller hears JournalWriteError.
        snapshot = self.tester.take_snapshot()
        latest = self.tester.get_block_by_number("latest")["timestamp"]
        ts = max(int(time.time()), latest + 1)
        self._advance_clock(ts)
        h = self.w3.eth.send_raw_transaction(raw)
        rc: dict[str, Any] = dict(self.w3.eth.get_transaction_receipt(h))
        block_ts = self.tester.get_block_by_number(rc["blockNumber"])["timestamp"]
        try:
            self._offset = self.journal.append(self._offset, Record(block_ts, raw, rc["status"]))
        except BaseException as exc:
            self.tester.revert_to_snapshot(snapshot)
            if isinstance(exc, OSError):
                raise JournalWriteError(f"{self.journal.path}: could not journal transaction {h.hex()} "
                                        f"({exc.strerror or exc}); it was rolled back and did not "
                                        "happen") from None
            raise
        return rc

    def fund(self, to: bytes | str, wei: int = FAUCET_TOPUP) -> None:
        """Dev faucet: send ETH for gas to a wallet."""
        self.send_eth(self.faucet_key, to, wei)

    def send_eth(self, key: bytes, to: bytes | str, wei: int) -> None:
        with self.journal.locked():
            self._catch_up()
            self._ok(self._send_signed(key, _addr(to), b"", GAS_TRANSFER, wei), "send eth")


EMBEDDED_CHAIN_ID_BASE = 1 << 40


def stream_id(owner: bytes, key: bytes) -> bytes:
    """The on-chain stream id of ``owner``'s stream ``key``: keccak256(abi_encode(owner, key)),
    as RewardsPool.open_stream computes it; so only ``owner`` can open it."""
    from eth_utils import keccak

    if len(owner) != 20 or len(key) != 32:
        raise ValueError("owner is a 20-byte address, key 32 bytes")
    return bytes(keccak(abi_encode(["address", "bytes32"], ["0x" + owner.hex(), key])))


def _addr(a: bytes | str) -> ChecksumAddress:
    return to_checksum_address(a if isinstance(a, str) else "0x" + bytes(a).hex())


def open_chain(data_dir: str | Path, rpc_url: str | None = None, deployment: Deployment | None = None,
               chain_dir: str | Path | None = None) -> LedgerChain:
    """The chain a node uses: ``rpc_url`` (+ deployment, else ``<data_dir>/ledger/deployment.json``)
    or the embedded chain in ``chain_dir`` (default ``<data_dir>/ledger/chain``)."""
    data = Path(data_dir)
    if rpc_url:
        if deployment is None:
            path = data / "ledger" / "deployment.json"
            if not path.exists():
                raise ChainError(f"--chain-rpc needs a deployment ({path} missing)")
            deployment = Deployment.load(path)
        return RpcChain(rpc_url, deployment)
    return EmbeddedChain(chain_dir or data / "ledger" / "chain")
