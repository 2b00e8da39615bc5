# The two commands a newcomer needs: `make demo` (the link flow against local emulators) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell sha256sum requirements-dev.txt | cut -c1-12)
# cargo-lambda (and its zig linker) come from PyPI into the virtualenv.
LAMBDA  := PATH="$(abspath $(VENV))/bin:$$PATH" cargo lambda
ZIP     := dist/account-link.zip

# make image: link-receiver, static (musl), in an image FROM scratch (deploy/Containerfile). ARCH=x86_64
# (default: this machine, the image test) or ARCH=arm64 (the provider stack's Fargate tasks).
ARCH    ?= x86_64
IMAGE   ?= localhost/link-receiver
TRIPLE  := $(if $(filter arm64 aarch64,$(ARCH)),aarch64,x86_64)-unknown-linux-musl
OCIARCH := $(if $(filter arm64 aarch64,$(ARCH)),arm64,amd64)
# arm64 images get their own tags, so the local x86_64 :latest stays runnable here.
SUFFIX  := $(if $(filter arm64 aarch64,$(ARCH)),-arm64,)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' crates/link-registry/Cargo.toml | head -n 1)
COMMIT  := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
IMGDIR  := target/container/$(ARCH)
# runc and cgroupfs: podman's defaults (crun, the systemd cgroup manager) and its default ulimits fail in
# sandboxes like CI's; these flags work there and everywhere else. `podman build` needs none of RUN's
# isolation (the Containerfile only copies files), so no --isolation flag is needed.
PODMAN  := podman --runtime runc --cgroup-manager=cgroupfs
MAX_IMAGE_BYTES := 26214400

.PHONY: help venv system-deps demo test lint unit-test template-test console-test verifiers-test image image-test build package bench bench-registry clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

# linksupport (py/linksupport): the helpers tests/, bench/ and scripts/ share (start a program, wait until it says
# where it listens, stop it; moto, link-receiver, PostgreSQL, a Lambda Runtime API emulator), installed editable so
# each imports it as a package, offline (its build backend comes from requirements-dev.txt).
SUPPORT_PY := $(VENV)/.linksupport-installed
$(SUPPORT_PY): $(STAMP) py/linksupport/pyproject.toml
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-build-isolation --no-index -e ./py/linksupport
	@touch $@

venv: $(STAMP) $(SUPPORT_PY) ## install the Python tools (moto, cargo-lambda, cfn-lint, checkov, standardwebhooks) and linksupport into .venv

system-deps: ## install Debian's postgresql, chromium, chromium-driver, podman, buildah and runc when they are missing
	@scripts/system_deps.sh

demo: venv ## the link flow locally (moto + link-receiver + the function under cargo lambda's emulator), ending in the provider's console
	$(PY) scripts/demo.py

test: venv system-deps lint unit-test template-test console-test verifiers-test image-test ## everything CI runs: fmt, clippy, unit + integration tests, template checks, the Python and TypeScript verifiers, the image

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

unit-test: venv system-deps
	cargo test --locked --workspace

# The contract tests also validate the events a real run delivered (written by `cargo test`); tests/bench checks
# that BENCHMARKS.md's registry figures are rendered from the committed results file. The provider's stack
# (deploy/provider.yaml) is checked with the customer's template.
template-test: venv
	ACCOUNT_LINK_EVENTS_FILE=target/test-output/link-events.jsonl $(PY) -m pytest tests/template tests/contract tests/bench -q

# The console in headless Chromium against link-receiver, the function and moto. The binaries are the ones
# `cargo test` builds (the same features, so nothing is compiled again after unit-test).
console-test: venv system-deps
	cargo test --locked --workspace --no-run
	$(PY) -m pytest tests/console -q

# The Python and TypeScript verifiers (verifiers/) against the vectors link-contract writes (verifiers/vectors.json;
# the Rust side runs them in unit-test). The Python package is installed from its folder without an index (its
# dependencies come from requirements-dev.txt), so this works offline; npm ci fetches TypeScript (for the type
# check) once, then from npm's cache.
VERIFIERS_PY := $(VENV)/.verifiers-installed
$(VERIFIERS_PY): $(STAMP) $(shell find verifiers/python/src verifiers/python/pyproject.toml verifiers/python/README.md -type f 2>/dev/null)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-build-isolation --no-index ./verifiers/python
	@touch $@

verifiers-test: venv $(VERIFIERS_PY) ## the Python and TypeScript verifiers against verifiers/vectors.json
	$(PY) -m pytest verifiers/python/tests -q
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || \
	  { echo "verifiers-test needs Node.js 20 or later (found $$(node --version))"; exit 1; }
	cd verifiers/typescript && npm ci --prefer-offline --no-audit --no-fund --loglevel=error && \
	  node_modules/.bin/tsc -p . && node --test --test-reporter=dot test/*.test.js

# The image run as a provider runs it (the flags docs/provider-deploy.md gives), on SQLite and PostgreSQL.
image-test: venv system-deps image
	IMAGE=$(IMAGE):latest $(PY) -m pytest tests/image -q

image: venv system-deps ## link-receiver in a container image FROM scratch: localhost/link-receiver:latest (ARCH=arm64 for ECS)
	@rustup target list --installed | grep -qx $(TRIPLE) || rustup target add $(TRIPLE)
	$(LAMBDA) build --locked --profile image --target $(TRIPLE) -p link-registry --bin link-receiver \
	  --lambda-dir $(IMGDIR)/bin
	@rm -rf $(IMGDIR)/context && mkdir -p $(IMGDIR)/context/data
	cp $(IMGDIR)/bin/link-receiver/bootstrap $(IMGDIR)/context/link-receiver
	cp /etc/ssl/certs/ca-certificates.crt deploy/image/passwd deploy/image/group $(IMGDIR)/context/
	$(PODMAN) build --format docker --platform linux/$(OCIARCH) -f deploy/Containerfile \
	  --build-arg VERSION=$(VERSION) --build-arg REVISION=$(COMMIT) \
	  -t $(IMAGE):latest$(SUFFIX) -t $(IMAGE):$(VERSION)-$(COMMIT)$(SUFFIX) $(IMGDIR)/context
	@size=$$($(PODMAN) image inspect --format '{{.Size}}' $(IMAGE):latest$(SUFFIX)); \
	  echo "$(IMAGE):$(VERSION)-$(COMMIT)$(SUFFIX): $$size bytes"; \
	  test $$size -le $(MAX_IMAGE_BYTES) || { echo "the image is over 25 MB"; exit 1; }

build: venv ## build the deployable bootstrap (arm64, release) with cargo-lambda
	$(LAMBDA) build --release --arm64 --bin account-link

package: build ## zip the bootstrap into dist/account-link.zip
	@mkdir -p dist
	$(PY) -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED, compresslevel=9); \
	  i = zipfile.ZipInfo("bootstrap", (1980, 1, 1, 0, 0, 0)); i.external_attr = 0o755 << 16; \
	  i.compress_type = zipfile.ZIP_DEFLATED; z.writestr(i, open(sys.argv[2], "rb").read()); z.close()' \
	  $(ZIP) target/lambda/account-link/bootstrap
	@ls -l $(ZIP)

bench: venv system-deps ## measure the function (cold start, warm, memory, scale) and the registry against Python peers
	$(PY) bench/run.py
	$(PY) bench/registry/run.py
	@$(MAKE) --no-print-directory bench-console

bench-registry: venv system-deps ## only the registry's part of `make bench` (add ARGS=--quick for a smoke run)
	$(PY) bench/registry/run.py $(ARGS)

clean:
	cargo clean
	rm -rf $(VENV) dist .demo

.PHONY: bench-console
bench-console: venv system-deps ## only the console's part of `make bench`: 100 to 10 000 subnets in headless Chromium (ARGS=--quick)
	$(PY) bench/console_bench.py $(ARGS)
