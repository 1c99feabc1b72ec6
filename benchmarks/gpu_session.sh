#!/usr/bin/env bash
# One GPU session's work, as one prepared script (a lent GPU machine runs it in the repository root; results go
# to $OUT, default benchmarks/out/gpu). Prepare on this machine first:
#   .venv/bin/python benchmarks/representations.py --export-subsets .devdata      (QM9 draws as CSV, ~3 MB)
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       -d .whl rdkit==2026.9.1                                                      (the GPU image lacks RDKit)
# then run `bash benchmarks/gpu_session.sh` there with .devdata and .whl carried along.
#   1. benchmarks/representations.py at the issue's size (10k training molecules, 3 seeds, 6 configurations),
#      REP_PARALLEL trainings at once on the one GPU, at most REP_EPOCHS epochs and REP_BUDGET s of training each;
#   2. benchmarks/cnn3d_speed.py on CUDA (fp32, channels-last, bf16, bf16 + gradient checkpointing).
# Environment: REP_PARALLEL (18), REP_EPOCHS (60), REP_BUDGET (300), REP_TIMEOUT (420), REP_ARGS (extra options),
# SPEED_TIMEOUT (75), SPEED_ARGS, DEVICE (cuda), SKIP_WHL=1 where RDKit is installed already.
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
$PY -c "import torch, rdkit, elprop; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'rdkit', rdkit.__version__)" \
  || exit 4
REP=${REP_DIR:-/tmp/rep}
t0=$(date +%s)
timeout "${REP_TIMEOUT:-420}" $PY benchmarks/representations.py --data .devdata --parallel "${REP_PARALLEL:-18}" \
  --budget "${REP_BUDGET:-300}" --epochs "${REP_EPOCHS:-60}" --device "${DEVICE:-cuda}" --out "$REP" ${REP_ARGS:-} \
  > "$OUT/representations.log" 2>&1
echo "representations: exit $? after $(( $(date +%s) - t0 )) s"
tail -25 "$OUT/representations.log"
# the run folders without weights, as one archive (the machine returns few files)
tar czf "$OUT/representations-runs.tgz" --exclude='*.ckpt' --exclude='*.pt' --exclude='*.safetensors' \
  -C "$(dirname "$REP")" "$(basename "$REP")" 2>/dev/null
t0=$(date +%s)
OMP_NUM_THREADS=8 timeout "${SPEED_TIMEOUT:-75}" $PY benchmarks/cnn3d_speed.py --device "${DEVICE:-cuda}" \
  --grids 32,48 --batch 32 --steps 5 --variants fp32,channels_last,bf16,bf16+ckpt --out /tmp/speed ${SPEED_ARGS:-} \
  > "$OUT/cnn3d_speed.log" 2>&1
echo "cnn3d_speed: exit $? after $(( $(date +%s) - t0 )) s"
cp /tmp/speed/speed.json /tmp/speed/speed.md "$OUT/" 2>/dev/null
cat "$OUT/cnn3d_speed.log" | tail -20
