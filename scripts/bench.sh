#!/usr/bin/env bash
# Whole-process ratios, measured in one run with hyperfine on real podman:
#   1. a cold `ocx build` vs the raw `podman build` of the same rendered Dockerfile and context
#      (target <= 1.05): what ocx adds around the engine;
#   2. a no-op `ocx build` vs one `podman image inspect` (target <= 1.3).
# "Cold" means no image and no cached layers for either command (pruned before every run);
# the opencode binary is in ocx's cache for both, since the raw build uses the same context.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tools.sh bench
cargo build --release --locked -q
ocx=$PWD/target/release/ocx
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
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
