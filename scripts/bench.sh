#!/usr/bin/env bash
# Whole-process ratios, measured in one run with hyperfine on real podman:
#   1. a cold `ocx build` vs the raw `podman build` of the same rendered Dockerfile and context
#      (target <= 1.05): what ocx adds around the engine;
#   2. a no-op `ocx build` vs one `podman image inspect` (target <= 1.3);
#   3. a no-op `hjk images release` of the three-variant release fixture (everything already in
#      the password registry on 127.0.0.1:5001; the root pinned by digest, as images/base pins
#      Ubuntu) vs one `skopeo inspect --raw` per variant (target <= 1.5): what deciding "nothing
#      to do" costs over reading the registry;
#   4. a one-machine amd64+arm64 release of tests/fixtures/hierarchy (apt installs systemd and
#      docker.io; --no-cache) vs the sum of the two per-arch releases (--push-by-digest,
#      --no-cache) (target <= 0.8): how much the platforms overlap. BENCH_RELEASE_RUNS (default 1:
#      arm64 apt under qemu takes minutes).
# BENCH_ONLY=ocx or BENCH_ONLY=release runs one half.
# "Cold" means no image and no cached layers for either command (pruned before every run);
# the opencode binary is in ocx's cache for both, since the raw build uses the same context.
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
base=local/debian:bookworm
image=ocx-local-debian-bookworm:$version
cat >"$work/ocx.json" <<JSON
{"custom_base_image": "$base", "opencode_version": "$version", "opencode_source": "npm", "uid": 1000, "gid": 1000, "username": "dev"}
JSON
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$HOME/.cache}
# one build to fetch the binary and keep the exact context ocx generates
(cd "$work" && OCX_KEEP_CONTEXT="$work/ctx" "$ocx" --backend podman --progress plain build --force >/dev/null 2>&1)
label=$(podman image inspect --format '{{index .Labels "io.agent-images.fingerprint"}}' "$image")
raw=(podman build --format docker --tag bench-raw:1 --platform linux/amd64 --file "$work/ctx/Dockerfile"
     --label "io.agent-images.fingerprint=$label" --pull=missing "$work/ctx")
# -N runs prepare commands without a shell too, so the pruning lives in a script
printf 'podman rmi -f %s bench-raw:1 >/dev/null 2>&1\npodman image prune -f >/dev/null 2>&1\ntrue\n' "$image" >"$work/prune.sh"
prune="bash $work/prune.sh"

cd "$work"
hyperfine -N --style basic --runs "${BENCH_RUNS:-5}" --prepare "$prune" --export-json cold.json \
  -n "ocx build (cold)" "$ocx --backend podman --progress plain build" \
  -n "podman build (raw)" "${raw[*]}"
"$ocx" --backend podman build >/dev/null 2>&1
hyperfine -N --style basic --warmup 3 --runs "${BENCH_NOOP_RUNS:-30}" --export-json noop.json \
  -n "ocx build (no-op)" "$ocx --backend podman build" \
  -n "podman image inspect" "podman image inspect $base $image"

python3 - <<'PY'
import json
def ratio(f):
    r = json.load(open(f))["results"]
    return r[0]["mean"] / r[1]["mean"], r[0]["mean"], r[1]["mean"]
c, co, cr = ratio("cold.json")
n, no, ni = ratio("noop.json")
print(f"cold build: ocx {co*1000:.0f} ms / raw podman build {cr*1000:.0f} ms = {c:.3f} (target <= 1.05)")
print(f"no-op build: ocx {no*1000:.1f} ms / podman image inspect {ni*1000:.1f} ms = {n:.3f} (target <= 1.3)")
PY
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
  # skopeo reads with an auth file, so the password is never an argument
  printf '{"auths":{"127.0.0.1:5001":{"auth":"%s"}}}' "$(printf 'hjk-release:%s' "$pw" | base64 -w0)" >"$work/auth.json"
  chmod 600 "$work/auth.json"
  sk="skopeo inspect --raw --tls-verify=false --authfile $work/auth.json docker://$repo"
  printf '%s:base >/dev/null\n%s:middle >/dev/null\n%s:top >/dev/null\n' "$sk" "$sk" "$sk" >"$work/skopeo3.sh"
  "$hjk" "${rel[@]}" --platform linux/amd64,linux/arm64 >/dev/null 2>&1
  cd "$work"
  hyperfine -N --style basic --warmup 2 --runs "${BENCH_NOOP_RUNS:-20}" --export-json release-noop.json \
    -n "hjk images release (no-op)" "$hjk ${rel[*]} --platform linux/amd64,linux/arm64" \
    -n "skopeo inspect --raw x3" "bash $work/skopeo3.sh"
  hyperfine -N --style basic --runs "${BENCH_RELEASE_RUNS:-1}" --export-json release-arch.json \
    -n "amd64+arm64 release" "$hjk ${heavy[*]} --platform linux/amd64,linux/arm64" \
    -n "amd64 release" "$hjk ${heavy[*]} --push-by-digest --platform linux/amd64" \
    -n "arm64 release" "$hjk ${heavy[*]} --push-by-digest --platform linux/arm64"
  python3 - <<'PY'
import json
r = json.load(open("release-noop.json"))["results"]
n, s = r[0]["mean"], r[1]["mean"]
print(f"no-op release: hjk {n*1000:.1f} ms / 3x skopeo inspect --raw {s*1000:.1f} ms = {n/s:.3f} (target <= 1.5)")
r = json.load(open("release-arch.json"))["results"]
both, a, b = r[0]["mean"], r[1]["mean"], r[2]["mean"]
print(f"two-arch release: {both:.2f} s / (amd64 {a:.2f} s + arm64 {b:.2f} s) = {both/(a+b):.3f} (target <= 0.8)")
PY
fi
