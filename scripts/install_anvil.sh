#!/usr/bin/env bash
# Install the anvil EVM node (for the ledger's JSON-RPC test) from the npm
# registry into .tools/anvil. Idempotent: a no-op when the pinned version is
# already there. Prints the binary's path on success.
#
# The package @foundry-rs/anvil ships the real binary in a per-platform
# optional dependency (@foundry-rs/anvil-<os>-<arch>); its postinstall script is
# not needed (and npm 11 does not run it by default), so scripts are ignored
# and we call the platform binary directly: no network access at run time.
set -euo pipefail
VERSION=1.7.1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="$ROOT/.tools/anvil"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) PLAT=linux-amd64 ;;
  Linux-aarch64|Linux-arm64) PLAT=linux-arm64 ;;
  Darwin-arm64) PLAT=darwin-arm64 ;;
  Darwin-x86_64) PLAT=darwin-amd64 ;;
  *) echo "install_anvil: unsupported platform $(uname -s)-$(uname -m)" >&2; exit 2 ;;
esac
BIN="$PREFIX/node_modules/@foundry-rs/anvil-$PLAT/bin/anvil"
if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "Version: $VERSION"; then
  echo "$BIN"
  exit 0
fi
command -v npm >/dev/null || { echo "install_anvil: npm not found (install Node.js 18+)" >&2; exit 3; }
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-save --no-audit --no-fund --ignore-scripts \
  "@foundry-rs/anvil@$VERSION" "@foundry-rs/anvil-$PLAT@$VERSION" >&2
"$BIN" --version >/dev/null
echo "$BIN"
