"""Copy a finished run's model into the package: weights, config, model card (with the command, machine and
training history) and the test indices.

usage: python tools/package_model.py runs/qm9-default src/elprop/pretrained/qm9_bondgraph
"""
import csv
import json
import os
import platform
import shutil
import sys
from pathlib import Path

run, dest = Path(sys.argv[1]), Path(sys.argv[2])
dest.mkdir(parents=True, exist_ok=True)
for f in (run / "model").iterdir():
    if f.suffix in (".json", ".safetensors"):
        shutil.copy2(f, dest / f.name)
split = json.loads((run / "split.json").read_text())
(dest / "test_indices.json").write_text(json.dumps({"test": split["test"]}))
hist = list(csv.DictReader(open(run / "history.csv")))
cfg = json.loads((run / "config.json").read_text())
cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
card = (run / "model" / "card.md").read_text()
card += f"""
## How it was made
- command: `tools/ship_default_model.sh` (= `elprop train --data qm9 --model {cfg['model']} --targets \
{','.join(cfg['targets'])} --features {cfg['features']} --dim {cfg['dim']} --layers {cfg['layers']} --split random \
--n-train {cfg['n_train']} --n-val {cfg['n_val']} --seed {cfg['seed']} --epochs {cfg['epochs']} --time-budget \
{cfg['time_budget_s']:.0f} --batch-size {cfg['batch_size']} --lr {cfg['lr']} --name qm9-default`)
- machine: {cpu}, {os.cpu_count()} cores, no GPU ({platform.system()} {platform.machine()})
- epochs completed within the budget: {hist[-1]['epoch']} (last validation scaled L1 {hist[-1]['val_l1_scaled']}, \
training time {hist[-1]['time_s']} s)
- the split is QM9 (qm9pack, 130,831 molecules in QM9 index order) shuffled with seed {cfg['seed']}: the first \
{cfg['n_train']} are training, the next {cfg['n_val']} validation, the rest test; the test rows are in \
`test_indices.json`. Check the table above with `elprop evaluate --split-file shipped`.
- inputs are SMILES (2D graphs); QM9's SMILES were used, so 3D geometry plays no part in these errors.
"""
(dest / "card.md").write_text(card)
size = sum(f.stat().st_size for f in dest.iterdir())
print(f"packaged {run} -> {dest} ({size / 1e6:.1f} MB)")
