# Two entry points do all set-up on a fresh machine: `make all` (whole pipeline) and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
RUN ?= artifacts/default
TARGET ?= rp2040
SEED ?= 0
EMU := firmware/emulator
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: fuzz fuzz-tools toolchain setup all pipeline firmware export bench release test test-e2e clean help

help:
	@echo "make all                   - set up, run the whole default pipeline offline, build firmware, export, benchmark"
	@echo "make test                  - set up and run the test suite (fast; the long e2e run is 'make test-e2e')"
	@echo "make firmware TARGET=rp2040 - build build/rp2040/<name>.uf2 from $(RUN)"
	@echo "make release [VERSION=x.y.z] - pack $(RUN) into dist/pizza-edge-<version>/ (zips, manifest.json, MODEL_CARD.md, SHA256SUMS)"
	@echo "make fuzz                  - fuzz the firmware serial-protocol parser with libFuzzer for 10 minutes"
	@echo "make setup                 - venv with pinned deps, ARM toolchain, rp2040js emulator (idempotent)"

# Re-installs only when pyproject.toml changes.
$(VENV)/.stamp: pyproject.toml
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (Python 3.11 is required)"; exit 2; }
	[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,vlm]'
	$(BIN)/pip check
	touch $@

# The optional Ray extra (teach --engine ray), for the test suite only: `make all` runs without it.
$(VENV)/.scale-stamp: pyproject.toml $(VENV)/.stamp
	$(BIN)/pip install -q -e '.[test,vlm,scale]'
	$(BIN)/pip check
	touch $@

toolchain:
	@command -v arm-none-eabi-gcc >/dev/null && [ -f /usr/lib/arm-none-eabi/newlib/thumb/v6-m/nofp/libc_nano.a ] || \
	  { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q gcc-arm-none-eabi libnewlib-arm-none-eabi; }

$(EMU)/node_modules/.stamp: $(EMU)/package.json $(EMU)/package-lock.json
	@command -v npm >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q nodejs npm; }
	cd $(EMU) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

fuzz-tools:
	@command -v clang >/dev/null && [ -n "$$(ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ] || \
	  { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q clang libclang-rt-14-dev; }

setup: $(VENV)/.stamp toolchain fuzz-tools $(EMU)/node_modules/.stamp

pipeline: setup
	$(BIN)/python -m compress all --run $(RUN) --seed $(SEED)

firmware: setup
	@[ "$(TARGET)" = rp2040 ] || { echo "error: firmware exists for TARGET=rp2040 only (got '$(TARGET)')"; exit 2; }
	$(BIN)/python -m export.rp2040.build --run $(RUN) --out build/rp2040

export: setup
	$(BIN)/python -m export --all --run $(RUN) --seed $(SEED)

bench: setup
	$(BIN)/python -m benchmarks.run --all --run $(RUN)

all: pipeline firmware export bench

release: setup
	$(BIN)/python -m compress.release --run $(RUN) $(if $(VERSION),--version $(VERSION))

# Two workers, each taking whole test files (--dist loadfile): a file's module fixtures, its Ray cluster and its
# firmware builds stay in one process; workers share no folder or port (tmp_path is per worker, servers bind port 0).
test: setup $(VENV)/.scale-stamp
	$(BIN)/python -m pytest -q -m "not e2e" -n 2 --dist loadfile

test-e2e: setup
	$(BIN)/python -m pytest -q -m e2e

# The long protocol fuzz (10 minutes); `make test` runs a short smoke of the same harness.
fuzz: setup
	$(MAKE) -C firmware/fuzz run FUZZ_SECONDS=600 PYTHON=$(abspath $(BIN)/python)

clean:
	rm -rf build dist artifacts
