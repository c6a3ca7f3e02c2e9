"""Behavior policies estimated from logged data, for logs without propensities.

``estimate_pscores(dataset)`` fits a model of π_b(a | s) on the logged (s_t, a_t) pairs and returns a copy of
the dataset whose ``behavior_pscore`` (and, for discrete actions, ``behavior_action_probs``) are the model's
values, with ``info.pscore_estimated = True``. The dataset's own ``behavior_pscore`` is ignored: logs without
propensities can be built with placeholder pscores (ones) first.

Features x(s). Integer observations of shape (n, H) are tabular state ids and become one-hot vectors over the
states seen (an unseen id gets the all-zero vector, i.e. the intercept alone); any other observation is
flattened and standardised with the logged mean and standard deviation (constant columns dropped). With
``time_dependent=True`` the model may depend on the step t too: one-hot over (t, s) pairs for state ids,
one-hot step columns appended otherwise. A ``features(observations, steps) -> (m, k)`` callable replaces all
of these.

Discrete actions: a scikit-learn classifier of the action given x(s), π̂(· | s) = ``predict_proba``. By default
(``method="logistic"``) multinomial logistic regression (softmax regression),

    π̂(a | s) = exp(x(s)ᵀ β_a + b_a) / Σ_a' exp(x(s)ᵀ β_a' + b_a'),
    minimise  −Σ_i log π̂(a_i | s_i) + (λ / 2) ‖β‖²      (intercepts b unpenalised),

fit by ``sklearn.linear_model.LogisticRegression`` (L-BFGS, C = 1/λ; with two logged actions sklearn fits the
single difference β_1 − β_0, whose penalty is twice the symmetric one, so C = 2/λ gives the same optimum).
It is calibrated in the large: at the optimum the intercept's score equation gives
Σ_i π̂(a | s_i) = #{i: a_i = a} for every action, and with one-hot states (and λ → 0) π̂(a | s) is the
empirical frequency of a in state s. One-hot fits run on the (state, action) count table (sample weights), so
their cost does not grow with the number of transitions.

``method="gradient_boosting"`` fits ``HistGradientBoostingClassifier`` (``l2`` its ``l2_regularization``,
early stopping on a 10% validation split, ``random_state`` 0) on the transitions instead, for behavior
policies that are not log-linear in x(s). ``calibration="sigmoid"`` or ``"isotonic"`` wraps either in
``CalibratedClassifierCV`` (3-fold, on the transitions). An action that a fit never saw (absent from its
training folds) gets probability 0, hence the floor ``min_probability`` of ``estimate_pscores``.

Continuous actions: a conditional Gaussian with a linear mean and one variance per dimension,
a_j | s ~ N(x(s)ᵀ β_j + b_j, σ_j²), dimensions independent, fit by (ridge-stabilised) least squares and the
maximum-likelihood variance of the residuals. Action box: when logged actions sit exactly on a bound of the
dataset's action space, the logs are treated as clipped (a = clip(μ + σ ε, low, high)) and that dimension is fit
by censored (Tobit) maximum likelihood; its pscore then follows the clipped-Gaussian convention of
``opelab.policies.continuous`` (the atom's probability on a bound, the density inside). A behavior policy
truncated to the box (no atoms) is fit as an untruncated Gaussian: slightly misspecified near the bounds.

Cross-fitting (``n_folds = K > 1``): trajectories are split into K random folds and each fold's pscores come
from a model fit on the other folds, so no trajectory's propensity is fit on itself.

Estimated propensities change the estimators' variance (often for the better: Hirano, Imbens & Ridder, 2003)
and make IS consistent only as far as the model is well specified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from scipy import sparse
from scipy.optimize import minimize
from scipy.special import log_ndtr

from opelab.data.dataset import LoggedDataset
from opelab.data.validation import DatasetError, freeze

Features = Callable[[np.ndarray, np.ndarray], np.ndarray]
Method = Literal["auto", "logistic", "gradient_boosting", "gaussian"]
Calibration = Literal["sigmoid", "isotonic"]
CLASSIFIERS = ("logistic", "gradient_boosting")
LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


# ---------------------------------------------------------------------------------------------- features
@dataclass(frozen=True)
class FeatureMap:
    """x(s): one-hot state ids (``n_states``), standardised flat observations (``mean``, ``scale``, ``keep``)
    or a user callable."""

    kind: Literal["onehot", "standardized", "callable"]
    n_states: int = 0
    n_steps: int = 0  # > 0: time-dependent, one-hot (t, s) ids or appended step columns
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    keep: np.ndarray | None = None
    function: Features | None = None

    @classmethod
    def fit(
        cls, observations: np.ndarray, tabular: bool, function: Features | None = None, n_steps: int = 0
    ) -> FeatureMap:
        if function is not None:
            return cls("callable", function=function)
        if tabular:
            return cls("onehot", n_states=int(observations.max()) + 1, n_steps=n_steps)
        flat = observations.reshape(len(observations), -1).astype(np.float64)
        mean, scale = flat.mean(axis=0), flat.std(axis=0)
        keep = scale > 0
        return cls("standardized", mean=mean[keep], scale=scale[keep], keep=keep, n_steps=n_steps)

    @property
    def n_ids(self) -> int:
        """Number of one-hot ids: states, or (step, state) pairs when time-dependent."""
        return self.n_states * max(self.n_steps, 1)

    def ids(self, observations: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """One-hot index of each row (``n_ids`` for a state never seen in the fit: no column)."""
        ids = np.where(observations < self.n_states, observations, self.n_ids)
        if self.n_steps:
            ids = np.where(ids < self.n_ids, np.minimum(steps, self.n_steps - 1) * self.n_states + ids, self.n_ids)
        return ids

    def __call__(self, observations: np.ndarray, steps: np.ndarray) -> np.ndarray:
        if self.kind == "callable":
            x = np.asarray(self.function(observations, steps), dtype=np.float64)
            if x.ndim != 2 or x.shape[0] != len(observations) or not np.isfinite(x).all():
                raise DatasetError(f"features: expected finite values of shape ({len(observations)}, k), found {x.shape}")
            return x
        if self.kind == "onehot":
            ids = self.ids(observations, steps)
            out = np.zeros((len(observations), self.n_ids))
            seen = ids < self.n_ids
            out[np.nonzero(seen)[0], ids[seen]] = 1.0
            return out
        flat = observations.reshape(len(observations), -1).astype(np.float64)
        x = (flat[:, self.keep] - self.mean) / self.scale
        if self.n_steps:
            x = np.hstack([x, np.eye(self.n_steps)[np.minimum(steps, self.n_steps - 1)]])
        return x


# ---------------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ClassifierBehavior:
    """A fitted classifier π̂(a | s) (module docstring): ``predict_proba``'s columns placed at their actions,
    0 for actions the fit never saw. ``classifier`` is None when a single action (``only_action``) was logged."""

    features: FeatureMap
    classifier: Any
    n_actions: int
    only_action: int = 0

    def action_probs(self, observations: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """π̂(· | s), shape (m, A)."""
        x = self.features(observations, steps)
        out = np.zeros((len(x), self.n_actions))
        if self.classifier is None:
            out[:, self.only_action] = 1.0
        else:
            out[:, np.asarray(self.classifier.classes_, dtype=np.intp)] = self.classifier.predict_proba(x)
        return out


@dataclass(frozen=True)
class GaussianBehavior:
    """A fitted conditional Gaussian π̂(a | s) = Π_j N(a_j; x(s)ᵀ β_j + b_j, σ_j²), clipped in the dimensions
    flagged ``clipped`` to [low_j, high_j] (module docstring)."""

    features: FeatureMap
    coef: np.ndarray  # (k, d)
    intercept: np.ndarray  # (d,)
    sigma: np.ndarray  # (d,)
    low: np.ndarray | None
    high: np.ndarray | None
    clipped: np.ndarray  # (d,) bool

    def mean(self, observations: np.ndarray, steps: np.ndarray) -> np.ndarray:
        return self.features(observations, steps) @ self.coef + self.intercept

    def log_pscore(self, observations: np.ndarray, actions: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """log π̂(a | s), shape (m,); atoms on the bounds of clipped dimensions."""
        mu = self.mean(observations, steps)
        z = (actions - mu) / self.sigma
        out = -0.5 * z**2 - np.log(self.sigma) - LOG_SQRT_2PI
        if self.clipped.any():
            at_low = self.clipped & (actions <= self.low)
            at_high = self.clipped & (actions >= self.high)
            out = np.where(at_low, log_ndtr((self.low - mu) / self.sigma), out)
            out = np.where(at_high, log_ndtr((mu - self.high) / self.sigma), out)
        return out.sum(axis=1)


def fit_softmax_regression(x: np.ndarray, actions: np.ndarray, n_actions: int, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """(β (k, A), b (A,)) minimising −Σ_i log softmax(x_i β + b)[a_i] + (λ/2)‖β‖² (module docstring), by
    ``LogisticRegression``; actions absent from ``actions`` get β_a = 0 and b_a = −inf."""
    coef, intercept = np.zeros((x.shape[1], n_actions)), np.full(n_actions, -np.inf)
    classifier = _fit_classifier("logistic", x, np.asarray(actions), None, l2, None)
    if classifier is None:
        intercept[actions[0]] = 0.0
        return coef, intercept
    classes = classifier.classes_
    if len(classes) == 2:  # sklearn's binary model holds the difference of the two logits: split it evenly
        half_coef, half_intercept = classifier.coef_[0] / 2, classifier.intercept_[0] / 2
        coef[:, classes] = np.stack([-half_coef, half_coef], axis=1)
        intercept[classes] = [-half_intercept, half_intercept]
    else:
        coef[:, classes], intercept[classes] = classifier.coef_.T, classifier.intercept_
    return coef, intercept


def _fit_classifier(
    method: str, x: Any, labels: np.ndarray, weights: np.ndarray | None, l2: float, calibration: Calibration | None
) -> Any:
    """A fitted scikit-learn classifier of ``labels`` (actions) on rows ``x`` (dense or sparse) with sample
    ``weights``; None when a single action is logged (nothing to fit)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) == 1:
        return None
    if method == "logistic":
        scale = 2.0 if len(classes) == 2 else 1.0  # binary: one difference vector (module docstring)
        classifier = LogisticRegression(C=scale / l2 if l2 > 0 else np.inf, tol=1e-7, max_iter=5000)
    else:
        # early stopping on a 10% validation split at every size: overfit propensities make extreme weights
        classifier = HistGradientBoostingClassifier(l2_regularization=l2, early_stopping=True, random_state=0)
    if calibration is not None:
        if counts.min() < 3:
            raise DatasetError(
                f"calibration: expected at least 3 logged steps of every logged action for 3-fold calibration, "
                f"found {counts.min()} of action {classes[counts.argmin()]}"
            )
        classifier = CalibratedClassifierCV(classifier, method=calibration, cv=3)
    return classifier.fit(x, labels, sample_weight=weights)


def _fit_tobit(x: np.ndarray, y: np.ndarray, low: float, high: float, start: np.ndarray) -> np.ndarray:
    """Censored-Gaussian MLE of one dimension: θ = (β, b, log σ); y = low / high are censored observations."""
    k = x.shape[1]
    at_low, at_high = y <= low, y >= high
    inside = ~(at_low | at_high)
    X = np.hstack([x, np.ones((len(x), 1))])

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        beta, log_sigma = theta[: k + 1], theta[k + 1]
        sigma = np.exp(log_sigma)
        mu = X @ beta
        z = (y - mu) / sigma
        alpha, beta_up = (low - mu) / sigma, (mu - high) / sigma
        ll = np.where(inside, -0.5 * z**2 - log_sigma - LOG_SQRT_2PI, 0.0)
        ll = np.where(at_low, log_ndtr(alpha), ll)
        ll = np.where(at_high, log_ndtr(beta_up), ll)
        # inverse Mills ratios φ(u)/Φ(u), in logs for stability
        mills_low = np.exp(-0.5 * alpha**2 - LOG_SQRT_2PI - log_ndtr(alpha))
        mills_high = np.exp(-0.5 * beta_up**2 - LOG_SQRT_2PI - log_ndtr(beta_up))
        d_mu = np.where(inside, z / sigma, 0.0) - np.where(at_low, mills_low / sigma, 0.0) + np.where(at_high, mills_high / sigma, 0.0)
        d_ls = np.where(inside, z**2 - 1.0, 0.0) - np.where(at_low, mills_low * alpha, 0.0) - np.where(at_high, mills_high * beta_up, 0.0)
        grad = np.concatenate([X.T @ d_mu, [d_ls.sum()]])
        return float(-ll.sum()), -grad

    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-9})
    return result.x


def fit_behavior_policy(
    dataset: LoggedDataset,
    *,
    method: Method = "auto",
    l2: float = 1.0,
    features: Features | None = None,
    time_dependent: bool = False,
    clip: bool | None = None,
    calibration: Calibration | None = None,
) -> ClassifierBehavior | GaussianBehavior:
    """Fit π̂_b on all logged steps of ``dataset`` (see the module docstring).

    ``method``: ``"logistic"`` or ``"gradient_boosting"`` (discrete actions), ``"gaussian"`` (continuous) or
    ``"auto"`` (logistic or gaussian, by action type). ``l2`` is the ridge penalty λ ≥ 0 on the feature
    coefficients (gradient boosting: on the leaf values). ``calibration`` (discrete): None, ``"sigmoid"`` or
    ``"isotonic"`` (module docstring). ``features`` and
    ``time_dependent`` choose x(s) (module docstring). ``clip``: fit continuous dimensions
    as clipped to the action box (True), as plain Gaussians (False), or (None) clipped exactly in the
    dimensions where some logged action lies on a bound.
    """
    space = dataset.action_space
    expected = CLASSIFIERS if space.is_discrete else ("gaussian",)
    if method == "auto":
        method = expected[0]
    if method not in (*CLASSIFIERS, "gaussian"):
        raise DatasetError(f"method: expected 'auto', 'logistic', 'gradient_boosting' or 'gaussian', found {method!r}")
    if method not in expected:
        raise DatasetError(f"method: expected {' or '.join(map(repr, expected))} for {space.type} actions, found {method!r}")
    if calibration is not None and (calibration not in ("sigmoid", "isotonic") or not space.is_discrete):
        raise DatasetError(f"calibration: expected None, 'sigmoid' or 'isotonic' for discrete actions, found {calibration!r} for {space.type} actions")
    if isinstance(l2, bool) or not isinstance(l2, (int, float, np.floating, np.integer)) or not (np.isfinite(l2) and l2 >= 0):
        raise DatasetError(f"l2: expected a finite float >= 0, found {l2!r}")
    l2 = float(l2)
    traj, step = np.nonzero(dataset.mask)
    observations = np.asarray(dataset.observations)
    obs = observations[traj, step]
    actions = np.asarray(dataset.actions)[traj, step]
    tabular = observations.dtype.kind in "iu" and observations.ndim == 2
    fmap = FeatureMap.fit(obs, tabular, features, dataset.horizon if time_dependent else 0)

    if method in CLASSIFIERS:
        A = space.n_actions
        if method == "logistic" and calibration is None and fmap.kind == "onehot":
            # sufficient statistics: one sparse one-hot row per logged (state, action) pair, weighted by its count
            S = fmap.n_ids
            counts = np.zeros((S, A))
            np.add.at(counts, (fmap.ids(obs, step), actions), 1.0)
            ids, labels = np.nonzero(counts)
            x = sparse.csr_matrix((np.ones(len(ids)), (np.arange(len(ids)), ids)), shape=(len(ids), S))
            classifier = _fit_classifier(method, x, labels, counts[ids, labels], l2, None)
        else:
            classifier = _fit_classifier(method, fmap(obs, step), actions, None, l2, calibration)
        return ClassifierBehavior(fmap, classifier, A, int(actions[0]))

    x = fmap(obs, step)
    m, k = x.shape
    d = space.action_dim
    X = np.hstack([x, np.ones((m, 1))])
    penalty = l2 * np.eye(k + 1)
    penalty[k, k] = 0.0  # the intercept is not penalised
    theta = np.linalg.solve(X.T @ X + penalty, X.T @ actions)  # (k + 1, d)
    residuals = actions - X @ theta
    sigma = np.sqrt((residuals**2).mean(axis=0))
    if not (sigma > 0).all():
        raise DatasetError(f"actions: expected logged actions that vary given the state, found residual std {sigma.tolist()}")
    bounded = space.low is not None and space.high is not None
    low = np.asarray(space.low, dtype=np.float64) if bounded else None
    high = np.asarray(space.high, dtype=np.float64) if bounded else None
    if clip and not bounded:
        raise DatasetError("clip: expected an action space with bounds low/high to clip to, found none")
    if not bounded or clip is False:
        clipped = np.zeros(d, dtype=bool)
    elif clip is None:
        clipped = ((actions <= low) | (actions >= high)).any(axis=0)
    else:
        clipped = np.ones(d, dtype=bool)
    for j in np.nonzero(clipped)[0]:
        start = np.concatenate([theta[:, j], [np.log(sigma[j])]])
        fitted = _fit_tobit(x, actions[:, j], low[j], high[j], start)
        theta[:, j], sigma[j] = fitted[: k + 1], np.exp(fitted[k + 1])
    return GaussianBehavior(fmap, theta[:k], theta[k], sigma, low, high, clipped)


def fold_indices(n: int, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) indices of each of ``n_folds`` random folds of ``range(n)`` (``seed``); one fold means
    "fit and predict on everything". The split ``build_inputs`` makes with the same seed."""
    everything = np.arange(n)
    if n_folds == 1:
        return [(everything, everything)]
    parts = np.array_split(np.random.default_rng(seed).permutation(n), n_folds)
    return [(np.sort(np.concatenate(parts[:f] + parts[f + 1 :])), np.sort(part)) for f, part in enumerate(parts)]


def estimate_pscores(
    dataset: LoggedDataset,
    method: Method = "auto",
    n_folds: int = 1,
    *,
    l2: float = 1.0,
    features: Features | None = None,
    time_dependent: bool = False,
    clip: bool | None = None,
    calibration: Calibration | None = None,
    fold_seed: int = 0,
    min_probability: float = 1e-8,
) -> LoggedDataset:
    """A copy of ``dataset`` whose behavior propensities are estimated from its own (s_t, a_t) pairs.

    Fits ``fit_behavior_policy`` (``method``, ``l2``, ``features``, ``time_dependent``, ``clip``, ``calibration``), cross-fitted over ``n_folds``
    folds of trajectories (``fold_seed``). Discrete: ``behavior_action_probs`` = π̂(· | s_t), floored at
    ``min_probability`` and renormalised (so every estimated pscore is positive), and ``behavior_pscore`` =
    π̂(a_t | s_t). Continuous: ``behavior_pscore`` = the fitted density (atoms on clipped bounds), floored at
    the smallest positive float. A logged ``behavior_log_pscore`` is replaced by the log of the estimate (the
    log-space ratios read it). ``info.pscore_estimated`` is set; everything else is shared with ``dataset``.
    """
    if not isinstance(dataset, LoggedDataset):
        raise DatasetError(f"dataset: expected a LoggedDataset, found {type(dataset).__name__}")
    if dataset.info.slate:  # π_b(a_t | x, a_<t) depends on the items above slot t, which the model does not see
        raise DatasetError(
            "dataset: expected trajectories or a one-step log, found a ranking log (info.slate True): a slot's propensity "
            "depends on the items shown above it, which a behavior model of (s_t, a_t) cannot estimate; log the propensities"
        )
    n = dataset.n_trajectories
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or not 1 <= n_folds <= n:
        raise DatasetError(f"n_folds: expected an int in [1, n_trajectories = {n}], found {n_folds!r}")
    if not (isinstance(min_probability, (float, int)) and 0 < min_probability < 1 / max(dataset.action_space.n_actions or 1, 1)):
        raise DatasetError(f"min_probability: expected a float in (0, 1 / n_actions), found {min_probability!r}")
    space = dataset.action_space
    pscore = np.ones((n, dataset.horizon))
    probs = np.zeros((n, dataset.horizon, space.n_actions)) if space.is_discrete else None
    for train, test in fold_indices(n, int(n_folds), fold_seed):
        model = fit_behavior_policy(
            dataset if n_folds == 1 else dataset.subset(train),
            method=method,
            l2=l2,
            features=features,
            time_dependent=time_dependent,
            clip=clip,
            calibration=calibration,
        )
        rows = np.zeros(n, dtype=bool)
        rows[test] = True
        traj, step = np.nonzero(dataset.mask & rows[:, None])
        obs = np.asarray(dataset.observations)[traj, step]
        actions = np.asarray(dataset.actions)[traj, step]
        if space.is_discrete:
            p = np.maximum(model.action_probs(obs, step), min_probability)
            p /= p.sum(axis=1, keepdims=True)
            probs[traj, step] = p
            pscore[traj, step] = p[np.arange(len(actions)), actions]
        else:
            pscore[traj, step] = np.maximum(np.exp(model.log_pscore(obs, actions, step)), np.finfo(np.float64).tiny)
    info = replace(dataset.info, pscore_estimated=True)
    # logged log-propensities would contradict the estimate (and drive the log-space ratios): replace them by
    # the log of the estimated pscore when the dataset had some
    log_pscore = None if dataset.behavior_log_pscore is None else freeze(np.log(pscore))
    return replace(
        dataset,
        behavior_pscore=freeze(pscore),
        behavior_action_probs=None if probs is None else freeze(probs),
        behavior_log_pscore=log_pscore,
        info=info,
    )
