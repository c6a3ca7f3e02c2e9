"""Neural fitted Q evaluation (FQE; Le et al., 2019) for all P candidate policies in one network.

Finite-horizon FQE regresses Q_t(s_t, a_t) on the Bellman target r_t + γ V_{t+1}(s_{t+1}) with
V_{t+1}(s) = E_{a~π_{t+1}(·|s)} Q_{t+1}(s, a), V_H ≡ 0 and V ≡ 0 in the absorbing state after the end of
a trajectory (as everywhere in ``opelab.ope``). Each outer iteration freezes a copy of the network as the
target network and takes ``n_steps`` Adam steps on the squared error over minibatches of ``batch_size``
logged steps drawn uniformly (with replacement; every step when there are no more than ``batch_size``);
the targets of a minibatch come from the frozen copy, evaluated on that minibatch only. After H
iterations the time-indexed recursion has reached the first step, so ``n_iterations`` defaults to H.
A fit costs n_iterations × n_steps × batch_size rows through the network whatever the number N of
logged steps, and holds only the logged arrays and one minibatch: network inputs are built for the
sampled rows, never for the whole dataset. Repeated inputs (tabular data) are not deduplicated: uniform
sampling of logged steps already weights each input by its count, which is all the old count-weighting did.

Bellman targets are clipped to the range of values the logged rewards allow (``clip_targets``), which
keeps bootstrapping on actions the data never took from running away (extrapolation error).

The network sees the state (one-hot ids for integer states, standardised vectors otherwise;
``StateEncoder.fit_inputs``, no kernel features) and one-hot t (or t/H for long horizons,
``time_encoding="scalar"``), and has one output per policy and action for discrete actions —
Q_p(t, s, ·) for every p at once — or, for continuous actions, the action as an input and one output per
policy. Predictions on logged steps run ``PREDICT_CHUNK`` rows at a time into the output arrays.

Continuous actions: V_{t+1}(s) = Q_{t+1}(s, π_e(s)) with the action ``eval_actions`` gives for every
logged step (a deterministic evaluation policy, or a sampled or mean action of a stochastic one).

Convergence (``FQEFit.changes``, ``.residual``, ``.converged``), measured beside the fit without touching
its draws (the probe and held-out steps come from generators of their own, ``SeedSequence(seed,
spawn_key=(1,))`` and ``(2,)``; the network's outputs are unchanged while ``holdout`` is 0):

- ``changes[k]`` = RMS_probe(Q_k − Q_{k−1}) / scale_k after iteration k (Q_0 the untrained network), on a
  probe of up to ``probe_size`` logged steps drawn once: the network's outputs there (every policy and
  action for discrete actions, every policy at the logged action for continuous ones), with scale_k =
  max(RMS_probe(Q_k), 10⁻³ (hi_0 − lo_0)), hi_0 − lo_0 the width of the value range (``_value_bounds``).
  FQE reaches its fixed point after H iterations (one step of the recursion each), so the change of
  iteration H still holds the last reward term: only with ``n_iterations`` > H does the last change measure
  what is left of the optimisation alone.
- ``residual`` = Σ_p mean_j (Q_p(s_j, a_j) − y_pj)² / Σ_p Var_j(y_pj), the mean squared Bellman error of the
  final iterate relative to the variance of its targets y = r + γ V_{t+1}(s') (computed from the final
  iterate itself, clipped as in training), on up to ``residual_steps`` steps: held-out steps — a share
  ``holdout`` of the logged steps drawn once and never trained on — or, with ``holdout`` = 0 (the default,
  so that existing fits stay bit-identical), the training steps themselves (``residual_heldout`` False:
  an in-sample residual, optimistic where the network overfits). Stochastic transitions and rewards put a
  floor under it (the targets' own noise given (s, a)).
- ``converged`` = ``changes[-1] < tol_change`` (default 10⁻²) and ``residual < tol_residual`` (default 1:
  the final iterate predicts its own targets better than their mean). The residual's default is loose
  because of that noise floor (0.63–0.69 on a six-state task with random transitions and reward noise 0.2,
  where FQE is exact; about 4–5 after one iteration of a few steps): the change is the convergence test,
  the residual catches fits that explain nothing.

Learning rate: ``lr_schedule="constant"`` (the default) trains every iteration at ``learning_rate``; the
change between iterates then settles at the noise of constant-rate Adam on minibatches (2–7% of the value
scale on CartPole whatever the budget, benchmarks/results/nuisance_convergence.md), above ``tol_change``.
``"cosine"`` restarts each iteration at ``learning_rate`` and anneals it to ``lr_floor`` × it by the
iteration's last step (SGDR-style warm restarts; Loshchilov & Hutter, ICLR 2017), so each iterate ends
near its regression's minimum instead of wherever the last noisy step left it.

Threads: these networks are small, and torch's default of one thread per core is slower on them (and
collapses on a busy machine), so fit and prediction run with ``FQEConfig.torch_threads`` intra-op threads
(1 by default; None leaves torch's setting alone) and restore the caller's setting afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from opelab.data import LoggedDataset
from opelab.ope.minimax import StateEncoder, _network, _recorded, _torch

PREDICT_CHUNK = 65_536  # logged steps per forward pass in predict_fqe / fqe_q_function


@dataclass(frozen=True)
class FQEConfig:
    """Network and budget of neural FQE. ``n_iterations=None`` means H (the horizon)."""

    hidden: tuple[int, ...] = (64, 64)
    n_iterations: int | None = None
    n_steps: int = 100  # Adam steps per iteration
    learning_rate: float = 3e-3
    batch_size: int | None = 2048  # logged steps per Adam step (None: all); small data fits in one batch
    time_encoding: str = "onehot"  # or "scalar" (t / H) for long horizons
    clip_targets: bool = True  # clip Bellman targets to the value range the logged rewards allow
    seed: int = 0
    torch_threads: int | None = 1  # intra-op threads during fit / predict (None: leave torch's setting)
    holdout: float = 0.0  # share of logged steps held out of training for the Bellman residual (0: in-sample)
    probe_size: int = 2048  # logged steps on which the change between iterates is measured
    residual_steps: int = 65_536  # at most this many (held-out) steps for the Bellman residual
    tol_change: float = 1e-2  # converged: the last iteration's relative change below this ...
    tol_residual: float = 1.0  # ... and the relative Bellman residual below this (1: no better than a constant)
    lr_schedule: str = "constant"  # or "cosine": within each iteration, learning_rate annealed to lr_floor × it
    lr_floor: float = 0.01

    def __post_init__(self) -> None:
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected positive layer widths, found {self.hidden!r}")
        for name in ("n_iterations", "n_steps", "batch_size", "torch_threads", "probe_size", "residual_steps"):
            value = getattr(self, name)
            if name != "n_steps" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, found {value!r}")
        if not isinstance(self.learning_rate, (int, float)) or not np.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(f"learning_rate: expected a finite number > 0, found {self.learning_rate!r}")
        if isinstance(self.holdout, bool) or not isinstance(self.holdout, (int, float)) or not 0 <= self.holdout < 1:
            raise ValueError(f"holdout: expected a share in [0, 1), found {self.holdout!r}")
        for name in ("tol_change", "tol_residual"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: expected a finite number > 0, found {value!r}")
        if self.time_encoding not in ("onehot", "scalar"):
            raise ValueError(f"time_encoding: expected 'onehot' or 'scalar', found {self.time_encoding!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule: expected 'constant' or 'cosine', found {self.lr_schedule!r}")
        if isinstance(self.lr_floor, bool) or not isinstance(self.lr_floor, (int, float)) or not 0 < self.lr_floor <= 1:
            raise ValueError(f"lr_floor: expected a share in (0, 1], found {self.lr_floor!r}")


@dataclass(frozen=True, eq=False)
class FQEFit:
    """A fitted FQE network for P policies; ``predict_fqe`` evaluates it on any dataset with the same spaces.
    ``changes``, ``residual`` (``residual_heldout``: on held-out steps, else in-sample) and ``converged`` are
    the convergence signals of the module docstring (empty / NaN / False on a fit made without them)."""

    encoder: StateEncoder
    network: Any
    horizon: int
    n_policies: int
    n_actions: int | None  # None for continuous actions
    action_dim: int | None
    config: FQEConfig
    losses: np.ndarray = field(repr=False)  # last loss of each iteration
    changes: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)  # (iterations,) relative RMS change
    residual: float = float("nan")  # MSBE of the final iterate / Var(targets)
    residual_heldout: bool = False  # residual measured on held-out steps (else on the training steps)
    converged: bool = False
    seconds: float = float("nan")  # wall time of the fit

    @property
    def n_iterations(self) -> int:
        return len(self.losses)

    @property
    def last_change(self) -> float:
        return float(self.changes[-1]) if len(self.changes) else float("nan")


@contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Run the block with ``n_threads`` torch intra-op threads (None: as they are), then restore them."""
    torch = _torch()
    before = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        if n_threads is not None:
            torch.set_num_threads(before)


def _value_bounds(dataset: LoggedDataset) -> tuple[np.ndarray, np.ndarray]:
    """[lo_t, hi_t] = Σ_{k < H − t} γ^k [min(r_min, 0), max(r_max, 0)] for t = 0..H−1, from the logged
    reward range (0 included: a trajectory may end): the range of every policy's Q_t when rewards stay
    within the logged range."""
    rewards, mask = np.asarray(dataset.rewards), dataset.mask
    lo = min(float(np.min(rewards, where=mask, initial=np.inf)), 0.0)
    hi = max(float(np.max(rewards, where=mask, initial=-np.inf)), 0.0)
    H, g = dataset.horizon, dataset.gamma
    remaining = np.array([np.sum(g ** np.arange(H - t)) for t in range(H)])
    return lo * remaining, hi * remaining


class _LoggedSteps:
    """The N live steps of a dataset, numbered trajectory by trajectory; ``locate`` turns numbers into
    (trajectory, step) pairs from the n trajectory lengths (every trajectory is a prefix of the horizon)."""

    def __init__(self, mask: np.ndarray) -> None:
        self.lengths = mask.sum(axis=1)  # (n,)
        self.ends = np.cumsum(self.lengths)
        self.n_steps = int(self.ends[-1])

    def locate(self, number: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.searchsorted(self.ends, number, side="right")
        return i, number - (self.ends[i] - self.lengths[i])

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for lo in range(0, self.n_steps, size):
            yield self.locate(np.arange(lo, min(lo + size, self.n_steps)))


def _time_inputs(t: np.ndarray, horizon: int, time_encoding: str) -> np.ndarray:
    """One-hot t over 0..H, or t/H: (m, H + 1) or (m, 1) float32."""
    if time_encoding == "scalar":
        return (t / horizon).astype(np.float32)[:, None]
    out = np.zeros((len(t), horizon + 1), dtype=np.float32)
    out[np.arange(len(t)), t] = 1.0
    return out


def _inputs(encoder: StateEncoder, dataset: LoggedDataset, i: np.ndarray, t: np.ndarray, alive: np.ndarray, time_encoding: str) -> np.ndarray:
    """Network inputs (s_t, t) of the rows (trajectory i, step t), t ≤ H; ``alive`` False gives the
    absorbing state (and t = H needs it)."""
    H = dataset.horizon
    state = encoder.network_inputs(np.asarray(dataset.observations)[i, np.minimum(t, H - 1)], alive)
    return np.concatenate([state, _time_inputs(t, H, time_encoding)], axis=1)


def _logged_actions(dataset: LoggedDataset, i: np.ndarray, t: np.ndarray, d: int) -> np.ndarray:
    return np.asarray(dataset.actions)[i, t].reshape(len(i), d).astype(np.float32)


@_recorded
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
    with torch_threads(cfg.torch_threads):
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        encoder = StateEncoder.fit_inputs(dataset, n_states, chunk_steps=PREDICT_CHUNK)
        logged = _LoggedSteps(mask)
        time_width = H + 1 if cfg.time_encoding == "onehot" else 1
        in_dim = encoder.input_dim + time_width + (0 if discrete else d)
        net = _network(torch, in_dim, cfg.hidden, P * A if discrete else P, torch.float32)
        bounds = _value_bounds(dataset)
        lo, hi = (torch.as_tensor(b, dtype=torch.float32) for b in bounds)
        rewards = np.asarray(dataset.rewards)
        N = logged.n_steps
        held = _held_out(N, cfg.holdout, cfg.seed)  # sorted step numbers never trained on
        N_train = N - len(held)
        B = N_train if cfg.batch_size is None else min(cfg.batch_size, N_train)
        iterations = cfg.n_iterations or H
        losses = np.empty(iterations)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
        f32 = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)  # noqa: E731

        def bellman_target(q_net: Any, i: np.ndarray, t: np.ndarray) -> Any:
            """r_t + γ V_{t+1}(s_{t+1}) of the rows (trajectory i, step t) under ``q_net``, clipped, (m, P)."""
            m = len(i)
            live_next = t + 1 < logged.lengths[i]
            x_next = _inputs(encoder, dataset, i, t + 1, live_next, cfg.time_encoding)
            t_next = np.minimum(t + 1, H - 1)
            if discrete:
                q_next = q_net(f32(x_next)).reshape(m, P, A)
                pi_next = f32(probs[:, i, t_next].transpose(1, 0, 2) * live_next[:, None, None])  # (m, P, A)
                v_next = (pi_next * q_next).sum(-1)
            else:
                a_next = acts[:, i, t_next].reshape(P * m, d)
                q_next = q_net(f32(np.concatenate([np.tile(x_next, (P, 1)), a_next], axis=1))).reshape(P, m, P)
                v_next = torch.diagonal(q_next, dim1=0, dim2=2) * f32(live_next)[:, None]  # (m, P)
            target = f32(rewards[i, t])[:, None] + dataset.gamma * v_next
            if cfg.clip_targets:  # no policy's value leaves [lo_t, hi_t]: bootstrapping cannot run away
                target = torch.minimum(torch.maximum(target, lo[t][:, None]), hi[t][:, None])
            return target

        def logged_q(q_net: Any, i: np.ndarray, t: np.ndarray) -> Any:
            """Q_p(s_t, a_t) of the rows under ``q_net``, (m, P)."""
            m = len(i)
            x = _inputs(encoder, dataset, i, t, np.ones(m, dtype=bool), cfg.time_encoding)
            if discrete:
                a = torch.as_tensor(np.asarray(dataset.actions)[i, t], dtype=torch.int64)
                return q_net(f32(x)).reshape(m, P, A).gather(2, a[:, None, None].expand(-1, P, 1))[..., 0]
            return q_net(f32(np.concatenate([x, _logged_actions(dataset, i, t, d)], axis=1)))

        probe_i, probe_t = logged.locate(_draw(N, cfg.probe_size, cfg.seed, stream=1))
        probe_x = _inputs(encoder, dataset, probe_i, probe_t, np.ones(len(probe_i), dtype=bool), cfg.time_encoding)
        if not discrete:
            probe_x = np.concatenate([probe_x, _logged_actions(dataset, probe_i, probe_t, d)], axis=1)
        probe_x = f32(probe_x)
        scale_floor = 1e-3 * float(bounds[1][0] - bounds[0][0])
        with torch.no_grad():
            previous = net(probe_x).double().numpy()
        changes = np.empty(iterations)
        for it in range(iterations):
            target_net = copy.deepcopy(net).requires_grad_(False)  # the previous iterate, frozen
            for step in range(cfg.n_steps):
                if cfg.lr_schedule == "cosine":  # warm restart each iteration, annealed towards its end
                    share = step / max(cfg.n_steps - 1, 1)
                    factor = cfg.lr_floor + (1.0 - cfg.lr_floor) * 0.5 * (1.0 + np.cos(np.pi * share))
                    for group in opt.param_groups:
                        group["lr"] = cfg.learning_rate * factor
                if len(held) == 0:
                    i, t = logged.locate(np.arange(N) if B == N else rng.integers(N, size=B))
                else:
                    i, t = logged.locate(_training_step(np.arange(N_train) if B == N_train else rng.integers(N_train, size=B), held))
                with torch.no_grad():  # Bellman target of this minibatch, (B, P)
                    target = bellman_target(target_net, i, t)
                opt.zero_grad()
                pred = logged_q(net, i, t)
                loss = ((pred - target) ** 2).sum(axis=1).mean()
                loss.backward()
                opt.step()
            losses[it] = float(loss.detach())
            with torch.no_grad():
                current = net(probe_x).double().numpy()
            changes[it] = _relative_rms(current - previous, current, scale_floor)
            previous = current
        pool = held if len(held) else None
        residual = _bellman_residual(net, bellman_target, logged_q, logged, pool, cfg)
    return FQEFit(
        encoder=encoder, network=net, horizon=H, n_policies=P, n_actions=A, action_dim=d, config=cfg, losses=losses,
        changes=changes, residual=residual, residual_heldout=len(held) > 0,
        converged=bool(changes[-1] < cfg.tol_change and residual < cfg.tol_residual),
    )  # fmt: skip


def _draw(N: int, size: int, seed: int, stream: int) -> np.ndarray:
    """Up to ``size`` of the step numbers 0..N−1, without replacement, sorted, from a generator of their own
    (``SeedSequence(seed, spawn_key=(stream,))``), so the fit's own draws are unchanged."""
    if N <= size:
        return np.arange(N)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))
    return np.sort(rng.choice(N, size=size, replace=False))


def _held_out(N: int, share: float, seed: int) -> np.ndarray:
    """round(share · N) step numbers (at most N − 1, at least 1 when share > 0), sorted (stream 2)."""
    if share <= 0:
        return np.empty(0, dtype=np.int64)
    return _draw(N, min(max(1, round(share * N)), N - 1), seed, stream=2)


def _training_step(u: np.ndarray, held: np.ndarray) -> np.ndarray:
    """The u-th step number that is not held out (``held`` sorted), without an array of all N numbers:
    the answer is u + #{j : held[j] − j ≤ u}."""
    return u + np.searchsorted(held - np.arange(len(held)), u, side="right")


def _relative_rms(diff: np.ndarray, value: np.ndarray, floor: float) -> float:
    """RMS(diff) / max(RMS(value), floor); 0 when diff is 0."""
    num = float(np.sqrt(np.mean(np.square(diff)))) if diff.size else 0.0
    den = max(float(np.sqrt(np.mean(np.square(value)))) if value.size else 0.0, floor)
    return 0.0 if num == 0 else (num / den if den > 0 else float("inf"))


def _bellman_residual(
    net: Any, bellman_target: Any, logged_q: Any, logged: _LoggedSteps, pool: np.ndarray | None, cfg: FQEConfig
) -> float:
    """Σ_p mean (Q_p − y_p)² / Σ_p Var(y_p) of the final iterate ``net`` (its own targets y) on up to
    ``residual_steps`` step numbers of ``pool`` (every logged step when None), drawn with stream 3,
    ``PREDICT_CHUNK`` rows at a time."""
    torch = _torch()
    size = logged.n_steps if pool is None else len(pool)
    chosen = _draw(size, cfg.residual_steps, cfg.seed, stream=3)
    numbers = chosen if pool is None else pool[chosen]
    sse = y_sum = y_square = 0.0
    with torch.no_grad():
        for lo in range(0, len(numbers), PREDICT_CHUNK):
            i, t = logged.locate(numbers[lo : lo + PREDICT_CHUNK])
            y = bellman_target(net, i, t).double()  # (m, P)
            sse += float(((logged_q(net, i, t).double() - y) ** 2).sum())
            y_sum, y_square = y_sum + y.sum(dim=0), y_square + (y**2).sum(dim=0)
    m = len(numbers)
    variance = float((y_square - y_sum**2 / m).sum()) / m  # Σ_p Var(y_p)
    mse = sse / m
    return mse / variance if variance > 0 else (0.0 if mse == 0 else float("inf"))


def predict_fqe(fit: FQEFit, dataset: LoggedDataset, eval_actions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Q̂ on every step of ``dataset``: discrete → (Q(s_t, ·) (P, n, H, A), Q(s_t, a_t) (P, n, H));
    continuous → (Q(s_t, π_e(s_t)) (P, n, H), Q(s_t, a_t) (P, n, H)) with ``eval_actions`` (P, n, H, d).
    Padded steps are 0. The network sees ``PREDICT_CHUNK`` logged steps at a time."""
    torch = _torch()
    n, H = dataset.mask.shape
    if H != fit.horizon:
        raise ValueError(f"dataset.horizon: expected {fit.horizon} like the training data, found {H}")
    P, A, d = fit.n_policies, fit.n_actions, fit.action_dim
    if A is None:
        if eval_actions is None:
            raise ValueError("eval_actions: needed for continuous actions, found None")
        acts = np.asarray(eval_actions, dtype=np.float64)
        if acts.shape != (P, n, H, d):
            raise ValueError(f"eval_actions: expected shape ({P}, {n}, {H}, {d}), found {acts.shape}")
    f32 = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)  # noqa: E731
    logged = np.zeros((P, n, H))
    on_policy = np.zeros((P, n, H, A) if A is not None else (P, n, H))
    with torch_threads(fit.config.torch_threads), torch.no_grad():
        for i, t in _LoggedSteps(dataset.mask).chunks(PREDICT_CHUNK):
            m = len(i)
            x = _inputs(fit.encoder, dataset, i, t, np.ones(m, dtype=bool), fit.config.time_encoding)
            if A is not None:
                q = fit.network(f32(x)).numpy().reshape(m, P, A)
                on_policy[:, i, t] = q.transpose(1, 0, 2)
                logged[:, i, t] = np.take_along_axis(q, np.asarray(dataset.actions)[i, t].reshape(m, 1, 1).repeat(P, 1), -1)[..., 0].T
            else:
                logged[:, i, t] = fit.network(f32(np.concatenate([x, _logged_actions(dataset, i, t, d)], axis=1))).numpy().T
                for p in range(P):
                    on_policy[p, i, t] = fit.network(f32(np.concatenate([x, acts[p, i, t].reshape(m, d)], axis=1))).numpy()[:, p]
    return on_policy, logged


def _network_rows(fit: FQEFit, observations: np.ndarray, steps: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, network inputs (s, t) of those rows) over the observations, ``PREDICT_CHUNK`` rows at a time;
    steps are numbered as in the fit's training data."""
    obs = np.asarray(observations)
    m = len(obs)
    for lo in range(0, m, PREDICT_CHUNK):
        rows = slice(lo, min(lo + PREDICT_CHUNK, m))
        state = fit.encoder.network_inputs(obs[rows], np.ones(rows.stop - lo, dtype=bool))
        yield rows, np.concatenate([state, _time_inputs(steps[rows], fit.horizon, fit.config.time_encoding)], axis=1)


def fqe_q_function(fit: FQEFit, policy: int) -> Any:
    """Q̂ of policy number ``policy`` as a callable ``q(observations, actions, steps) -> (m,)`` (the form
    ``build_continuous_inputs`` takes; discrete actions are integer indices), ``PREDICT_CHUNK`` rows at a time."""
    torch = _torch()
    if not 0 <= policy < fit.n_policies:
        raise ValueError(f"policy: expected an index in [0, {fit.n_policies}), found {policy}")

    def q(observations: np.ndarray, actions: np.ndarray, steps: np.ndarray) -> np.ndarray:
        obs = np.asarray(observations)
        m = len(obs)
        acts = np.asarray(actions).reshape(m, -1)
        out = np.empty(m)
        with torch_threads(fit.config.torch_threads), torch.no_grad():
            for rows, x in _network_rows(fit, obs, np.asarray(steps, dtype=np.int64).reshape(m)):
                if fit.n_actions is not None:
                    q_rows = fit.network(torch.as_tensor(x)).numpy().reshape(-1, fit.n_policies, fit.n_actions)[:, policy]
                    out[rows] = q_rows[np.arange(len(q_rows)), acts[rows, 0].astype(np.int64)]
                else:
                    a = acts[rows].astype(np.float32).reshape(-1, fit.action_dim)
                    out[rows] = fit.network(torch.as_tensor(np.concatenate([x, a], axis=1))).numpy()[:, policy]
        return out

    return q


def fqe_action_values(fit: FQEFit) -> Any:
    """Q̂(s, ·) of every policy as a callable ``q(observations, steps) -> (P, m, A)`` (discrete actions): the
    Q-model form ``opelab.ope.streaming`` applies chunk by chunk. Steps are numbered as in the training data
    (time features use its horizon), ``PREDICT_CHUNK`` rows at a time."""
    torch = _torch()
    if fit.n_actions is None:
        raise ValueError("fit: expected an FQE fit for discrete actions, found one for continuous actions")
    P, A, H = fit.n_policies, fit.n_actions, fit.horizon

    def q(observations: np.ndarray, steps: np.ndarray) -> np.ndarray:
        obs = np.asarray(observations)
        m = len(obs)
        steps_arr = np.asarray(steps, dtype=np.int64).reshape(m)
        if m and (steps_arr.min() < 0 or steps_arr.max() >= H):
            raise ValueError(f"steps: expected values in [0, {H - 1}] (the FQE fit's horizon), found [{steps_arr.min()}, {steps_arr.max()}]")
        out = np.empty((P, m, A))
        with torch_threads(fit.config.torch_threads), torch.no_grad():
            for rows, x in _network_rows(fit, obs, steps_arr):
                out[:, rows] = fit.network(torch.as_tensor(x)).numpy().reshape(-1, P, A).transpose(1, 0, 2)
        return out

    return q
