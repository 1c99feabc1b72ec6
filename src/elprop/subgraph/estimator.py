"""Saved subgraph models as estimators: ``SubgraphModel.load(dir)`` and ``predict(smiles) -> Prediction``, so
``elprop evaluate`` and ``elprop predict`` serve them like every other family.

A saved subgraph model is a folder (``elprop subgraph fit --out X`` writes ``X/model/``): ``config.json`` holds
the model in its native text form (the selected substructures as SMARTS with their coefficients, or the boosted
trees whose splits are SMARTS), the atom labeling, the target with its unit, and ``card.md``. A prediction is an
RDKit substructure match of each SMARTS on the molecule, prepared with the same labeling as in training. The
supervised topic model (slda) keeps its topics in tomotopy's own binary file (``slda.bin``) beside the config;
it predicts by inferring the topics of the molecule's bag of subgraph words.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from elprop.core.dataset import Dataset, InputError
from elprop.core.units import TargetSpec

PREDICTING = ("sparse-linear", "boosted-trees", "slda")
FITTING = ("sparse-linear", "boosted-trees")  # SubgraphModel.fit; slda is fitted by `elprop subgraph fit`


def min_support_count(value: float, n: int) -> int:
    """A minimum support given as a count of molecules, or as a fraction of ``n`` when below 1."""
    if value <= 0:
        raise InputError("--min-support must be positive")
    return max(1, int(np.ceil(value * n))) if value < 1 else int(value)


class SubgraphModel:
    representation = "subgraphs"

    def __init__(self, config: dict):
        self.config = dict(config)
        self.config.setdefault("targets", [self.config.get("target", "y")])
        spec = self.config.get("target_spec") or {"name": self.config["targets"][0]}
        self.specs = [TargetSpec.from_dict(spec)]
        self.domain = {}
        self._queries = None
        self.path = None  # the saved folder (slda reads its topic model from there)

    @classmethod
    def new(cls, model: str, target, *, labels: dict | None = None, min_support: float = 0.01,
            max_edges: int = 6, params: dict | None = None) -> "SubgraphModel":
        """An unfitted model: ``model`` sparse-linear (params: loss, l1_ratio, lambda) or boosted-trees (params:
        n_estimators, learning_rate, max_depth, min_samples_leaf); ``target`` a name or TargetSpec; ``labels``
        the atom labeling options (aromatic, charge, hydrogens, kekulize); ``min_support`` a count, or a
        fraction of the training molecules if below 1."""
        if model not in FITTING:
            raise InputError(f"unknown subgraph model {model!r}; fit one of {', '.join(FITTING)}")
        min_support_count(min_support, 1)  # a bad minimum support fails here, before any mining
        spec = target if isinstance(target, TargetSpec) else TargetSpec(str(target))
        return cls({"model": model, "targets": [spec.name], "target_spec": spec.to_dict(),
                    "label_options": dict(labels or {}), "min_support_given": float(min_support),
                    "max_edges": int(max_edges), "params": dict(params or {}),
                    "loss": (params or {}).get("loss", "squared")})

    def fit(self, data: Dataset, targets=None, split=None, progress=None) -> "SubgraphModel":
        """Mine and fit on ``split["train"]`` (rows of ``data``; default all). Every molecule of ``data`` is
        labelled with one labeling, as in ``elprop subgraph fit``. Afterwards ``learner`` (the
        SubgraphLinearModel or SubgraphBoosting), ``labeling``, ``mols`` and ``smarts_of`` are kept for reports."""
        from elprop.subgraph.molgraph import Labeling, pattern_smarts, smiles_graphs
        name = (targets or self.config["targets"])[0]
        y = np.asarray(data.target(name), dtype=np.float64)
        tr = np.arange(len(data)) if split is None else np.asarray(split["train"], dtype=np.int64)
        graphs, mols, lab = smiles_graphs(list(data.smiles), Labeling(**self.config["label_options"]))
        ms = min_support_count(self.config["min_support_given"], len(tr))
        p, sub = self.config["params"], [graphs[i] for i in tr]
        if self.config["model"] == "sparse-linear":
            from elprop.subgraph.sparse import SubgraphLinearModel
            m = SubgraphLinearModel(sub, y[tr], loss=p.get("loss", "squared"), alpha=p.get("l1_ratio", 1.0),
                                    min_support=ms, max_edges=self.config["max_edges"])
            lam = p.get("lambda") if p.get("lambda") is not None else m.lambda_max() / 100
            m.fit(lam)
            sel = m.selected()
            smarts = [pattern_smarts(q.code, lab, q.vertex_label) for q, _ in sel]
            self.smarts_of = {q.key(): s for s, (q, _) in zip(smarts, sel)}
            self.config.update({"lambda": lam, "l1_ratio": p.get("l1_ratio", 1.0),
                                "converged": bool(m.history[-1]["converged"]), "intercept": m.b,
                                "features": [{"smarts": s, "coefficient": float(b)} for s, (_, b) in zip(smarts, sel)]})
        else:
            from elprop.subgraph.trees import SubgraphBoosting
            m = SubgraphBoosting(sub, y[tr], n_estimators=p.get("n_estimators", 100),
                                 learning_rate=p.get("learning_rate", 0.1), max_depth=p.get("max_depth", 3),
                                 min_samples_leaf=p.get("min_samples_leaf", 5), min_support=ms,
                                 max_edges=self.config["max_edges"])
            m.fit(callback=progress)
            self.smarts_of = {}
            for t in m.trees:
                for q, _, _ in t.patterns():
                    self.smarts_of.setdefault(q.key(), pattern_smarts(q.code, lab, q.vertex_label))

            def dump(node):
                if "pattern" not in node:
                    return {"value": node["value"]}
                return {"smarts": self.smarts_of[node["pattern"].key()], "yes": dump(node["left"]),
                        "no": dump(node["right"])}
            self.config.update({"init": m.init, "learning_rate": m.lr, "trees": [dump(t.root) for t in m.trees]})
        self.config.update({"labels": lab.to_dict(), "min_support": ms, "n_train": int(len(tr))})
        self.learner, self.labeling, self.mols = m, lab, mols
        self._queries = None
        return self

    @classmethod
    def load(cls, path) -> "SubgraphModel":
        from elprop.train.saved import read_config
        m = cls(read_config(path))
        m.path = Path(path)
        return m

    def save(self, path, card: str | None = None) -> Path:
        """config.json (the SMARTS and coefficients or trees: the model's native text form) and card.md, through
        the one saved-model writer."""
        from elprop.train.saved import write_model_dir
        return write_model_dir(path, self.config, [], card)

    # --- prediction ------------------------------------------------------------------------------------------
    def _smarts(self) -> list[str]:
        if self.config["model"] == "sparse-linear":
            return [f["smarts"] for f in self.config["features"]]
        out = []

        def walk(node):
            if "smarts" in node:
                out.append(node["smarts"])
                walk(node["yes"])
                walk(node["no"])
        for t in self.config["trees"]:
            walk(t)
        return list(dict.fromkeys(out))

    def represent(self, data):
        """The molecules as labelled for matching (``None`` with an error for a SMILES that does not parse)."""
        from rdkit import Chem

        from elprop.chem.rdkit_utils import mol_from_smiles
        from elprop.subgraph.molgraph import Labeling, prepare
        if self.config["model"] == "slda" and "slda" not in self.config:
            raise InputError("this slda model was saved without its topic model (an older elprop); refit it")
        lab = Labeling.from_dict(self.config["labels"])
        smiles = list(data.smiles) if isinstance(data, Dataset) else list(data)
        mols, errors = [], {}
        for i, s in enumerate(smiles):
            try:
                mols.append(prepare(mol_from_smiles(str(s)), lab))
            except InputError as e:
                mols.append(None)
                errors[i] = str(e)
        if self._queries is None and self.config["model"] != "slda":
            self._queries = {s: Chem.MolFromSmarts(s) for s in self._smarts()}
        return _Mols(mols, errors)

    def _value(self, mol) -> float:
        q = self._queries
        if self.config["model"] == "sparse-linear":
            return self.config["intercept"] + sum(f["coefficient"] for f in self.config["features"]
                                                  if mol.HasSubstructMatch(q[f["smarts"]]))
        total = self.config["init"]
        for node in self.config["trees"]:
            while "smarts" in node:
                node = node["yes"] if mol.HasSubstructMatch(q[node["smarts"]]) else node["no"]
            total += self.config["learning_rate"] * node["value"]
        return total

    def _slda_values(self, mols) -> np.ndarray:
        """Topic inference (tomotopy, Gibbs sampling: repeated calls differ a little) and the topic regression."""
        from elprop.subgraph.bags import SLDATopicModel, SubgraphBags
        if self.path is None:
            raise InputError("an slda model predicts once saved and loaded (its topics live in slda.bin)")
        if getattr(self, "_slda", None) is None:
            self._slda = SLDATopicModel.load(self.path / "slda.bin", self.config["slda"])
        bags = SubgraphBags(self.config.get("bag", "ecfp"), int(self.config.get("radius", 2)))
        return self._slda.predict([bags.words(m)[0] for m in mols])

    def predict_rep(self, rep, idx=None):
        idx = np.arange(len(rep)) if idx is None else np.asarray(idx)
        if self.config["model"] == "slda":
            ok = [i for i in idx if rep.valid[i]]
            vals = dict(zip(ok, self._slda_values([rep.mols[i] for i in ok]))) if ok else {}
            mean = np.array([[vals.get(i, np.nan)] for i in idx], dtype=float).reshape(len(idx), 1)
            return mean, np.full_like(mean, np.nan)
        mean = np.array([[self._value(rep.mols[i])] if rep.valid[i] else [np.nan] for i in idx], dtype=float)
        mean = mean.reshape(len(idx), 1)
        if self.config.get("loss") == "logistic":
            mean = 1 / (1 + np.exp(-mean))
        return mean, np.full_like(mean, np.nan)  # no σ: a point estimate

    def predict(self, data):
        from elprop.train.estimator import Prediction
        rep = self.represent(data)
        mean, std = self.predict_rep(rep)
        return Prediction(mean, std, [""] * len(rep), dict(rep.errors), rep)


class _Mols:
    def __init__(self, mols, errors):
        self.mols, self.errors = mols, errors
        self.valid = np.array([m is not None for m in mols], dtype=bool)

    def __len__(self):
        return len(self.mols)
