# elprop — set-up, main job and tests.
# On this project's build machines a CPU build of torch lies on disk (pip install torch==<ver>);
# installing it first keeps pip from pulling a multi-GB CUDA build. Users elsewhere get whatever
# torch their platform provides through pyproject.toml, which does not pin a CPU build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup run test bench bench-density devset clean
DEV ?= benchmarks/out/dev.zarr

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_CPU)" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[test,bench]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/elprop data info qm9
	$(BIN)/elprop predict "c1ccccc1O" "CC(=O)O" "C#N" "OCC(O)CO" "c1ccncc1"

test: $(STAMP)
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
