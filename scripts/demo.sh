#!/usr/bin/env bash
# Set up and start the local demo hub: one command on a fresh machine with
# Python 3.11+ and Node.js 20+.
#   bash scripts/demo.sh                       # http://127.0.0.1:8000/
#   bash scripts/demo.sh --port 9000 --password secret
# Extra arguments go to `aaltohub demo` (see `aaltohub demo --help`).
# Everything the demo writes goes to ./demo-state (or --state-dir).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is needed (tried '$PYTHON');" \
       "set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "error: Node.js 20+ with npm is needed for configurable-http-proxy;" \
       "install it (e.g. 'sudo apt-get install nodejs npm') and run this again" >&2
  exit 1
fi

# As root, each user's server runs in a bubblewrap sandbox as that user;
# without bwrap they would all run as root, unconfined, so install it.
if [[ $(id -u) == 0 ]] && ! command -v bwrap >/dev/null; then
  if command -v apt-get >/dev/null; then
    echo "==> installing bubblewrap (sandboxes each demo server as its user)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null
  fi
  if ! command -v bwrap >/dev/null; then
    echo "error: bubblewrap (bwrap) is needed to sandbox the servers when the" \
         "demo runs as root; install it (e.g. 'apt-get install bubblewrap')" \
         "and run this again, or run the demo as a normal user" >&2
    exit 1
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
# Install (again) only when the package or its dependencies changed.
stamp=.venv/.aaltohub-demo-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]] ||
   ! .venv/bin/python -c 'import aaltohub, jupyterlab, nbgrader' 2>/dev/null; then
  echo "==> installing aaltohub with the demo extras into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[demo]'
  touch "$stamp"
fi

if [[ ! -x node_modules/.bin/configurable-http-proxy ]]; then
  echo "==> installing configurable-http-proxy (npm, into ./node_modules)"
  npm ci --no-audit --no-fund --loglevel=error
fi

exec .venv/bin/aaltohub demo "$@"
