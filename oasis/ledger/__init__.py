"""Proof-of-relay ledger: wallets, viewer tickets, receipts, on-chain settlement.

Pure rules (no I/O): :mod:`eip712`, :mod:`tickets`, :mod:`receipts`.
Durable state: :mod:`wallet` (key file), :mod:`receipt_store`
(SQLite). Chain adapter: :mod:`chain` (web3.py; embedded py-evm or JSON-RPC),
:mod:`journal` (what makes the embedded chain survive restarts).
Relay driver: :mod:`settlement`. Contracts: ``contracts/*.vy`` compiled by
``python -m oasis.ledger.build`` into ``oasis/ledger/artifacts``.
"""
