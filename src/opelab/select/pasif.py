"""PAS-IF: policy-adaptive estimator selection via importance fitting.

Udagawa, Kiyohara, Narita, Saito & Tateno, "Policy-Adaptive Estimator Selection for Off-Policy Evaluation",
AAAI 2023 (arXiv:2211.13904). The ground-truth accuracy of an OPE estimator is unknown on real logs; PAS-IF
manufactures an OPE problem with a known answer that *looks like* the real one for each candidate π_e.

Construction (one-step logs, discrete actions; rounds (x_i, a_i, r_i), x ~ p, a ~ π_b(· | x)):

    subsampling rule   ρ_θ(x, a) = σ(x̄ᵀ W_a + b_a) ∈ (0, 1), x̄ the standardised context (a logistic model
                       on context ⊗ action one-hot, so log-odds can follow a softmax policy's log-ratio)
    split              round i goes to the pseudo-evaluation part D_e with probability ρ_i = ρ(x_i, a_i), to
                       the pseudo-behavior part D_b otherwise (independent uniform draws, ``seed``)
    context share      m(x) = E_b[ρ | x] = Σ_a π_b(a | x) ρ(x, a)
    pseudo policies    π̃_e(a | x) = π_b(a | x) ρ(x, a) / m(x)                (the law of a in D_e given x)
                       π̃_b(a | x) = π_b(a | x) (1 − ρ(x, a)) / (1 − m(x))    (the law of a in D_b given x)
    pseudo weight      w̃(x, a) = π̃_e / π̃_b = [ρ(x, a) / m(x)] / [(1 − ρ(x, a)) / (1 − m(x))]
    importance fitting θ = argmin (1/n) Σ_i (w̃(x_i, a_i) − w_i)² + λ (1/n) Σ_i (m(x_i) − k)²,
                       w_i = π_e(a_i | x_i) / π_b(a_i | x_i) the real candidate's weight, k the target share
                       of D_e (``target_ratio``); λ from the grid {0.1, 1, 10, 100, 1000} by the authors'
                       rule (the smallest weight loss among fits whose mean m is within k ± 0.02; if none
                       is, here the fit whose mean m is closest to k, where the authors' code draws one at
                       random) unless ``regularization`` is given. Solved by L-BFGS with the analytic
                       gradient, starting from ρ ≡ k (w̃ ≡ 1). The authors fit a small MLP on (x, a) by
                       SGD; the logistic model here is a deliberate, faster choice.

The estimators then run on D_b (behavior propensities π̃_b, evaluation propensities π̃_e, both exact because
ρ and π_b are known) and are scored against the pseudo truth from D_e. The facts above (the loss, the
pseudo policies, the λ grid and its rule) follow the paper and its authors' code; this is a separate
implementation.

The pseudo truth, and one correction. D_e's rounds are i.i.d. (given its size) from
p_e(x) π̃_e(a | x) p(r | x, a) with p_e(x) ∝ p(x) m(x), while D_b's contexts follow p_b(x) ∝ p(x) (1 − m(x)).
The estimators on D_b target V_b(π̃_e) = E_{x ~ p_b} Σ_a π̃_e(a | x) q(x, a); the plain D_e mean reward
(the paper's pseudo truth, ``truth="mean"``) is exactly unbiased for V_e(π̃_e) = E_{x ~ p_e} Σ_a π̃_e q, which
equals V_b only when m(x) is constant (what the regulariser pushes towards). ``truth="reweighted"`` (the
default) reweights D_e's rounds by c(x) = (1 − m(x)) / m(x) ∝ p_b(x) / p_e(x):

    Ṽ = Σ_{i ∈ D_e} c(x_i) r_i / Σ_{i ∈ D_e} c(x_i)     → V_b(π̃_e)   (a ratio: consistent, O(1/n) bias)

with the delta-method standard error. Both parts are independent given ρ, so the pseudo truth's noise adds
the same variance to every estimator's expected squared error and does not bias their ranking.

Per candidate the rule is fitted once; ``n_splits`` independent splits redraw the uniforms. Across the
pseudo-candidate set (one pseudo policy per real candidate) each split gives an ``EstimateTable`` scored by
``opelab.select.assess`` (nMSE, rank correlation, regret@k, SharpeRatio@k, with J(π_b) the logged mean
reward) and the splits give percentile-bootstrap intervals (``summarize_across_datasets``, splits as the
unit). PAS-IF proper is *policy-adaptive*: ``PasifResult.policy_picks`` gives, for each real candidate, the
estimator with the smallest mean squared error against that candidate's pseudo truths.

Trajectories (horizon > 1; discrete actions, π_b(· | s_t) logged on every step, s_t the observation at step
t). The one-step construction does not carry over: a *complementary* split of whole trajectories by a
trajectory-level ρ(τ) leaves D_b with the law p_b(τ)(1 − ρ(τ)), whose per-step behavior probabilities
π_b(a_t | s_t) E[1 − ρ | h_t, a_t] / E[1 − ρ | h_t] involve expectations over future transitions (unknown
without the model), so the pseudo behavior has no computable propensities. Here D_b is real behavior data
instead, and D_e a rejection sample from a disjoint pool:

    per-step rule      g_θ(s, a) = σ(x̄ᵀ W_a + b_a) ∈ (0, 1) (``SubsamplingRule``; x̄ the standardised
                       observation, or the one-hot code of an integer state id), fitted on all valid steps
    step share         m(s) = Σ_a π_b(a | s) g(s, a)
    pseudo policy      π̃(a | s) = π_b(a | s) g(s, a) / m(s);  per-step pseudo weight w̃ = π̃ / π_b = g / m
    importance fitting θ = argmin (1/N) Σ_j (w̃(s_j, a_j) − w_j)² + λ (1/N) Σ_j (m(s_j) − c)² over the N valid
                       steps j, w_j = π_e(a_j | s_j) / π_b(a_j | s_j) the real candidate's per-step ratio
                       (``EstimationContext.step_ratio``), c the per-step share with (1/n) Σ_i c^{T_i} =
                       ``target_ratio`` over the trajectory lengths T_i (target_ratio ** (1 / T) when all
                       have length T), so that a pool trajectory's expected acceptance E Π_t m(s_t) is
                       about target_ratio; λ from ``LAMBDA_GRID``: the smallest weight loss among fits whose
                       mean trajectory acceptance (1/n) Σ_i Π_t g(s_it, a_it) on the log is within
                       target_ratio ± 0.02, else the fit whose acceptance is closest (``regularization``
                       fixes λ). L-BFGS with the analytic gradient from g ≡ c (w̃ ≡ 1).
    split              each trajectory enters the pool with probability ``pool_ratio`` (a seeded coin
                       independent of the data); D_b = the trajectories not in the pool, with their real
                       propensities π_b; D_e = the pool trajectories accepted with probability Π_{valid t}
                       g(s_t, a_t) (rejection sampling; products in log space)
    estimators on D_b  evaluation propensities π̃ on D_b's steps (exact: g and π_b are known), so D_b with π̃
                       is an ordinary OPE problem with the real behavior data and a known target

Pseudo truth. Since π_b(a | s) g(s, a) = m(s) π̃(a | s) at every step, an accepted trajectory has the law
p_π̃(τ) Π_t m(s_t) / Z (Z the acceptance rate): the trajectories of π̃, tilted by Π_t m(s_t). Reweighting by
c_i = Π_t 1 / m(s_t) undoes the tilt, and with G_i the discounted return (the dataset's γ)

    Ṽ = Σ_{i ∈ D_e} c_i G_i / Σ_{i ∈ D_e} c_i     → V(π̃)   (``truth="reweighted"``, the default; consistent,
                                                              O(1/n_e) bias; delta-method SE)

while the plain mean of D_e's returns (``truth="mean"``) is biased unless Π_t m(s_t) is the same for every
trajectory: a constant m with trajectories of one length. With terminal states the tilt m^{T_i} alone
favours short trajectories. D_b and D_e are disjoint and drawn independently given g, so the truth's noise
adds the same variance to every estimator's squared error, as in the one-step case (approximately: g is fitted
on the whole log, D_b's and the pool's trajectories included, as in the paper; the exact-value test fits it on
a separate log).

Assumptions: π_b(· | s_t) is right on every logged step (π̃ and the weights are built from it); the
observation s_t is what the rule sees (a history-dependent π_b is fine for the IS estimators, but tabular
refits need π_b to be a function of (t, s)); the candidate's shift is summarised per step. When it breaks:
long horizons force c → 1 and so g ≈ 1 (w̃ = g / m ≤ 1 / c stays near 1): the pseudo problem is then much
easier than the real one, whose weights compound over the steps; a small ``target_ratio`` · ``pool_ratio`` · n
gives a tiny D_e (``pseudo_trajectory_split`` refuses fewer than 2 accepted trajectories, ``pasif`` fewer than
``MIN_ROUNDS_PER_PART`` expected); a state-dependent m, or varying lengths, makes c_i heavy-tailed, so the
reweighted truth rests on few trajectories (``PseudoSplit.truth_ess`` and the fits table's ``truth_ess``
report (Σ c_i)² / Σ c_i² over D_e); and when a candidate's per-step ratios exceed 1 / c or vary in ways g
cannot follow, the fit cannot mimic it (the fits table's ``weight_correlation``). This trajectory
construction is this library's own extension; the paper treats one-step logs only.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from opelab.data import LoggedDataset
from opelab.data.validation import freeze
from opelab.ope.estimators import EstimationContext, PointEstimator, get_estimator
from opelab.ope.estimators.base import default_estimators
from opelab.ope.evaluate import EstimateTable, evaluate
from opelab.ope.inputs import OPEInput
from opelab.select.assess import LOWER_IS_BETTER, assess
from opelab.select.metrics import regret_at_k
from opelab.select.uncertainty import summarize_across_datasets

__all__ = [
    "LAMBDA_GRID",
    "MIN_ROUNDS_PER_PART",
    "PasifError",
    "PasifResult",
    "PseudoSplit",
    "SubsamplingRule",
    "fit_subsampling",
    "fit_trajectory_subsampling",
    "pasif",
    "pseudo_split",
    "pseudo_trajectory_split",
]

#: λ candidates of the authors' grid search for the regulariser's weight.
LAMBDA_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
#: The authors' tolerance on the mean context share m around the target k.
SHARE_TOLERANCE = 0.02
#: Fewest rounds each part may expect (n·k and n·(1 − k)) and must receive.
MIN_ROUNDS_PER_PART = 20
_EPS = 1e-9
_SPLIT_STREAM = 0x9A51F  # second key of the trajectory split's random stream (pseudo_trajectory_split)


class PasifError(ValueError):
    """Inputs PAS-IF cannot work with (one message naming the argument, the expectation and what was found)."""


# --------------------------------------------------------------------------- #
# the subsampling rule
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, eq=False)
class SubsamplingRule:
    """ρ_θ(x, a) = σ(((x − μ) / s)ᵀ W[:, a] + b[a]) and how it was fitted.

    weight_loss      (1/n) Σ (w̃ − w)² at the optimum; share_loss (1/n) Σ (m(x_i) − k)²
    mean_share       (1/n) Σ m(x_i): the expected share of rounds in D_e
    weight_correlation  Pearson correlation of w̃(x_i, a_i) with the target weights w_i

    Trajectory rules (``fit_trajectory_subsampling``; the same quantities over the N valid steps, with the
    per-step pseudo weight w̃ = g / m):
    n_states         set when the observations are integer state ids: the features are then their one-hot
                     codes (x̄ᵀ W_a = W[s, a]; center 0, scale 1) instead of standardised values
    step_share       c with (1/n) Σ_i c^{T_i} = target_ratio over the lengths T_i, the target of m(s_t)
    mean_acceptance  (1/n) Σ_i Π_{valid t} g(s_it, a_it): the expected share of pool trajectories accepted
    """

    coef: np.ndarray  # (d, A)
    intercept: np.ndarray  # (A,)
    center: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    target_ratio: float
    regularization: float
    weight_loss: float
    share_loss: float
    mean_share: float
    weight_correlation: float
    n_states: int | None = None
    step_share: float | None = None
    mean_acceptance: float | None = None

    def rho(self, contexts: np.ndarray) -> np.ndarray:
        """ρ(x, a) (or g(s, a)) for every context row and action, shape (m, A)."""
        if self.n_states is not None:  # one-hot state ids; an id the fit never saw gets the intercept only
            ids = np.asarray(contexts).reshape(len(contexts))
            known = (ids >= 0) & (ids < self.n_states)
            z = np.where(known[:, None], self.coef[np.where(known, ids, 0)], 0.0)
            return _sigmoid(z + self.intercept)
        x = (np.asarray(contexts, dtype=np.float64).reshape(len(contexts), -1) - self.center) / self.scale
        return _sigmoid(x @ self.coef + self.intercept)

    def step_table(self, dataset: LoggedDataset) -> np.ndarray:
        """g(s_t, a) on every step of a log, shape (n, H, A); 1 on padded steps (they are never subsampled)."""
        out = np.ones((dataset.n_trajectories, dataset.horizon, len(self.intercept)))
        rows, steps = np.nonzero(dataset.mask)
        out[rows, steps] = self.rho(dataset.observations[rows, steps])
        return out

    def rho_table(self, dataset: LoggedDataset) -> np.ndarray:
        """ρ(x_i, a) on every round of a one-step log, shape (n, A)."""
        return self.rho(_contexts(dataset))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.clip(0.5 * (1.0 + np.tanh(0.5 * z)), _EPS, 1.0 - _EPS)


def _contexts(dataset: LoggedDataset) -> np.ndarray:
    return np.asarray(dataset.observations[:, 0], dtype=np.float64).reshape(dataset.n_trajectories, -1)


def _check_one_step(dataset: LoggedDataset, what: str = "dataset") -> None:
    if not isinstance(dataset, LoggedDataset):
        raise PasifError(f"{what}: expected a LoggedDataset, found {type(dataset).__name__}")
    if dataset.horizon != 1:
        raise PasifError(
            f"{what}: PAS-IF is implemented for one-step logs (horizon 1), found horizon {dataset.horizon}; "
            "trajectories have their own construction (fit_trajectory_subsampling, pseudo_trajectory_split; pasif dispatches on the horizon)"
        )
    if dataset.info.slate:
        raise PasifError(f"{what}: ranking (slate) logs are not supported by PAS-IF, found info.slate = True")
    if not dataset.action_space.is_discrete:
        raise PasifError(f"{what}: PAS-IF needs discrete actions, found {dataset.action_space.type} actions")
    if dataset.behavior_action_probs is None:
        raise PasifError(
            f"{what}.behavior_action_probs: PAS-IF needs π_b(· | x) of every round (for m(x) = Σ_a π_b(a | x) ρ(x, a)), "
            "found None; estimate it with opelab.data.behavior.estimate_pscores"
        )


def _check_regularization(regularization: object) -> None:
    if regularization is not None and (isinstance(regularization, bool) or not isinstance(regularization, numbers.Real) or regularization < 0):
        raise PasifError(f"regularization: expected a non-negative number or None (grid search), found {regularization!r}")


def _check_ratio(target_ratio: object) -> float:
    if isinstance(target_ratio, bool) or not isinstance(target_ratio, numbers.Real) or not 0.0 < float(target_ratio) < 1.0:
        raise PasifError(f"target_ratio: expected a number in (0, 1) (the share k of rounds in D_e), found {target_ratio!r}")
    return float(target_ratio)


def _objective(theta: np.ndarray, x: np.ndarray, pi_b: np.ndarray, rows: np.ndarray, actions: np.ndarray,
               w: np.ndarray, k: float, lam: float, l2: float) -> tuple[float, np.ndarray, dict[str, Any]]:  # fmt: skip
    """The importance-fitting loss and its gradient in θ = (W (d, A), b (A,)) flattened."""
    n, d = x.shape
    A = pi_b.shape[1]
    W, b = theta[: d * A].reshape(d, A), theta[d * A :]
    R = _sigmoid(x @ W + b)  # (n, A)
    m = np.clip((pi_b * R).sum(axis=1), _EPS, 1.0 - _EPS)  # (n,)
    rho = R[rows, actions]
    odds_m = (1.0 - m) / m
    w_tilde = rho / (1.0 - rho) * odds_m
    resid = w_tilde - w
    weight_loss = float(np.mean(resid**2))
    share_loss = float(np.mean((m - k) ** 2))
    loss = weight_loss + lam * share_loss + l2 * float(np.sum(W**2))
    d_rho = 2.0 * resid / n * odds_m / (1.0 - rho) ** 2
    d_m = 2.0 * resid / n * (rho / (1.0 - rho)) * (-1.0 / m**2) + 2.0 * lam * (m - k) / n
    dR = pi_b * d_m[:, None]
    dR[rows, actions] += d_rho
    dz = dR * R * (1.0 - R)
    grad = np.concatenate([(x.T @ dz + 2.0 * l2 * W).reshape(-1), dz.sum(axis=0)])
    return loss, grad, {"weight_loss": weight_loss, "share_loss": share_loss, "mean_share": float(m.mean()), "w_tilde": w_tilde}


def _grid_fit(
    objective: Any, start: np.ndarray, regularization: float | None, max_iter: int, share: str, k: float, finish: Any = None
) -> tuple[float, np.ndarray, dict[str, Any]]:
    """L-BFGS fits of ``objective(θ, λ) -> (loss, grad, info)`` for λ in ``LAMBDA_GRID`` (or the given
    ``regularization``), then the authors' rule: among fits whose ``info[share]`` is within k ± SHARE_TOLERANCE
    the smallest weight loss, else the fit whose share is closest to k. ``finish(info)`` adds what only the
    fitted θ needs (once per λ, not per L-BFGS evaluation). Returns (λ, θ, info)."""
    from scipy.optimize import minimize  # here: scipy.optimize is slow to import

    fits = []
    for lam in LAMBDA_GRID if regularization is None else (float(regularization),):
        result = minimize(lambda t: objective(t, lam)[:2], start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
        info = objective(result.x, lam)[2]
        if finish is not None:
            finish(info)
        fits.append((lam, result.x, info))
    inside = [f for f in fits if abs(f[2][share] - k) <= SHARE_TOLERANCE]
    return min(inside, key=lambda f: f[2]["weight_loss"]) if inside else min(fits, key=lambda f: abs(f[2][share] - k))


def _correlation(fitted: np.ndarray, target: np.ndarray) -> float:
    return float(np.corrcoef(fitted, target)[0, 1]) if target.std() > 0 and fitted.std() > 0 else float("nan")


def fit_subsampling(
    dataset: LoggedDataset,
    target_weights: np.ndarray,
    *,
    target_ratio: float = 0.2,
    regularization: float | None = None,
    l2: float = 1e-4,
    max_iter: int = 100,
) -> SubsamplingRule:
    """Fit ρ_θ so that the pseudo weights w̃ match ``target_weights`` (module docstring, "importance fitting").

    ``target_weights`` (n,): π_e(a_i | x_i) / π_b(a_i | x_i) of one candidate on the rounds of ``dataset``.
    ``target_ratio`` k: the share of rounds the split should put in D_e. ``regularization`` λ: None runs the
    authors' grid ``LAMBDA_GRID`` and rule. ``l2``: a small ridge penalty on W (conditioning only).
    """
    _check_one_step(dataset)
    k = _check_ratio(target_ratio)
    n, A = dataset.n_trajectories, dataset.action_space.n_actions
    w = np.asarray(target_weights, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
        raise PasifError(f"target_weights: expected {n} finite non-negative importance weights, found shape {w.shape}")
    _check_regularization(regularization)
    raw = _contexts(dataset)
    center, scale = raw.mean(axis=0), raw.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    x = (raw - center) / scale
    pi_b = np.asarray(dataset.behavior_action_probs[:, 0], dtype=np.float64)
    actions = np.asarray(dataset.actions[:, 0], dtype=np.intp)
    rows = np.arange(n)
    d = x.shape[1]
    start = np.concatenate([np.zeros(d * A), np.full(A, np.log(k / (1.0 - k)))])  # ρ ≡ k, w̃ ≡ 1

    objective = lambda t, lam: _objective(t, x, pi_b, rows, actions, w, k, lam, l2)  # noqa: E731
    lam, theta, info = _grid_fit(objective, start, regularization, max_iter, "mean_share", k)
    corr = _correlation(info["w_tilde"], w)
    return SubsamplingRule(
        coef=freeze(theta[: d * A].reshape(d, A)), intercept=freeze(theta[d * A :].copy()), center=freeze(center),
        scale=freeze(scale), target_ratio=k, regularization=lam, weight_loss=info["weight_loss"],
        share_loss=info["share_loss"], mean_share=info["mean_share"], weight_correlation=corr,
    )  # fmt: skip


# --------------------------------------------------------------------------- #
# trajectories: the per-step rule
# --------------------------------------------------------------------------- #
def _check_trajectories(dataset: LoggedDataset, what: str = "dataset") -> None:
    if not isinstance(dataset, LoggedDataset):
        raise PasifError(f"{what}: expected a LoggedDataset, found {type(dataset).__name__}")
    if dataset.info.slate:
        raise PasifError(f"{what}: ranking (slate) logs are not supported by PAS-IF, found info.slate = True")
    if not dataset.action_space.is_discrete:
        raise PasifError(f"{what}: PAS-IF needs discrete actions, found {dataset.action_space.type} actions")
    if dataset.behavior_action_probs is None:
        raise PasifError(
            f"{what}.behavior_action_probs: PAS-IF on trajectories needs π_b(· | s_t) on every logged step (for "
            "m(s) = Σ_a π_b(a | s) g(s, a) and π̃ = π_b g / m), found None; estimate it with opelab.data.behavior.estimate_pscores"
        )


def _step_features(dataset: LoggedDataset, rows: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, int | None]:
    """The observations of the valid steps as features: integer state ids (N,) with their count when the
    observations are scalar integers (one-hot codes), else a float matrix (N, d)."""
    obs = np.asarray(dataset.observations[rows, steps])
    if obs.dtype.kind in "iu" and obs.ndim == 1 and obs.min() >= 0:
        return obs.astype(np.intp), int(obs.max()) + 1
    return obs.astype(np.float64).reshape(len(obs), -1), None


def _project(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x̄ᵀ W for every row: one-hot ids (N,) pick rows of W, a float matrix (N, d) multiplies it."""
    return W[x] if x.ndim == 1 else x @ W


def _project_grad(x: np.ndarray, dz: np.ndarray, d: int) -> np.ndarray:
    """xᵀ dz, (d, A), for the two kinds of features of ``_project``."""
    if x.ndim == 1:
        return np.stack([np.bincount(x, weights=dz[:, a], minlength=d) for a in range(dz.shape[1])], axis=1)
    return x.T @ dz


def _trajectory_objective(theta: np.ndarray, x: np.ndarray, d: int, pi_b: np.ndarray, actions: np.ndarray, w: np.ndarray,
                          c: float, lam: float, l2: float) -> tuple[float, np.ndarray, dict[str, Any]]:  # fmt: skip
    """The per-step importance-fitting loss and its gradient in θ = (W (d, A), b (A,)) flattened.

    Over the N valid steps j (features x_j, π_b(· | s_j) rows ``pi_b`` (N, A), logged actions a_j):

        L = (1/N) Σ_j (g_j / m_j − w_j)² + λ (1/N) Σ_j (m_j − c)² + l2 ‖W‖²,
        g = σ(z), z_ja = x̄_jᵀ W_a + b_a,  g_j = g_{j a_j},  m_j = Σ_a π_b(a | s_j) g_ja

        ∂L/∂g_j = 2 r_j / (N m_j),   ∂L/∂m_j = −2 r_j g_j / (N m_j²) + 2 λ (m_j − c) / N,   r_j = g_j / m_j − w_j
        ∂L/∂z_ja = (π_b(a | s_j) ∂L/∂m_j + 1{a = a_j} ∂L/∂g_j) g_ja (1 − g_ja)
        ∂L/∂W = x̄ᵀ ∂L/∂z + 2 l2 W,   ∂L/∂b = Σ_j ∂L/∂z_j
    """
    N = len(actions)
    A = pi_b.shape[1]
    W, b = theta[: d * A].reshape(d, A), theta[d * A :]
    G = _sigmoid(_project(x, W) + b)  # (N, A)
    m = np.clip((pi_b * G).sum(axis=1), _EPS, 1.0)  # (N,)
    g = G[np.arange(N), actions]
    w_tilde = g / m
    resid = w_tilde - w
    weight_loss = float(np.mean(resid**2))
    share_loss = float(np.mean((m - c) ** 2))
    loss = weight_loss + lam * share_loss + l2 * float(np.sum(W**2))
    d_g = 2.0 * resid / (N * m)
    d_m = -2.0 * resid * g / (N * m**2) + 2.0 * lam * (m - c) / N
    dG = pi_b * d_m[:, None]
    dG[np.arange(N), actions] += d_g
    dz = dG * G * (1.0 - G)
    grad = np.concatenate([(_project_grad(x, dz, d) + 2.0 * l2 * W).reshape(-1), dz.sum(axis=0)])
    return loss, grad, {"weight_loss": weight_loss, "share_loss": share_loss, "mean_share": float(m.mean()), "w_tilde": w_tilde, "g": g}


def _step_share(k: float, lengths: np.ndarray) -> float:
    """The per-step share c with (1/n) Σ_i c^{T_i} = k over the trajectory lengths T_i (bisection; the left side
    increases in c): k ** (1 / T) when every trajectory has T steps. With varying lengths k ** (1 / mean T)
    would aim above k, since the mean of c^{T_i} exceeds c^{mean T} (Jensen)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if np.mean(mid**lengths) < k else (low, mid)
    return 0.5 * (low + high)


def fit_trajectory_subsampling(
    dataset: LoggedDataset,
    target_weights: np.ndarray,
    *,
    target_ratio: float = 0.2,
    regularization: float | None = None,
    l2: float = 1e-4,
    max_iter: int = 100,
) -> SubsamplingRule:
    """Fit the per-step rule g_θ of the trajectory construction (module docstring, "Trajectories").

    ``target_weights`` (n, H): the real candidate's per-step ratios π_e(a_t | s_t) / π_b(a_t | s_t) on the
    steps of ``dataset`` (``EstimationContext(dataset, inputs).step_ratio[p]``; padded steps are ignored).
    ``target_ratio`` k: the expected share of pool trajectories accepted into D_e; the share target per step
    is c with (1/n) Σ_i c^{T_i} = k (k ** (1 / T) for trajectories of one length T). ``regularization`` λ:
    None runs ``LAMBDA_GRID`` and keeps the smallest weight loss among fits whose mean trajectory acceptance
    (1/n) Σ_i Π_t g(s_it, a_it) is within k ± ``SHARE_TOLERANCE`` (else the fit whose acceptance is closest
    to k). Integer state ids are one-hot coded (g can then be any function of (s, a)); other observations
    are standardised.
    """
    _check_trajectories(dataset)
    k = _check_ratio(target_ratio)
    n, H, A = dataset.n_trajectories, dataset.horizon, dataset.action_space.n_actions
    w_all = np.asarray(target_weights, dtype=np.float64)
    if w_all.shape != (n, H):
        raise PasifError(f"target_weights: expected per-step importance weights of shape {(n, H)}, found shape {w_all.shape}")
    mask = dataset.mask
    if not np.isfinite(w_all[mask]).all() or (w_all[mask] < 0).any():
        raise PasifError("target_weights: expected finite non-negative importance weights on the valid steps")
    _check_regularization(regularization)
    rows, steps = np.nonzero(mask)
    features, n_states = _step_features(dataset, rows, steps)
    if n_states is None:
        center, scale = features.mean(axis=0), features.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        x = (features - center) / scale
        d = x.shape[1]
    else:
        x, d = features, n_states
        center, scale = np.zeros(d), np.ones(d)
    pi_b = np.asarray(dataset.behavior_action_probs[rows, steps], dtype=np.float64)  # (N, A)
    actions = np.asarray(dataset.actions[rows, steps], dtype=np.intp)
    w = w_all[rows, steps]
    c = _step_share(k, dataset.lengths)
    start = np.concatenate([np.zeros(d * A), np.full(A, np.log(c / (1.0 - c)))])  # g ≡ c, w̃ ≡ 1

    def acceptance(info: dict[str, Any]) -> None:
        log_accept = np.bincount(rows, weights=np.log(info["g"]), minlength=n)  # Σ_t log g(s_t, a_t) per trajectory
        info["mean_acceptance"] = float(np.exp(log_accept).mean())

    objective = lambda t, lam: _trajectory_objective(t, x, d, pi_b, actions, w, c, lam, l2)  # noqa: E731
    lam, theta, info = _grid_fit(objective, start, regularization, max_iter, "mean_acceptance", k, finish=acceptance)
    corr = _correlation(info["w_tilde"], w)
    return SubsamplingRule(
        coef=freeze(theta[: d * A].reshape(d, A)), intercept=freeze(theta[d * A :].copy()), center=freeze(center),
        scale=freeze(scale), target_ratio=k, regularization=lam, weight_loss=info["weight_loss"],
        share_loss=info["share_loss"], mean_share=info["mean_share"], weight_correlation=corr, n_states=n_states,
        step_share=c, mean_acceptance=info["mean_acceptance"],
    )  # fmt: skip


# --------------------------------------------------------------------------- #
# the split
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, eq=False)
class PseudoSplit:
    """One random split of a log by a subsampling rule (one-step logs: ``pseudo_split``; trajectories:
    ``pseudo_trajectory_split``, below).

    behavior_part      D_b as a ``LoggedDataset``: its ``behavior_pscore`` / ``behavior_action_probs`` are
                       the pseudo behavior π̃_b of its rounds
    evaluation_part    D_e (the logged propensities, unchanged)
    eval_pscore        (n_b,) π̃_e(a_i | x_i) on D_b's rounds; eval_action_probs (n_b, A) π̃_e(· | x_i)
    behavior_indices, evaluation_indices   the rounds of the input dataset in each part
    truth, truth_se    the pseudo truth of π̃_e (``truth``: "reweighted" or "mean", module docstring) and its SE

    A split of trajectories (``pseudo_trajectory_split``) holds the same fields for its construction:
    behavior_part      D_b, the trajectories not in the pool, with their real propensities π_b (unchanged)
    evaluation_part    D_e, the pool's accepted trajectories
    eval_pscore        (n_b, H) π̃(a_t | s_t) on D_b's steps (1 on padding); eval_action_probs (n_b, H, A)
                       π̃(· | s_t) (0 on padding)
    pool_indices       the trajectories drawn into the pool (D_e is the accepted part of it)
    truth_ess          (Σ_i c_i)² / Σ_i c_i² of the reweighting factors c_i = Π_t 1 / m(s_t) over D_e:
                       how many accepted trajectories the reweighted truth is worth
    """

    behavior_part: LoggedDataset
    evaluation_part: LoggedDataset
    eval_pscore: np.ndarray
    eval_action_probs: np.ndarray
    behavior_indices: np.ndarray
    evaluation_indices: np.ndarray
    truth: float
    truth_se: float
    truth_kind: str
    pool_indices: np.ndarray | None = None
    truth_ess: float | None = None


def pseudo_split(
    dataset: LoggedDataset,
    rho: np.ndarray | SubsamplingRule,
    seed: int,
    *,
    truth: Literal["reweighted", "mean"] = "reweighted",
) -> PseudoSplit:
    """Split ``dataset`` by ρ: round i goes to D_e when u_i < ρ(x_i, a_i), u_i ~ U(0, 1) from ``seed``.

    ``rho``: a fitted ``SubsamplingRule`` or ρ(x_i, a) for every round and action, shape (n, A), in (0, 1).
    The uniforms come from the stream keyed by (``seed``, a fixed tag), not ``default_rng(seed)`` itself: a log
    collected with the same seed draws its contexts from that generator's first uniforms, and the split would
    then select on the context.
    """
    _check_one_step(dataset)
    seed = _check_seed(seed)
    n, A = dataset.n_trajectories, dataset.action_space.n_actions
    table = rho.rho_table(dataset) if isinstance(rho, SubsamplingRule) else np.asarray(rho, dtype=np.float64)
    if table.shape != (n, A):
        raise PasifError(f"rho: expected ρ(x_i, a) of shape {(n, A)}, found shape {table.shape}")
    bad = ~np.isfinite(table) | (table <= 0) | (table >= 1)
    if bad.any():
        i, a = np.argwhere(bad)[0]
        raise PasifError(f"rho: expected ρ(x_i, a) in the open interval (0, 1), found {float(table[i, a])!r} at round {i}, action {a}")
    if truth not in ("reweighted", "mean"):
        raise PasifError(f"truth: expected 'reweighted' or 'mean', found {truth!r}")
    pi_b = np.asarray(dataset.behavior_action_probs[:, 0], dtype=np.float64)  # (n, A)
    actions = np.asarray(dataset.actions[:, 0], dtype=np.intp)
    m = np.clip((pi_b * table).sum(axis=1), _EPS, 1.0 - _EPS)  # (n,)
    rho_logged = table[np.arange(n), actions]
    selected = np.random.default_rng([seed, _SPLIT_STREAM]).random(n) < rho_logged
    ev, bh = np.flatnonzero(selected), np.flatnonzero(~selected)
    if len(ev) < 2 or len(bh) < 2:
        raise PasifError(
            f"rho: the split put {len(ev)} rounds in D_e and {len(bh)} in D_b; expected at least 2 in each "
            "(more rounds, or a target_ratio further from 0 and 1)"
        )
    pi_e_tilde = pi_b * table / m[:, None]  # (n, A)
    pi_b_tilde = pi_b * (1.0 - table) / (1.0 - m)[:, None]
    sub = dataset.subset(bh)
    behavior_probs = pi_b_tilde[bh]
    behavior_part = replace(
        sub,
        behavior_pscore=freeze(behavior_probs[np.arange(len(bh)), actions[bh]][:, None]),
        behavior_action_probs=freeze(behavior_probs[:, None, :]),
        behavior_log_pscore=None,
        info=replace(sub.info, behavior_policy=f"pseudo-behavior({dataset.info.behavior_policy})"),
    )
    rewards = np.asarray(dataset.rewards[ev, 0], dtype=np.float64)
    if truth == "mean":
        value = float(rewards.mean())
        se = float(rewards.std(ddof=1) / np.sqrt(len(ev)))
    else:
        c = (1.0 - m[ev]) / m[ev]
        c = c / c.mean()
        value = float(np.mean(c * rewards))
        se = float(np.sqrt(np.sum((c * (rewards - value)) ** 2)) / len(ev))
    return PseudoSplit(
        behavior_part=behavior_part,
        evaluation_part=dataset.subset(ev),
        eval_pscore=freeze(pi_e_tilde[bh, actions[bh]]),
        eval_action_probs=freeze(pi_e_tilde[bh]),
        behavior_indices=freeze(bh),
        evaluation_indices=freeze(ev),
        truth=value,
        truth_se=se,
        truth_kind=truth,
    )


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise PasifError(f"seed: expected a non-negative int, found {seed!r}")
    return int(seed)


def _check_pool_ratio(pool_ratio: object) -> float:
    if isinstance(pool_ratio, bool) or not isinstance(pool_ratio, numbers.Real) or not 0.0 < float(pool_ratio) < 1.0:
        raise PasifError(f"pool_ratio: expected a number in (0, 1) (the share of trajectories drawn into the pool for D_e), found {pool_ratio!r}")
    return float(pool_ratio)


def pseudo_trajectory_split(
    dataset: LoggedDataset,
    rule: np.ndarray | SubsamplingRule,
    seed: int,
    *,
    pool_ratio: float = 0.5,
    truth: Literal["reweighted", "mean"] = "reweighted",
) -> PseudoSplit:
    """Split a log of trajectories by a per-step rule g (module docstring, "Trajectories").

    Trajectory i goes to the pool when u_i < ``pool_ratio`` and a pool trajectory is accepted into D_e when
    v_i < Π_{valid t} g(s_it, a_it), u, v ~ U(0, 1) from ``seed``; D_b is every trajectory not in the pool.
    ``rule``: a fitted ``SubsamplingRule`` or g(s_t, a) on every step and action, shape (n, H, A), in (0, 1)
    on the valid steps. Products over steps are formed in log space. The uniforms come from the stream keyed
    by (``seed``, a fixed tag), not ``default_rng(seed)`` itself: a log collected with the same seed (which
    draws its initial states and first actions from that generator's first uniforms) would otherwise put
    trajectories into the pool by their initial state.
    """
    _check_trajectories(dataset)
    seed = _check_seed(seed)
    pool_ratio = _check_pool_ratio(pool_ratio)
    n, H, A = dataset.n_trajectories, dataset.horizon, dataset.action_space.n_actions
    mask = dataset.mask
    table = rule.step_table(dataset) if isinstance(rule, SubsamplingRule) else np.asarray(rule, dtype=np.float64)
    if table.shape != (n, H, A):
        raise PasifError(f"rule: expected g(s_t, a) of shape {(n, H, A)}, found shape {table.shape}")
    bad = mask[..., None] & (~np.isfinite(table) | (table <= 0) | (table >= 1))
    if bad.any():
        i, t, a = np.argwhere(bad)[0]
        raise PasifError(
            f"rule: expected g(s_t, a) in the open interval (0, 1) on the valid steps, found {float(table[i, t, a])!r} "
            f"at trajectory {i}, step {t}, action {a}"
        )
    if truth not in ("reweighted", "mean"):
        raise PasifError(f"truth: expected 'reweighted' or 'mean', found {truth!r}")
    pi_b = np.asarray(dataset.behavior_action_probs, dtype=np.float64)  # (n, H, A)
    actions = np.asarray(dataset.actions, dtype=np.intp)
    m = np.where(mask, np.clip((pi_b * table).sum(axis=-1), _EPS, 1.0), 1.0)  # (n, H), 1 on padding
    g_logged = np.where(mask, np.take_along_axis(table, actions[..., None], axis=-1)[..., 0], 1.0)  # (n, H)
    log_accept = np.log(g_logged).sum(axis=1)  # (n,) log Π_t g(s_t, a_t)
    log_c = -np.log(m).sum(axis=1)  # (n,) log Π_t 1 / m(s_t)
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    in_pool = rng.random(n) < pool_ratio
    accepted = in_pool & (rng.random(n) < np.exp(log_accept))
    pool, ev, bh = np.flatnonzero(in_pool), np.flatnonzero(accepted), np.flatnonzero(~in_pool)
    if len(ev) < 2 or len(bh) < 2:
        expected = float(np.exp(log_accept[pool]).mean()) if len(pool) else float("nan")
        raise PasifError(
            f"rule: the split drew {len(pool)} of {n} trajectories into the pool (pool_ratio = {pool_ratio:g}) and accepted "
            f"{len(ev)} of them into D_e (mean acceptance Π_t g = {expected:.3g}), leaving {len(bh)} in D_b; expected at least "
            "2 in each: give more trajectories, a larger target_ratio (the acceptance the fit aims at) or a pool_ratio "
            "further from 0 and 1"
        )
    pi_tilde = np.where(mask[..., None], pi_b * table / m[..., None], 0.0)  # (n, H, A)
    eval_pscore = np.where(mask, np.take_along_axis(pi_tilde, actions[..., None], axis=-1)[..., 0], 1.0)  # (n, H)
    returns = np.asarray(dataset.returns[ev], dtype=np.float64)
    c = np.exp(log_c[ev] - log_c[ev].max())  # c_i up to one common factor, which the ratio cancels
    ess = float(c.sum() ** 2 / np.sum(c**2))
    if truth == "mean":
        value = float(returns.mean())
        se = float(returns.std(ddof=1) / np.sqrt(len(ev)))
    else:
        c = c / c.mean()
        value = float(np.mean(c * returns))
        se = float(np.sqrt(np.sum((c * (returns - value)) ** 2)) / len(ev))
    return PseudoSplit(
        behavior_part=dataset.subset(bh),
        evaluation_part=dataset.subset(ev),
        eval_pscore=freeze(eval_pscore[bh]),
        eval_action_probs=freeze(pi_tilde[bh]),
        behavior_indices=freeze(bh),
        evaluation_indices=freeze(ev),
        truth=value,
        truth_se=se,
        truth_kind=truth,
        pool_indices=freeze(pool),
        truth_ess=ess,
    )


# --------------------------------------------------------------------------- #
# the selection
# --------------------------------------------------------------------------- #
@dataclass(frozen=True, eq=False)
class PasifResult:
    """What ``pasif`` found.

    summary       ``summarize_across_datasets`` of the per-split metrics (splits as datasets): estimator,
                  metric, better, mean, std, lower, upper, ...
    per_split     long table split, estimator, metric, value
    squared_errors  (S, E, P): (V̂ − Ṽ)² of estimator e for candidate p's pseudo policy on split s
    estimates, truths, truth_se  (S, E, P), (S, P) and (S, P): the pseudo truths' standard errors
    fits          one row per real candidate: regularization, mean_share, weight_loss, weight_correlation; on
                  trajectories also step_share (c), mean_acceptance (of the fit, on the log), accepted (mean
                  size of D_e over the splits) and truth_ess (mean ESS of the reweighting factors c_i)
    pick          the estimator with the lowest mean nMSE across splits; ``picks`` one per metric;
    policy_picks  per real candidate, the estimator with the lowest mean squared error (policy-adaptive)
    reason        one sentence
    """

    estimator_names: tuple[str, ...]
    policy_names: tuple[str, ...]
    summary: pd.DataFrame
    per_split: pd.DataFrame
    estimates: np.ndarray
    truths: np.ndarray
    truth_se: np.ndarray
    squared_errors: np.ndarray
    fits: pd.DataFrame
    pick: str
    picks: dict[str, str | None]
    policy_picks: dict[str, str]
    reason: str
    ks: tuple[int, ...]

    def table(self) -> pd.DataFrame:
        """One row per estimator (index ``estimator``); for each metric its mean across splits and the bootstrap
        interval (``<metric>``, ``<metric>_lower``, ``<metric>_upper``)."""
        wide = self.summary.pivot(index="estimator", columns="metric", values=["mean", "lower", "upper"])
        metrics = list(dict.fromkeys(self.summary["metric"]))
        columns = {}
        for metric in metrics:
            columns[metric] = wide[("mean", metric)]
            columns[f"{metric}_lower"] = wide[("lower", metric)]
            columns[f"{metric}_upper"] = wide[("upper", metric)]
        out = pd.DataFrame(columns).reindex(list(self.estimator_names))
        out.index.name = "estimator"
        return out

    def per_policy(self) -> pd.DataFrame:
        """Mean squared error against the pseudo truth per (candidate, estimator), with the policy-adaptive pick.

        ``mse_debiased`` subtracts the pseudo truth's variance: D_e and D_b are independent given ρ, so
        E[(V̂ − Ṽ)²] = MSE(V̂) + Var(Ṽ) and mean_s [(V̂_s − Ṽ_s)² − se_s²] estimates MSE(V̂) itself (it can be
        negative when the truth's noise dominates; the pick is the same in expectation).
        """
        mse = self.squared_errors.mean(axis=0)  # (E, P)
        debiased = (self.squared_errors - self.truth_se[:, None, :] ** 2).mean(axis=0)
        rows = [
            {"policy": p, "estimator": e, "mse": float(mse[i, j]), "mse_debiased": float(debiased[i, j]),
             "picked": self.policy_picks[p] == e}  # fmt: skip
            for j, p in enumerate(self.policy_names)
            for i, e in enumerate(self.estimator_names)
        ]
        return pd.DataFrame(rows)


def _resolve_estimators(
    estimators: Sequence[str | PointEstimator] | None, available: set[str], kind: Literal["bandit", "trajectories"] = "bandit"
) -> list[PointEstimator]:
    if estimators is None:
        chosen = default_estimators(kind, lambda e: all(r in available for r in e.requires))
    else:
        if isinstance(estimators, (str, PointEstimator)):
            raise PasifError(f"estimators: expected a sequence of estimator names or instances, found {estimators!r}")
        try:
            chosen = [get_estimator(e) for e in estimators]
        except ValueError as error:
            raise PasifError(f"estimators: {error}") from None
    names = [e.name for e in chosen]
    if len(set(names)) != len(names):
        raise PasifError(f"estimators: expected distinct names, found {names}")
    if len(chosen) < 2:
        raise PasifError(f"estimators: PAS-IF selects among estimators, expected at least 2, found {names}")
    logs = "one-step" if kind == "bandit" else "trajectories"
    for e in chosen:
        if kind not in e.applies_to or "discrete" not in e.action_types:
            raise PasifError(
                f"estimators: {e.name} cannot run on the pseudo logs ({logs}, discrete actions); it applies to "
                f"{list(e.applies_to)} data with {list(e.action_types)} actions"
            )
        missing = [r for r in e.requires if r not in available]
        if missing:
            if kind == "bandit":
                hint = "; give q_model='refit' or a q̂ table for dm and the DR forms" if {"q_hat", "v_hat", "initial_v_hat"} & set(missing) else ""
            elif "cross_fit_folds" in missing:
                hint = "; the pseudo inputs are not cross-fitted, so drl cannot be scored"
            elif {"state_marginal_weights", "marginal_weights"} & set(missing):
                hint = "; marginal weights are refitted only on integer states (q_model='refit' or 'auto': tabular flow weights)"
            else:
                hint = "; give q_model='refit' (tabular FQE on integer states, neural FQE otherwise) for dm and the DR forms"
            raise PasifError(
                f"estimators: {e.name} needs {', '.join(missing)}, which the pseudo inputs lack (they hold {sorted(available)}{hint})"
            )
    return chosen


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise PasifError(f"{name}: expected an int >= {low}, found {value!r}")
    return int(value)


def _check_common(dataset: LoggedDataset, inputs: OPEInput, n_splits: object, target_ratio: object, ks: object,
                  truth: object) -> tuple[int, float, tuple[int, ...]]:  # fmt: skip
    """The checks both constructions share: inputs, at least 2 candidates, n_splits, target_ratio, ks, truth."""
    if not isinstance(inputs, OPEInput):
        raise PasifError(f"inputs: expected an OPEInput, found {type(inputs).__name__}")
    try:
        inputs.check_dataset(dataset)
    except ValueError as error:
        raise PasifError(f"inputs: {error}") from None
    P = inputs.n_policies
    if P < 2:
        raise PasifError(
            f"inputs: PAS-IF scores estimators over a pseudo-candidate set (nMSE, rank correlation, top-k), "
            f"expected at least 2 candidate policies, found {P} ({list(inputs.policy_names)})"
        )
    n_splits = _check_int("n_splits", n_splits, 2)
    k = _check_ratio(target_ratio)
    return n_splits, k, _check_ks(ks, P, truth)


def _check_ks(ks: object, P: int, truth: object) -> tuple[int, ...]:
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        raise PasifError(f"ks: expected a non-empty sequence of ints >= 1, found {ks!r}")
    ks = tuple(_check_int(f"ks[{i}]", value, 1) for i, value in enumerate(ks))
    if truth not in ("reweighted", "mean"):
        raise PasifError(f"truth: expected 'reweighted' or 'mean', found {truth!r}")
    return tuple(sorted({value for value in ks if value <= P}))


def pasif(
    dataset: LoggedDataset,
    inputs: OPEInput,
    estimators: Sequence[str | PointEstimator] | None = None,
    *,
    n_splits: int = 5,
    ks: Sequence[int] = (1, 2, 3),
    seed: int = 0,
    target_ratio: float = 0.2,
    regularization: float | None = None,
    q_model: Literal["auto", "refit"] | np.ndarray | Any | None = "auto",
    reward_model: Any = None,
    truth: Literal["reweighted", "mean"] = "reweighted",
    alpha: float = 0.05,
    n_bootstrap: int = 2000,
    pool_ratio: float = 0.5,
) -> PasifResult:
    """Select an OPE estimator for ``inputs``' candidates by PAS-IF (module docstring).

    One-step logs (horizon 1): for each real candidate p, ρ_p is fitted to its weights π_e(a_i | x_i) /
    π_b(a_i | x_i); each of ``n_splits`` splits gives D_b, the pseudo policy π̃_e and its pseudo truth; the
    ``estimators`` (default: those ``evaluate`` runs on one-step logs whose inputs the pseudo logs have)
    estimate π̃_e on D_b.

    ``q_model`` (the reward model of the pseudo inputs): ``"refit"`` (and ``"auto"``, the default) fits
    ``fit_reward_model(D_b, reward_model)`` on every pseudo log, as a user would on a real log (default model:
    gradient boosting; pass e.g. ``sklearn.linear_model.Ridge()`` to be fast); an (n, A) array (or a
    ``RewardModel``) gives q̂(x_i, a) on every round of ``dataset``, whose D_b rows are reused (fitted on D_e's
    rounds too, so it has seen the pseudo-evaluation data); None leaves dm and the DR forms out.
    ``ks``: the k of regret@k and SharpeRatio@k (those above the number of candidates are left out; SharpeRatio@1
    is undefined and not reported). ``OPEInput`` holds q̂ only at the logged action and V̂ for the real policies,
    so the pseudo policies' V̂ = Σ_a π̃_e(a | x) q̂(x, a) needs the whole q̂(x, ·): a refit or a table.

    Trajectories (horizon > 1; module docstring, "Trajectories"): the per-step rule g_p is fitted to the
    candidate's per-step ratios (``fit_trajectory_subsampling``), each split draws a pool of trajectories
    with probability ``pool_ratio`` (D_b is the rest) and accepts pool trajectories by rejection sampling
    (``pseudo_trajectory_split``); the estimators run on D_b for π̃_p. ``q_model``: None gives the
    importance-sampling family only (default estimators: those ``evaluate`` runs on trajectories that need
    nothing but π̃: tis, pdis, sntis, snpdis); ``"refit"`` refits Q̂ and marginal weights on every D_b with
    ``build_inputs``: tabular FQE and tabular flow weights on integer states (π̃ tabulated from the logged
    steps), neural FQE (the ``[rl]`` extra; π̃ as an ``ActionDistribution`` on D_b's steps) and no marginal
    weights otherwise; ``"auto"`` (the default) is "refit" on integer states and None otherwise. A q̂ array
    and ``reward_model`` are one-step only. drl needs cross-fitted inputs and is refused.

    Cost: P rule fits (each |LAMBDA_GRID| = 5 L-BFGS fits of at most 100 iterations over (n, A) arrays, or over
    the N valid steps' (N, A) arrays on trajectories; one with ``regularization`` given) and P · ``n_splits``
    evaluations (plus as many reward-model fits with "refit"; on trajectories as many tabular FQE and flow
    fits, O(N) each, or neural FQE fits, each a network trained for the ``FQEConfig`` default budget).
    """
    if isinstance(dataset, LoggedDataset) and dataset.horizon > 1:
        return _pasif_trajectories(
            dataset, inputs, estimators, n_splits=n_splits, ks=ks, seed=seed, target_ratio=target_ratio,
            regularization=regularization, q_model=q_model, reward_model=reward_model, truth=truth, alpha=alpha,
            n_bootstrap=n_bootstrap, pool_ratio=pool_ratio,
        )  # fmt: skip
    from opelab.ope.regression import RewardModel, fit_reward_model

    _check_one_step(dataset)
    _check_pool_ratio(pool_ratio)  # used on trajectories only; a bad value is still an error here
    n_splits, k, ks_used = _check_common(dataset, inputs, n_splits, target_ratio, ks, truth)
    P, n, A = inputs.n_policies, dataset.n_trajectories, dataset.action_space.n_actions
    if min(n * k, n * (1.0 - k)) < MIN_ROUNDS_PER_PART:
        raise PasifError(
            f"dataset: PAS-IF splits the {n} rounds into D_e (about target_ratio·n = {n * k:.0f} rounds) and D_b "
            f"(about {n * (1 - k):.0f}); expected at least {MIN_ROUNDS_PER_PART} in each, so at least "
            f"{int(np.ceil(MIN_ROUNDS_PER_PART / min(k, 1 - k)))} rounds at target_ratio = {k:g}"
        )
    refit = isinstance(q_model, str) and q_model in ("refit", "auto")
    q_table = None
    if isinstance(q_model, RewardModel):
        q_table = np.asarray(q_model.q, dtype=np.float64)
    elif isinstance(q_model, np.ndarray):
        q_table = np.asarray(q_model, dtype=np.float64)
    elif q_model is not None and not refit:
        raise PasifError(f"q_model: expected 'refit', an (n, A) array of q̂(x_i, a), a RewardModel or None, found {q_model!r}")
    if q_table is not None and (q_table.shape != (n, A) or not np.isfinite(q_table).all()):
        raise PasifError(f"q_model: expected a finite q̂ table of shape {(n, A)}, found shape {q_table.shape}")
    if reward_model is not None and not refit:
        raise PasifError(f"reward_model: used with q_model='refit', found q_model={type(q_model).__name__}")
    available = {"eval_pscore", "eval_action_probs"} | (set() if q_model is None else {"q_hat", "v_hat", "initial_v_hat"})
    chosen = _resolve_estimators(estimators, available)
    names = tuple(e.name for e in chosen)
    E = len(chosen)

    weights = EstimationContext(dataset, inputs).step_ratio[:, :, 0]  # (P, n)
    rng = np.random.default_rng(seed)
    split_seeds = rng.integers(0, 2**63 - 1, size=(n_splits, P))
    estimates = np.empty((n_splits, E, P))
    truths = np.empty((n_splits, P))
    truth_se = np.empty((n_splits, P))
    fit_rows = []
    actions = np.asarray(dataset.actions[:, 0], dtype=np.intp)
    for p, policy in enumerate(inputs.policy_names):
        rule = fit_subsampling(dataset, weights[p], target_ratio=k, regularization=regularization)
        fit_rows.append(
            {"policy": policy, "regularization": rule.regularization, "mean_share": rule.mean_share,
             "weight_loss": rule.weight_loss, "weight_correlation": rule.weight_correlation}
        )  # fmt: skip
        table = rule.rho_table(dataset)
        for s in range(n_splits):
            split = pseudo_split(dataset, table, int(split_seeds[s, p]), truth=truth)
            d_b = split.behavior_part
            nb = d_b.n_trajectories
            probs = split.eval_action_probs[None, :, None, :]  # (1, n_b, 1, A)
            q_hat = v_hat = None
            if q_model is not None:
                q = q_table[split.behavior_indices] if q_table is not None else fit_reward_model(d_b, reward_model).q
                q_hat = q[np.arange(nb), actions[split.behavior_indices]][None, :, None]
                v_hat = np.einsum("na,na->n", split.eval_action_probs, q)[None, :, None]
            pseudo_inputs = OPEInput(
                policy_names=(f"pseudo({policy})",),
                eval_pscore=split.eval_pscore[None, :, None],
                eval_action_probs=probs,
                q_hat=q_hat,
                v_hat=v_hat,
                initial_v_hat=None if v_hat is None else v_hat[:, :, 0],
            )
            try:
                table_s = evaluate(d_b, pseudo_inputs, chosen)
            except ValueError as error:
                raise PasifError(f"estimators: on the pseudo log of {policy!r} (split {s}): {error}") from None
            estimates[s, :, p] = table_s.estimates[:, 0]
            truths[s, p], truth_se[s, p] = split.truth, split.truth_se
    return _selection(dataset, inputs, names, estimates, truths, truth_se, fit_rows, ks_used, alpha, n_bootstrap, seed)


def _tabular_pseudo_policy(dataset: LoggedDataset, pi_tilde: np.ndarray, name: str) -> Any:
    """π̃_t(a | s) as a (H, S, A) ``TabularPolicy`` from its rows on the logged steps of ``dataset`` (uniform on
    (step, state) cells never logged, which tabular FQE and the empirical flow never read)."""
    from opelab.policies import TabularPolicy

    H, A = dataset.horizon, dataset.action_space.n_actions
    rows, steps = np.nonzero(dataset.mask)
    states = np.asarray(dataset.observations[rows, steps], dtype=np.intp)
    table = np.full((H, int(states.max()) + 1, A), 1.0 / A)
    logged = pi_tilde[rows, steps]
    table[steps, states] = logged
    if not np.allclose(table[steps, states], logged, atol=1e-9):
        raise PasifError(
            "dataset.behavior_action_probs: q_model='refit' on integer states tabulates π̃_t(· | s) = π_b g / m per "
            "(step, state), but π_b(· | s_t) differs between logged steps with the same step and state (a "
            "history-dependent behavior policy); pass q_model=None (importance-sampling estimators only)"
        )
    return TabularPolicy(table, name=name)


def _pasif_trajectories(
    dataset: LoggedDataset,
    inputs: OPEInput,
    estimators: Sequence[str | PointEstimator] | None,
    *,
    n_splits: int,
    ks: Sequence[int],
    seed: int,
    target_ratio: float,
    regularization: float | None,
    q_model: Any,
    reward_model: Any,
    truth: str,
    alpha: float,
    n_bootstrap: int,
    pool_ratio: float,
) -> PasifResult:
    """``pasif`` on trajectories (module docstring, "Trajectories")."""
    from opelab.ope.inputs import build_inputs
    from opelab.policies.given import ActionDistribution

    _check_trajectories(dataset)
    n_splits, k, ks_used = _check_common(dataset, inputs, n_splits, target_ratio, ks, truth)
    pool_ratio = _check_pool_ratio(pool_ratio)
    P, n = inputs.n_policies, dataset.n_trajectories
    expected_e, expected_b = n * pool_ratio * k, n * (1.0 - pool_ratio)
    if min(expected_e, expected_b) < MIN_ROUNDS_PER_PART:
        raise PasifError(
            f"dataset: PAS-IF on trajectories accepts about n·pool_ratio·target_ratio = {expected_e:.0f} of the {n} "
            f"trajectories into D_e and keeps about n·(1 − pool_ratio) = {expected_b:.0f} in D_b; expected at least "
            f"{MIN_ROUNDS_PER_PART} in each, so at least "
            f"{int(np.ceil(MIN_ROUNDS_PER_PART / min(pool_ratio * k, 1 - pool_ratio)))} trajectories at "
            f"pool_ratio = {pool_ratio:g}, target_ratio = {k:g} (or a larger target_ratio or pool_ratio)"
        )
    obs = np.asarray(dataset.observations)
    integer_states = obs.dtype.kind in "iu" and obs.ndim == 2 and int(obs[dataset.mask].min()) >= 0  # as _step_features
    if isinstance(q_model, str) and q_model == "auto":
        q_model = "refit" if integer_states else None
    if q_model is not None and not (isinstance(q_model, str) and q_model == "refit"):
        raise PasifError(
            f"q_model: on trajectories expected 'auto', 'refit' (Q̂ refitted on every pseudo log) or None, found {q_model!r}; "
            "a q̂ table of the logged steps cannot serve the pseudo policies, whose Q-function differs"
        )
    if reward_model is not None:
        raise PasifError(
            f"reward_model: a scikit-learn reward model is for one-step logs; on trajectories q_model='refit' refits "
            f"FQE, found reward_model={type(reward_model).__name__}"
        )
    available = {"eval_pscore", "eval_action_probs"}
    if q_model is not None:
        available |= {"q_hat", "v_hat", "initial_v_hat"} | ({"state_marginal_weights", "marginal_weights"} if integer_states else set())
    chosen = _resolve_estimators(estimators, available, kind="trajectories")
    names = tuple(e.name for e in chosen)
    E = len(chosen)

    weights = EstimationContext(dataset, inputs).step_ratio  # (P, n, H)
    rng = np.random.default_rng(seed)
    split_seeds = rng.integers(0, 2**63 - 1, size=(n_splits, P))
    estimates = np.empty((n_splits, E, P))
    truths = np.empty((n_splits, P))
    truth_se = np.empty((n_splits, P))
    fit_rows = []
    for p, policy in enumerate(inputs.policy_names):
        rule = fit_trajectory_subsampling(dataset, weights[p], target_ratio=k, regularization=regularization)
        table = rule.step_table(dataset)  # (n, H, A)
        pseudo_name = f"pseudo({policy})"
        tabular = None
        if q_model is not None and integer_states:
            pi_b = np.asarray(dataset.behavior_action_probs)
            m = np.where(dataset.mask, (pi_b * table).sum(axis=-1), 1.0)
            tabular = _tabular_pseudo_policy(dataset, np.where(dataset.mask[..., None], pi_b * table / m[..., None], 0.0), pseudo_name)
        accepted, ess = [], []
        for s in range(n_splits):
            split = pseudo_trajectory_split(dataset, table, int(split_seeds[s, p]), pool_ratio=pool_ratio, truth=truth)
            d_b = split.behavior_part
            accepted.append(len(split.evaluation_indices))
            ess.append(split.truth_ess)
            try:
                if q_model is None:
                    pseudo_inputs = OPEInput(
                        policy_names=(pseudo_name,), eval_pscore=split.eval_pscore[None], eval_action_probs=split.eval_action_probs[None]
                    )
                elif tabular is not None:
                    pseudo_inputs = build_inputs(d_b, [tabular], q_function="fqe", weights="tabular")
                else:
                    given = ActionDistribution(pseudo_name, np.ascontiguousarray(split.eval_action_probs))
                    pseudo_inputs = build_inputs(d_b, [given], q_function="neural_fqe", weights=None)
                table_s = evaluate(d_b, pseudo_inputs, chosen)
            except ValueError as error:
                raise PasifError(f"estimators: on the pseudo log of {policy!r} (split {s}): {error}") from None
            estimates[s, :, p] = table_s.estimates[:, 0]
            truths[s, p], truth_se[s, p] = split.truth, split.truth_se
        fit_rows.append(
            {"policy": policy, "regularization": rule.regularization, "mean_share": rule.mean_share,
             "weight_loss": rule.weight_loss, "weight_correlation": rule.weight_correlation,
             "step_share": rule.step_share, "mean_acceptance": rule.mean_acceptance,
             "accepted": float(np.mean(accepted)), "truth_ess": float(np.mean(ess))}
        )  # fmt: skip
    return _selection(dataset, inputs, names, estimates, truths, truth_se, fit_rows, ks_used, alpha, n_bootstrap, seed)


def _selection(
    dataset: LoggedDataset,
    inputs: OPEInput,
    names: tuple[str, ...],
    estimates: np.ndarray,  # (S, E, P)
    truths: np.ndarray,  # (S, P)
    truth_se: np.ndarray,  # (S, P)
    fit_rows: list[dict[str, Any]],
    ks_used: tuple[int, ...],
    alpha: float,
    n_bootstrap: int,
    seed: int,
) -> PasifResult:
    """Score the estimates of every split against the pseudo truths and pick (both constructions)."""
    n_splits, P = truths.shape
    pseudo_names = tuple(f"pseudo({p})" for p in inputs.policy_names)
    behavior_value = dataset.mean_return()
    rows = []
    for s in range(n_splits):
        table_s = EstimateTable(policy_names=pseudo_names, estimator_names=names, estimates=estimates[s], behavior_value=behavior_value)
        summary = assess(table_s, truths[s], ks=[k_ for k_ in ks_used if k_ >= 2] or None).summary
        for e, name in enumerate(names):
            values = {"nmse": summary.loc[name, "nmse"], "rank_correlation": summary.loc[name, "rank_correlation"]}
            for k_ in ks_used:
                values[f"regret@{k_}"] = regret_at_k(truths[s], estimates[s, e], k_)
            for k_ in ks_used:
                if k_ >= 2:
                    values[f"sharpe_ratio@{k_}"] = summary.loc[name, f"sharpe_ratio@{k_}"]
            rows.extend({"dataset": s, "estimator": name, "metric": m, "value": float(v)} for m, v in values.items())
    per_split = pd.DataFrame(rows)
    summary = summarize_across_datasets(per_split, alpha=alpha, n_bootstrap=n_bootstrap, seed=seed)
    per_split = per_split.rename(columns={"dataset": "split"})

    picks: dict[str, str | None] = {}
    for metric in dict.fromkeys(summary["metric"]):
        block = summary[summary["metric"] == metric]
        values = block["mean"].to_numpy(dtype=np.float64)
        if np.isnan(values).all():
            picks[metric] = None
            continue
        lower = metric.startswith(LOWER_IS_BETTER)
        scores = np.where(np.isnan(values), np.inf if lower else -np.inf, values)
        picks[metric] = str(block["estimator"].iloc[int(np.argmin(scores) if lower else np.argmax(scores))])
    squared = (estimates - truths[:, None, :]) ** 2  # (S, E, P)
    mse = squared.mean(axis=0)
    policy_picks = {p: names[int(np.argmin(mse[:, j]))] for j, p in enumerate(inputs.policy_names)}
    nmse_rows = summary[summary["metric"] == "nmse"].set_index("estimator")
    pick = picks["nmse"] or names[int(np.argmin(mse.mean(axis=1)))]
    best = nmse_rows.loc[pick]
    others = nmse_rows.drop(index=pick)["mean"].sort_values()
    runner = f"; the next best is {others.index[0]} at {others.iloc[0]:.3g}" if len(others) and np.isfinite(others.iloc[0]) else ""
    reason = (
        f"{pick} has the lowest nMSE against the pseudo truths of {P} pseudo policies, {best['mean']:.3g} "
        f"({100 * (1 - alpha):g}% bootstrap interval [{best['lower']:.3g}, {best['upper']:.3g}] over {n_splits} splits){runner}."
    )
    return PasifResult(
        estimator_names=names,
        policy_names=tuple(inputs.policy_names),
        summary=summary,
        per_split=per_split,
        estimates=freeze(estimates),
        truths=freeze(truths),
        truth_se=freeze(truth_se),
        squared_errors=freeze(squared),
        fits=pd.DataFrame(fit_rows),
        pick=pick,
        picks=picks,
        policy_picks=policy_picks,
        reason=reason,
        ks=ks_used,
    )
