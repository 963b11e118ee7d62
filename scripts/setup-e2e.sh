#!/usr/bin/env bash
# Set up the browser tests (tests/e2e): Debian's Chromium, the pinned Node driver
# (playwright-core, tests/e2e/package-lock.json) and the OHIF viewer (scripts/setup-ohif.sh).
# Idempotent; run as root or with sudo for the Debian packages (Debian 12).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO=sudo

missing=""
command -v chromium >/dev/null || missing+=" chromium"
command -v node >/dev/null || missing+=" nodejs"
command -v npm >/dev/null || missing+=" npm"
if [[ -n "$missing" ]]; then
  echo "Installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 18 )); then
  echo "setup-e2e: Node.js >= 18 is needed (found $(node --version))" >&2
  exit 1
fi

cd "$ROOT/tests/e2e"
if [[ ! -f node_modules/.package-lock.json ]] || ! cmp -s package-lock.json node_modules/.scintiseg-lock; then
  npm ci --no-audit --no-fund --silent
  cp package-lock.json node_modules/.scintiseg-lock
fi
node -e "require.resolve('playwright-core')" >/dev/null

"$ROOT/scripts/setup-ohif.sh"
echo "e2e ready: $(chromium --version 2>/dev/null | head -n1), playwright-core $(node -p "require('playwright-core/package.json').version")"
