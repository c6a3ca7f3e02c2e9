"""Neural marginal weights for continuous actions: the DICE family / MWL with the action as a network input.

The discrete learner (``opelab.ope.minimax``) gives ζ_t(s, ·) one network output per action. Here the action is
an input instead: ζ_t(s, a) = softplus(f([enc(s), time(t), a])) ≥ 0 (``enc``: standardised state plus an
absorbing flag; ``time``: one-hot t; a standardised), and the state weights w_t(s) follow by the flow identity.

Objective (finite-horizon, per-step form of ``opelab.ope.dice``; Uehara, Huang & Jiang, 2020, "Minimax weight
and Q-function learning for off-policy evaluation" (MWL); Nachum et al., 2019, "DualDICE"; Yang et al., 2020,
"Off-policy evaluation via the regularized Lagrangian"). With ν_H ≡ 0 and a test function ν_t(s, a) that also
takes the action as input, the Lagrangian's ν-terms are

    L(ζ, ν) = E_{s₀~d₀, a~π(s₀)}[ν_0(s₀, a)] + Σ_t E_{(s,a,s')~d_t^D}[ ζ_t(s, a) (ν_{t+1}(s', π) − ν_t(s, a)) ],
    ν_{t+1}(s', π) = E_{a'~π(s')}[ν_{t+1}(s', a')],

and L(ζ, ν) = 0 for every ν exactly when ζ_t = d_t^π / d_t^D (the flow equations
d_{t+1}^π(s', a') = ∫ d_t^π(s, a) P(s' | s, a) π(a' | s')). As in ``opelab.ope.minimax`` the adversary ν ranges
over a reproducing-kernel Hilbert space, so its best response is in closed form (Uehara et al., 2020): with
the kernel k((t,s,a), (t',s',a')) = 1{t = t'} k_SA((s,a), (s',a')), k_SA a Gaussian kernel on the standardised
pair (s, a) (width: ``MinimaxConfig.bandwidth`` or the median distance), approximated by D random Fourier
features ψ(s, a) (Rahimi & Recht, 2007) plus one feature of the absorbing state (after the end of a
trajectory; its action is ignored), L(ζ, ν) = ⟨ν, m_ζ⟩ with the (H, D + 1) residual

    m_ζ = E_{s₀}[ψ̄_π(s₀)] e_0 + E_D[Σ_t ζ_t(s_t, a_t) (ψ̄_π(s_{t+1}) e_{t+1} − ψ(s_t, a_t) e_t)],
    ψ̄_π(s) = (1/M) Σ_j ψ(s, ã_j),   ã_j ~ π(s) (``eval_actions``: M draws per logged state),

an unbiased estimate of E_{a~π(s)}[ψ(s, a)] (for a deterministic π, M = 1 and ã = μ(s); the weights of a
point-mass policy are not a density ratio, see *Limits*). The network then minimises, as the discrete one,

    h(‖m_ζ‖) − α_R E_D[Σ_t ζ_t r_t] + α_ζ/2 E_D[Σ_t ζ_t²],     h(x) = C x (MWL, α_Q = 0),

h the ν-player's value in the ball ‖ν‖ ≤ C with the regulariser α_Q ‖ν‖²/2 (``minimax._penalty``), and, for
the normalised settings, E_{d_t^D}[ζ_t] = 1 by dividing each step's outputs by their mean over the n
trajectories (absorbed ones included). ``ContinuousWeightsFit.residual`` is ‖m_ζ‖ / ‖m_0‖ at the end (m_0: the
residual of ζ ≡ 0). Every iteration is one full pass over the logged steps (the norm of a mean has no unbiased
minibatch gradient): cost ∝ ``n_steps`` × n·H × (network + P·D), memory ∝ P·n·H·D (float32), plus P·M passes of
the Fourier features before the loop. Measured on one core: n = 2,000, H = 4, P = 1, (32, 32), D = 128, 500 steps,
M = 16: 3.6 s CPU for ζ, 0.8 s for w; n·H = 20,000 steps, P = 10, the default (64, 64) and D = 256: ~0.15 s per
step (so ~4 min at the default 1,500 steps) and ~0.1 s per policy and draw for the features.

State weights (``fit_continuous_state_weights``), by the flow identity for trajectory data
(d_{t+1}^D(s') = ∫ d_t^D(s, a) P(s' | s, a) and likewise for π):

    w_{t+1}(s') = d_{t+1}^π(s') / d_{t+1}^D(s') = E_D[ζ_t(s_t, a_t) | s_{t+1} = s'],     w_0 ≡ 1,

a least-squares regression of the previous step's ζ on the state reached, as ``minimax.fit_state_weights``
does for discrete actions (the absorbing state after the end).

Limits. The weights are only as good as the kernel's and the network's resolution; a heavy-tailed exact
ratio (π_e much narrower than π_b, or states π_b rarely visits) is smoothed towards its mean. For a
deterministic π_e the marginal d_t^π(s, a) has no density, so ζ is not defined; ``build_continuous_inputs``
therefore draws ã = μ(s) + h ⊙ U, U ~ K (the kernel-smoothed policy whose density its evaluation pscores
are), so ζ targets the smoothed policy's ratios, consistently with the kernel estimators.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from opelab.data import LoggedDataset
from opelab.ope.dice import DiceSettings, dice_settings
from opelab.ope.minimax import (
    REGRESSION_BATCH,
    MinimaxConfig,
    StateEncoder,
    _forward,
    _network,
    _penalty,
    _recorded,
    _time_features,
    _torch,
    _trend,
)

FEATURE_CHUNK = 65_536  # rows of (s, a) pairs turned into Fourier features at a time


@dataclass(frozen=True, eq=False)
class PairFeatures:
    """Network inputs and kernel features of (t, s, a) for continuous actions; fitted once on the training data."""

    states: StateEncoder  # standardised states (or one-hot ids) plus the absorbing flag
    action_mean: np.ndarray  # (d,)
    action_scale: np.ndarray  # (d,)
    frequencies: np.ndarray  # (state_dim + d, D) random Fourier features of the standardised pair
    phases: np.ndarray  # (D,)
    horizon: int

    @classmethod
    def fit(cls, dataset: LoggedDataset, config: MinimaxConfig) -> PairFeatures:
        states = StateEncoder.fit_inputs(dataset)
        mask = dataset.mask
        obs = np.asarray(dataset.observations)
        acts = _flat_actions(dataset)
        a_logged = acts[mask]
        mean, scale = a_logged.mean(axis=0), a_logged.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        rng = np.random.default_rng(config.seed)
        m = int(mask.sum())
        rows = rng.choice(m, size=min(m, 500), replace=False)
        s_part = states.network_inputs(obs[mask][rows], np.ones(len(rows), dtype=bool))[:, :-1]
        z = np.concatenate([s_part, (a_logged[rows] - mean) / scale], axis=1).astype(np.float64)
        width = config.bandwidth
        if width is None:
            dist = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
            width = float(np.median(dist[dist > 0])) if (dist > 0).any() else 1.0
        freq = rng.normal(0.0, 1.0 / width, size=(z.shape[1], config.n_features))
        phases = rng.uniform(0, 2 * np.pi, config.n_features)
        return cls(states=states, action_mean=mean, action_scale=scale, frequencies=freq, phases=phases, horizon=dataset.horizon)

    @property
    def kernel_dim(self) -> int:
        return self.frequencies.shape[1] + 1

    @property
    def state_dim(self) -> int:
        return self.states.input_dim + _time_features(self.horizon).shape[1]  # state inputs (with the absorbing flag) and t

    def state_inputs(self, obs: np.ndarray, alive: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """[enc(s), time(t)] of m states, (m, state_dim) float32."""
        time = _time_features(self.horizon).astype(np.float32)
        return np.concatenate([self.states.network_inputs(obs, alive), time[steps]], axis=1)

    def pair_inputs(self, obs: np.ndarray, actions: np.ndarray, alive: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """[enc(s), time(t), a] of m pairs, (m, state_dim + d) float32 (the action is 0 in the absorbing state)."""
        z = np.where(alive[:, None], (actions - self.action_mean) / self.action_scale, 0.0).astype(np.float32)
        return np.concatenate([self.state_inputs(obs, alive, steps), z], axis=1)

    def kernel_features(self, obs: np.ndarray, actions: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """ψ(s, a) of m pairs, (m, D + 1) float64: Fourier features, 0 in the absorbing state, whose flag is last."""
        m, D = len(alive), self.frequencies.shape[1]
        out = np.zeros((m, D + 1))
        out[:, -1] = ~alive
        for lo in range(0, m, FEATURE_CHUNK):
            rows = slice(lo, lo + FEATURE_CHUNK)
            s_part = self.states.network_inputs(obs[rows], np.ones(len(obs[rows]), dtype=bool))[:, :-1].astype(np.float64)
            z = np.concatenate([s_part, (actions[rows] - self.action_mean) / self.action_scale], axis=1)
            out[rows, :D] = np.where(alive[rows, None], np.sqrt(2.0 / D) * np.cos(z @ self.frequencies + self.phases), 0.0)
        return out


@dataclass(frozen=True, eq=False)
class ContinuousWeightsFit:
    """A fitted learner; predicts on any dataset with the same spaces and horizon. ``losses``: the training curve."""

    kind: str  # "weights" (ζ_t(s, a)) or "state_weights" (w_t(s))
    settings: DiceSettings
    features: PairFeatures
    network: Any  # torch module with P outputs
    step_means: np.ndarray | None  # (P, H) normalisation constants of ζ (None: not normalised)
    losses: np.ndarray = field(repr=False)
    residual: float = float("nan")  # ‖m_ζ‖ / ‖m_0‖ (m_0: the residual of ζ ≡ 0), the largest over policies; NaN for w
    # convergence, as opelab.ope.minimax's fits record it, except that the change of the weights between the
    # last checkpoints is not measured here (NaN): converged = |trend| < tol_trend and residual < tol_residual
    change: float = float("nan")
    trend: float = float("nan")
    converged: bool = False
    seconds: float = float("nan")  # wall time of the fit

    @property
    def n_steps(self) -> int:
        return len(self.losses)

    @property
    def horizon(self) -> int:
        return self.features.horizon


def _flat_actions(dataset: LoggedDataset) -> np.ndarray:
    acts = np.asarray(dataset.actions, dtype=np.float64)
    n, H = dataset.mask.shape
    return acts.reshape(n, H, -1)


def _check(dataset: LoggedDataset, eval_actions: np.ndarray) -> np.ndarray:
    """``eval_actions`` as (P, n, H, M, d) float64, checked against the dataset."""
    if not isinstance(dataset, LoggedDataset):
        raise ValueError(f"dataset: expected a LoggedDataset, found {type(dataset).__name__}")
    space = dataset.action_space
    if space.is_discrete:
        raise ValueError(
            f"dataset.action_space: expected continuous actions, found discrete with n_actions={space.n_actions}; "
            "use opelab.ope.minimax.fit_weights for discrete actions"
        )
    if eval_actions is None:
        raise ValueError("eval_actions: expected π_e's actions at the logged states, shape (P, n, H, M, action_dim), found None")
    acts = np.asarray(eval_actions, dtype=np.float64)
    n, H, d = dataset.n_trajectories, dataset.horizon, space.action_dim
    if acts.ndim == 4:
        acts = acts[:, :, :, None]
    if acts.ndim != 5 or acts.shape[1:3] != (n, H) or acts.shape[4] != d or acts.shape[0] < 1 or acts.shape[3] < 1:
        expected = f"(P, {n}, {H}, M, {d}) or (P, {n}, {H}, {d})"
        raise ValueError(f"eval_actions: expected shape {expected}, found {np.shape(eval_actions)}")
    if not np.isfinite(acts[:, dataset.mask]).all():
        raise ValueError("eval_actions: expected finite actions on the logged steps, found non-finite values")
    return acts


def _policy_features(features: PairFeatures, dataset: LoggedDataset, acts: np.ndarray) -> np.ndarray:
    """ψ̄_π(s_t) = (1/M) Σ_j ψ(s_t, ã_j) on every step, (P, n, H, D + 1) float32 (summed in float64); the
    absorbing feature on padding."""
    mask = dataset.mask
    n, H = mask.shape
    P, M = acts.shape[0], acts.shape[3]
    obs = np.asarray(dataset.observations).reshape(n * H, *dataset.obs_shape)
    alive = mask.reshape(-1)
    out = np.empty((P, n * H, features.kernel_dim), dtype=np.float32)
    for p in range(P):
        total = np.zeros((n * H, features.kernel_dim))
        for j in range(M):
            total += features.kernel_features(obs, np.where(alive[:, None], acts[p, :, :, j].reshape(n * H, -1), 0.0), alive)
        out[p] = total / M
    return out.reshape(P, n, H, -1)


@_recorded
def fit_continuous_weights(
    dataset: LoggedDataset,
    eval_actions: np.ndarray,
    settings: str | DiceSettings = "mwl",
    config: MinimaxConfig | None = None,
) -> ContinuousWeightsFit:
    """Fit per-step state-action marginal weights ζ_t(s, a) of P policies on continuous actions (module
    docstring). ``eval_actions`` (P, n, H, M, d) holds M draws ã ~ π_e(s_t) at every logged state (or
    (P, n, H, d): one draw, e.g. a deterministic policy's μ(s_t)); padded steps are ignored.
    ``fit_continuous_state_weights`` turns the fit into state weights w_t(s)."""
    torch = _torch()
    cfg, s = config or MinimaxConfig(), dice_settings(settings)
    acts = _check(dataset, eval_actions)
    torch.manual_seed(cfg.seed)
    features = PairFeatures.fit(dataset, cfg)
    mask = dataset.mask
    n, H = mask.shape
    P = acts.shape[0]
    obs = np.asarray(dataset.observations).reshape(n * H, *dataset.obs_shape)
    logged = _flat_actions(dataset).reshape(n * H, -1)
    alive, steps = mask.reshape(-1), np.tile(np.arange(H), n)
    x = features.pair_inputs(obs, logged, alive, steps)  # (n H, in)
    k_cur = features.kernel_features(obs, logged, alive).reshape(n, H, -1)  # ψ(s_t, a_t)
    on_pi = _policy_features(features, dataset, acts)  # ψ̄_π(s_t)
    init = on_pi[:, :, 0].astype(np.float64).mean(axis=1)  # (P, D + 1): E_{s₀}[ψ̄_π(s₀)]; every trajectory has a step 0
    # ψ̄_π(s_{t+1}) reached from step t: the next logged state, the absorbing one after the end (whose own
    # features on_pi already holds on padding), nothing after the last step
    moved = np.concatenate([on_pi[:, :, 1:], np.zeros_like(on_pi[:, :, :1])], axis=2)
    del on_pi
    t = lambda a, dtype=torch.float64: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
    x_t = t(x, torch.float32)
    # The network and the sums over the data run in float32 (half the time and memory of the (P, n, H, D) array;
    # measured on the closed-form test: the same correlations to 1e-3), the norm and the loss in float64. The
    # layouts are step-major, so that both sums of m are batched matrix products over the trajectories.
    k_cur_t, init_t = t(k_cur.transpose(1, 0, 2), torch.float32), t(init)  # (H, n, D + 1)
    moved_t = t(moved.transpose(0, 2, 1, 3).reshape(P * H, n, -1), torch.float32)  # (P H, n, D + 1)
    del k_cur, moved
    rewards = t(np.where(mask, dataset.rewards, 0.0))
    net = _network(torch, x.shape[1], cfg.hidden, P, torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.n_steps)
    losses = np.empty(cfg.n_steps)

    def zeta_of(raw: Any) -> tuple[Any, Any]:
        z = raw.double().T.reshape(P, n, H)
        if s.positive:
            z = torch.nn.functional.softplus(z)
        if not s.normalize:
            return z, None
        means = z.mean(dim=1)  # E_{d_t^D}[ζ_t] over all n trajectories (absorbed ones included), (P, H)
        return z / means[:, None], means

    def residual_of(zeta: Any) -> Any:
        """m_ζ, (P, H, D + 1): the initial term at t = 0, the moved mass landing on t + 1, minus the current."""
        by_step = zeta.float().permute(2, 0, 1)  # (H, P, n)
        current = torch.bmm(by_step, k_cur_t).transpose(0, 1).double()  # (P, H, D + 1)
        nxt = torch.bmm(by_step.transpose(0, 1).reshape(P * H, 1, n), moved_t).reshape(P, H, -1).double()
        first = (init_t - current[:, 0] / n)[:, None]
        return torch.cat([first, (nxt[:, :-1] - current[:, 1:]) / n], dim=1)

    for it in range(cfg.n_steps):
        opt.zero_grad()
        zeta, _ = zeta_of(net(x_t))
        m = residual_of(zeta)
        norm = torch.sqrt((m**2).sum(dim=(1, 2)) + 1e-24)  # (P,)
        loss = _penalty(torch, norm, s.alpha_q, cfg.nu_radius)
        if s.alpha_r:
            loss = loss - s.alpha_r * (zeta * rewards).sum(dim=(1, 2)) / n
        if s.alpha_zeta:
            loss = loss + s.alpha_zeta * (zeta**2).sum(dim=(1, 2)) / (2 * n)
        total = loss.sum()
        total.backward()
        opt.step()
        sched.step()
        losses[it] = float(total.detach())
    with torch.no_grad():
        zeta, means = zeta_of(net(x_t))
        left = torch.sqrt((residual_of(zeta) ** 2).sum(dim=(1, 2))) / torch.sqrt((init_t**2).sum(dim=1))
    trend, residual = _trend(losses), float(left.max())
    return ContinuousWeightsFit(
        kind="weights",
        settings=s,
        features=features,
        network=net,
        step_means=None if means is None else means.numpy().copy(),
        losses=losses,
        residual=residual,
        trend=trend,
        converged=bool(abs(trend) < cfg.tol_trend and residual < cfg.tol_residual),
    )


def _check_fit(fit: Any, dataset: LoggedDataset) -> None:
    if not isinstance(fit, ContinuousWeightsFit):
        raise ValueError(f"fit: expected a ContinuousWeightsFit, found {type(fit).__name__}")
    if dataset.action_space.is_discrete:
        raise ValueError("dataset.action_space: expected continuous actions like the training data, found discrete")
    if dataset.horizon != fit.horizon:
        raise ValueError(f"dataset.horizon: expected {fit.horizon} like the training data, found {dataset.horizon}")


def predict_continuous_weights(fit: ContinuousWeightsFit, dataset: LoggedDataset) -> np.ndarray:
    """ζ_t(s_t, a_t) (a weights fit) or w_t(s_t) (a state-weights fit) on every step of ``dataset``, (P, n, H);
    padded steps hold the absorbing state's weight."""
    torch = _torch()
    _check_fit(fit, dataset)
    n, H = dataset.mask.shape
    obs = np.asarray(dataset.observations).reshape(n * H, *dataset.obs_shape)
    alive, steps = dataset.mask.reshape(-1), np.tile(np.arange(H), n)
    if fit.kind == "state_weights":
        raw = _forward(torch, fit.network, fit.features.state_inputs(obs, alive, steps))
        w = raw.reshape(n, H, -1).transpose(2, 0, 1)
        # w_0 ≡ 1 (both policies start from the same states); true weights are never negative
        return np.where(np.arange(H) == 0, 1.0, np.maximum(w, 0.0))
    x = fit.features.pair_inputs(obs, _flat_actions(dataset).reshape(n * H, -1), alive, steps)
    z = _forward(torch, fit.network, x).reshape(n, H, -1).transpose(2, 0, 1)
    if fit.settings.positive:
        z = np.logaddexp(0.0, z)  # softplus
    if fit.step_means is not None:
        z = z / fit.step_means[:, None, :]
    return np.maximum(z, 0.0)  # an unconstrained setting's negative outputs are projected to 0


@_recorded
def fit_continuous_state_weights(
    fit: ContinuousWeightsFit, dataset: LoggedDataset, config: MinimaxConfig | None = None
) -> ContinuousWeightsFit:
    """State weights w_t(s) from a fit of ζ_t(s, a), by the flow identity

        w_{t+1}(s') = d_{t+1}^π(s') / d_{t+1}^D(s') = E_D[ζ_t(s_t, a_t) | s_{t+1} = s'],   w_0 ≡ 1,

    a least-squares regression of the previous step's ζ on (t + 1, s_{t+1}) (the absorbing state after the
    end), in minibatches of ``REGRESSION_BATCH`` steps, as ``minimax.fit_state_weights``."""
    torch = _torch()
    if not isinstance(fit, ContinuousWeightsFit) or fit.kind != "weights":
        found = getattr(fit, "kind", type(fit).__name__)
        raise ValueError(f"fit: expected a ContinuousWeightsFit of kind 'weights', found {found!r}")
    cfg = config or MinimaxConfig()
    zeta = predict_continuous_weights(fit, dataset)  # (P, n, H)
    n, H = dataset.mask.shape
    P = zeta.shape[0]
    if H == 1:  # nothing to regress: w_0 ≡ 1
        targets, x = np.zeros((0, P)), np.zeros((0, fit.features.state_dim), dtype=np.float32)
    else:
        obs = np.asarray(dataset.observations)[:, 1:].reshape(n * (H - 1), *dataset.obs_shape)
        x = fit.features.state_inputs(obs, dataset.mask[:, 1:].reshape(-1), np.tile(np.arange(1, H), n))
        targets = zeta[:, :, :-1].reshape(P, -1).T  # (n (H − 1), P)
    torch.manual_seed(cfg.seed)
    net = _network(torch, fit.features.state_dim, cfg.hidden, P, torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.n_steps)
    x_t, y_t = torch.as_tensor(x), torch.as_tensor(targets, dtype=torch.float32)
    rng = np.random.default_rng(cfg.seed)
    G = len(x)
    losses = np.zeros(cfg.n_steps)
    for it in range(cfg.n_steps if G else 0):
        opt.zero_grad()
        batch = slice(None) if G <= REGRESSION_BATCH else torch.as_tensor(rng.choice(G, REGRESSION_BATCH, replace=False))
        loss = ((net(x_t[batch]) - y_t[batch]) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        losses[it] = float(loss.detach())
    trend = _trend(losses)
    return ContinuousWeightsFit(
        kind="state_weights", settings=fit.settings, features=fit.features, network=net, step_means=None, losses=losses,
        trend=trend, converged=bool(abs(trend) < cfg.tol_trend),
    )


def continuous_marginal_weights(
    dataset: LoggedDataset,
    eval_actions: np.ndarray,
    settings: str | DiceSettings = "mwl",
    config: MinimaxConfig | None = None,
    predict_on: LoggedDataset | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(w_t(s_t), ζ_t(s_t, a_t)) on ``predict_on`` (default: ``dataset``), each (P, n, H): the fit of both
    learners on ``dataset`` (what ``build_continuous_inputs(weights=...)`` stores as ``state_marginal_weights``
    and ``marginal_weights``)."""
    pair = fit_continuous_weights(dataset, eval_actions, settings, config)
    state = fit_continuous_state_weights(pair, dataset, config)
    target = dataset if predict_on is None else predict_on
    return predict_continuous_weights(state, target), predict_continuous_weights(pair, target)
