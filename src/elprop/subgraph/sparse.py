"""Sparse linear models over the complete subgraph feature set (Takigawa & Mamitsuka, TPAMI 2017).

The model is f(G) = b + Σ_x β_x I(x ⊆ G) over *all* subgraphs x (within the miner's support and size limits),
fitted by minimising

    (1/n) Σ_i ℓ(y_i, f(G_i)) + λ (α ‖β‖₁ + (1 − α)/2 ‖β‖²)

with ℓ the squared loss ½(y − f)² (regression) or the logistic loss log(1 + e^f) − y f with y ∈ {0, 1}
(classification); α = 1 is the lasso, 0 < α < 1 the elastic net.

Exactness over an exponential feature space comes from the optimality conditions and a search bound. With
r_i = −∂ℓ/∂f_i (the residual y − f, or y − σ(f)), a feature x that is not in the model is optimal at zero iff
|(1/n) Σ_{i∈G(x)} r_i| ≤ λα. For every supergraph x′ of x, G(x′) ⊆ G(x), so

    |Σ_{i∈G(x′)} r_i| ≤ max(Σ_{i∈G(x), r_i>0} r_i, −Σ_{i∈G(x), r_i<0} r_i),

and a subtree whose root's bound is at most nλα holds no violating feature and is skipped. The solver is a
working-set method: solve the problem restricted to the features found so far by block coordinate gradient
descent (Tseng & Yun's CGD, Gauss-Seidel over one-coordinate blocks with a diagonal quadratic model, a
soft-threshold step and an Armijo line search), search the tree for violating features, add the worst ones,
and repeat until the search finds none. The result satisfies the optimality conditions of the full problem to
the tolerance. A regularisation path runs from λ_max (found by branch and bound) down, with warm starts, reusing
the explored tree (``SearchTree``). Features with the same occurrence set are one column; the smallest pattern
(the first in DFS order) stands for it.
"""
from __future__ import annotations

import warnings

import numpy as np

from elprop.subgraph.gspan import GSpan, Pattern
from elprop.subgraph.search import SearchTree, signed_sums


def _sigmoid(f):
    return 0.5 * (1 + np.tanh(0.5 * f))


class SubgraphLinearModel:
    def __init__(self, graphs, y, loss: str = "squared", alpha: float = 1.0, min_support: int = 1,
                 max_edges: int | None = None, max_vertices: int | None = None, tol: float = 1e-7,
                 max_inner: int = 10000, max_add: int = 10):
        if loss not in ("squared", "logistic"):
            raise ValueError(f"loss must be 'squared' or 'logistic', not {loss!r}")
        if not 0 < alpha <= 1:
            raise ValueError("alpha (the L1 share of the penalty) must be in (0, 1]")
        self.y = np.asarray(y, dtype=np.float64)
        if not np.all(np.isfinite(self.y)):
            raise ValueError("targets must be finite")
        if loss == "logistic" and not np.all(np.isin(self.y, (0.0, 1.0))):
            raise ValueError("the logistic loss needs 0/1 labels")
        self.n = len(self.y)
        self.loss, self.alpha, self.tol = loss, alpha, tol
        self.max_inner, self.max_add = max_inner, max_add
        self.miner = GSpan(graphs, min_support, max_edges, max_vertices, include_vertices=True)
        self.tree = SearchTree(self.miner)
        self.features: list[Pattern] = []  # the working set
        self._keys: dict[bytes, int] = {}
        self.X = np.zeros((self.n, 0))
        self._rows: list[np.ndarray] = []  # per feature: the rows (molecules) it occurs in
        self.beta = np.zeros(0)
        ybar = self.y.mean()
        self.b = ybar if loss == "squared" else float(np.log(max(ybar, 1e-12) / max(1 - ybar, 1e-12)))
        self.history = []  # per λ: iterations, features added, tree size

    # --- the loss ------------------------------------------------------------------------------------
    def _f(self, b=None, beta=None):
        return (self.b if b is None else b) + self.X @ (self.beta if beta is None else beta)

    def _residual(self, f):
        return self.y - f if self.loss == "squared" else self.y - _sigmoid(f)

    def _data_loss(self, f):
        if self.loss == "squared":
            return 0.5 * np.mean((self.y - f) ** 2)
        return float(np.mean(np.logaddexp(0, f) - self.y * f))

    def objective(self, lam: float) -> float:
        a = self.alpha
        return self._data_loss(self._f()) + lam * (a * np.abs(self.beta).sum() + 0.5 * (1 - a) * (self.beta ** 2).sum())

    # --- the restricted problem: block coordinate gradient descent ----------------------------------------
    def _solve_restricted(self, lam: float):
        n, a = self.n, self.alpha
        l1, l2 = lam * a, lam * (1 - a)
        curv = 1.0 if self.loss == "squared" else 0.25  # bound on ℓ''
        hdiag = curv * self.X.sum(0) / n  # binary features: Σ x² = Σ x
        f = self._f()
        it = 0
        self._inner_converged = False
        for it in range(self.max_inner):
            max_step = 0.0
            # intercept block (unpenalised)
            r = self._residual(f)
            g = -r.mean()
            d = -g / curv
            d = self._armijo_intercept(f, d, g)
            self.b += d
            f = f + d
            max_step = max(max_step, abs(d))
            for j in range(len(self.beta)):
                idx = self._rows[j]  # the molecules that contain feature j: only they change with β_j
                fi = f[idx]
                r = self.y[idx] - (fi if self.loss == "squared" else _sigmoid(fi))
                g = -r.sum() / n
                h = hdiag[j]
                bj = self.beta[j]
                z = h * bj - g
                new = np.sign(z) * max(abs(z) - l1, 0.0) / (h + l2)
                d = new - bj
                if d == 0.0:
                    continue
                if self.loss == "logistic":  # Armijo along d (the quadratic model bounds ℓ, so t = 1 is rare to fail)
                    d = self._armijo_coord(fi, self.y[idx], d, g, bj, l1, l2)
                self.beta[j] = bj + d
                f[idx] = fi + d
                max_step = max(max_step, abs(d))
            if max_step < self.tol:
                self._inner_converged = True
                break
        return it + 1

    def _armijo_intercept(self, f, d, g, sigma=0.1):
        if self.loss == "squared" or d == 0.0:
            return d
        base = self._data_loss(f)
        t = 1.0
        while t > 1e-8:
            if self._data_loss(f + t * d) <= base + sigma * t * g * d:
                return t * d
            t *= 0.5
        return 0.0

    def _armijo_coord(self, fi, yi, d, g, bj, l1, l2, sigma=0.1):
        """Backtracking on the logistic loss along coordinate d; ``fi``, ``yi``: the rows the feature occurs in
        (the loss of every other row does not change, so the test is on these rows' sum only)."""
        n = self.n

        def pen(v):
            return l1 * abs(v) + 0.5 * l2 * v * v

        def part(fv):  # this feature's rows' share of the mean logistic loss
            return float(np.sum(np.logaddexp(0, fv) - yi * fv)) / n
        delta = g * d + pen(bj + d) - pen(bj)
        base = part(fi) + pen(bj)
        t = 1.0
        while t > 1e-8:
            if part(fi + t * d) + pen(bj + t * d) <= base + sigma * t * delta:
                return t * d
            t *= 0.5
        return 0.0

    # --- the search -----------------------------------------------------------------------------------------
    def _weights(self):
        r = self._residual(self._f())
        return np.where(r > 0, r, 0.0), np.where(r < 0, r, 0.0)

    def lambda_max(self) -> float:
        """The smallest λ at which every β is zero (intercept-only model): max_x |Σ_{G(x)} r_i| / (nα), found by
        branch and bound over the tree (a subtree is skipped when its bound cannot beat the best so far)."""
        rp, rn = self._weights()
        best = [0.0]

        def bound(p):
            s, bnd = signed_sums(p.gids, rp, rn)
            best[0] = max(best[0], abs(s))
            return bnd > best[0]
        self.tree.search(bound)
        return best[0] / (self.n * self.alpha)

    def _violators(self, lam: float):
        """Patterns whose gradient breaks the optimality condition |g| <= λα at β = 0, worst first."""
        rp, rn = self._weights()
        thr = self.n * lam * self.alpha * (1 + 1e-9) + 1e-12
        found = {}

        def bound(p):
            s, bnd = signed_sums(p.gids, rp, rn)
            if abs(s) > thr:
                key = p.gids.tobytes()
                if key not in self._keys and key not in found:
                    found[key] = (abs(s), p)
            return bnd > thr
        self.tree.search(bound)
        return [p for _, p in sorted(found.values(), key=lambda t: -t[0])]

    def _add(self, patterns):
        cols = np.zeros((self.n, len(patterns)))
        for k, p in enumerate(patterns):
            cols[p.gids, k] = 1.0
            self._keys[p.gids.tobytes()] = len(self.features)
            self.features.append(p)
        self.X = np.concatenate([self.X, cols], 1)
        self._rows += [np.sort(p.gids).astype(np.int64) for p in patterns]
        self.beta = np.concatenate([self.beta, np.zeros(len(patterns))])

    def fit(self, lam: float, max_outer: int = 1000):
        """Solve at λ from the current state (warm start). Returns self. If ``max_outer`` (working-set rounds) or
        ``max_inner`` (coordinate sweeps) stops it first, it warns, and ``history[-1]["converged"]`` is False."""
        outer = added = inner = 0
        outer_done, inner_ok = False, True
        for outer in range(max_outer):
            inner += self._solve_restricted(lam)
            inner_ok = inner_ok and self._inner_converged
            viol = self._violators(lam)
            if not viol:
                outer_done = True
                break
            self._add(viol[:self.max_add])
            added += min(len(viol), self.max_add)
        converged = outer_done and inner_ok
        if not converged:
            why = (f"max_outer={max_outer} working-set rounds left violators" if not outer_done else
                   f"max_inner={self.max_inner} coordinate sweeps did not reach tol={self.tol:g}")
            warnings.warn(f"sparse subgraph solver at λ={lam:.4g} stopped before convergence: {why}",
                          RuntimeWarning, stacklevel=2)
        self.history.append({"lambda": lam, "outer": outer + 1, "inner_sweeps": inner, "added": added,
                             "active": int(np.count_nonzero(self.beta)), "working_set": len(self.features),
                             "tree_nodes": self.tree.size, "objective": self.objective(lam),
                             "converged": converged})
        return self

    def path(self, n_lambdas: int = 20, ratio: float = 0.01, lambdas=None, callback=None):
        """Fit along λ_max · ratio^(k/(n−1)), k = 0..n−1 (or the given λs, descending); returns per step
        (λ, intercept, [(pattern, β)], objective)."""
        if lambdas is None:
            lmax = self.lambda_max()
            lambdas = lmax * ratio ** (np.arange(n_lambdas) / max(n_lambdas - 1, 1))
        out = []
        for lam in lambdas:
            self.fit(float(lam))
            step = (float(lam), float(self.b), self.selected(), self.objective(float(lam)))
            out.append(step)
            if callback is not None:
                callback(step, self.history[-1])
        return out

    def selected(self):
        """[(pattern, β)] of the non-zero coefficients, largest |β| first."""
        nz = [(p, float(b)) for p, b in zip(self.features, self.beta) if b != 0.0]
        return sorted(nz, key=lambda t: -abs(t[1]))

    def decision(self, X_new: np.ndarray | None = None):
        """f on the training graphs (or on an indicator matrix of the working-set features)."""
        return self._f() if X_new is None else self.b + X_new @ self.beta
