# tfcompress: every target does its own set-up (a .venv in the repo root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0

.PHONY: install browser tflite tflm-host test test-all lint bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet $$($(BIN)/python -c "import configparser as c; p = c.ConfigParser(); p.read('setup.cfg'); print(' '.join(p['options.extras_require']['consumers'].split()))") 2>$(VENV)/consumers.log || { cat $(VENV)/consumers.log; exit 1; }
	touch $(STAMP)

## the main job: train, compress, convert, validate every sample model
tflite: install
	$(BIN)/python -m sample_models.build --out build

## a headless browser for the report.html checks (Debian's chromium; the
## tests skip with one line where it cannot be installed)
browser:
	@command -v chromium >/dev/null 2>&1 || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "chromium could not be installed: the report.html browser checks will skip"; }

## the host TFLM C++ library (64-bit and -m32) the micro tests compile the
## emitted sources against: built once per machine (about 2 min each on 2
## cores) into ~/.cache/tfcompress, from ../shared/tflm (or TFCOMPRESS_TFLM_SRC)
tflm-host: install
	@probe=$$(mktemp); printf 'int main(){}\n' | $(CXX) -m32 -x c++ - -o $$probe 2>/dev/null; \
	  ok=$$?; rm -f $$probe; [ $$ok = 0 ] \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++-multilib >/dev/null; } \
	  || echo "tflm-host: g++ -m32 unavailable (install g++-multilib); the -m32 checks skip"
	$(BIN)/python -m converters.runtimes.tflm_build

## fast tests (< 15 min on 2 cores, plus the one-time TFLM host build)
test: install browser tflm-host
	$(PYTEST) -q

## everything, including slow end-to-end runs
test-all: install browser tflm-host
	$(PYTEST) -q -m ""

lint: install
	$(BIN)/ruff check tfcompress converters sample_models tests benchmarks

bench: install
	$(BIN)/python -m benchmarks.run --out BENCHMARKS.md

clean:
	rm -rf build .pytest_cache
