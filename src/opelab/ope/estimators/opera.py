"""OPERA: an MSE-minimising blend of base estimators (Nie, Chandak, Yuan, Badrinath, Flet-Berliac & Brunskill,
"OPERA: Automatic Offline Policy Evaluation with Re-weighted Aggregates of Multiple Estimators", NeurIPS 2024).

For base estimates V̂_1..V̂_J of one policy's value, OPERA returns V̂_α = Σ_j α_j V̂_j with Σ_j α_j = 1 and

    α = argmin_{Σα = 1} α^T M̂ α,    M̂_ij = (1/B) Σ_b (V̂_i^(b) − V̂_i)(V̂_j^(b) − V̂_j),

where V̂_j^(b) is base j on bootstrap resample b (all bases on the same resamples). This is the paper's
bootstrap estimate of the MSE matrix E[(V̂_i − V)(V̂_j − V)], centred at each base's own full-sample
estimate: its diagonal is the bootstrap variance plus the square of Efron's bootstrap bias estimate
mean_b V̂_j^(b) − V̂_j. The paper (like Lavancier & Rochet, 2016) allows signed, affine weights
(``convex=False``: α = M̂⁻¹1 / 1ᵀM̂⁻¹1); ``convex=True`` (the default here) also asks α ≥ 0, a small
quadratic programme solved exactly as a non-negative least-squares problem (``opera_weights``).

What this bootstrap sees. Resamples are n draws out of n (``opelab.ope.intervals.bootstrap_counts``), so the
paper's k/n scaling of an m-out-of-n bootstrap is 1. The fitted models (Q̂, V̂, marginal weights) are not
refit per resample, so the bootstrap bias of any plain average (PDIS, DR, DM, ...) is zero (in expectation
over the resamples) and a model's error stays invisible: M̂ then holds their covariance only. A base such as
DM, whose bias is all model error, looks precise and would draw weight it does not deserve; the default bases
are therefore the consistent importance-sampling and doubly robust forms (whose only bias, that of
self-normalisation, is O(1/n) and seen by the bootstrap). Name DM only when its model is trusted, or give a
``reference``.

``reference`` (not in the paper): the name of a base trusted to be unbiased, e.g. ``"pdis"``; every base is
then centred at that base's full-sample estimate V̂_r instead of its own,

    M̂_ij = (1/B) Σ_b (V̂_i^(b) − V̂_r)(V̂_j^(b) − V̂_r) ≈ Cov*_ij + (V̂_i − V̂_r)(V̂_j − V̂_r),

so a base's distance from the reference counts as bias. That distance also carries the noise of V̂_i − V̂_r,
so M̂ overstates the other bases' MSE by about Var(V̂_i − V̂_r) and leans toward the reference.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from opelab.data import LoggedDataset
from opelab.ope.estimators.base import EstimationContext, PointEstimator, get_estimator, register_estimator
from opelab.ope.inputs import OPEInput

DEFAULT_BASE = ("pdis", "dr", "snpdis", "sndr")
_RIDGE = 1e-10  # relative to the mean diagonal of M̂: makes a singular M̂ (redundant bases) solvable


def mse_matrix(estimates: np.ndarray, resampled: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """The bootstrap MSE matrix M̂ (P, J, J) from the full-sample estimates (J, P) and the estimates on B
    resamples (J, P, B): M̂_p,ij = mean_b (V̂_ip^(b) − V̂_ip)(V̂_jp^(b) − V̂_jp), or with a common ``centre``
    c (P,) (a reference estimate), mean_b (V̂_ip^(b) − c_p)(V̂_jp^(b) − c_p)."""
    delta = resampled - (estimates[..., None] if centre is None else np.asarray(centre)[None, :, None])  # (J, P, B)
    return np.einsum("ipb,jpb->pij", delta, delta) / resampled.shape[-1]


def opera_weights(
    estimates: np.ndarray, resampled: np.ndarray, convex: bool = True, centre: np.ndarray | None = None
) -> np.ndarray:
    """OPERA's weights (J, P), each column summing to one, from base estimates (J, P) and their bootstrap
    estimates (J, P, B): the minimiser of α^T M̂ α (``mse_matrix``, centred at each base's estimate or at
    ``centre`` (P,)) over Σα = 1, with α ≥ 0 when ``convex``.

    A ridge of 10⁻¹⁰ × mean diagonal makes a singular M̂ solvable (identical bases then share their weight
    equally); an M̂ that is zero (no base varies over the resamples) gives equal weights. The affine weights
    are M̂⁻¹1 / 1ᵀM̂⁻¹1. The convex ones solve min_{β ≥ 0} βᵀM̂β − 2·1ᵀβ, non-negative least squares
    ‖Lᵀβ − L⁻¹1‖² with M̂ = LLᵀ, and set α = β / 1ᵀβ: for β = sα with α on the simplex the objective is
    s²·αᵀM̂α − 2s, smallest at s = 1/αᵀM̂α with value −1/αᵀM̂α, so the best β points at the best α.
    """
    estimates = np.asarray(estimates, dtype=float)
    resampled = np.asarray(resampled, dtype=float)
    if estimates.ndim != 2:
        raise ValueError(f"estimates: expected shape (J, P) (bases, policies), found {estimates.shape}")
    J, P = estimates.shape
    if J < 2:
        raise ValueError(f"estimates: expected at least 2 base estimators to blend, found {J}")
    if resampled.ndim != 3 or resampled.shape[:2] != (J, P) or resampled.shape[2] < 2:
        raise ValueError(f"resampled: expected shape ({J}, {P}, B) with B >= 2 resamples, found {resampled.shape}")
    if not (np.isfinite(estimates).all() and np.isfinite(resampled).all()):
        raise ValueError("estimates, resampled: expected finite values, found nan or inf")
    if centre is not None:
        centre = np.asarray(centre, dtype=float)
        if centre.shape != (P,) or not np.isfinite(centre).all():
            raise ValueError(f"centre: expected {P} finite values (one per policy), found shape {centre.shape}")
    M = mse_matrix(estimates, resampled, centre)  # (P, J, J)
    scale = np.trace(M, axis1=1, axis2=2) / J  # (P,)
    flat = scale <= 0  # no base varies: every α has zero estimated MSE; take equal weights
    M = np.where(flat[:, None, None], np.eye(J), M)
    M = M + (_RIDGE * np.where(flat, 1.0, scale))[:, None, None] * np.eye(J)
    if not convex:
        raw = np.linalg.solve(M, np.ones((P, J, 1)))[..., 0]  # (P, J)
        return (raw / raw.sum(axis=1, keepdims=True)).T
    from scipy.optimize import nnls  # imported here: scipy.optimize is slow to import

    L = np.linalg.cholesky(M)  # (P, J, J), lower
    target = np.linalg.solve(L, np.ones((P, J, 1)))[..., 0]  # L⁻¹1, (P, J)
    weights = np.empty((J, P))
    for p in range(P):  # one small NNLS per policy
        beta, _ = nnls(L[p].T, target[p])
        weights[:, p] = beta / beta.sum()
    return weights


@dataclass(frozen=True)
class OPERAFit:
    """OPERA's fit on one dataset: the bases' names (J), their estimates (J, P) and bootstrap MSE matrices
    (P, J, J), the weights α (J, P) and the blended estimate Σ_j α_j V̂_j (P,)."""

    policy_names: tuple[str, ...]
    base_names: tuple[str, ...]
    base_estimates: np.ndarray  # (J, P)
    mse: np.ndarray  # (P, J, J)
    weights: np.ndarray  # (J, P)
    estimate: np.ndarray  # (P,)


@register_estimator
@dataclass(frozen=True)
class OPERA(PointEstimator):
    """OPERA (Nie et al., NeurIPS 2024): V̂ = Σ_j α_j V̂_j, α = argmin_{Σα = 1 (, α ≥ 0)} α^T M̂ α with the
    bootstrap MSE matrix M̂_ij = mean_b (V̂_i^(b) − V̂_i)(V̂_j^(b) − V̂_j) (see the module docstring).

    ``base``: names or instances of the base estimators (at least two); ``n_bootstrap`` resamples drawn with
    ``seed`` (``bootstrap_counts``; all bases on the same ones, one bootstrap of the whole base set);
    ``convex``: α ≥ 0 as well (``False``: the paper's affine weights); ``reference``: the name of a base to
    centre M̂ at (see the module docstring), ``None`` for the paper's own-estimate centring.

    Per-trajectory values, interval values and resampling terms are the α-weighted blends of the bases', with
    α fitted once on the whole sample and then held fixed: a ``t`` interval or an outer bootstrap is the
    blend's for that α and leaves out the error of fitting α (as the bootstrap leaves out refitting Q̂).
    An estimate on a resample is therefore not OPERA refitted on that resample, so OPERA cannot pass the
    generic battery's check that the two agree (``resample_exact = False``); it is only named
    (``default_on = ()``) and runs wherever its bases do.
    """

    name = "opera"
    default_on = ()
    resample_exact = False
    option_names = ("base", "n_bootstrap", "seed", "convex", "reference")
    base: tuple[str | PointEstimator, ...] = DEFAULT_BASE
    n_bootstrap: int = 200
    seed: int = 0
    convex: bool = True
    reference: str | None = None

    def __post_init__(self) -> None:
        base = self.base
        if isinstance(base, (str, PointEstimator)) or not isinstance(base, Sequence):
            expected = "a list of at least 2 estimator names or instances for opera"
            raise ValueError(f"base: expected {expected}, found {base!r}")
        base = tuple(base)
        object.__setattr__(self, "base", base)
        if len(base) < 2:
            raise ValueError(f"base: expected at least 2 base estimators for opera, found {len(base)}: {list(base)!r}")
        estimators = [get_estimator(b) for b in base]  # unknown names fail here, by name
        if any(isinstance(e, OPERA) for e in estimators):
            raise ValueError("base: expected point estimators other than opera, found an opera among them")
        names = [e.name for e in estimators]
        if len(set(names)) != len(names):
            raise ValueError(f"base: expected distinct base estimators for opera, found {names}")
        if self.reference is not None and self.reference not in names:
            expected = f"the name of one of the bases {names} for opera"
            raise ValueError(f"reference: expected {expected}, found {self.reference!r}")
        B = self.n_bootstrap
        if isinstance(B, (bool, np.bool_)) or not isinstance(B, (int, np.integer)) or B < 2:
            raise ValueError(f"n_bootstrap: expected an integer of at least 2 resamples for opera, found {B!r}")
        if not isinstance(self.convex, (bool, np.bool_)):
            raise ValueError(f"convex: expected True or False for opera, found {self.convex!r}")
        super().__post_init__()

    def estimators(self) -> list[PointEstimator]:
        """The base estimators, in order."""
        return [get_estimator(b) for b in self.base]

    @property
    def requires(self) -> tuple[str, ...]:  # type: ignore[override]
        """The OPEInput fields any base needs."""
        return tuple(dict.fromkeys(r for e in self.estimators() for r in e.requires))

    def _require_bases(self, ctx: EstimationContext) -> list[PointEstimator]:
        bases = self.estimators()
        for e in bases:
            ctx.require(f"{self.name} (base {e.name})", *e.requires)
        return bases

    def fit(self, ctx: EstimationContext) -> OPERAFit:
        """The bases' estimates, one bootstrap of all of them, M̂ and α, for every policy."""
        from opelab.ope.intervals import bootstrap_estimates  # intervals imports the estimator contract

        bases = self._require_bases(ctx)
        estimates = np.stack([e.estimate(ctx) for e in bases])  # (J, P)
        resampled = np.stack(bootstrap_estimates(bases, ctx, self.n_bootstrap, self.seed))  # (J, P, B)
        names = [e.name for e in bases]
        centre = None if self.reference is None else estimates[names.index(self.reference)]
        weights = opera_weights(estimates, resampled, self.convex, centre)
        return OPERAFit(
            policy_names=ctx.inputs.policy_names,
            base_names=tuple(names),
            base_estimates=estimates,
            mse=mse_matrix(estimates, resampled, centre),
            weights=weights,
            estimate=(weights * estimates).sum(axis=0),
        )

    def weights(self, ctx: EstimationContext) -> np.ndarray:
        """α (J, P), fitted once per context."""
        return ctx.memo((self, "weights"), lambda: self.fit(ctx).weights)

    def estimate(self, ctx: EstimationContext) -> np.ndarray:
        bases = self._require_bases(ctx)
        alpha = self.weights(ctx)
        return sum(a * e.estimate(ctx) for a, e in zip(alpha, bases))  # type: ignore[return-value]

    def trajectory_values(self, ctx: EstimationContext) -> np.ndarray:
        """Σ_j α_j X_j (P, n), α fixed."""
        bases = self._require_bases(ctx)
        alpha = self.weights(ctx)
        return sum(a[:, None] * e.trajectory_values(ctx) for a, e in zip(alpha, bases))  # type: ignore[return-value]

    def interval_values(self, ctx: EstimationContext) -> np.ndarray:
        """Σ_j α_j (interval values of base j) (P, n), α fixed: linearised values for self-normalised bases."""
        bases = self._require_bases(ctx)
        alpha = self.weights(ctx)
        return sum(a[:, None] * e.interval_values(ctx) for a, e in zip(alpha, bases))  # type: ignore[return-value]

    def resampling_terms(self, ctx: EstimationContext) -> dict[Hashable, np.ndarray]:
        """The bases' terms (under their own keys, so a base that also runs is summed once) and α itself as a
        constant per-trajectory term (P, n, J): its resampled sum is α times the resample size, so
        ``estimates_from_sums`` reads α back from the sums and the frozen estimator keeps no state."""
        terms: dict[Hashable, np.ndarray] = {}
        for e in self._require_bases(ctx):
            terms.update(e.resampling_terms(ctx))
        alpha = self.weights(ctx)  # (J, P)
        n = ctx.dataset.n_trajectories
        terms[(self, "alpha")] = np.broadcast_to(alpha.T[:, None, :], (alpha.shape[1], n, alpha.shape[0]))
        return terms

    def estimates_from_sums(self, sums: dict[Hashable, np.ndarray], totals: np.ndarray) -> np.ndarray:
        alpha = sums[(self, "alpha")] / totals[None, :, None]  # (P, B, J)
        blend = [alpha[..., j] * e.estimates_from_sums(sums, totals) for j, e in enumerate(self.estimators())]
        return np.sum(blend, axis=0)


def opera(
    dataset: LoggedDataset,
    inputs: OPEInput,
    base: Sequence[str | PointEstimator] = DEFAULT_BASE,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    convex: bool = True,
    reference: str | None = None,
) -> OPERAFit:
    """OPERA on a dataset and its inputs: the weights per policy, the bases' estimates and MSE matrices, and
    the blended estimate (``OPERA.fit``)."""
    inputs.check_dataset(dataset)
    options = {"n_bootstrap": n_bootstrap, "seed": seed, "convex": convex, "reference": reference}
    estimator = OPERA(base=base, **options)  # type: ignore[arg-type]  (OPERA checks base and makes it a tuple)
    return estimator.fit(EstimationContext(dataset, inputs))
