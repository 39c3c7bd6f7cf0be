#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run them.
#   bash scripts/test.sh            # lint + the whole suite (unit, LDAP, e2e)
#   bash scripts/test.sh -k ldap    # extra arguments go to pytest
# System packages (slapd for the LDAP tests, chromium for the browser tests,
# bubblewrap for the servers' sandbox, postgresql for the hub on Postgres,
# prometheus for promtool: the alert rules' checks)
# are installed with apt when running as root; otherwise the script names
# the command to run.
# tox envs: lint; py (the suite on the newest releases); hub-image (the suite
# on the pins of images/hub/requirements.txt, what a deployed hub runs);
# docs (the Sphinx site, warnings as errors).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(slapd ldap-utils chromium git bubblewrap libnss-wrapper postgresql prometheus)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "==> installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "error: missing system packages: ${missing[*]}" >&2
    echo "       install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

command -v node >/dev/null || { echo "error: Node.js is required (configurable-http-proxy)" >&2; exit 1; }
if [[ ! -x node_modules/.bin/configurable-http-proxy ]]; then
  echo "==> installing configurable-http-proxy (npm)"
  npm ci --no-audit --no-fund --loglevel=error
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "tox>=4"

echo "==> tox: lint, tests (newest releases, then the hub image's pins), docs"
exec .venv/bin/tox -e lint,py,hub-image,docs -- "$@"
