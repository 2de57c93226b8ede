# pragma version 0.4.3
# pragma evm-version cancun
"""
@title Oasis token (OAS)
@notice Minimal ERC-20. The deployer is the only minter; on the embedded
        chain it is the node's faucet, in production a treasury address.
"""

from ethereum.ercs import IERC20

implements: IERC20

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

name: public(String[32])
symbol: public(String[8])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
minter: public(address)


@deploy
def __init__():
    self.name = "Oasis"
    self.symbol = "OAS"
    self.decimals = 18
    self.minter = msg.sender


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._move(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    allowed: uint256 = self.allowance[sender][msg.sender]
    assert allowed >= amount, "allowance"
    if allowed != max_value(uint256):
        self.allowance[sender][msg.sender] = allowed - amount
    self._move(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def mint(receiver: address, amount: uint256):
    assert msg.sender == self.minter, "minter"
    assert receiver != empty(address), "zero"
    self.totalSupply += amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=empty(address), receiver=receiver, value=amount)


@internal
def _move(sender: address, receiver: address, amount: uint256):
    assert receiver != empty(address), "zero"
    bal: uint256 = self.balanceOf[sender]
    assert bal >= amount, "balance"
    self.balanceOf[sender] = bal - amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)
