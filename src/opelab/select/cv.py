"""Cross-validated estimator selection: OCV (Cief, Kveton & Kompan, "Cross-Validated Off-Policy Evaluation",
AAAI 2025).

The logged trajectories are split at random ``n_splits`` times into a training part (``train_fraction`` of them)
and a validation part (the rest). On split s, every candidate estimator e runs on the training part, V̂_e^s(π),
and an unbiased validator (trajectory IS, ``tis``; ``ipw`` on one-step logs) runs on the validation part,
V̂_v^s(π): a noisy but unbiased target for J(π). With d_s = V̂_e^s(π) − V̂_v^s(π):

    score(e, π)      = (1/S) Σ_s d_s²                                   (the paper's OCV score)
    corrected(e, π)  = (1/S) Σ_s [d_s² − σ̂²_v,s / n_V − (1 − n_T/n) σ̂²_e,s / n_T]

σ̂²_v,s is the sample variance (ddof 1) of the validator's per-trajectory values on the validation part, σ̂²_e,s
that of the estimator's ``interval_values`` (its per-trajectory influence values) on the training part. Since
the two parts are disjoint, E[d²] = bias_e² + Var_e(n_T) + Var_v(n_V); the first subtracted term removes the
validator's variance, the second rescales the estimator's variance from n_T to all n trajectories (Var ∝ 1/n,
the bias taken as constant in n), so ``corrected`` estimates the estimator's MSE on the whole log. Within a
split the validator term is the same for every estimator, so it never changes a pick by itself; the training-size
term does (it favours estimators whose error is variance, which more data would shrink). The paper scores by
``score``; its code also sets the training fraction per estimator to σ̂²_e / (σ̂²_e + σ̂²_v) ("theory"), which is
not implemented here (the fraction is one number for all estimators, so they share the splits), and picks with
the one-standard-error rule argmin(score + SE) (``one_standard_error=True`` here).

Standard errors are the sample standard deviation across splits / √S. The random splits overlap, so the split
scores are positively correlated and these SEs are optimistic; they rank, they do not test.

Nuisances: ``subset_inputs`` slices every (P, n, ...) array of the ``OPEInput`` by trajectory. Q̂, V̂ and marginal
weights fitted on the whole log are then *not* refit per split: the training-part estimators have seen the
validation trajectories through them, which breaks the independence the correction assumes and flatters model-
based estimators. Pass ``rebuild(train_dataset) -> OPEInput`` to refit them on each training part; the validator
(IS) needs only the evaluation propensities, which are sliced from ``inputs`` (a model-based validator, e.g.
``validation_estimator="dr"``, would read the whole-data Q̂ sliced from ``inputs``, not a refit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from opelab.data import LoggedDataset
from opelab.ope.estimators import EstimationContext, PointEstimator, get_estimator
from opelab.ope.estimators.base import data_kind
from opelab.ope.inputs import OPEInput, OPEInputError
from opelab.select.metrics import nmse, rank_correlation, sharpe_ratio_at_k

# the (P, n, ...) arrays of an OPEInput, sliced by trajectory on axis 1
_PER_TRAJECTORY = (
    "eval_pscore",
    "q_hat",
    "v_hat",
    "initial_v_hat",
    "eval_action_probs",
    "state_marginal_weights",
    "marginal_weights",
    "eval_log_pscore",
)


def subset_inputs(inputs: OPEInput, indices: Sequence[int] | np.ndarray) -> OPEInput:
    """The inputs of the trajectories at ``indices`` (as ``LoggedDataset.subset``): every (P, n, ...) array sliced on
    its trajectory axis; policy names, ground truth and ``cross_fit_folds`` kept.

    Nuisances fitted on the whole data (Q̂, V̂, marginal weights) are sliced, not refit. An array given once for
    every policy (a broadcast view, stride 0 on the policy axis) stays a broadcast view.
    """
    idx = np.asarray(indices)
    n = inputs.eval_pscore.shape[1]
    if idx.ndim != 1 or idx.dtype.kind not in "iu" or len(idx) == 0:
        raise ValueError(f"indices: expected a non-empty 1-D array of trajectory indices, found {idx.dtype} {idx.shape}")
    if idx.min() < -n or idx.max() >= n:
        raise ValueError(f"indices: expected values in [0, {n - 1}], found range [{idx.min()}, {idx.max()}]")
    sliced = {}
    for name in _PER_TRAJECTORY:
        value = getattr(inputs, name)
        if value is None:
            sliced[name] = None
        elif value.strides[0] == 0 and value.shape[0] > 1:  # one array for every policy: slice it once
            one = value[:1, idx]
            sliced[name] = np.broadcast_to(one, (value.shape[0], *one.shape[1:]))
        else:
            sliced[name] = value[:, idx]
    return OPEInput(
        policy_names=inputs.policy_names,
        ground_truth=inputs.ground_truth,
        ground_truth_se=inputs.ground_truth_se,
        cross_fit_folds=inputs.cross_fit_folds,
        **sliced,
    )


@dataclass(frozen=True, eq=False)
class CVResult:
    """What ``cv_select`` found. Arrays are (E, P) over estimators × policies unless said otherwise.

    ``scores``/``score_se``: the OCV score (1/S) Σ_s d_s² and its standard error across splits;
    ``corrected``/``corrected_se``: the variance-corrected score (an MSE estimate on all n trajectories, may be
    negative; nan for an estimator without ``interval_values``); ``overall``/``overall_se`` (E,): the criterion
    averaged over policies within each split, then over splits. ``picks`` (P,) and ``pick``: the estimator with the
    lowest criterion (``criterion``: ``"score"`` or ``"corrected"``) per policy and overall.

    Estimated assessment metrics (E,), each split's validator values V̂_v^s taken as the truth across policies,
    averaged over splits (nan splits left out) with standard errors: ``estimated_nmse``,
    ``estimated_rank_correlation`` and ``estimated_sharpe_ratio`` (SharpeRatio@``k`` with J(π_b) the dataset's mean
    return). They are noisy proxies of the metrics against the truth, for comparing estimators rather than for
    their levels: the estimates come from n_T trajectories, not n; the nMSE is inflated by the validator's variance
    (the same for every estimator within a split, not removed); the rank correlation is attenuated by the
    validator's noise; SharpeRatio@k reads the noisy validator values of the chosen top k, biased either way.

    ``train_estimates`` (S, E, P), ``validation_estimates`` (S, P) and ``train_indices`` (S, n_T) hold each split.
    """

    policy_names: tuple[str, ...]
    estimator_names: tuple[str, ...]
    validation_estimator: str
    criterion: str
    train_fraction: float
    n_train: int
    n_validation: int
    scores: np.ndarray  # (E, P)
    score_se: np.ndarray  # (E, P)
    corrected: np.ndarray  # (E, P)
    corrected_se: np.ndarray  # (E, P)
    overall: np.ndarray  # (E,)
    overall_se: np.ndarray  # (E,)
    picks: tuple[str, ...]
    pick: str
    reason: str
    k: int
    estimated_nmse: np.ndarray  # (E,)
    estimated_nmse_se: np.ndarray
    estimated_rank_correlation: np.ndarray
    estimated_rank_correlation_se: np.ndarray
    estimated_sharpe_ratio: np.ndarray
    estimated_sharpe_ratio_se: np.ndarray
    train_estimates: np.ndarray  # (S, E, P)
    validation_estimates: np.ndarray  # (S, P)
    train_indices: np.ndarray  # (S, n_T)

    @property
    def n_splits(self) -> int:
        return self.train_estimates.shape[0]

    def table(self) -> pd.DataFrame:
        """One row per estimator and policy (and one per estimator with policy ``"(overall)"``): columns
        ``estimator, policy, score, score_se, corrected, corrected_se, selected``; the overall rows carry the
        criterion in both score columns of its kind and nan in the other."""
        E, P = self.scores.shape
        rows = {
            "estimator": np.repeat(np.array(self.estimator_names, dtype=object), P),
            "policy": np.tile(np.array(self.policy_names, dtype=object), E),
            "score": self.scores.reshape(-1),
            "score_se": self.score_se.reshape(-1),
            "corrected": self.corrected.reshape(-1),
            "corrected_se": self.corrected_se.reshape(-1),
            "selected": np.array([self.picks[p] == e for e in self.estimator_names for p in range(P)]),
        }
        per_policy = pd.DataFrame(rows)
        nan = np.full(E, np.nan)
        own, other = ("score", "corrected") if self.criterion == "score" else ("corrected", "score")
        overall = pd.DataFrame(
            {
                "estimator": list(self.estimator_names),
                "policy": ["(overall)"] * E,
                own: self.overall,
                f"{own}_se": self.overall_se,
                other: nan,
                f"{other}_se": nan,
                "selected": [e == self.pick for e in self.estimator_names],
            }
        )
        return pd.concat([per_policy, overall[per_policy.columns]], ignore_index=True)

    def metrics(self) -> pd.DataFrame:
        """The estimated assessment metrics, one row per estimator."""
        return pd.DataFrame(
            {
                "estimator": list(self.estimator_names),
                "estimated_nmse": self.estimated_nmse,
                "estimated_nmse_se": self.estimated_nmse_se,
                "estimated_rank_correlation": self.estimated_rank_correlation,
                "estimated_rank_correlation_se": self.estimated_rank_correlation_se,
                f"estimated_sharpe_ratio@{self.k}": self.estimated_sharpe_ratio,
                f"estimated_sharpe_ratio@{self.k}_se": self.estimated_sharpe_ratio_se,
            }
        )


def cv_select(
    dataset: LoggedDataset,
    inputs: OPEInput,
    estimators: Sequence[str | PointEstimator],
    *,
    n_splits: int = 10,
    train_fraction: float = 0.5,
    seed: int = 0,
    validation_estimator: str | PointEstimator | None = None,
    rebuild: Callable[[LoggedDataset], OPEInput] | None = None,
    criterion: Literal["score", "corrected"] = "score",
    one_standard_error: bool = False,
    k: int | None = None,
) -> CVResult:
    """Pick among ``estimators`` by off-policy cross-validation (Cief, Kveton & Kompan, AAAI 2025); the scores and
    their correction are in this module's docstring.

    ``n_splits`` random splits (seeded by ``seed``), each with round(``train_fraction`` · n) training trajectories;
    ``validation_estimator`` defaults to ``tis`` (``ipw`` on one-step logs), an unbiased IS estimator;
    ``rebuild(train_dataset)`` refits the inputs on each training part (otherwise they are sliced by
    ``subset_inputs``, nuisances fitted on all the data). ``criterion`` chooses the score that picks;
    ``one_standard_error`` picks by score + SE, as the paper does. ``k`` (default min(3, P)) sets SharpeRatio@k of
    the estimated metrics.
    """
    if isinstance(estimators, (str, PointEstimator)):
        raise ValueError(f"estimators: expected a list of at least 2 estimators, found the single {estimators!r}")
    chosen = [get_estimator(e) for e in estimators]
    names = tuple(e.name for e in chosen)
    if len(chosen) < 2:
        raise ValueError(f"estimators: expected at least 2 estimators to select among, found {list(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"estimators: expected distinct names, found {list(names)}")
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ValueError(f"n_splits: expected an integer >= 2 (standard errors need two splits), found {n_splits!r}")
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float, np.floating)) or not 0.0 < float(train_fraction) < 1.0:
        raise ValueError(f"train_fraction: expected a number in (0, 1), found {train_fraction!r}")
    if criterion not in ("score", "corrected"):
        raise ValueError(f"criterion: expected 'score' or 'corrected', found {criterion!r}")
    inputs.check_dataset(dataset)
    n = dataset.n_trajectories
    n_train = int(round(float(train_fraction) * n))
    n_val = n - n_train
    if n_train < 2 or n_val < 2:
        raise ValueError(
            f"train_fraction: {train_fraction} of {n} trajectories gives {n_train} training and {n_val} validation "
            "trajectories; expected at least 2 in each part"
        )
    P = inputs.n_policies
    k = min(3, P) if k is None else k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= P:
        raise ValueError(f"k: expected an integer in 1..{P} (the number of policies), found {k!r}")
    kind = data_kind(dataset.info, dataset.horizon)
    validator = get_estimator(validation_estimator or ("ipw" if kind == "bandit" else "tis"))
    _check_runnable(validator, inputs, dataset, kind, "validation_estimator")
    for i, estimator in enumerate(chosen):
        _check_runnable(estimator, inputs, dataset, kind, f"estimators[{i}]")

    rng = np.random.default_rng(seed)
    S, E = int(n_splits), len(chosen)
    train_est = np.empty((S, E, P))
    train_var = np.empty((S, E, P))  # σ̂²_e,s of the influence values on the training part
    val_est = np.empty((S, P))
    val_var = np.empty((S, P))
    train_indices = np.empty((S, n_train), dtype=np.int64)
    for s in range(S):
        order = rng.permutation(n)
        train, val = np.sort(order[:n_train]), np.sort(order[n_train:])
        train_indices[s] = train
        val_ds = dataset.subset(val)
        val_ctx = EstimationContext(val_ds, subset_inputs(inputs, val))
        val_est[s], val_var[s] = _run(validator, val_ctx, "validation_estimator")
        train_ds = dataset.subset(train)
        if rebuild is None:
            train_inputs = subset_inputs(inputs, train)
        else:
            train_inputs = rebuild(train_ds)
            if not isinstance(train_inputs, OPEInput):
                raise TypeError(f"rebuild: expected it to return an OPEInput, found {type(train_inputs).__name__}")
            if train_inputs.policy_names != inputs.policy_names:
                raise ValueError(f"rebuild: expected inputs for the policies {list(inputs.policy_names)}, found {list(train_inputs.policy_names)}")
            train_inputs.check_dataset(train_ds)
            if s == 0:
                for i, estimator in enumerate(chosen):
                    _check_runnable(estimator, train_inputs, train_ds, kind, f"estimators[{i}] (on rebuild's inputs)")
        ctx = EstimationContext(train_ds, train_inputs)
        for e, estimator in enumerate(chosen):
            train_est[s, e], train_var[s, e] = _run(estimator, ctx, f"estimators[{e}]")

    if criterion == "corrected":
        lacking = [names[e] for e in range(E) if np.isnan(train_var[:, e]).all()] + ([validator.name] if np.isnan(val_var).all() else [])
        if lacking:
            raise ValueError(f"criterion: 'corrected' needs per-trajectory influence values (interval_values), which {lacking} lack; use criterion='score'")
    sq = (train_est - val_est[:, None, :]) ** 2  # (S, E, P): d_s²
    corr = sq - (val_var / n_val)[:, None, :] - (1.0 - n_train / n) * train_var / n_train
    scores, score_se = _mean_se(sq)
    corrected, corrected_se = _mean_se(corr)
    per_split = sq if criterion == "score" else corr
    overall, overall_se = _mean_se(per_split.mean(axis=2))  # (S, E) -> (E,)
    crit, crit_se = (scores, score_se) if criterion == "score" else (corrected, corrected_se)
    by = crit + crit_se if one_standard_error else crit
    overall_by = overall + overall_se if one_standard_error else overall
    picks = tuple(names[i] for i in _argmin(by))
    pick = names[int(_argmin(overall_by[:, None])[0])]

    behavior_value = dataset.mean_return()
    nm, rc, sr = (np.full((S, E), np.nan) for _ in range(3))
    for s in range(S):
        for e in range(E):
            nm[s, e] = nmse(val_est[s], train_est[s, e])
            rc[s, e] = rank_correlation(val_est[s], train_est[s, e])
            sr[s, e] = sharpe_ratio_at_k(val_est[s], train_est[s, e], behavior_value, k)
    metrics = [_nan_mean_se(m) for m in (nm, rc, sr)]

    best = names.index(pick)
    ordered = np.argsort(overall_by, kind="stable")
    runner = int(ordered[1]) if int(ordered[0]) == best else int(ordered[0])
    label = "score + SE" if one_standard_error else ("OCV score" if criterion == "score" else "corrected score")
    paired = per_split.mean(axis=2)[:, runner] - per_split.mean(axis=2)[:, best]  # (S,): shared validator noise cancels
    reason = (
        f"{pick} has the lowest mean {label} across policies ({overall[best]:.4g} ± {overall_se[best]:.2g} vs "
        f"{names[runner]} {overall[runner]:.4g} ± {overall_se[runner]:.2g}, paired difference {paired.mean():.3g} ± "
        f"{paired.std(ddof=1) / np.sqrt(S):.2g}) against {validator.name} on {n_val} held-out trajectories over {S} splits."
    )
    return CVResult(
        policy_names=inputs.policy_names,
        estimator_names=names,
        validation_estimator=validator.name,
        criterion=criterion,
        train_fraction=float(train_fraction),
        n_train=n_train,
        n_validation=n_val,
        scores=_frozen(scores),
        score_se=_frozen(score_se),
        corrected=_frozen(corrected),
        corrected_se=_frozen(corrected_se),
        overall=_frozen(overall),
        overall_se=_frozen(overall_se),
        picks=picks,
        pick=pick,
        reason=reason,
        k=int(k),
        estimated_nmse=_frozen(metrics[0][0]),
        estimated_nmse_se=_frozen(metrics[0][1]),
        estimated_rank_correlation=_frozen(metrics[1][0]),
        estimated_rank_correlation_se=_frozen(metrics[1][1]),
        estimated_sharpe_ratio=_frozen(metrics[2][0]),
        estimated_sharpe_ratio_se=_frozen(metrics[2][1]),
        train_estimates=_frozen(train_est),
        validation_estimates=_frozen(val_est),
        train_indices=_frozen(train_indices),
    )


def _check_runnable(estimator: PointEstimator, inputs: OPEInput, dataset: LoggedDataset, kind: str, where: str) -> None:
    """A clear error for an estimator that cannot run on these inputs and this kind of data."""
    missing = [name for name in estimator.requires if getattr(inputs, name) is None]
    if missing:
        raise ValueError(f"{where}: {estimator.name} cannot run, it needs {', '.join(missing)} in the OPEInput, found None")
    if kind not in estimator.applies_to:
        raise ValueError(f"{where}: {estimator.name} cannot run on {kind} data, it applies to {list(estimator.applies_to)}")
    if dataset.action_space.type not in estimator.action_types:
        raise ValueError(
            f"{where}: {estimator.name} cannot run on {dataset.action_space.type} actions, it takes {list(estimator.action_types)}"
        )


def _run(estimator: PointEstimator, ctx: EstimationContext, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The estimate (P,) and the sample variance (ddof 1) of the per-trajectory values whose mean it is (P,), nan
    when the estimator has none (no ``interval_values``). An input the estimator finds missing only when it runs
    (e.g. ``mips`` without action embeddings) is a ``ValueError`` naming it."""
    try:
        estimate = estimator.estimate(ctx)
    except OPEInputError as error:
        raise ValueError(f"{where}: {estimator.name} cannot run on these inputs ({error})") from None
    try:
        values = estimator.interval_values(ctx)
    except NotImplementedError:
        return estimate, np.full(ctx.inputs.n_policies, np.nan)
    return estimate, np.var(values, axis=-1, ddof=1)


def _mean_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error (ddof 1 / √S) over the leading split axis."""
    S = values.shape[0]
    return values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(S)


def _nan_mean_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over splits (axis 0) of the finite-or-infinite values, nan entries left out; nan
    where fewer than one (mean) or two (SE) remain. No numpy warning."""
    keep = ~np.isnan(values)
    count = keep.sum(axis=0)
    mean = np.full(values.shape[1:], np.nan)
    se = np.full(values.shape[1:], np.nan)
    for j in np.ndindex(values.shape[1:]):
        column = values[(slice(None), *j)][keep[(slice(None), *j)]]
        if count[j] >= 1:
            mean[j] = column.mean()
        if count[j] >= 2 and np.isfinite(column).all():
            se[j] = column.std(ddof=1) / np.sqrt(count[j])
    return mean, se


def _argmin(values: np.ndarray) -> np.ndarray:
    """Row index of the smallest value in each column of (E, P), nan treated as +inf (first on ties)."""
    return np.argmin(np.where(np.isnan(values), np.inf, values), axis=0)


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    array.setflags(write=False)
    return array
