"""The DICE family of marginal-weight learners as one regularised Lagrangian, solved exactly on tables.

Yang et al. (2020, "Off-policy evaluation via the regularized Lagrangian") write DualDICE, GenDICE and
their own BestDICE as settings of one saddle-point problem. opelab uses its finite-horizon, per-step form
(weights per step t, as everywhere in ``opelab.ope.weights``; an absorbing state after the end of a
trajectory, so every d_t is a distribution):

    max_ζ min_{ν,λ}  L = E_{s₀~d₀, a~π₀}[ν_0(s₀, a)] + Σ_t λ_t
                        + Σ_t E_{(s,a,s')~d_t^D}[ ζ_t(s,a) (α_R r + ν_{t+1}(s', π_{t+1}) − ν_t(s,a) − λ_t) ]
                        + α_Q/2 Σ_t E_{d_t^D}[ν_t²]  −  α_ζ/2 Σ_t E_{d_t^D}[ζ_t²]

with ν_H ≡ 0, ν_{t+1}(s', π) = Σ_a' π_{t+1}(a' | s') ν_{t+1}(s', a'), λ ≡ 0 without normalisation and ζ ≥ 0
where the setting asks for it. Setting the derivative in ν to zero gives, for α_Q = 0, exactly the flow
equations d_t^D ζ_t = d_t^π, so ζ_t(s, a) = d_t^π(s, a) / d_t^D(s, a) whatever α_ζ, α_R and λ are; for
α_Q > 0 the outer maximisation drives the flow residual to zero instead. On a tabular class every setting
therefore returns the empirical flow weights of ``solve_flow_weights``, which the tests check to 1e-8;
the settings differ on restricted classes (the neural solver in ``opelab.ope.minimax``) and in how they
behave while learning.

Settings (Yang et al., 2020, Table 1; "norm" = the λ_t normalisation E_{d_t^D}[ζ_t] = 1):

    DualDICE (Nachum et al., 2019)   α_Q = 0, α_ζ = 1, α_R = 0, no norm,  ζ free
    GenDICE  (Zhang et al., 2020)    α_Q = 1, α_ζ = 0, α_R = 0, norm,     ζ ≥ 0
    BestDICE (Yang et al., 2020)     α_Q = 0, α_ζ = 1, α_R = 1, norm,     ζ ≥ 0
    MWL      (Uehara et al., 2020)   α_Q = 0, α_ζ = 0, α_R = 0, norm,     ζ ≥ 0   (ν in a norm ball)

The exact solver writes the stationarity conditions (KKT system) of L over the pairs the data supports and
solves them with dense least squares, O((H·S·A)³): meant for small tasks and for checking the derivation.
The constraint ζ ≥ 0 is inactive at its solution (flow weights are ratios of probabilities).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opelab.data import LoggedDataset
from opelab.ope.weights import FlowWeights, on_logged_steps, transition_counts


@dataclass(frozen=True)
class DiceSettings:
    """One member of the DICE family (see the module docstring)."""

    name: str
    alpha_q: float = 0.0  # α_Q: weight of the ν regulariser E[ν²]/2
    alpha_zeta: float = 1.0  # α_ζ: weight of the ζ regulariser E[ζ²]/2
    alpha_r: float = 0.0  # α_R: weight of the reward term E[ζ r] (BestDICE's primal value)
    normalize: bool = False  # λ_t enforces E_{d_t^D}[ζ_t] = 1
    positive: bool = False  # ζ ≥ 0

    def __post_init__(self) -> None:
        for field in ("alpha_q", "alpha_zeta", "alpha_r"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{field}: expected a finite number >= 0, found {value!r}")


DUALDICE = DiceSettings("dualdice", alpha_q=0.0, alpha_zeta=1.0, alpha_r=0.0, normalize=False, positive=False)
GENDICE = DiceSettings("gendice", alpha_q=1.0, alpha_zeta=0.0, alpha_r=0.0, normalize=True, positive=True)
BESTDICE = DiceSettings("bestdice", alpha_q=0.0, alpha_zeta=1.0, alpha_r=1.0, normalize=True, positive=True)
MWL = DiceSettings("mwl", alpha_q=0.0, alpha_zeta=0.0, alpha_r=0.0, normalize=True, positive=True)
DICE_SETTINGS = {s.name: s for s in (DUALDICE, GENDICE, BESTDICE, MWL)}


def dice_settings(name: str | DiceSettings) -> DiceSettings:
    """A preset by name ('dualdice', 'gendice', 'bestdice', 'mwl') or the given settings unchanged."""
    if isinstance(name, DiceSettings):
        return name
    if name not in DICE_SETTINGS:
        raise ValueError(f"weight method: expected one of {sorted(DICE_SETTINGS)} or a DiceSettings, found {name!r}")
    return DICE_SETTINGS[name]


def solve_dice_tabular(
    counts: np.ndarray,
    policy_probs: np.ndarray,
    settings: str | DiceSettings = "dualdice",
    mean_rewards: np.ndarray | None = None,
) -> FlowWeights:
    """Solve the per-step DICE Lagrangian exactly on a table; returns the same container as the flow solver.

    ``counts`` (H, S+1, A, S+1) transition counts as from ``transition_counts`` (state S absorbing);
    ``policy_probs`` (P, H, S+1, A) π_t(a | s); ``mean_rewards`` (H, S+1, A) the mean logged reward of each
    pair, needed only when α_R > 0. Pairs without data get weight 0 (they are outside the function class).
    """
    s = dice_settings(settings)
    counts = np.asarray(counts, dtype=np.float64)
    H, S1, A, _ = counts.shape
    pi = np.array(policy_probs, dtype=np.float64)
    if pi.ndim != 4 or pi.shape[1:] != (H, S1, A):
        raise ValueError(f"policy_probs: expected shape (P, {H}, {S1}, {A}), found {pi.shape}")
    if s.alpha_r > 0:
        if mean_rewards is None:
            raise ValueError(f"mean_rewards: needed when alpha_r > 0 ({s.name}), found None")
        rewards = np.asarray(mean_rewards, dtype=np.float64)
        if rewards.shape != (H, S1, A):
            raise ValueError(f"mean_rewards: expected shape ({H}, {S1}, {A}), found {rewards.shape}")
    else:
        rewards = np.zeros((H, S1, A))
    pi[:, :, -1, :] = 0.0
    pi[:, :, -1, 0] = 1.0  # the absorbing state's only action

    pair = counts.sum(axis=-1)  # N_t(s, a)
    n = pair[0].sum()
    d = (pair / n).ravel()  # d_t^D(s, a), flattened over (t, s, a)
    support = np.flatnonzero(d > 0)
    m = len(support)
    with np.errstate(invalid="ignore", divide="ignore"):
        model = np.where(pair[..., None] > 0, counts / pair[..., None], 0.0)  # P̂_t(s' | s, a)
    d0 = pair[0].sum(axis=-1) / n  # empirical initial state distribution (absorbing mass 0 at t = 0)
    step_of = np.repeat(np.arange(H), S1 * A)[support]
    size = H * S1 * A

    w_pair = np.zeros((pi.shape[0], H, S1, A))
    for p in range(pi.shape[0]):
        # B[z, z'] = P̂_t(s' | z) π_{t+1}(a' | s') for z at step t and z' = (t+1, s', a'): (Bν)(z) = ν_{t+1}(s', π).
        B = np.zeros((H, S1, A, H, S1, A))
        for t in range(H - 1):
            B[t, :, :, t + 1] = np.einsum("sax,xb->saxb", model[t], pi[p, t + 1])
        B = B.reshape(size, size)[np.ix_(support, support)]
        K = B - np.eye(m)  # (B − I): ν ↦ ν_{t+1}(s', π) − ν_t(s, a)
        b0 = np.zeros((H, S1, A))
        b0[0] = d0[:, None] * pi[p, 0]
        b0 = b0.ravel()[support]
        D = d[support]
        E = (step_of[:, None] == np.arange(H)[None, :]).astype(np.float64)  # (m, H) step indicator
        n_lam = H if s.normalize else 0
        # Unknowns [ζ (m), ν (m), λ (H or 0)]; rows: ∂L/∂ζ (divided by d > 0), ∂L/∂ν, ∂L/∂λ.
        kkt = np.zeros((2 * m + n_lam, 2 * m + n_lam))
        rhs = np.zeros(2 * m + n_lam)
        kkt[:m, :m] = -s.alpha_zeta * np.eye(m)
        kkt[:m, m : 2 * m] = K
        rhs[:m] = -s.alpha_r * rewards.ravel()[support]
        kkt[m : 2 * m, :m] = K.T * D[None, :]
        kkt[m : 2 * m, m : 2 * m] = s.alpha_q * np.diag(D)
        rhs[m : 2 * m] = -b0
        if n_lam:
            kkt[:m, 2 * m :] = -E
            kkt[2 * m :, :m] = (E * D[:, None]).T
            rhs[2 * m :] = 1.0
        solution = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
        flat = np.zeros(size)
        flat[support] = solution[:m]
        w_pair[p] = flat.reshape(H, S1, A)
    # d_t^π(s): the initial distribution, then the mass that flows out of the weighted pairs of step t − 1.
    d_pi_state = np.empty((pi.shape[0], H, S1))
    d_pi_state[:, 0] = d0
    d_pi_state[:, 1:] = np.einsum("ptsa,tsax->ptx", w_pair[:, :-1] * (pair[:-1] / n), model[:-1])
    d_state = pair.sum(axis=-1) / n  # d_t^D(s)
    w_state = np.divide(d_pi_state, d_state, out=np.zeros_like(d_pi_state), where=d_state > 0)
    return FlowWeights(state=w_state, state_action=w_pair)


def tabular_dice_weights(
    dataset: LoggedDataset, policy_probs: np.ndarray, settings: str | DiceSettings = "dualdice"
) -> tuple[np.ndarray, np.ndarray]:
    """State and state-action weights on every logged step (two arrays (P, n, H)) from the exact solution
    of a DICE setting on the data's own counts and mean rewards; ``policy_probs`` (P, H, S, A) as for
    ``tabular_marginal_weights``."""
    counts = transition_counts(dataset)
    H, S1, A, _ = counts.shape
    probs = np.asarray(policy_probs, dtype=np.float64)
    if probs.ndim != 4 or probs.shape[1:] != (H, S1 - 1, A):
        raise ValueError(f"policy_probs: expected shape (P, {H}, {S1 - 1}, {A}), found {probs.shape}")
    states, actions, mask = np.asarray(dataset.observations), np.asarray(dataset.actions), dataset.mask
    cell = (np.arange(H)[None, :] * S1 + np.where(mask, states, S1 - 1)) * A + np.where(mask, actions, 0)
    sums = np.bincount(cell.ravel(), weights=np.where(mask, dataset.rewards, 0.0).ravel(), minlength=H * S1 * A)
    pair = counts.sum(axis=-1).ravel()
    mean_rewards = np.divide(sums, pair, out=np.zeros_like(sums), where=pair > 0).reshape(H, S1, A)
    padded = np.concatenate([probs, np.zeros((probs.shape[0], H, 1, A))], axis=2)
    return on_logged_steps(dataset, solve_dice_tabular(counts, padded, settings, mean_rewards))
