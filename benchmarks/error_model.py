"""Can a learned error model rank the shipped model's errors inside the shift set? (issue 14, a negative result)

    python benchmarks/error_model.py [--model shipped] [--out benchmarks/out/error_model]

Inside half B of the shift set (the 97 molecules the shipped model was not fine-tuned on) σ detects |error| > 0.3
eV with AUROC 0.69 (gap), short of issue 14's 0.85. This asks whether the information is there at all in what
`predict` knows: a classifier of |error| > 0.3 eV, trained on the shipped model's errors on the design
benchmark's DFT labels (`benchmarks/design/task1-dft-labels.csv`, out-of-QM9 molecules it never trained on, less
any that are in the shift set by InChIKey), over features `predict` has (mean, σ, epistemic σ of gap/HOMO/LUMO,
domain score, nearest-neighbour similarity) and cheap RDKit counts (heavy atoms, conjugated, acyclic double and
triple bonds, aromatic atoms, sp2 fraction, rings, N/O/F). Two classifiers with settings fixed before looking at
half B (logistic regression, C = 0.3; a small LightGBM), scored by 5-fold CV on the design labels and then once on
half B. Writes results.json and results.md; asserts nothing.
"""
import argparse
import json
from pathlib import Path
import sys

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
TARGETS = ("gap", "homo", "lumo")


def inchikey(smiles: str):
    from rdkit import Chem
    m = Chem.MolFromSmiles(smiles)
    return Chem.MolToInchiKey(m) if m is not None else None


def features(model, smiles) -> tuple[pd.DataFrame, object]:
    """What `predict` reports (mean, σ, epistemic σ, domain score, nearest-neighbour similarity) and RDKit counts."""
    from rdkit import Chem
    from rdkit.Chem import rdMolDescriptors
    p = model.predict(list(smiles))
    cols = {}
    for k, t in enumerate(model.config["targets"]):
        if t in TARGETS:
            cols[f"pred_{t}"], cols[f"std_{t}"], cols[f"epi_{t}"] = p.mean[:, k], p.std[:, k], p.epistemic[:, k]
    cols["domain"], cols["nn_sim"] = p.domain_score, p.nn_similarity
    rows = []
    for s in smiles:
        m = Chem.MolFromSmiles(s)
        atoms, bonds = list(m.GetAtoms()), list(m.GetBonds())
        sym = [a.GetSymbol() for a in atoms]
        rows.append({"heavy": m.GetNumHeavyAtoms(), "conjugated": sum(b.GetIsConjugated() for b in bonds),
                     "acyclic_double": sum(b.GetBondTypeAsDouble() == 2 and not b.IsInRing() for b in bonds),
                     "triple": sum(b.GetBondTypeAsDouble() == 3 for b in bonds),
                     "aromatic": sum(a.GetIsAromatic() for a in atoms),
                     "sp2": sum(str(a.GetHybridization()) == "SP2" for a in atoms) / len(atoms),
                     "rings": rdMolDescriptors.CalcNumRings(m), "N": sym.count("N"), "O": sym.count("O"),
                     "F": sym.count("F")})
    return pd.concat([pd.DataFrame(cols), pd.DataFrame(rows)], axis=1), p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="shipped")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/error_model"))
    a = ap.parse_args()
    import lightgbm as lgb
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from elprop.data.embedded import embedded_path
    from elprop.pretrained import model_path
    from elprop.train.saved import load_model
    from finetune_shift import halves
    from shift_eval import auroc

    shift = pd.read_csv(embedded_path("shift"))
    shift = shift[np.isfinite(shift["gap [eV]"])].reset_index(drop=True)
    b = halves(shift, 0)[1]
    des = pd.read_csv(ROOT / "benchmarks/design/task1-dft-labels.csv")
    des = des[np.isfinite(des["gap [eV]"])]
    seen = {inchikey(s) for s in shift["smiles"]}
    des = des[[inchikey(s) not in seen for s in des["smiles"]]].reset_index(drop=True)
    model = load_model(model_path() if a.model == "shipped" else a.model)
    xd, pd_ = features(model, des["smiles"])
    xb, pb = features(model, shift["smiles"].iloc[b])
    res = {"model": a.model, "n_train": len(des), "n_half_b": len(b), "targets": {}}
    lines = ["| target | train: abs err > 0.3 | half B: abs err > 0.3 | AUROC σ (train / half B) | "
             "logistic: CV / half B | LightGBM: CV / half B |", "|---|---|---|---|---|---|"]
    for t in TARGETS:
        k = model.config["targets"].index(t)
        yd = np.abs(pd_.mean[:, k] - des[f"{t} [eV]"].to_numpy(float)) > 0.3
        yb = np.abs(pb.mean[:, k] - shift[f"{t} [eV]"].to_numpy(float)[b]) > 0.3
        r = res["targets"][t] = {"pos_train": float(yd.mean()), "pos_b": float(yb.mean()),
                                 "auroc_sigma_train": auroc(pd_.std[:, k], yd), "auroc_sigma_b": auroc(pb.std[:, k], yb)}
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        for name, est in [("logistic", make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))),
                          ("lightgbm", lgb.LGBMClassifier(n_estimators=200, learning_rate=0.03, num_leaves=7,
                                                          min_child_samples=10, subsample=0.8, subsample_freq=1,
                                                          colsample_bytree=0.8, verbose=-1, random_state=0))]:
            cvp = cross_val_predict(est, xd, yd, cv=cv, method="predict_proba")[:, 1]
            est.fit(xd, yd)
            r[name] = {"cv": auroc(cvp, yd), "half_b": auroc(est.predict_proba(xb)[:, 1], yb)}
        lines.append(f"| {t} | {r['pos_train']:.2f} of {len(des)} | {r['pos_b']:.2f} of {len(b)} | "
                     f"{r['auroc_sigma_train']:.2f} / {r['auroc_sigma_b']:.2f} | "
                     f"{r['logistic']['cv']:.2f} / {r['logistic']['half_b']:.2f} | "
                     f"{r['lightgbm']['cv']:.2f} / {r['lightgbm']['half_b']:.2f} |")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
