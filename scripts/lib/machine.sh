# shellcheck shell=bash
# Sourced by scripts/test-engines.sh and scripts/install-tools.sh: the few helpers both need to
# change a machine the same way, so the two agree whichever runs first. The sourcing script sets
# DRY (non-empty: print the commands instead of running them) and SUDO (empty as root).

# run: a command that changes the machine (printed instead with --dry-run); as_root: the same,
# through sudo when we are not root
run() { if [ -n "$DRY" ]; then printf '+ %s\n' "$*"; else "$@"; fi; }
as_root() { run ${SUDO:+"$SUDO"} "$@"; }
# writes stdin to a root-owned file
root_file() { if [ -n "$DRY" ]; then printf '+ write %s\n' "$1"; cat >/dev/null; else ${SUDO:+"$SUDO"} tee "$1" >/dev/null; fi; }

# The Debian mirror this machine already uses (deb822 or one-line sources), for Debian 13 and
# for debootstrap: an offline machine reaches only its own mirror.
mirror() {
  local m
  m=$(sed -n 's/^URIs: *\([^ ]*\/debian\/\{0,1\}\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [ -n "$m" ] || m=$(awk '$1=="deb" && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  echo "${m:-http://deb.debian.org/debian}"
}

# Debian 13 ("trixie") from the same mirror, at priority 100: apt takes nothing from it unless a
# package is asked for by release (`docker.io/trixie`, `cosign/trixie`), so libc6 and the rest
# stay Debian 12's. Returns 1 when it wrote the source (the caller must `apt-get update`).
TRIXIE_SOURCES=/etc/apt/sources.list.d/agent-images-trixie.sources
TRIXIE_PIN=/etc/apt/preferences.d/agent-images-trixie
trixie_source() {
  [ -f "$TRIXIE_SOURCES" ] && [ -f "$TRIXIE_PIN" ] && return 0
  grep -q trixie /etc/os-release 2>/dev/null && return 0 # Debian 13 itself: nothing to add
  root_file "$TRIXIE_SOURCES" <<CONF
Types: deb
URIs: $(mirror)
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CONF
  printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' | root_file "$TRIXIE_PIN"
  return 1
}
