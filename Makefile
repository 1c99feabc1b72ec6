# elprop — set-up, main job and tests.
# On this project's build machines a CPU build of torch lies on disk (pip install torch==<ver>);
# installing it first keeps pip from pulling a multi-GB CUDA build. Users elsewhere get whatever
# torch their platform provides through pyproject.toml, which does not pin a CPU build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup run test bench bench-density devset clean browser
DEV ?= benchmarks/out/dev.zarr

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_CPU)" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[test,bench]"
	# 3Dmol.js for `elprop serve` (npm registry; served locally, no CDN)
	mkdir -p $(VENV)/npm && (cd $(VENV)/npm && npm install --no-audit --no-fund --silent 3dmol@2.5.5) \
		|| echo "npm unavailable: elprop serve will show no 3D view"
	touch $(STAMP)

# Debian's chromium and its driver for the headless-browser test of `elprop serve` (skipped without them)
browser:
	@command -v chromedriver >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver) \
		>/dev/null 2>&1) || echo "chromium not installed: the browser test of elprop serve will be skipped"

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/elprop data info qm9
	$(BIN)/elprop predict "c1ccccc1O" "CC(=O)O" "C#N" "OCC(O)CO" "c1ccncc1"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/qm9_budget.py

# the development density store (200 QM9 molecules, PBE/def2-SVP; about 45 min on 2 cores); resumable
devset: $(STAMP)
	$(BIN)/elprop density devset --out $(DEV) --n 200

bench-density: devset
	$(BIN)/python benchmarks/density_store.py --dev-store $(DEV)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
