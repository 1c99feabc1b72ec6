#!/usr/bin/env bash
# Issue 17's learning curves on a lent GPU machine, as one prepared script: benchmarks/volumetric_curves.py at
# 1k, 5k and 20k training molecules (cnn3d on promolecular grids, bondgraph, SchNet; five targets), all nine
# trainings at once on the one GPU. Results go to $OUT (default benchmarks/out/gpu).
#
# Prepare on this machine first (the GPU image has neither RDKit, Zarr, Dask nor qm9pack):
#   .venv/bin/python benchmarks/volumetric_curves.py --export-data .curvedata/draw.xyz.gz     (23,000 molecules, 6 MB)
#   for p in rdkit==2026.9.1 zarr==3.1.6 numcodecs==0.17.1 donfig google-crc32c dask==2026.8.0 \
#            distributed==2026.8.0 partd locket zict tblib tornado; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_5_x86_64 \
#       --platform manylinux1_x86_64 -d .whl "$p"; done                                            (about 35 MB)
# then run `bash benchmarks/gpu_curves.sh` there with .curvedata and .whl carried along.
# Seen on an H200 (2026-12-04): wheels and checks 15 s, the 23,000-molecule store 87 s, start-up and featurisation
# about 30 s, then the budgets, then about 20 s of evaluation: with budgets 180,260,340 plan on about 480 s, so
# give the device call a limit of 580 s. Here, `volumetric_curves.py --report-only --out DIR` rebuilds the report
# from the returned archive (curves-runs.tgz unpacked).
# Environment: CURVES_BUDGETS (180,260,340: training s per size), CURVES_TIMEOUT (540), CURVES_PARALLEL (9),
# CURVES_WORKERS (14: store generation), CURVES_ARGS (extra options), DEVICE (cuda), SKIP_WHL=1 where the
# packages are installed already, PY (python3).
set -u
OUT=${OUT:-benchmarks/out/gpu}
mkdir -p "$OUT"
if [ "${SKIP_WHL:-0}" != 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 3; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export ELPROP_CACHE=${ELPROP_CACHE:-/tmp/elprop-cache}
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
$PY -c "import torch, rdkit, zarr, distributed, elprop; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'rdkit', rdkit.__version__, 'zarr', zarr.__version__)" \
  || exit 4
gunzip -c .curvedata/draw.xyz.gz > /tmp/draw.xyz || exit 5
# GPU load and memory every 15 s, beside the runs
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 15 > "$OUT/nvidia-smi.csv" 2>/dev/null &
SMI=$!
CUR=${CURVES_DIR:-/tmp/curves}
t0=$(date +%s)
timeout "${CURVES_TIMEOUT:-540}" $PY benchmarks/volumetric_curves.py --data /tmp/draw.xyz --sizes 1000,5000,20000 \
  --budgets "${CURVES_BUDGETS:-180,260,340}" --n-val 1000 --n-test 2000 --parallel "${CURVES_PARALLEL:-9}" \
  --workers "${CURVES_WORKERS:-14}" --device "${DEVICE:-cuda}" --cnn-dim 128 --cnn-layers 4 --cnn-batch 32 \
  --store /tmp/curves.zarr --out "$CUR" ${CURVES_ARGS:-} > "$OUT/curves.log" 2>&1
echo "volumetric_curves: exit $? after $(( $(date +%s) - t0 )) s"
kill $SMI 2>/dev/null
cp "$CUR/curves.json" "$CUR/curves.md" "$OUT/" 2>/dev/null
tail -40 "$OUT/curves.log"
# the run folders without weights, as one archive (the machine returns few files): metrics, histories, configs,
# logs and parity plots, enough to rebuild the report here with --report-only
tar czf "$OUT/curves-runs.tgz" --exclude='*.ckpt' --exclude='*.pt' --exclude='*.safetensors' \
  -C "$(dirname "$CUR")" "$(basename "$CUR")" 2>/dev/null
ls -la "$OUT"
