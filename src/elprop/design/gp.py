"""A Gaussian process on fingerprints over the surrogate's residuals (BoTorch / GPyTorch).

The network's prediction is the GP's prior mean; the GP learns the residual r(x) = label − network mean from the
molecules verified so far, with a Tanimoto kernel on Morgan count fingerprints (the MinMax similarity of Ralaivola
et al., Neural Netw. 18, 1093 (2005)), a fitted scale and a fitted noise. Near verified molecules the corrected
mean follows their labels and σ shrinks; far from them the GP reverts to its prior, the network's mean. It is refitted each round in a fraction of a second, so it learns from
every verification without retraining the network; `elprop design --gp` turns it on. The network's σ² is
multiplied by the GP's remaining fraction of its prior variance, so σ keeps the network's sense of the domain far
from verified molecules and shrinks near them.
"""
from __future__ import annotations

import numpy as np


def fingerprints(smiles: list[str], radius: int = 2, size: int = 2048) -> np.ndarray:
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=size)
    out = np.zeros((len(smiles), size), dtype=np.float64)
    for i, s in enumerate(smiles):
        m = Chem.MolFromSmiles(s)
        if m is not None:
            out[i] = gen.GetCountFingerprintAsNumPy(m)
    return out


def _kernel_class():
    import gpytorch
    import torch

    class TanimotoKernel(gpytorch.kernels.Kernel):
        """k(x, y) = Σ min(x_i, y_i) / Σ max(x_i, y_i) for non-negative count vectors (1 for x = y)."""
        is_stationary = False
        has_lengthscale = False

        def forward(self, x1, x2, diag=False, **params):
            if diag:
                return torch.ones(x1.shape[:-1], dtype=x1.dtype, device=x1.device)
            mn = torch.minimum(x1.unsqueeze(-2), x2.unsqueeze(-3)).sum(-1)
            mx = torch.maximum(x1.unsqueeze(-2), x2.unsqueeze(-3)).sum(-1)
            return mn / mx.clamp_min(1e-9)
    return TanimotoKernel


class ResidualGP:
    """fit(smiles, residuals) then predict(smiles) -> (mean residual, variance of the residual)."""

    def __init__(self, min_points: int = 3):
        self.min_points = min_points
        self.model = None

    def fit(self, smiles: list[str], residual: np.ndarray) -> "ResidualGP":
        import torch
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.kernels import ScaleKernel
        from gpytorch.mlls import ExactMarginalLogLikelihood
        r = np.asarray(residual, dtype=np.float64)
        keep = np.isfinite(r)
        if keep.sum() < self.min_points:
            self.model = None
            return self
        X = torch.tensor(fingerprints([s for s, k in zip(smiles, keep) if k]))
        Y = torch.tensor(r[keep]).unsqueeze(-1)
        # zero prior mean: the network's mean is the prior; the scale and noise are fitted
        from gpytorch.means import ZeroMean
        self.model = SingleTaskGP(X, Y, covar_module=ScaleKernel(_kernel_class()()), mean_module=ZeroMean())
        mll = ExactMarginalLogLikelihood(self.model.likelihood, self.model)
        try:
            fit_gpytorch_mll(mll)
        except Exception:  # a failed hyper-parameter fit keeps the initial ones (still a valid GP)
            pass
        self.model.eval()
        return self

    def predict(self, smiles: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(mean residual, shrink): the correction to add to the network's mean, and the fraction of the prior
        variance left at each molecule (0 at a verified one without noise, 1 far from all of them), by which the
        network's σ² is multiplied. (0, 1) everywhere when not fitted (too few points)."""
        if self.model is None or not len(smiles):
            return np.zeros(len(smiles)), np.ones(len(smiles))
        import torch
        prior = float(self.model.covar_module.outputscale.detach())
        means, variances = [], []
        with torch.no_grad():  # in chunks: the posterior's joint covariance of n molecules holds n² kernel values,
            for i in range(0, len(smiles), 256):  # each a 2048-wide MinMax sum (about 42 GB at n = 1,600)
                post = self.model.posterior(torch.tensor(fingerprints(smiles[i:i + 256])))
                means.append(post.mean.squeeze(-1).numpy())
                variances.append(post.variance.squeeze(-1).clamp_min(0).numpy())
        return np.concatenate(means), np.clip(np.concatenate(variances) / max(prior, 1e-12), 0.0, 1.0)
