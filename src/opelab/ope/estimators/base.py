"""The estimator contract, the shared quantities every estimator reads, and the registry.

Notation (REFERENCES: Precup et al. 2000; Jiang & Li 2016; Thomas & Brunskill 2016): step ratio
w_t = π_e(a_t | s_t) / π_b(a_t | s_t), cumulative ratio W_t = Π_{t' ≤ t} w_t' with W_{−1} = 1, discount γ^t.

Variable-length trajectories are treated as *absorbed* after their last step: reward 0 and ratio 1 (the
dataset's padding makes this hold without masking). A finished trajectory thus keeps its final weight
W_{T_i − 1} at every later step and stays in the self-normalising mean. That is the consistent choice:
E_b[W_t] = 1 for every t only when all n trajectories are counted, so dividing by the mean over the
trajectories still alive at t estimates E_π_e[r_t | alive at t] instead of E_π_e[r_t 1{alive at t}].
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import itertools
from collections.abc import Callable, Hashable, Sequence
import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from opelab.data import DatasetInfo, LoggedDataset
from opelab.ope.inputs import OPEInput, OPEInputError


class EstimationContext:
    """The dataset, the inputs, and the arrays estimators share, each computed once on first use."""

    def __init__(self, dataset: LoggedDataset, inputs: OPEInput) -> None:
        self.dataset = dataset
        self.inputs = inputs
        self._memo: dict[Hashable, np.ndarray] = {}

    @property
    def discounts(self) -> np.ndarray:
        """γ^t on logged steps, 0 on padding, (n, H)."""
        return self.dataset.discounts

    @property
    def discounted_rewards(self) -> np.ndarray:
        """γ^t r_t, (n, H)."""
        return self.dataset.discounted_rewards

    @property
    def returns(self) -> np.ndarray:
        """G_i = Σ_t γ^t r_t, (n,)."""
        return self.dataset.returns

    @cached_property
    def log_space(self) -> bool:
        """True when log-propensities are given (``behavior_log_pscore`` or ``eval_log_pscore``): every ratio
        is then exp(log π_e − log π_b), and cumulative ratios exp of cumulative sums, so propensities that
        underflow float64 still give their ratio."""
        return self.dataset.behavior_log_pscore is not None or self.inputs.eval_log_pscore is not None

    def _log_step_ratio(self) -> np.ndarray:
        with np.errstate(divide="ignore"):  # π_e = 0 gives log 0 = −inf and ratio 0
            log_e = self.inputs.eval_log_pscore if self.inputs.eval_log_pscore is not None else np.log(self.inputs.eval_pscore)
            log_b = self.dataset.behavior_log_pscore
            return log_e - (np.log(self.dataset.behavior_pscore) if log_b is None else log_b)

    @cached_property
    def step_ratio(self) -> np.ndarray:
        """w_t, (P, n, H); 1 on padded steps."""
        if self.log_space:
            return np.exp(self._log_step_ratio())
        return self.inputs.eval_pscore / self.dataset.behavior_pscore

    @cached_property
    def cumulative_ratio(self) -> np.ndarray:
        """W_t = Π_{t' ≤ t} w_t', (P, n, H); on one-step logs the step ratio itself (no copy)."""
        if self.dataset.horizon == 1:
            return self.step_ratio
        if self.log_space:
            return np.exp(np.cumsum(self._log_step_ratio(), axis=-1))
        return np.cumprod(self.step_ratio, axis=-1)

    @cached_property
    def _unit_discounts(self) -> bool:
        """True when every γ^t on the logged steps is 1 and no step is padded (one-step logs, γ = 1 slates)."""
        return bool(self.dataset.mask.all()) and (self.dataset.horizon == 1 or self.dataset.gamma == 1.0)

    @cached_property
    def trajectory_ratio(self) -> np.ndarray:
        """W_{H−1}, the whole-trajectory ratio (absorbed steps contribute 1), (P, n)."""
        return self.cumulative_ratio[..., -1]

    @cached_property
    def discounted_residual(self) -> np.ndarray:
        """γ^t (r_t − Q̂(s_t, a_t)), (P, n, H): the DR forms' correction term, shared by all of them. A Q̂ given
        once for every policy (a broadcast view, stride 0 on the policy axis) gives a broadcast residual."""
        q_hat = self.inputs.q_hat
        if q_hat.strides[0] == 0 and q_hat.shape[0] > 1:
            one = self.discounted_rewards - q_hat[:1] * self.discounts
            return np.broadcast_to(one, q_hat.shape)
        return self.discounted_rewards - q_hat * self.discounts

    @cached_property
    def discounted_v_hat(self) -> np.ndarray:
        """γ^t V̂(s_t), (P, n, H): the DR forms' baseline term (V̂ itself when every discount is 1)."""
        if self._unit_discounts:
            return self.inputs.v_hat
        return self.inputs.v_hat * self.discounts

    def memo(self, key: Hashable, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """``compute()`` once per context and key: estimators sharing a weight scheme share its arrays."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def forget(self, keep: set[Hashable]) -> None:
        """Drop memoised arrays whose key (or, for derived ones like ``(key, "normalized")``, whose first part)
        is not in ``keep``: ``evaluate`` frees weights no later estimator shares, so memory follows one
        estimator's arrays rather than the sum over all of them."""
        for key in list(self._memo):
            root = key[0] if isinstance(key, tuple) and len(key) == 2 and key[1] == "normalized" else key
            if root not in keep:
                del self._memo[key]

    def require(self, estimator: str, *names: str) -> None:
        missing = [name for name in names if getattr(self.inputs, name) is None]
        if missing:
            raise OPEInputError(f"{estimator}: needs {', '.join(missing)} in the OPEInput, found None")


def previous_step(weights: np.ndarray) -> np.ndarray:
    """W_{t−1} along the last axis, with W_{−1} = 1."""
    out = np.empty_like(weights)
    out[..., 0] = 1.0
    out[..., 1:] = weights[..., :-1]
    return out


def self_normalize(weights: np.ndarray, axis: int = 1) -> np.ndarray:
    """Divide weights by their mean over trajectories (``axis``); where that mean is 0, the result is 0.

    A zero mean means no logged trajectory carries weight at that step: π_e gave probability 0 to a logged
    action at this or an earlier step of every trajectory (or the cumulative products underflowed). Those
    steps contribute 0 to the self-normalised estimate.
    """
    if weights.ndim == 3 and axis == 1:  # (P, n, H): einsum reduces the middle axis much faster than mean()
        mean = np.einsum("pnh->ph", weights)[:, None, :] / weights.shape[1]
    else:
        mean = weights.mean(axis=axis, keepdims=True)
    # Divide, not multiply by 1/mean: a subnormal mean (weights that underflowed over a long horizon) would
    # make 1/mean overflow to inf and 0 · inf = nan, while W / mean stays bounded by n.
    supported = mean > 0
    normalized = weights / np.where(supported, mean, 1.0)  # a plain broadcast division: fast
    if not supported.all():
        normalized *= supported
    return normalized


@dataclass(frozen=True)
class PointEstimator(ABC):
    """An off-policy point estimator: V̂(π_e) = (1/n) Σ_i X_i for per-trajectory values X_i.

    ``trajectory_values`` returns X (P, n). For self-normalised estimators X depends on the whole sample
    through the normaliser (``self_normalized = True``); resampling methods must recompute it per resample.
    """

    name: ClassVar[str]
    self_normalized: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ()
    # the kinds of data (``data_kind``) ``evaluate`` runs it on when no estimators are named: "trajectories"
    # (horizon > 1), "bandit" (one-step logs), "slate" (ranking logs); () for estimators that are only named
    default_on: ClassVar[tuple[str, ...]] = ("trajectories", "bandit", "slate")
    # the kinds of data it is defined on (a subset of the three; e.g. ``mips`` only on one-step logs)
    applies_to: ClassVar[tuple[str, ...]] = ("trajectories", "bandit", "slate")
    action_types: ClassVar[tuple[str, ...]] = ("discrete", "continuous")  # e.g. ("continuous",) for kernel ratios
    # True when its estimate on a resample equals the estimator rerun on that resample; False for estimators
    # that fit something once on the whole sample and hold it fixed across resamples (``opera``'s weights)
    resample_exact: ClassVar[bool] = True
    # dataclass fields that set the estimator's name: ``SwitchDR(lambda_=5.0).name == "switch_dr(lambda_=5.0)"``
    option_names: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self._label_options()

    def _label_options(self) -> None:
        """Record options that differ from their defaults in the instance's name, so several settings of one
        estimator sit side by side in a table."""
        changed = []
        for f in dataclasses.fields(self):
            if f.name in self.option_names:
                value = getattr(self, f.name)
                if f.default is dataclasses.MISSING or value != f.default:
                    changed.append(f"{f.name}={value!r}")
        if changed:
            object.__setattr__(self, "name", f"{type(self).name}({', '.join(changed)})")

    @abstractmethod
    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        """Per-trajectory contributions, shape (P, n)."""

    def estimate(self, ctx: EstimationContext) -> np.ndarray:
        """V̂ for every policy, shape (P,)."""
        ctx.require(self.name, *self.requires)
        return self.trajectory_values(ctx).mean(axis=-1)

    def interval_values(self, ctx: EstimationContext) -> np.ndarray:
        """Per-trajectory values whose sample mean is the estimate and whose sample variance estimates its
        variance (× n), shape (P, n): what the t, Hoeffding and Bernstein intervals average.

        For a plain average these are the trajectory values. A self-normalised estimator must override it
        with its linearisation (delta method): for a ratio μ = Σ_i W_i Y_i / Σ_i W_i the influence of
        trajectory i is W̃_i (Y_i − μ) + μ, with W̃ = W / mean(W), not W̃_i Y_i.
        """
        if self.self_normalized:
            raise NotImplementedError(f"{self.name}: a self-normalised estimator must implement interval_values")
        ctx.require(self.name, *self.requires)
        return self.trajectory_values(ctx)

    def resampled_estimates(self, ctx: EstimationContext, counts: np.ndarray) -> np.ndarray:
        """Estimates on B resamples of the trajectories, shape (P, B).

        ``counts[b, i]`` is how often trajectory i appears in resample b (a bootstrap draws them from a
        multinomial). Every estimate on a resample is a function of count-weighted sums Σ_i counts[b, i] ·
        T[p, i, ...] of a few per-trajectory arrays T (``resampling_terms``) and of the resample sizes
        (``estimates_from_sums``): a plain average reweights its trajectory values, a self-normalised
        estimator divides two such sums. The bootstrap (``opelab.ope.intervals``) computes the sums of all
        estimators at once; this method is the same computation for one estimator.
        """
        ctx.require(self.name, *self.requires)
        sums = {key: resampled_sums(counts, term) for key, term in self.resampling_terms(ctx).items()}
        return self.estimates_from_sums(sums, counts.sum(axis=1))

    def resampling_terms(self, ctx: EstimationContext) -> dict[Hashable, np.ndarray]:
        """The per-trajectory arrays whose count-weighted sums determine the estimate on a resample:
        key -> (P, n) or (P, n, H). Estimators that need the same array use the same key (e.g. the
        denominators W_t of the self-normalised forms), so the bootstrap sums it once.

        A plain average needs its trajectory values; a self-normalised estimator must override this (and
        ``estimates_from_sums``).
        """
        if self.self_normalized:
            raise NotImplementedError(f"{self.name}: a self-normalised estimator must implement resampling_terms")
        return {(self, "values"): self.trajectory_values(ctx)}

    def estimates_from_sums(self, sums: dict[Hashable, np.ndarray], totals: np.ndarray) -> np.ndarray:
        """Estimates (P, B) from the sums of ``resampling_terms`` over B resamples (key -> (P, B) or (P, B, H))
        and the resample sizes ``totals`` (B,) = Σ_i counts[b, i]."""
        return sums[(self, "values")] / totals


def resampled_sums(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Σ_i counts[b, i] · values[p, i, ...] for every resample: (B, n) with (P, n) -> (P, B), or with
    (P, n, H) -> (P, B, H)."""
    if values.ndim == 2:
        return values @ counts.T
    return np.matmul(counts, values)  # broadcasts over the policy axis


def linearized_ratio(weights: np.ndarray, values: np.ndarray, axis: int = 1) -> np.ndarray:
    """Influence values of the ratio estimators μ = Σ_i W_i Y_i / Σ_i W_i along ``axis`` (trajectories):
    W̃_i (Y_i − μ) + μ, W̃ = W / mean(W). Their mean is μ; their variance / n is the delta-method variance."""
    normalized = self_normalize(weights, axis=axis)
    mu = np.mean(normalized * values, axis=axis, keepdims=True)
    return normalized * (values - mu) + mu


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, and 0 where the denominator is 0 (no support: see ``self_normalize``)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


class Registry(dict):  # type: ignore[type-arg]
    """Estimator classes by short name; ``register`` is a class decorator, ``create`` gives an instance.

    One registry per estimator kind (point, CDF), so later estimators plug in by name.
    """

    def __init__(self, kind: str, base: type) -> None:
        super().__init__()
        self.kind = kind
        self.base = base

    def register(self, cls: type) -> type:
        name = cls.name
        if name in self and self[name] is not cls:
            raise ValueError(f"{self.kind} name {name!r} is already registered by {self[name].__name__}")
        self[name] = cls
        return cls

    def create(self, name_or_instance: object, **options: object) -> object:
        """An instance from a short name (with ``options``, its dataclass fields), or the instance itself."""
        if isinstance(name_or_instance, self.base):
            if options:
                raise ValueError(f"options: given with an estimator instance ({name_or_instance!r}); pass its name instead")
            return name_or_instance
        try:
            cls = self[name_or_instance]
        except (KeyError, TypeError):
            raise ValueError(
                f"estimator: expected one of {sorted(self)} or a {self.base.__name__}, found {name_or_instance!r}"
            ) from None
        accepted = [f.name for f in dataclasses.fields(cls) if f.init] if dataclasses.is_dataclass(cls) else []
        unknown = [key for key in options if key not in accepted]
        if unknown:
            raise ValueError(f"options: expected options of {name_or_instance} among {accepted or 'none'}, found {unknown}")
        return cls(**options)


ESTIMATORS = Registry("estimator", PointEstimator)


def register_estimator(cls: type[PointEstimator]) -> type[PointEstimator]:
    """Class decorator: make an estimator available by its short ``name``."""
    return ESTIMATORS.register(cls)


def get_estimator(name_or_estimator: str | PointEstimator, **options: object) -> PointEstimator:
    """An estimator instance from its short name and options (OBP's names, e.g.
    ``get_estimator("switch_dr", lambda_=10.0)``; the name records them), or the instance itself."""
    return ESTIMATORS.create(name_or_estimator, **options)  # type: ignore[return-value]


def estimator_grid(name: str, **grid: Sequence[object]) -> list[PointEstimator]:
    """One estimator per combination of option values, e.g. ``estimator_grid("switch_dr", lambda_=[1, 10, 100])``;
    their names record the options, so the whole grid goes into one ``evaluate`` call."""
    if not grid:
        raise ValueError(f"grid: expected at least one option with a list of values for {name}, found none")
    keys = list(grid)
    for key in keys:
        if isinstance(grid[key], (str, bytes)) or not isinstance(grid[key], Sequence) or len(grid[key]) == 0:
            raise ValueError(f"grid.{key}: expected a non-empty list of values, found {grid[key]!r}")
    return [get_estimator(name, **dict(zip(keys, values))) for values in itertools.product(*(grid[k] for k in keys))]


def applicable(kind: str, action_type: str) -> list[str]:
    """Names of the registered estimators defined on this kind of data (``data_kind``) and action type."""
    return [name for name, cls in ESTIMATORS.items() if kind in cls.applies_to and action_type in cls.action_types]


def data_kind(info: DatasetInfo, horizon: int) -> str:
    """"slate" for ranking logs, "bandit" for other one-step logs, "trajectories" otherwise."""
    if info.slate:
        return "slate"
    return "bandit" if horizon == 1 else "trajectories"


def default_estimators(kind: str, available: Callable[[PointEstimator], bool]) -> list[PointEstimator]:
    """The registered estimators ``evaluate`` runs when none are named: those meant for this kind of data
    (``data_kind``, matched against each class's ``default_on``) whose inputs are ``available``, in
    registration order."""
    chosen = []
    for cls in ESTIMATORS.values():
        if kind in cls.default_on:
            estimator = cls()
            if available(estimator):
                chosen.append(estimator)
    return chosen
