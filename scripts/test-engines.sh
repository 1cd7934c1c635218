#!/usr/bin/env bash
# Brings up the real engines our tests and `make demo` use, on a fresh Debian/Ubuntu machine:
# podman (+buildah, skopeo), dockerd 26 with BuildKit, the buildx plugin and the containerd image
# store (Debian 13's docker.io, containerd and docker-buildx, pinned low so nothing else comes
# from Debian 13), a plain-HTTP registry on
# 127.0.0.1:5000 (and one requiring a password on 127.0.0.1:5001), qemu-user-static binfmt for linux/arm64, and local base images imported from
# rootfs tarballs (nothing can be pulled on an offline machine): local/busybox:{amd64,arm64},
# local/debian:bookworm (= bookworm-amd64) and local/debian:bookworm-arm64 in podman and docker;
# and the Dev Containers CLI (npm @devcontainers/cli, pinned) that `hjk images resolve
# --build` hands features and dockerComposeFile configs to (with Debian's docker-compose).
#
#   scripts/test-engines.sh up     install, configure, start; idempotent
#   scripts/test-engines.sh down   stop the daemons this script started
#   scripts/test-engines.sh status one line per component
#   scripts/test-engines.sh prune  remove every image, build cache and registry blob earlier
#                                  runs left (a machine that only runs these tests; see cmd_prune)
#   scripts/test-engines.sh auth-registry  (re)start only the password registry on 127.0.0.1:5001
#   scripts/test-engines.sh --dry-run up   print the commands that change the machine instead
#
# As root, or as a user with sudo: everything that needs root goes through $SUDO.
#
# Traps this works around (each found on a Firecracker VM, root, no systemd, cgroup v1 hybrid):
# - crun refuses hybrid cgroups, so podman is pointed at runc;
# - without CAP_SYS_RESOURCE podman's default rlimits fail (setrlimit RLIMIT_NOFILE), so they
#   are capped in containers.conf;
# - binfmt_misc may not be mounted, so qemu-aarch64 is registered by hand;
# - Debian 12's dockerd 20.10 has no buildx plugin anywhere, and its `--privileged` fails where the
#   capability bounding set lacks CAP_SYS_RESOURCE: Debian 13's docker.io 26 comes in through an
#   apt pin of priority 100, which installs only the packages asked for by release;
# - under the containerd image store dockerd must not be given `--storage-driver overlay2`
#   ("snapshotter not loaded: overlay2"): it picks the `overlayfs` snapshotter itself;
# - the images of an old overlay2 store are not visible in the containerd store: imported again.
set -euo pipefail

DRY=""
if [ "${1:-}" = --dry-run ]; then DRY=1; shift; fi
STATE=${AGENT_IMAGES_ENGINE_STATE:-/var/tmp/agent-images-engines}
WITH_DEBIAN=${AGENT_IMAGES_DEBIAN:-1}
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

log() { printf '[test-engines %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
case ${BASH_SOURCE[0]} in */*) HERE=${BASH_SOURCE[0]%/*} ;; *) HERE=. ;; esac
# shellcheck source-path=SCRIPTDIR source=lib/machine.sh
. "$HERE/lib/machine.sh"
# docker without sudo when the user may use the daemon (docker group), else through sudo
DOCKER=(docker)
if [ -n "$SUDO" ] && ! docker info >/dev/null 2>&1; then DOCKER=("$SUDO" docker); fi

# The docker the tests and the demo use: dockerd 26 (BuildKit inside), containerd 1.7, buildx 0.13.
DOCKER_PACKAGES=(docker.io/trixie docker-cli/trixie containerd/trixie docker-buildx/trixie)
docker_current() {
  local v
  v=$(dpkg-query -W -f='${Version}' docker.io 2>/dev/null) || return 1
  dpkg --compare-versions "$v" ge 26 && dpkg -s docker-buildx docker-cli >/dev/null 2>&1
}

install_packages() {
  # docker-compose (v1): Debian's docker.io has no compose plugin, and the Dev Containers CLI
  # builds dockerComposeFile configs with it
  local want=(podman buildah skopeo runc docker-registry qemu-user-static
              binfmt-support debootstrap busybox-static curl ca-certificates apache2-utils
              docker-compose)
  local missing=()
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  docker_current || { trixie_source || true; missing+=("${DOCKER_PACKAGES[@]}"); }
  ((${#missing[@]})) || return 0
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  if [ -n "$DRY" ]; then as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"; return 0; fi
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$STATE/apt.log" 2>&1 \
    || { tail -30 "$STATE/apt.log"; die "apt-get install failed"; }
}

configure_podman() {
  as_root mkdir -p /etc/containers/registries.conf.d
  root_file /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  root_file /etc/containers/registries.conf.d/50-agent-images-local.conf <<'CONF'
[[registry]]
location = "127.0.0.1:5000"
insecure = true

[[registry]]
location = "localhost:5000"
insecure = true

[[registry]]
location = "127.0.0.1:5001"
insecure = true
CONF
}

setup_binfmt() {
  mountpoint -q /proc/sys/fs/binfmt_misc || as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || as_root update-binfmts --enable >/dev/null 2>&1 || true
  [ -n "$DRY" ] || grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "qemu-aarch64 binfmt handler not enabled"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_registry() {
  alive "$STATE/registry.pid" && return 0
  if [ -n "$DRY" ]; then run docker-registry serve "$STATE/registry.yml"; return 0; fi
  mkdir -p "$STATE/registry-data"
  cat >"$STATE/registry.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry-data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
CONF
  nohup docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
  echo $! >"$STATE/registry.pid"
  for _ in $(seq 1 50); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && return 0; sleep 0.2; done
  cat "$STATE/registry.log"; die "registry did not answer on 127.0.0.1:5000"
}

# A second registry that requires a password (bcrypt htpasswd), for the release tests: users
# hjk-release and oauth2accesstoken, one random password kept in $STATE/auth-registry/password
# (0600), every request in $STATE/auth-registry.log (the access log tells whether a release
# uploaded blobs). One started by an older version of this script, without the second user, is
# restarted (the registry reads its htpasswd file once).
start_auth_registry() {
  local d="$STATE/auth-registry"
  if alive "$STATE/auth-registry.pid"; then
    grep -q '^oauth2accesstoken:' "$d/htpasswd" 2>/dev/null && return 0
    kill "$(cat "$STATE/auth-registry.pid")"
    for _ in $(seq 1 50); do alive "$STATE/auth-registry.pid" || break; sleep 0.1; done
  fi
  if [ -n "$DRY" ]; then run docker-registry serve "$d/config.yml"; return 0; fi
  mkdir -p "$d/data"
  if [ ! -s "$d/password" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$d/password")
  fi
  # the password goes on stdin (-i), never in htpasswd's argv; the file is 0600 from the start.
  # oauth2accesstoken is the user name `--auth gcp` logs in with (the token is the password)
  (umask 077; {
    htpasswd -iBn hjk-release <"$d/password"
    htpasswd -iBn oauth2accesstoken <"$d/password"
  } >"$d/htpasswd" 2>/dev/null)
  chmod 600 "$d/htpasswd"
  cat >"$d/config.yml" <<CONF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $d/data
  delete:
    enabled: true
auth:
  htpasswd:
    realm: hjk-release
    path: $d/htpasswd
http:
  addr: 127.0.0.1:5001
CONF
  nohup docker-registry serve "$d/config.yml" >"$STATE/auth-registry.log" 2>&1 &
  echo $! >"$STATE/auth-registry.pid"
  for _ in $(seq 1 50); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5001/v2/)" = 401 ] && return 0
    sleep 0.2
  done
  cat "$STATE/auth-registry.log"; die "the password registry did not answer on 127.0.0.1:5001"
}

# dockerd with the containerd image store (Docker 29's default for new installs), from our own
# config file so a user's /etc/docker/daemon.json is left alone. A daemon already answering is
# kept if it is that one; one of ours that is not (an older run's overlay2 daemon) is restarted.
docker_store() { "${DOCKER[@]}" info -f '{{.ServerVersion}} {{.Driver}}' 2>/dev/null; }
start_dockerd() {
  local info=""
  [ -n "$DRY" ] || info=$(docker_store) || info=""
  case "$info" in
    2[6-9].*overlayfs|[3-9][0-9].*overlayfs) return 0 ;;
    "") ;;
    *)
      alive "$STATE/dockerd.pid" || die "a dockerd that is not ours answers ($info): stop it, or start dockerd 26+ with {\"features\":{\"containerd-snapshotter\":true}}"
      log "restarting dockerd ($info) as dockerd 26 with the containerd image store"
      stop_pid "$STATE/dockerd.pid"
      ;;
  esac
  root_file "$STATE/daemon.json" <<'CONF'
{"features": {"containerd-snapshotter": true}}
CONF
  # started through sudo, its socket belongs to the user's own group, so docker (and the tests)
  # reach it without sudo or a new login into the docker group
  local opts=(--config-file "$STATE/daemon.json")
  [ -z "$SUDO" ] || opts+=(--group "$(id -gn)")
  if [ -n "$DRY" ]; then as_root dockerd "${opts[@]}"; return 0; fi
  ${SUDO:+"$SUDO"} nohup dockerd "${opts[@]}" >"$STATE/dockerd.log" 2>&1 &
  echo $! >"$STATE/dockerd.pid"
  DOCKER=(docker)
  for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  info=$(docker_store) || { tail -40 "$STATE/dockerd.log"; die "dockerd did not start"; }
  case "$info" in *overlayfs) ;; *) die "dockerd started without the containerd image store ($info)";; esac
}

# A static busybox root filesystem: the smallest base that still has a shell and adduser.
busybox_rootfs() {
  local arch=$1 out="$STATE/busybox-$1.tar.gz" w="$STATE/work-busybox-$1"
  [ -s "$out" ] && return 0
  rm -rf "$w"; mkdir -p "$w/dl" "$w/root/bin" "$w/root/etc" "$w/root/tmp" "$w/root/root"
  if [ "$arch" = "$(dpkg --print-architecture)" ]; then
    cp /bin/busybox "$w/root/bin/busybox"
  else
    # fetch the foreign .deb with a private apt state so the host's dpkg is untouched
    local d="$STATE/apt-$arch"
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    local o=(-o "APT::Architecture=$arch" -o "APT::Architectures=$arch" -o "Dir::State::Lists=$d/lists"
             -o "Dir::Cache=$d/cache" -o "Dir::State::status=/dev/null" -o Debug::NoLocking=1
             -o APT::Sandbox::User=root)
    apt-get "${o[@]}" update -qq
    (cd "$w/dl" && apt-get "${o[@]}" download busybox-static >/dev/null)
    dpkg-deb -x "$w"/dl/busybox-static_*.deb "$w/x"
    cp "$w/x/bin/busybox" "$w/root/bin/busybox"
  fi
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$w/root/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$w/root/etc/passwd"
  printf 'root:x:0:\n' >"$w/root/etc/group"
  chmod 1777 "$w/root/tmp"
  tar --numeric-owner -C "$w/root" -czf "$out.tmp" . && mv "$out.tmp" "$out"
  rm -rf "$w"
}

debian_rootfs() { # amd64|arm64; a foreign arch runs debootstrap's second stage under qemu
  local arch=$1 out="$STATE/debian-bookworm-$1.tar.gz" w="$STATE/work-debian-$1"
  [ -s "$out" ] && return 0
  # the tree debootstrap makes is root's (with 0600 files like /etc/shadow): every step on it
  # goes through sudo, and the tarball is handed back to the user
  as_root rm -rf "$w"
  log "debootstrap --arch=$arch --variant=minbase bookworm (amd64 ~30 s, arm64 ~2 min)"
  if [ -n "$DRY" ]; then
    as_root debootstrap --arch="$arch" --variant=minbase bookworm "$w" "$(mirror)"
    as_root tar --numeric-owner -C "$w" -czf "$out.tmp" .
    return 0
  fi
  as_root debootstrap --arch="$arch" --variant=minbase bookworm "$w" "$(mirror)" >"$STATE/debootstrap-$arch.log" 2>&1 \
    || { tail -30 "$STATE/debootstrap-$arch.log"; die "debootstrap failed"; }
  # apt inside the image should use the same mirror the host reaches ($1 is the tree)
  # shellcheck disable=SC2016
  as_root sh -c 'rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' sh "$w"
  as_root tar --numeric-owner -C "$w" -czf "$out.tmp" .
  as_root chown "$(id -u):$(id -g)" "$out.tmp"
  mv "$out.tmp" "$out"
  as_root rm -rf "$w"
}

import_image() { # tarball ref arch
  local tgz=$1 ref=$2 arch=$3
  if ! podman image exists "$ref"; then
    podman import --arch "$arch" --change 'CMD ["/bin/sh"]' "$tgz" "$ref" >/dev/null 2>>"$STATE/import.log"
  fi
  # dockerd 26 honours `import --platform`, and its containerd store keeps any architecture
  if ! "${DOCKER[@]}" image inspect "$ref" >/dev/null 2>&1; then
    "${DOCKER[@]}" import --platform "linux/$arch" --change 'CMD ["/bin/sh"]' "$tgz" "$ref" >/dev/null
  fi
}

base_images() {
  busybox_rootfs amd64
  busybox_rootfs arm64
  import_image "$STATE/busybox-amd64.tar.gz" local/busybox:amd64 amd64
  import_image "$STATE/busybox-arm64.tar.gz" local/busybox:arm64 arm64
  if [ "$WITH_DEBIAN" = 1 ]; then
    debian_rootfs amd64
    import_image "$STATE/debian-bookworm-amd64.tar.gz" local/debian:bookworm amd64
    import_image "$STATE/debian-bookworm-amd64.tar.gz" local/debian:bookworm-amd64 amd64
    # the hjk hierarchy tests build linux/arm64 FROM local/debian:bookworm-arm64
    debian_rootfs arm64
    import_image "$STATE/debian-bookworm-arm64.tar.gz" local/debian:bookworm-arm64 arm64
  fi
  # a multi-arch busybox in the registry, for FROM lines resolved per --platform
  if ! skopeo inspect --raw docker://127.0.0.1:5000/local/busybox:latest >/dev/null 2>&1; then
    podman manifest rm local/busybox:multi >/dev/null 2>&1 || true
    {
      podman manifest create local/busybox:multi
      podman manifest add local/busybox:multi containers-storage:localhost/local/busybox:amd64
      podman manifest add local/busybox:multi containers-storage:localhost/local/busybox:arm64
    } >/dev/null 2>>"$STATE/import.log"
    podman manifest push --all local/busybox:multi docker://127.0.0.1:5000/local/busybox:latest >/dev/null 2>&1
  fi
}

# The Dev Containers CLI from npm (bundled, no runtime dependencies); node >= 20 from apt.
DEVCONTAINER_CLI_VERSION=0.89.0
install_devcontainer_cli() {
  [ "$(devcontainer --version 2>/dev/null)" = "$DEVCONTAINER_CLI_VERSION" ] && return 0
  if [ -n "$DRY" ]; then
    command -v npm >/dev/null || as_root apt-get install -y -qq --no-install-recommends nodejs npm
    as_root npm install -g --no-fund --no-audit "@devcontainers/cli@$DEVCONTAINER_CLI_VERSION"
    return 0
  fi
  if ! command -v npm >/dev/null; then
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends nodejs npm >"$STATE/apt-node.log" 2>&1 \
      || { tail -30 "$STATE/apt-node.log"; die "apt-get install nodejs npm failed"; }
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || die "node $major is too old for @devcontainers/cli (needs >= 20)"
  as_root npm install -g --no-fund --no-audit "@devcontainers/cli@$DEVCONTAINER_CLI_VERSION" >"$STATE/npm-devcontainer.log" 2>&1 \
    || { tail -30 "$STATE/npm-devcontainer.log"; die "npm install @devcontainers/cli failed"; }
}

cmd_up() {
  mkdir -p "$STATE"
  local t0=$SECONDS
  install_packages;   log "packages ok ($((SECONDS - t0))s)"
  configure_podman
  setup_binfmt;       log "binfmt ok"
  start_registry;     log "registry on 127.0.0.1:5000"
  start_auth_registry; log "password registry on 127.0.0.1:5001"
  start_dockerd
  if [ -n "$DRY" ]; then
    # what needs root on the way to the base images and the Dev Containers CLI
    debian_rootfs amd64
    debian_rootfs arm64
    install_devcontainer_cli
    return 0
  fi
  log "dockerd $("${DOCKER[@]}" version -f '{{.Server.Version}}')"
  base_images;        log "base images ok ($((SECONDS - t0))s)"
  install_devcontainer_cli; log "devcontainer $(devcontainer --version)"
  log "up: podman $(podman --version | awk '{print $3}'); state in $STATE"
}

stop_pid() { # pidfile: TERM, then KILL after 15 s
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  if ${SUDO:+"$SUDO"} kill -0 "$pid" 2>/dev/null; then
    as_root kill -TERM "$pid"
    for _ in $(seq 1 75); do ${SUDO:+"$SUDO"} kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    ! ${SUDO:+"$SUDO"} kill -0 "$pid" 2>/dev/null || as_root kill -KILL "$pid"
  fi
  run rm -f "$1"
}

cmd_down() {
  local f
  for f in "$STATE/dockerd.pid" "$STATE/registry.pid" "$STATE/auth-registry.pid"; do
    stop_pid "$f"
  done
  log "down"
}

# Everything earlier runs left: every image, container and build cache in podman's store and in
# the dockerd this script starts, and the registries' contents. For a machine that only runs
# these tests (CI calls it when the disk runs low): a developer's own images go too. The next
# `up` imports the base images again from the tarballs kept in $STATE.
cmd_prune() {
  local before
  before=$(df -BG --output=avail /var/lib 2>/dev/null | tail -n1 | tr -d ' ')
  if docker_store >/dev/null; then
    alive "$STATE/dockerd.pid" || die "a dockerd that is not ours answers: prune its images yourself"
    run "${DOCKER[@]}" system prune -af --volumes
    run "${DOCKER[@]}" builder prune -af
  fi
  if command -v podman >/dev/null; then
    run podman system prune -af --volumes
  fi
  stop_pid "$STATE/registry.pid"
  stop_pid "$STATE/auth-registry.pid"
  run rm -rf "$STATE/registry-data" "$STATE/auth-registry/data"
  log "pruned: $before free before, $(df -BG --output=avail /var/lib 2>/dev/null | tail -n1 | tr -d ' ') after; the registries start again with up"
}

cmd_status() {
  command -v podman >/dev/null && echo "podman: $(podman --version)" || echo "podman: missing"
  docker_store >/dev/null && echo "dockerd: $(docker_store) (buildx $(docker buildx version 2>/dev/null | awk '{print $2}'))" || echo "dockerd: not running"
  curl -sf http://127.0.0.1:5000/v2/ >/dev/null && echo "registry: 127.0.0.1:5000" || echo "registry: not running"
  [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5001/v2/)" = 401 ] && echo "password registry: 127.0.0.1:5001" || echo "password registry: not running"
  grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null && echo "binfmt: qemu-aarch64" || echo "binfmt: missing"
  command -v devcontainer >/dev/null && echo "devcontainer: $(devcontainer --version)" || echo "devcontainer: missing"
}

case "${1:-up}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  prune) mkdir -p "$STATE"; cmd_prune ;;
  auth-registry) mkdir -p "$STATE"; start_auth_registry ;;
  *) echo "usage: $0 up|down|status|prune|auth-registry" >&2; exit 2 ;;
esac
