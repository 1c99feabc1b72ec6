"""Bags of subgraphs: molecules as count vectors of atom-neighbourhood subgraphs, and a supervised topic model.

Words:
- ``ecfp``: Morgan/ECFP environments by radius (RDKit's Morgan generator; word ``m<r>:<id>``), the connected
  subgraph of all atoms within r bonds of a centre, with its Daylight atom invariants;
- ``wl``: Weisfeiler-Lehman labels by iteration (word ``wl<t>:<hash>``), refined from element (+ aromatic) labels
  and bond orders over the heavy-atom graph.
Each word keeps a representative fragment (SMILES of the environment of its first occurrence) for display.

``SLDATopicModel`` wraps tomotopy's supervised LDA (``SLDAModel``): topics are distributions over subgraph words,
a molecule is a mixture of topics, and the response (the target, standardised) is a linear function of the
topic proportions. ``bag_baselines`` fits ridge regression and gradient boosting on the same count vectors.
"""
from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from elprop.core.dataset import InputError


def _env_smiles(mol, atom: int, radius: int) -> str:
    if radius == 0:
        a = mol.GetAtomWithIdx(atom)
        return f"[{a.GetSymbol() if not a.GetIsAromatic() else a.GetSymbol().lower()}]"
    bonds = Chem.FindAtomEnvironmentOfRadiusN(mol, radius, atom)
    if not bonds:
        return _env_smiles(mol, atom, 0)
    atoms = sorted({mol.GetBondWithIdx(b).GetBeginAtomIdx() for b in bonds}
                   | {mol.GetBondWithIdx(b).GetEndAtomIdx() for b in bonds})
    return Chem.MolFragmentToSmiles(mol, atomsToUse=atoms, bondsToUse=list(bonds), canonical=True)


def ecfp_words(mol, radius: int = 2):
    """(Counter of words, {word: (fragment SMILES, atom, radius)}) of Morgan environments up to ``radius``."""
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius)
    ao = rdFingerprintGenerator.AdditionalOutput()
    ao.AllocateBitInfoMap()
    fp = gen.GetSparseCountFingerprint(mol, additionalOutput=ao)
    words, info = Counter(), {}
    for bit, count in fp.GetNonzeroElements().items():
        envs = ao.GetBitInfoMap()[bit]
        atom, r = envs[0]
        w = f"m{r}:{bit}"
        words[w] += count
        info[w] = (atom, r)
    return words, info


def wl_words(mol, iterations: int = 2):
    """Weisfeiler-Lehman words over the heavy-atom graph, iterations 0..``iterations``."""
    bond = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3, Chem.BondType.AROMATIC: 4}
    lab = [f"{a.GetSymbol()}{'a' if a.GetIsAromatic() else ''}" for a in mol.GetAtoms()]
    words, info = Counter(), {}
    for t in range(iterations + 1):
        for i, lv in enumerate(lab):
            w = f"wl{t}:{hashlib.blake2b(lv.encode(), digest_size=6).hexdigest()}"
            words[w] += 1
            info.setdefault(w, (i, t))
        if t == iterations:
            break
        new = []
        for a in mol.GetAtoms():
            nb = sorted(f"{bond.get(b.GetBondType(), 1)}{lab[b.GetOtherAtomIdx(a.GetIdx())]}" for b in a.GetBonds())
            new.append(lab[a.GetIdx()] + "(" + ",".join(nb) + ")")
        lab = new
    return words, info


class SubgraphBags:
    """Count vectors of subgraph words over a set of molecules, with a fixed vocabulary after ``fit``."""

    def __init__(self, kind: str = "ecfp", radius: int = 2):
        if kind not in ("ecfp", "wl"):
            raise InputError(f"bag kind must be ecfp or wl, not {kind!r}")
        self.kind, self.radius = kind, radius
        self.vocab: dict[str, int] = {}
        self.fragments: dict[str, str] = {}

    def words(self, mol):
        return ecfp_words(mol, self.radius) if self.kind == "ecfp" else wl_words(mol, self.radius)

    def fit(self, mols):
        docs = []
        for m in mols:
            w, info = self.words(m)
            docs.append(w)
            for word, (atom, r) in info.items():
                if word not in self.fragments:
                    self.fragments[word] = _env_smiles(m, atom, r)
        df = Counter(w for d in docs for w in d)
        self.vocab = {w: k for k, w in enumerate(sorted(df))}
        self._docs = docs
        return self

    def transform(self, mols=None):
        """A scipy CSR count matrix [molecules, vocabulary]; words outside the vocabulary are dropped."""
        from scipy.sparse import csr_matrix
        docs = self._docs if mols is None else [self.words(m)[0] for m in mols]
        rows, cols, vals = [], [], []
        for i, d in enumerate(docs):
            for w, c in d.items():
                j = self.vocab.get(w)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
                    vals.append(c)
        return csr_matrix((vals, (rows, cols)), shape=(len(docs), len(self.vocab)), dtype=np.float64), docs


class SLDATopicModel:
    """Supervised LDA over bags of subgraphs (tomotopy ``SLDAModel``, one linear response)."""

    def __init__(self, k: int = 20, alpha: float = 0.1, eta: float = 0.01, iterations: int = 500, seed: int = 0,
                 min_df: int = 2):
        self.k, self.alpha, self.eta, self.iterations, self.seed, self.min_df = k, alpha, eta, iterations, seed, min_df
        self.model = None

    def fit(self, docs, y):
        import tomotopy as tp
        y = np.asarray(y, dtype=np.float64)
        self.mean, self.std = float(y.mean()), float(y.std() or 1.0)
        self.model = tp.SLDAModel(k=self.k, vars=["l"], alpha=self.alpha, eta=self.eta, min_df=self.min_df,
                                  seed=self.seed)
        for d, v in zip(docs, y):
            words = [w for w, c in d.items() for _ in range(int(c))]
            self.model.add_doc(words, y=[(v - self.mean) / self.std])
        self.model.train(self.iterations, workers=1)
        return self

    def predict(self, docs, iterations: int = 100) -> np.ndarray:
        out = []
        made = [self.model.make_doc([w for w, c in d.items() for _ in range(int(c))]) for d in docs]
        self.model.infer(made, iterations, workers=1)
        for doc in made:
            out.append(self.model.estimate(doc)[0])
        return np.asarray(out) * self.std + self.mean

    def save(self, path) -> dict:
        """tomotopy's own binary state to ``path`` (no pickle); returns what ``load`` needs besides it."""
        self.model.save(str(path))
        return {"k": self.k, "mean": self.mean, "std": self.std, "seed": self.seed}

    @classmethod
    def load(cls, path, info: dict) -> "SLDATopicModel":
        import tomotopy as tp
        m = cls(k=int(info["k"]), seed=int(info.get("seed", 0)))
        m.model = tp.SLDAModel.load(str(path))
        m.mean, m.std = float(info["mean"]), float(info["std"])
        return m

    def topics(self, fragments: dict, top_n: int = 8):
        """Per topic: its regression coefficient (in target units per unit topic share) and top words with their
        fragments and probabilities."""
        coef = np.asarray(self.model.get_regression_coef(0)) * self.std
        out = []
        for t in range(self.k):
            words = self.model.get_topic_words(t, top_n=top_n)
            out.append({"topic": t, "coef": float(coef[t]),
                        "words": [(w, fragments.get(w, ""), float(p)) for w, p in words]})
        return sorted(out, key=lambda d: -d["coef"])


def bag_baselines(X_train, y_train, X_test, seed: int = 0):
    """Ridge regression (alpha by 5-fold CV) and gradient boosting on the count vectors: test predictions."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(X_train, y_train)
    gbr = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.1, random_state=seed)
    gbr.fit(X_train.toarray() if hasattr(X_train, "toarray") else X_train, y_train)
    Xt = X_test.toarray() if hasattr(X_test, "toarray") else X_test
    return {"ridge": ridge.predict(X_test), "gbr": gbr.predict(Xt)}
