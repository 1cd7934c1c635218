#!/usr/bin/env bash
# Whole-process ratios, measured with hyperfine on the real engines. ocx:
#   1. cold: `ocx build` vs the raw `podman build` of the same generated Dockerfile and context
#      (target <= 1.05): what ocx adds around the engine;
#   2. no-op: `ocx build` vs one `image inspect` of the base and the image, on podman and on
#      docker (target <= 1.3);
#   3. the same no-op when the base's build context holds 100k files the Dockerfile does not
#      COPY (target <= 1.3): only COPY/ADD sources are hashed, alongside the inspect;
#   4. edit -> shell on docker (buildx): after an edit of the base Dockerfile, `ocx build && ocx
#      exec -- true` vs the raw engine commands that do the same work, as ocx prints them (the
#      base build, the final build of the context ocx generated, the same `docker run`; target
#      <= 1.1), and beside it the Dev Containers CLI's `up --remove-existing-container && exec
#      true` on the same Dockerfile. `up` alone keeps the old container, edit or not.
#   "Cold" means no image and no cached layers for either command (pruned before every run); the
#   opencode binary image exists for both, since the raw build uses the same context.
#   BENCH_OCX_CASES=1,2,3,4 picks cases; BENCH_RUNS / BENCH_NOOP_RUNS / BENCH_EDIT_RUNS set runs.
# hjk:
#   5. a no-op `hjk images release` of the three-variant release fixture (everything already in
#      the password registry on 127.0.0.1:5001; the root pinned by digest, as images/base pins
#      Ubuntu) vs one `skopeo inspect --raw` per variant (target <= 1.5): what deciding "nothing
#      to do" costs over reading the registry;
#   7. the registry build cache (`--cache-repo`) for a machine that starts empty:
#      `hjk images build` of tests/fixtures/hierarchy (linux/amd64) on a dockerd with a new data
#      root (its containerd image store and BuildKit cache empty; only the root base imported),
#      exporting its cache, vs the same build on another new data root with only that registry
#      cache (target <= 0.3); and the same pair for `hjk images release` (reported), whose
#      stages also rewrite every file time to SOURCE_DATE_EPOCH.
#   6. a one-machine amd64+arm64 release of tests/fixtures/hierarchy (apt installs systemd and
#      docker.io; --no-cache) vs the sum of the two per-arch releases (--push-by-digest,
#      --no-cache) (target <= 0.8): how much the platforms overlap. BENCH_RELEASE_RUNS (default 1:
#      arm64 apt under qemu takes minutes). The one-machine run has --force-tags: each --no-cache
#      run re-points the same v0.1.0 tags. The local images these runs make (about 2 GB each) are
#      removed at the end.
# BENCH_ONLY=ocx or BENCH_ONLY=release runs one half; BENCH_RELEASE_CASES=5,6,7 picks its cases.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh bench
cargo build --release --locked -q
ocx=$PWD/target/release/ocx
hjk=$PWD/target/release/hjk
repo_root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
only=${BENCH_ONLY:-all}
if [ "$only" != release ]; then
version=1.18.18
# ocx tags its image <repo>:<version>-<8 hex of "uid:gid:username">; every bench project runs as
# uid 1000, gid 1000, no username
user_tag=$(printf '1000:1000:' | sha256sum | cut -c1-8)
cases=${BENCH_OCX_CASES:-1,2,3,4}
want() { [[ ",$cases," == *",$1,"* ]]; }
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$HOME/.cache}
ratio() { # json-file label target
  python3 - "$@" <<'PY'
import json, sys
f, label, target = sys.argv[1:]
r = json.load(open(f))["results"]
a, b = r[0]["mean"], r[1]["mean"]
print(f"{label}: {r[0]['command']} {a*1000:.1f} ms / {r[1]['command']} {b*1000:.1f} ms = {a/b:.3f} (target <= {target})")
PY
}

# --- 1 and 2: a base that is a plain image -------------------------------------------------
base=local/debian:bookworm
image=ocx-local-debian-bookworm:$version-$user_tag
mkdir -p "$work/plain"
cat >"$work/plain/ocx.json" <<JSON
{"custom_base_image": "$base", "opencode_version": "$version", "opencode_source": "npm", "uid": 1000, "gid": 1000}
JSON
if want 1; then
  # one build to fetch the binary, build its image and keep the exact context ocx generates
  (cd "$work/plain" && OCX_KEEP_CONTEXT="$work/ctx" "$ocx" --backend podman --progress plain build --force >/dev/null 2>&1)
  label=$(podman image inspect --format '{{index .Labels "io.agent-images.fingerprint"}}' "$image")
  raw=(podman build --format docker --tag bench-raw:1 --platform linux/amd64 --file "$work/ctx/1/final/Dockerfile"
       --label "io.agent-images.fingerprint=$label" --pull=missing "$work/ctx/1/final")
  # -N runs prepare commands without a shell too, so the pruning lives in a script
  printf 'podman rmi -f %s bench-raw:1 >/dev/null 2>&1\npodman image prune -f >/dev/null 2>&1\ntrue\n' "$image" >"$work/prune.sh"
  (cd "$work/plain" && hyperfine -N --style basic --runs "${BENCH_RUNS:-5}" --prepare "bash $work/prune.sh" \
    --export-json "$work/cold.json" \
    -n "ocx build (cold)" "$ocx --backend podman --progress plain build" \
    -n "podman build (raw)" "${raw[*]}")
fi
# noop DIR NAME OUT IMAGES...: on each engine, a build in DIR, then its no-op vs one inspect
noop() {
  local dir=$1 name=$2 out=$3 engine
  shift 3
  for engine in podman docker; do
    (cd "$dir" && "$ocx" --backend $engine build >/dev/null 2>&1)
    (cd "$dir" && hyperfine -N --style basic --warmup 3 --runs "${BENCH_NOOP_RUNS:-30}" \
      --export-json "$work/$out-$engine.json" \
      -n "$name" "$ocx --backend $engine build" \
      -n "$engine image inspect" "$engine image inspect $*")
  done
}
if want 2; then
  noop "$work/plain" "ocx build (no-op)" noop "$base" "$image"
fi

# --- 3: a base built from a Dockerfile whose context holds 100k files ----------------------
if want 3; then
  big=$work/big
  mkdir -p "$big/data"
  python3 - "$big/data" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(100):
    sub = os.path.join(d, f"d{i:03}")
    os.mkdir(sub)
    for j in range(1000):
        with open(os.path.join(sub, f"f{j:04}"), "w") as f:
            f.write(str(j))
PY
  echo "app" >"$big/app.txt"
  printf 'FROM %s\nCOPY app.txt /app.txt\n' "$base" >"$big/Dockerfile"
  cat >"$big/ocx.json" <<JSON
{"custom_base_image": "bench-big/base", "custom_base_dockerfile": "Dockerfile", "opencode_version": "$version", "opencode_source": "npm", "uid": 1000, "gid": 1000}
JSON
  noop "$big" "ocx build (no-op, 100k files)" big bench-big/base "ocx-bench-big-base:$version-$user_tag"
fi

# --- 4: edit -> shell on docker (buildx): ocx vs the raw engine commands doing the same work,
# and vs the Dev Containers CLI --------------------------------------------------------------
if want 4; then
  dc_version=0.89.0
  dc_dir=${XDG_CACHE_HOME}/ocx-bench/devcontainers-cli-$dc_version
  [ -x "$dc_dir/node_modules/.bin/devcontainer" ] ||
    npm install --no-audit --no-fund --silent --prefix "$dc_dir" "@devcontainers/cli@$dc_version"
  dc=$dc_dir/node_modules/.bin/devcontainer
  ws=$work/ws
  mkdir -p "$ws/.devcontainer"
  printf 'FROM %s\nRUN echo 0 >/etc/edit\n' "$base" >"$ws/.devcontainer/Dockerfile"
  echo '{"build": {"dockerfile": "Dockerfile"}}' >"$ws/.devcontainer/devcontainer.json"
  cat >"$ws/ocx.json" <<JSON
{"custom_base_image": "bench-edit/base", "custom_base_dockerfile": ".devcontainer/Dockerfile", "opencode_version": "$version", "opencode_source": "npm"}
JSON
  # each run starts with a new edit of the RUN line, so the engine rebuilds that layer
  # shellcheck disable=SC2016 # $(date) is for the generated script to expand, each run
  printf 'sed -i "s/^RUN echo .* >/RUN echo $(date +%%s%%N) >/" %s\n' "$ws/.devcontainer/Dockerfile" >"$work/edit.sh"
  # the raw floor: the commands ocx runs after such an edit, as it prints them, without ocx:
  # the base build, the final build from the context ocx generated (kept after one edit, so
  # the opencode --version proof is already on record, as it is for every later edit), and the
  # same `docker run`
  (cd "$ws" && "$ocx" --backend docker build >/dev/null 2>&1 && bash "$work/edit.sh" &&
    OCX_KEEP_CONTEXT="$work/edit-ctx" "$ocx" --backend docker --progress plain build 2>"$work/edit-build.log" >/dev/null &&
    "$ocx" --backend docker --dry-run --progress plain exec -- true >"$work/edit-run.log" 2>/dev/null)
  grep -E '^\+ docker buildx build --tag (bench-edit/base|ocx-bench-edit-base:)' "$work/edit-build.log" | sed 's/^+ //' |
    sed "s|--file [^ ]*/final/Dockerfile|--file $work/edit-ctx/1/final/Dockerfile|; s| [^ ]*/final\$| $work/edit-ctx/1/final|" >"$work/raw-edit.sh"
  grep -E '^docker run ' "$work/edit-run.log" | sed 's/--name [^ ]* //' >>"$work/raw-edit.sh"
  [ "$(wc -l <"$work/raw-edit.sh")" = 3 ] || { echo "bench: could not capture the raw commands:"; cat "$work/raw-edit.sh"; exit 1; }
  sed -i 's/$/ >\/dev\/null 2>\&1 \&\&/; $ s/ \&\&$//' "$work/raw-edit.sh"
  printf '%s --backend docker build && %s --backend docker exec -- true\n' "$ocx" "$ocx" >"$work/ocx-edit.sh"
  printf '%s up --workspace-folder %s --remove-existing-container >/dev/null && %s exec --workspace-folder %s true\n' \
    "$dc" "$ws" "$dc" "$ws" >"$work/dc-edit.sh"
  (cd "$ws" && hyperfine -N --style basic --warmup 1 --runs "${BENCH_EDIT_RUNS:-5}" --prepare "bash $work/edit.sh" \
    --export-json "$work/edit.json" \
    -n "ocx build && ocx exec" "bash $work/ocx-edit.sh" \
    -n "raw docker buildx build x2 && docker run" "bash $work/raw-edit.sh" \
    -n "devcontainer up && exec" "bash $work/dc-edit.sh")
  docker ps -aq --filter "label=devcontainer.local_folder=$ws" | xargs -r docker rm -f >/dev/null 2>&1 || true
fi

echo
want 1 && ratio "$work/cold.json" "cold build (podman)" 1.05
want 2 && ratio "$work/noop-podman.json" "no-op build (podman)" 1.3
want 2 && ratio "$work/noop-docker.json" "no-op build (docker)" 1.3
want 3 && ratio "$work/big-podman.json" "no-op build, 100k-file base context (podman)" 1.3
want 3 && ratio "$work/big-docker.json" "no-op build, 100k-file base context (docker)" 1.3
if want 4; then
  python3 - "$work/edit.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
o, raw, dc = (x["mean"] for x in r)
print(f"edit -> shell (docker buildx): ocx {o:.2f} s / raw engine commands {raw:.2f} s = {o/raw:.3f} (target <= 1.1); "
      f"vs the Dev Containers CLI {dc:.2f} s = {o/dc:.3f}")
PY
fi
fi

if [ "$only" != ocx ]; then
  state=${AGENT_IMAGES_ENGINE_STATE:-/var/tmp/agent-images-engines}
  pw=$(cat "$state/auth-registry/password")
  export HJK_AUTH=raw HJK_REGISTRY_CREDS="hjk-release:$pw"
  repo=127.0.0.1:5001/hjk-bench/release-$$
  # a root pinned by digest (the multi-arch busybox test-engines.sh puts in the plain registry)
  pin=$(skopeo inspect --raw --tls-verify=false docker://127.0.0.1:5000/local/busybox:latest | sha256sum | cut -d' ' -f1)
  rel=(images release --all --images-dir "$repo_root/tests/fixtures/release" --registry "$repo"
       --backend podman --version v0.1.0 --progress plain --base-image "127.0.0.1:5000/local/busybox@sha256:$pin")
  heavy=(images release --all --images-dir "$repo_root/tests/fixtures/hierarchy" --registry "$repo-heavy"
         --backend podman --version v0.1.0 --progress plain --no-cache)
  # only the names in this run's repositories go; an image another name still holds stays
  cleanup() {
    local r id
    for r in "$repo" "$repo-heavy"; do
      for id in $(podman images --format '{{.ID}} {{.Repository}}' | awk -v r="$r" '$2==r {print $1}' | sort -u); do
        if podman image inspect --format '{{range .RepoTags}}{{.}} {{end}}{{range .RepoDigests}}{{.}} {{end}}' "$id" |
          tr ' ' '\n' | grep -v '^$' | grep -qv "^${r}[:@]"; then
          podman image inspect --format '{{range .RepoTags}}{{.}} {{end}}' "$id" | tr ' ' '\n' | grep "^${r}:" |
            xargs -r -n1 podman untag "$id" || true
        else
          podman rmi "$id" >/dev/null 2>&1 || true
        fi
      done
    done
    rm -rf "$work"
  }
  trap cleanup EXIT
  # skopeo reads with an auth file, so the password is never an argument
  printf '{"auths":{"127.0.0.1:5001":{"auth":"%s"}}}' "$(printf 'hjk-release:%s' "$pw" | base64 -w0)" >"$work/auth.json"
  chmod 600 "$work/auth.json"
  sk="skopeo inspect --raw --tls-verify=false --authfile $work/auth.json docker://$repo"
  printf '%s:base >/dev/null\n%s:middle >/dev/null\n%s:top >/dev/null\n' "$sk" "$sk" "$sk" >"$work/skopeo3.sh"
  rcases=${BENCH_RELEASE_CASES:-5,6,7}
  rwant() { [[ ",$rcases," == *",$1,"* ]]; }
  cd "$work"
  if rwant 5; then
    "$hjk" "${rel[@]}" --platform linux/amd64,linux/arm64 >/dev/null 2>&1
    hyperfine -N --style basic --warmup 2 --runs "${BENCH_NOOP_RUNS:-20}" --export-json release-noop.json \
      -n "hjk images release (no-op)" "$hjk ${rel[*]} --platform linux/amd64,linux/arm64" \
      -n "skopeo inspect --raw x3" "bash $work/skopeo3.sh"
  fi
  if rwant 6; then
    hyperfine -N --style basic --runs "${BENCH_RELEASE_RUNS:-1}" --export-json release-arch.json \
      -n "amd64+arm64 release" "$hjk ${heavy[*]} --platform linux/amd64,linux/arm64 --force-tags" \
      -n "amd64 release" "$hjk ${heavy[*]} --push-by-digest --platform linux/amd64" \
      -n "arm64 release" "$hjk ${heavy[*]} --push-by-digest --platform linux/arm64"
  fi
  if rwant 7; then
    # a throwaway dockerd: its own data root, sockets and bridge (a second daemon must not share
    # the first one's docker0), no iptables rules; BuildKit's RUN steps use the host network
    bench_dockerd() { # start|stop
      local d=$work/dockerd
      if [ "$1" = stop ]; then
        [ -f "$d.pid" ] && kill "$(cat "$d.pid")" 2>/dev/null
        for _ in $(seq 1 100); do
          if [ -f "$d.pid" ] && kill -0 "$(cat "$d.pid")" 2>/dev/null; then sleep 0.1; else break; fi
        done
        # dockerd makes its data root a mount point of its own
        while mountpoint -q "$d/root" 2>/dev/null; do umount -l "$d/root"; done
        rm -rf "$d" "$d.pid" /var/run/agent-images-bench
        ip link del br-aibench 2>/dev/null || true
        bench_rules -D
        return 0
      fi
      bench_dockerd stop
      ip link add br-aibench type bridge && ip addr add 10.254.0.1/24 dev br-aibench && ip link set br-aibench up
      # its RUN steps reach the package mirror through this bridge: NAT and forwarding by hand,
      # since its own iptables rules would share chains with the first daemon's
      bench_rules -I
      mkdir -p "$d"
      echo '{"features": {"containerd-snapshotter": true}}' >"$d.json"
      nohup dockerd --config-file "$d.json" --data-root "$d/root" --exec-root /var/run/agent-images-bench \
        --pidfile "$d.pid" -H "unix://$d.sock" --bridge br-aibench --iptables=false --ip-masq=false >"$d.log" 2>&1 &
      for _ in $(seq 1 150); do DOCKER_HOST=unix://$d.sock docker info >/dev/null 2>&1 && break; sleep 0.2; done
      DOCKER_HOST=unix://$d.sock docker import --platform linux/amd64 --change 'CMD ["/bin/sh"]' \
        "$state/debian-bookworm-amd64.tar.gz" local/debian:bookworm-amd64 >/dev/null
    }
    bench_rules() { # -I|-D
      iptables -t nat "$1" POSTROUTING -s 10.254.0.0/24 ! -o br-aibench -j MASQUERADE 2>/dev/null || [ "$1" = -D ]
      iptables "$1" FORWARD -i br-aibench -j ACCEPT 2>/dev/null || [ "$1" = -D ]
      iptables "$1" FORWARD -o br-aibench -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT 2>/dev/null || [ "$1" = -D ]
    }
    export -f bench_dockerd bench_rules
    export work state
    trap 'bench_dockerd stop; cleanup' EXIT
    # the rebuild a runner that starts empty does (`hjk images build`, the cache in the plain
    # registry), and the same for a release (the password registry), whose stages also rewrite
    # every file time to SOURCE_DATE_EPOCH
    bcache=127.0.0.1:5000/hjk-bench/build-cache-$$
    build=(images build --all --images-dir "$repo_root/tests/fixtures/hierarchy" --registry hjk-bench/cache-$$
           --backend docker --platform linux/amd64 --progress plain --cache-repo "$bcache")
    printf 'DOCKER_HOST=unix://%s/dockerd.sock %s %s\n' "$work" "$hjk" "${build[*]}" >"$work/build-cache.sh"
    hyperfine -N --style basic --runs 1 --prepare "bash -c 'bench_dockerd start'" --export-json build-cache.json \
      -n "build on a new data root (cold)" "bash $work/build-cache.sh" \
      -n "build on a new data root with the registry cache" "bash $work/build-cache.sh"
    cache=127.0.0.1:5001/hjk-bench/cache-$$
    cached=(images release --all --images-dir "$repo_root/tests/fixtures/hierarchy" --backend docker
            --version v0.1.0 --platform linux/amd64 --progress plain --cache-repo "$cache")
    printf 'DOCKER_HOST=unix://%s/dockerd.sock %s %s --registry %s-cold\n' "$work" "$hjk" "${cached[*]}" "$repo" >"$work/cache-cold.sh"
    printf 'DOCKER_HOST=unix://%s/dockerd.sock %s %s --registry %s-warm\n' "$work" "$hjk" "${cached[*]}" "$repo" >"$work/cache-warm.sh"
    hyperfine -N --style basic --runs 1 --prepare "bash -c 'bench_dockerd start'" --export-json cache.json \
      -n "release on a new data root (cold)" "bash $work/cache-cold.sh" \
      -n "release on a new data root with the registry cache" "bash $work/cache-warm.sh"
    bench_dockerd stop
  fi
  python3 - <<'PY'
import json, os
if os.path.exists("build-cache.json"):
    r = json.load(open("build-cache.json"))["results"]
    cold, warm = r[0]["mean"], r[1]["mean"]
    print(f"registry cache, hjk images build (buildx, hierarchy, fresh data root): {warm:.2f} s / cold {cold:.2f} s = {warm/cold:.3f} (target <= 0.3)")
if os.path.exists("cache.json"):
    r = json.load(open("cache.json"))["results"]
    cold, warm = r[0]["mean"], r[1]["mean"]
    print(f"registry cache, hjk images release (rewrites every file time): {warm:.2f} s / cold {cold:.2f} s = {warm/cold:.3f}")
if os.path.exists("release-noop.json"):
    r = json.load(open("release-noop.json"))["results"]
    n, s = r[0]["mean"], r[1]["mean"]
    print(f"no-op release: hjk {n*1000:.1f} ms / 3x skopeo inspect --raw {s*1000:.1f} ms = {n/s:.3f} (target <= 1.5)")
if os.path.exists("release-arch.json"):
    r = json.load(open("release-arch.json"))["results"]
    both, a, b = r[0]["mean"], r[1]["mean"], r[2]["mean"]
    print(f"two-arch release: {both:.2f} s / (amd64 {a:.2f} s + arm64 {b:.2f} s) = {both/(a+b):.3f} (target <= 0.8)")
PY
fi
