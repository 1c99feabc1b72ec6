"""Copy a finished run's model into the package with its model card and the QM9 test indices.

usage: python tools/package_model.py RUN DEST [--test-from SPLIT_JSON] [--shift-eval JSON] [--how TEXT]

RUN/model is copied (config, domain, and the weights in float16). test_indices.json holds the QM9 test rows: RUN/split.json's test
part, or --test-from's (a run whose data were not QM9 alone, such as a fine-tuning run). The card gains the QM9
test metrics (computed here on those rows), the shift-set metrics of --shift-eval (benchmarks/shift_eval.py's
JSON) and how it was made.
"""
import argparse
import json
import os
import platform
import shutil
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("run")
ap.add_argument("dest")
ap.add_argument("--test-from")
ap.add_argument("--shift-eval")
ap.add_argument("--how", default="`tools/ship_default_model.sh`")
a = ap.parse_args()
run, dest = Path(a.run), Path(a.dest)
dest.mkdir(parents=True, exist_ok=True)
for f in dest.glob("*.safetensors"):
    f.unlink()
for f in (run / "model").iterdir():
    if f.name.startswith("member_") and f.suffix == ".safetensors":
        # weights stored in float16 (half the size; loading casts them back to float32); the card's metrics
        # below are computed from these stored weights
        import torch
        from safetensors.torch import load_file, save_file
        sd = load_file(f)
        save_file({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, dest / f.name)
    elif f.suffix in (".json", ".safetensors"):
        shutil.copy2(f, dest / f.name)
split = json.loads(Path(a.test_from or run / "split.json").read_text())
(dest / "test_indices.json").write_text(json.dumps({"test": split["test"]}))

from elprop.data.load import DataSpec, load_data  # noqa: E402
from elprop.train.run import evaluate  # noqa: E402
from elprop.train.saved import load_model  # noqa: E402

model = load_model(dest)
qm9 = load_data(DataSpec("qm9"))
rows, _, _ = evaluate(model, qm9, split["test"], "QM9 test")
cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
card = (run / "model" / "card.md").read_text()
ntr, nva = len(split["train"]), len(split["val"])
card += ("\n## QM9 test molecules\n\n" f"The test molecules of the QM9 split (random, seed 0: {ntr:,} training, {nva:,} "
         f"validation, {len(split['test']):,} test), listed in `test_indices.json`; reproduce with "
         "`elprop evaluate --split-file shipped`.\n\n| split | target | unit | n | MAE | RMSE | R² | 1σ coverage |\n"
         "|---|---|---|---|---|---|---|---|\n") + "".join(
    f"| QM9 test | {r['target']} | {r['unit']} | {r['n']} | {r['mae']:.4f} | {r['rmse']:.4f} | {r['r2']:.4f} | "
    f"{r.get('coverage_1sigma', float('nan')):.2f} |\n" for r in rows)
if a.shift_eval:
    ev = json.loads(Path(a.shift_eval).read_text())
    res = next(iter(ev["models"].values()))
    card += ("\n## Shift set (molecules outside QM9)\n\n"
             f"{res['shift']['gap']['n']} molecules of the embedded `shift` set that this model never saw "
             f"({ev.get('rows', 'all')} rows of `{Path(ev['shift_file']).name}`), and {res['qm9-test']['gap']['n']} "
             "QM9 test molecules, pooled in the last rows (`benchmarks/shift_eval.py`):\n\n"
             "| set | target | n | MAE [eV] | Spearman(σ, abs err) | within ±2σ | AUROC σ | AUROC domain | flagged | "
             "abs err > 0.5 eV flagged or within 2σ |\n|---|---|---|---|---|---|---|---|---|---|\n")
    for s in ("shift", "qm9-test", "pooled"):
        for t, m in res.get(s, {}).items():
            if not isinstance(m, dict):
                continue
            f = lambda v: "—" if v is None or v != v else f"{v:.2f}"  # noqa: E731
            card += (f"| {s} | {t} | {m['n']} | {m['mae']:.3f} | {f(m['spearman_sigma_abs_err'])} | "
                     f"{m['within_2sigma']:.2f} | {f(m['auroc_sigma'])} | {f(m['auroc_domain'])} | "
                     f"{m['flagged_fraction']:.2f} | {f(m['err_gt_0.5_flagged_or_within_2sigma'])} |\n")
card += f"""
## How it was made
- command: {a.how}
- machine: {cpu}, {os.cpu_count()} cores, no GPU ({platform.system()} {platform.machine()})
- inputs are SMILES (2D graphs); QM9's SMILES were used, so 3D geometry plays no part in these errors.
"""
(dest / "card.md").write_text(card)
size = sum(f.stat().st_size for f in dest.iterdir())
print(f"packaged {run} -> {dest} ({size / 1e6:.1f} MB)")
