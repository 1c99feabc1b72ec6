#!/usr/bin/env bash
# Train (resumably: rerun after a kill) and package the shipped default model.
# About 100 minutes on 2 CPU cores; on a GPU machine the same command runs faster (set CUDA as usual).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
$BIN/elprop train --data qm9 --model bondgraph --targets homo,lumo,gap,mu,alpha,U0_atom --features extended \
  --dim 256 --layers 4 --split random --n-train 110000 --n-val 10000 --seed 0 --epochs 200 --time-budget 5400 \
  --batch-size 128 --lr 1e-3 --out runs/qm9-default --no-progress
$BIN/python tools/package_model.py runs/qm9-default src/elprop/pretrained/qm9_bondgraph
