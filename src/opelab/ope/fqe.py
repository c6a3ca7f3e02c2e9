"""Neural fitted Q evaluation (FQE; Le et al., 2019) for all P candidate policies in one network.

Finite-horizon FQE regresses Q_t(s_t, a_t) on the Bellman target r_t + γ V_{t+1}(s_{t+1}) with
V_{t+1}(s) = E_{a~π_{t+1}(·|s)} Q_{t+1}(s, a), V_H ≡ 0 and V ≡ 0 in the absorbing state after the end of
a trajectory (as everywhere in ``opelab.ope``). Each outer iteration freezes the current network as the
target and takes ``n_steps`` Adam steps on the squared error; after H iterations the time-indexed
recursion has reached the first step, so ``n_iterations`` defaults to H.

Bellman targets are clipped to the range of values the logged rewards allow (``clip_targets``), which
keeps bootstrapping on actions the data never took from running away (extrapolation error).

The network sees one-hot t (or t/H for long horizons, ``time_encoding="scalar"``) and the state (one-hot
ids for integer states, standardised vectors otherwise), and has one output per policy and action for
discrete actions — Q_p(t, s, ·) for every p at once — or, for continuous actions, the action as an input
and one output per policy. Squared errors over logged steps equal count-weighted errors against the mean
target over distinct inputs, so repeated inputs (tabular data) are evaluated once.

Continuous actions: V_{t+1}(s) = Q_{t+1}(s, π_e(s)) with the action ``eval_actions`` gives for every
logged step (a deterministic evaluation policy, or a sampled or mean action of a stochastic one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from opelab.data import LoggedDataset
from opelab.ope.minimax import MinimaxConfig, StateEncoder, _network, _torch, _unique_rows


@dataclass(frozen=True)
class FQEConfig:
    """Network and budget of neural FQE. ``n_iterations=None`` means H (the horizon)."""

    hidden: tuple[int, ...] = (64, 64)
    n_iterations: int | None = None
    n_steps: int = 100  # Adam steps per iteration
    learning_rate: float = 3e-3
    batch_size: int | None = 512  # distinct inputs per Adam step (None: all)
    time_encoding: str = "onehot"  # or "scalar" (t / H) for long horizons
    clip_targets: bool = True  # clip Bellman targets to the value range the logged rewards allow
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected positive layer widths, found {self.hidden!r}")
        for name in ("n_iterations", "n_steps", "batch_size"):
            value = getattr(self, name)
            if name != "n_steps" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, found {value!r}")
        if not isinstance(self.learning_rate, (int, float)) or not np.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(f"learning_rate: expected a finite number > 0, found {self.learning_rate!r}")
        if self.time_encoding not in ("onehot", "scalar"):
            raise ValueError(f"time_encoding: expected 'onehot' or 'scalar', found {self.time_encoding!r}")


@dataclass(frozen=True, eq=False)
class FQEFit:
    """A fitted FQE network for P policies; ``predict_fqe`` evaluates it on any dataset with the same spaces."""

    encoder: StateEncoder
    network: Any
    horizon: int
    n_policies: int
    n_actions: int | None  # None for continuous actions
    action_dim: int | None
    config: FQEConfig
    losses: np.ndarray = field(repr=False)  # last loss of each iteration


def _value_bounds(dataset: LoggedDataset, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[lo_t, hi_t] = Σ_{k < H − t} γ^k [min(r_min, 0), max(r_max, 0)] at each step t, from the logged
    reward range (0 included: a trajectory may end): the range of every policy's Q_t when rewards stay
    within the logged range."""
    rewards = dataset.rewards[dataset.mask]
    lo, hi = min(float(rewards.min()), 0.0), max(float(rewards.max()), 0.0)
    H, g = dataset.horizon, dataset.gamma
    remaining = np.array([np.sum(g ** np.arange(H - t)) for t in range(H)])
    return lo * remaining[step], hi * remaining[step]


def _state_time(encoder: StateEncoder, dataset: LoggedDataset, horizon: int, time_encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (t, s_t) and (t+1, s_{t+1}) for every step, each (n, H, width)."""
    mask = dataset.mask
    n, H = mask.shape
    if H != horizon:
        raise ValueError(f"dataset.horizon: expected {horizon} like the training data, found {H}")
    x_state, _ = encoder.encode(dataset.observations, mask)
    if time_encoding == "onehot":
        steps = np.eye(H + 1)
    else:
        steps = (np.arange(H + 1) / H)[:, None]
    cur = np.concatenate([x_state, np.broadcast_to(steps[:H], (n, H, steps.shape[1]))], axis=-1)
    nxt_state = np.concatenate([x_state[:, 1:], np.zeros_like(x_state[:, :1])], axis=1)
    nxt = np.concatenate([nxt_state, np.broadcast_to(steps[1:], (n, H, steps.shape[1]))], axis=-1)
    return cur, nxt


def fit_fqe(
    dataset: LoggedDataset,
    eval_action_probs: np.ndarray | None = None,
    *,
    eval_actions: np.ndarray | None = None,
    config: FQEConfig | None = None,
    n_states: int | None = None,
) -> FQEFit:
    """Fit Q_t for P policies. Discrete actions: ``eval_action_probs`` (P, n, H, A), π_t(· | s_t) on the
    logged steps. Continuous actions: ``eval_actions`` (P, n, H, d), π_e's action at s_t on every step."""
    torch = _torch()
    cfg = config or FQEConfig()
    mask = dataset.mask
    n, H = mask.shape
    discrete = dataset.action_space.is_discrete
    if discrete:
        if eval_action_probs is None:
            raise ValueError("eval_action_probs: needed for discrete actions, found None")
        probs = np.asarray(eval_action_probs, dtype=np.float64)
        A = dataset.action_space.n_actions
        if probs.ndim != 4 or probs.shape[1:] != (n, H, A):
            raise ValueError(f"eval_action_probs: expected shape (P, {n}, {H}, {A}), found {probs.shape}")
        P, d = probs.shape[0], None
    else:
        if eval_actions is None:
            raise ValueError("eval_actions: needed for continuous actions, found None")
        acts = np.asarray(eval_actions, dtype=np.float64)
        d = int(np.prod(np.asarray(dataset.actions).shape[2:])) if np.asarray(dataset.actions).ndim > 2 else 1
        if acts.ndim != 4 or acts.shape[1:] != (n, H, d):
            raise ValueError(f"eval_actions: expected shape (P, {n}, {H}, {d}), found {acts.shape}")
        P, A = acts.shape[0], None
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    encoder = StateEncoder.fit(dataset, MinimaxConfig(seed=cfg.seed), n_states)
    cur, nxt = _state_time(encoder, dataset, H, cfg.time_encoding)
    live_next = np.concatenate([mask[:, 1:], np.zeros((n, 1), dtype=bool)], axis=1)
    rewards = np.where(mask, dataset.rewards, 0.0)
    steps = np.flatnonzero(mask.reshape(-1))  # only live steps are regressed (absorbed ones are worth 0)
    t = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)  # noqa: E731

    if discrete:
        x_cur = cur.reshape(n * H, -1)[steps]
        x_nxt = nxt.reshape(n * H, -1)[steps]
        group_x, group = _unique_rows(np.concatenate([x_cur, np.asarray(dataset.actions).reshape(-1, 1)[steps]], axis=1))
        group_inputs, group_actions = group_x[:, :-1], group_x[:, -1].astype(np.int64)
        nxt_unique, nxt_rows = _unique_rows(x_nxt)
        pi_next = np.concatenate([probs[:, :, 1:], np.zeros_like(probs[:, :, :1])], axis=2).reshape(P, n * H, A)[:, steps]
        pi_next = pi_next * live_next.reshape(-1)[steps][None, :, None]
        net = _network(torch, group_inputs.shape[1], cfg.hidden, P * A, torch.float32)
    else:
        a_flat = np.asarray(dataset.actions, dtype=np.float64).reshape(n * H, d)[steps]
        x_cur = np.concatenate([cur.reshape(n * H, -1)[steps], a_flat], axis=1)
        group_inputs, group = _unique_rows(x_cur)
        group_actions = None
        # next inputs: (t+1, s_{t+1}, π_p(s_{t+1})) for each policy p
        nxt_acts = np.concatenate([acts[:, :, 1:], np.zeros_like(acts[:, :, :1])], axis=2).reshape(P, n * H, d)[:, steps]
        x_nxt = nxt.reshape(n * H, -1)[steps]
        nxt_all = np.concatenate([np.broadcast_to(x_nxt, (P, *x_nxt.shape)), nxt_acts], axis=-1).reshape(P * len(steps), -1)
        nxt_unique, nxt_rows = _unique_rows(nxt_all)
        net = _network(torch, group_inputs.shape[1], cfg.hidden, P, torch.float32)
    G = len(group_inputs)
    occurrences = sparse.csr_matrix((np.ones(len(steps)), (group, np.arange(len(steps)))), shape=(G, len(steps)))
    counts = np.asarray(occurrences.sum(axis=1)).ravel()
    weight = t(counts / counts.sum())
    x_group, x_next = t(group_inputs), t(nxt_unique)
    live = live_next.reshape(-1)[steps].astype(np.float64)
    r = rewards.reshape(-1)[steps]
    iterations = cfg.n_iterations or H
    losses = np.empty(iterations)
    bounds = _value_bounds(dataset, steps % H)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    for it in range(iterations):
        with torch.no_grad():
            out = net(x_next).numpy().astype(np.float64)
        if discrete:
            q_next = out.reshape(-1, P, A)[nxt_rows].transpose(1, 0, 2)  # (P, steps, A)
            v_next = (pi_next * q_next).sum(-1)
        else:
            q_next = out[nxt_rows].reshape(P, len(steps), P)
            v_next = np.einsum("pjp->pj", q_next) * live[None]
        target = r[None] + dataset.gamma * v_next  # (P, steps)
        if cfg.clip_targets:  # no policy's value leaves [lo_t, hi_t]: bootstrapping cannot run away
            target = np.clip(target, bounds[0], bounds[1])
        mean_target = t((occurrences @ target.T) / counts[:, None])  # (G, P)
        full = cfg.batch_size is None or cfg.batch_size >= G
        for _ in range(cfg.n_steps):
            batch = slice(None) if full else torch.as_tensor(rng.choice(G, cfg.batch_size, replace=False))
            opt.zero_grad()
            pred = net(x_group[batch])
            if discrete:
                idx = torch.as_tensor(group_actions)[batch]
                pred = pred.reshape(-1, P, A).gather(2, idx[:, None, None].expand(-1, P, 1))[..., 0]
            loss = (weight[batch][:, None] * (pred - mean_target[batch]) ** 2).sum()
            if not full:
                loss = loss * (G / cfg.batch_size)
            loss.backward()
            opt.step()
        losses[it] = float(loss.detach())
    return FQEFit(encoder=encoder, network=net, horizon=H, n_policies=P, n_actions=A, action_dim=d, config=cfg, losses=losses)


def predict_fqe(fit: FQEFit, dataset: LoggedDataset, eval_actions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Q̂ on every step of ``dataset``: discrete → (Q(s_t, ·) (P, n, H, A), Q(s_t, a_t) (P, n, H));
    continuous → (Q(s_t, π_e(s_t)) (P, n, H), Q(s_t, a_t) (P, n, H)) with ``eval_actions`` (P, n, H, d).
    Padded steps are 0."""
    torch = _torch()
    n, H = dataset.mask.shape
    cur, _ = _state_time(fit.encoder, dataset, fit.horizon, fit.config.time_encoding)
    x = cur.reshape(n * H, -1)
    P = fit.n_policies
    mask = dataset.mask
    with torch.no_grad():
        if fit.n_actions is not None:
            A = fit.n_actions
            q_all = fit.network(torch.as_tensor(x, dtype=torch.float32)).numpy().astype(np.float64).reshape(n, H, P, A).transpose(2, 0, 1, 3)
            q_all = np.where(mask[None, ..., None], q_all, 0.0)
            logged = np.take_along_axis(q_all, np.broadcast_to(np.asarray(dataset.actions)[None, ..., None], (P, n, H, 1)), -1)[..., 0]
            return q_all, logged
        if eval_actions is None:
            raise ValueError("eval_actions: needed for continuous actions, found None")
        d = fit.action_dim
        acts = np.asarray(eval_actions, dtype=np.float64)
        if acts.shape != (P, n, H, d):
            raise ValueError(f"eval_actions: expected shape ({P}, {n}, {H}, {d}), found {acts.shape}")
        logged_in = np.concatenate([x, np.asarray(dataset.actions, dtype=np.float64).reshape(n * H, d)], axis=1)
        logged = fit.network(torch.as_tensor(logged_in, dtype=torch.float32)).numpy().astype(np.float64).reshape(n, H, P).transpose(2, 0, 1)
        on_policy = np.stack(
            [
                fit.network(torch.as_tensor(np.concatenate([x, acts[p].reshape(n * H, d)], axis=1), dtype=torch.float32)).numpy()[:, p].reshape(n, H)
                for p in range(P)
            ]
        )
    return np.where(mask, on_policy, 0.0), np.where(mask, logged, 0.0)


def fqe_q_function(fit: FQEFit, policy: int) -> Any:
    """Q̂ of policy number ``policy`` as a callable ``q(observations, actions, steps) -> (m,)`` (the form
    ``build_continuous_inputs`` takes; discrete actions are integer indices)."""
    torch = _torch()
    if not 0 <= policy < fit.n_policies:
        raise ValueError(f"policy: expected an index in [0, {fit.n_policies}), found {policy}")
    H = fit.horizon

    def q(observations: np.ndarray, actions: np.ndarray, steps: np.ndarray) -> np.ndarray:
        obs = np.asarray(observations)
        m = len(obs)
        state, _ = fit.encoder.encode(obs.reshape(m, 1, *obs.shape[1:]), np.ones((m, 1), dtype=bool))
        steps_arr = np.asarray(steps, dtype=np.int64).reshape(m)
        time = np.eye(H + 1)[steps_arr] if fit.config.time_encoding == "onehot" else (steps_arr / H)[:, None]
        x = np.concatenate([state[:, 0], time], axis=1)
        with torch.no_grad():
            if fit.n_actions is not None:
                out = fit.network(torch.as_tensor(x, dtype=torch.float32)).numpy().reshape(m, fit.n_policies, fit.n_actions)[:, policy]
                return out[np.arange(m), np.asarray(actions, dtype=np.int64).reshape(m)].astype(np.float64)
            acts = np.asarray(actions, dtype=np.float64).reshape(m, fit.action_dim)
            return fit.network(torch.as_tensor(np.concatenate([x, acts], axis=1), dtype=torch.float32)).numpy()[:, policy].astype(np.float64)

    return q
