"""Neural marginal weights (the DICE family, MWL) and minimax Q-learning (MQL) with torch.

Both learners fit a network by plain gradient descent on a loss whose adversary is solved in closed form:
the adversary (ν for the weights, the test function g for MQL) ranges over a reproducing-kernel Hilbert
space, as in Uehara et al. (2020, "Minimax weight and Q-function learning for off-policy evaluation").
Gradient descent-ascent with two networks, the other common choice, cycles on these bilinear problems
(we measured correlations with the exact weights of 0.2–0.7 on a six-state task) and is not offered.

Features. A logged step is the triple (t, s, a). The networks see one-hot t, one-hot a and the state
(one-hot state ids for integer observations, standardised vectors otherwise; finished trajectories sit in
an absorbing state with its own feature). The kernel is k((t,s,a), (t',s',a')) = 1{t = t'} 1{a = a'} k_S(s, s')
with k_S the identity on state ids (the tabular kernel, under which both learners return the exact
tabular solutions) or a Gaussian kernel on vector states, approximated by random Fourier features
(Rahimi & Recht, 2007). An RKHS element is then a (H, A, D) array of feature coefficients.

Weights (per step, as in ``opelab.ope.dice``). For ζ the flow residual, as an element of the RKHS, is

    m_ζ = E_{s₀}[Σ_a π₀(a|s₀) φ(0, s₀, a)] + E_D[Σ_t ζ_t(s_t, a_t) (Σ_a' π_{t+1}(a'|s_{t+1}) φ(t+1, s_{t+1}, a') − φ(t, s_t, a_t))]

so that ⟨ν, m_ζ⟩ holds every ν-term of the DICE Lagrangian. With ν in the ball ‖ν‖ ≤ C and the regulariser
α_Q ‖ν‖²/2 the inner minimum is −h(‖m_ζ‖), h(x) = x²/(2α_Q) for x ≤ α_Q C and C x − α_Q C²/2 beyond, and
the network for ζ minimises

    h(‖m_ζ‖) − α_R E_D[Σ_t ζ_t r_t] + α_ζ/2 E_D[Σ_t ζ_t²],

with ζ ≥ 0 through a softplus output when the setting asks for it and E_{d_t^D}[ζ_t] = 1 by dividing each
step's outputs by their mean over the data when it asks for normalisation. With α_ζ = α_R = 0 this is MWL.

MQL. For a Q-function q (q_H ≡ 0, 0 in the absorbing state) the Bellman residual
δ_t = r_t + γ Σ_a' π_{t+1}(a'|s_{t+1}) q_{t+1}(s_{t+1}, a') − q_t(s_t, a_t) gives
max_{‖g‖ ≤ 1} E_D[Σ_t g(t, s_t, a_t) δ_t]² = ‖E_D[Σ_t δ_t φ(t, s_t, a_t)]‖², which the network minimises.

One network per learner serves all P policies (P outputs), so the policy axis is vectorised here too.

Convergence (``MinimaxFit.change``, ``.trend``, ``.residual``, ``.converged``). Every learner records, for
a probe set of up to ``MinimaxConfig.probe_size`` logged (live) steps drawn once from the config's seed
(a generator of its own: the fit's draws are unchanged), with K = ``n_steps`` and k₀ = ⌊0.9 K⌋:

- change = RMS_probe(f_K − f_{k₀}) / RMS_probe(f_K), the relative movement of the fitted function f (ζ, w
  or q, every policy) over the last 10% of the steps (k₀ = 0 is the untrained network);
- trend = (mean of the losses over the last 5% of the steps − mean over the 5% before) / (max − min of the
  whole curve), negative while the objective still falls;
- residual: what is left of the constraint the learner solves, relative to where it started — for ζ the
  flow residual ‖m_ζ‖ / ‖m_0‖ (m_0 = the initial-state term, the residual of ζ ≡ 0), for MQL the Bellman
  moment ‖E_D[Σ_t δ_t φ]‖ / its value at q ≡ 0, both the largest over policies; the state-weight
  regression has no such floor (its targets are noisy given s_{t+1}) and records NaN;
- converged = change < ``tol_change`` and |trend| < ``tol_trend`` and (residual < ``tol_residual`` where
  there is one).

The learning rate is cosine-annealed to 0, so change and trend shrink at the end of any fit by
construction; the residual is the signal that tells an under-trained fit from a converged one.

``record_fits()`` collects every fit made inside a ``with`` block (FQE's too), so a caller that only sees
``build_inputs``' output (the benchmark) can report the nuisances' convergence.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from scipy import sparse

from opelab.data import LoggedDataset
from opelab.ope.dice import DiceSettings, dice_settings

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MinimaxConfig:
    """Network and optimisation budget of the minimax learners.

    ``bandwidth`` is the Gaussian kernel's width on standardised vector states (None: the median distance
    between logged states); integer states always use the tabular kernel. ``nu_radius`` is C above.
    ``probe_size``, ``tol_change``, ``tol_trend`` and ``tol_residual`` define the convergence signals (module
    docstring); they never change the fitted values.
    """

    hidden: tuple[int, ...] = (64, 64)
    n_steps: int = 1500
    learning_rate: float = 3e-3
    n_features: int = 256  # random Fourier features for vector states
    bandwidth: float | None = None
    nu_radius: float = 100.0
    seed: int = 0
    probe_size: int = 2048  # logged steps on which the change of the fitted function is measured
    tol_change: float = 1e-2  # converged: relative change over the last 10% of the steps below this ...
    tol_trend: float = 1e-2  # ... the objective's trend over them below this in size ...
    tol_residual: float = 0.1  # ... and the relative residual (flow for ζ, Bellman moment for MQL) below this

    def __post_init__(self) -> None:
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected positive layer widths, found {self.hidden!r}")
        for name in ("n_steps", "n_features", "probe_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, found {value!r}")
        for name in ("learning_rate", "nu_radius", "tol_change", "tol_trend", "tol_residual"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: expected a finite number > 0, found {value!r}")
        if self.bandwidth is not None and (not np.isfinite(self.bandwidth) or self.bandwidth <= 0):
            raise ValueError(f"bandwidth: expected a finite number > 0 or None, found {self.bandwidth!r}")


@dataclass(frozen=True, eq=False)
class StateEncoder:
    """How states become network inputs and kernel features; fitted once on the training data."""

    n_states: int | None  # integer states: ids 0..n_states-1 (the absorbing state gets id n_states)
    mean: np.ndarray | None = None  # vector states: standardisation
    scale: np.ndarray | None = None
    frequencies: np.ndarray | None = None  # random Fourier features (dim, D)
    phases: np.ndarray | None = None

    @classmethod
    def fit(cls, dataset: LoggedDataset, config: MinimaxConfig, n_states: int | None = None) -> StateEncoder:
        obs = np.asarray(dataset.observations)
        if obs.dtype.kind in "iu" and obs.ndim == 2:
            return cls(n_states=int(obs.max()) + 1 if n_states is None else n_states)
        flat = obs.reshape(obs.shape[0], obs.shape[1], -1)[dataset.mask].astype(np.float64)
        mean, scale = flat.mean(axis=0), flat.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        z = (flat - mean) / scale
        rng = np.random.default_rng(config.seed)
        width = config.bandwidth
        if width is None:
            sample = z[rng.choice(len(z), size=min(len(z), 500), replace=False)]
            dist = np.sqrt(((sample[:, None] - sample[None]) ** 2).sum(-1))
            width = float(np.median(dist[dist > 0])) if (dist > 0).any() else 1.0
        freq = rng.normal(0.0, 1.0 / width, size=(z.shape[1], config.n_features))
        return cls(n_states=None, mean=mean, scale=scale, frequencies=freq, phases=rng.uniform(0, 2 * np.pi, config.n_features))

    @classmethod
    def fit_inputs(cls, dataset: LoggedDataset, n_states: int | None = None, chunk_steps: int = 65_536) -> StateEncoder:
        """Network inputs only (no kernel features), for learners without a kernel such as FQE: the same
        one-hot ids or standardisation as ``fit``, with the mean and scale summed over chunks of about
        ``chunk_steps`` steps, so no copy of the logged states is made."""
        obs = np.asarray(dataset.observations)
        if obs.dtype.kind in "iu" and obs.ndim == 2:
            return cls(n_states=int(obs.max()) + 1 if n_states is None else n_states)
        mask = dataset.mask
        n, H = mask.shape
        rows = max(1, chunk_steps // H)
        chunks = [(obs[lo : lo + rows].reshape(-1, H, int(np.prod(obs.shape[2:], dtype=int))), mask[lo : lo + rows]) for lo in range(0, n, rows)]
        total = int(mask.sum())
        mean = sum(x[m].astype(np.float64).sum(axis=0) for x, m in chunks) / total
        scale = np.sqrt(sum(((x[m].astype(np.float64) - mean) ** 2).sum(axis=0) for x, m in chunks) / total)
        return cls(n_states=None, mean=mean, scale=np.where(scale > 0, scale, 1.0))

    def network_inputs(self, obs: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """Network inputs of m single states, (m, input_dim) float32: ``obs`` (m, *obs_shape), ``alive`` (m,)
        (False: the absorbing state after the end of a trajectory)."""
        m = len(alive)
        if self.n_states is not None:
            ids = np.asarray(obs).reshape(m)
            ids = np.where(alive, np.where((ids >= 0) & (ids < self.n_states), ids, -1), self.n_states)
            onehot = np.zeros((m, self.n_states + 1), dtype=np.float32)
            seen = ids >= 0  # unseen ids get no feature, the absorbing state its own
            onehot[np.flatnonzero(seen), ids[seen]] = 1.0
            return onehot
        z = (np.asarray(obs, dtype=np.float64).reshape(m, -1) - self.mean) / self.scale
        out = np.empty((m, len(self.mean) + 1), dtype=np.float32)
        out[:, :-1] = np.where(alive[:, None], z, 0.0)
        out[:, -1] = ~alive
        return out

    @property
    def input_dim(self) -> int:
        return self.n_states + 1 if self.n_states is not None else len(self.mean) + 1

    @property
    def kernel_dim(self) -> int:
        return self.n_states + 1 if self.n_states is not None else self.frequencies.shape[1] + 1

    def encode(self, obs: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs and kernel features, (n, H, input_dim) and (n, H, kernel_dim)."""
        n, H = alive.shape
        if self.n_states is not None:
            ids = np.where(alive & (np.asarray(obs) < self.n_states), obs, -1)
            ids = np.where(alive, ids, self.n_states)  # unseen ids get no feature, the absorbing state its own
            onehot = np.zeros((n, H, self.n_states + 1))
            np.put_along_axis(onehot, np.where(ids < 0, 0, ids)[..., None], np.where(ids < 0, 0.0, 1.0)[..., None], axis=-1)
            return onehot, onehot
        z = (np.asarray(obs, dtype=np.float64).reshape(n, H, -1) - self.mean) / self.scale
        z = np.where(alive[..., None], z, 0.0)
        flag = (~alive)[..., None].astype(np.float64)
        rff = np.sqrt(2.0 / self.frequencies.shape[1]) * np.cos(z @ self.frequencies + self.phases)
        return np.concatenate([z, flag], axis=-1), np.concatenate([np.where(alive[..., None], rff, 0.0), flag], axis=-1)


@dataclass(frozen=True, eq=False)
class MinimaxFit:
    """A fitted learner: predicts on any dataset with the same spaces. ``losses`` is the training curve;
    ``change``, ``trend``, ``residual`` and ``converged`` are the convergence signals of the module
    docstring (NaN / False on a fit made without them)."""

    kind: str  # "weights", "state_weights" or "q"
    settings: DiceSettings | None
    encoder: StateEncoder
    network: Any  # torch module
    horizon: int
    n_actions: int
    step_means: np.ndarray | None  # (P, H) normalisation constants of the weights (None: not normalised)
    losses: np.ndarray = field(repr=False)
    change: float = float("nan")  # RMS_probe(f_K − f_k₀) / RMS_probe(f_K), k₀ = ⌊0.9 K⌋
    trend: float = float("nan")  # (last 5% − previous 5% of the losses) / their range
    residual: float = float("nan")  # relative flow residual (ζ) or Bellman moment (MQL); NaN for state weights
    converged: bool = False
    seconds: float = float("nan")  # wall time of the fit

    @property
    def n_steps(self) -> int:
        return len(self.losses)


_RECORDED: ContextVar[list[Any] | None] = ContextVar("opelab_recorded_fits", default=None)


@contextmanager
def record_fits() -> Iterator[list[Any]]:
    """Collect every ``MinimaxFit`` and ``FQEFit`` made inside the block, in order (nested blocks each see
    their own fits and pass them on to the enclosing one)."""
    outer = _RECORDED.get()
    fits: list[Any] = []
    token = _RECORDED.set(fits)
    try:
        yield fits
    finally:
        _RECORDED.reset(token)
        if outer is not None:
            outer.extend(fits)


_Learner = TypeVar("_Learner", bound=Callable[..., Any])


def _recorded(learner: _Learner) -> _Learner:
    """Decorate a fitting function: its fit gets ``seconds``, the wall time of the call, and goes to the
    innermost ``record_fits`` block, if any."""

    @functools.wraps(learner)
    def fit_and_record(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        fit = dataclasses.replace(learner(*args, **kwargs), seconds=time.perf_counter() - started)
        fits = _RECORDED.get()
        if fits is not None:
            fits.append(fit)
        return fit

    return fit_and_record  # type: ignore[return-value]


def _probe(mask: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Flat indices (into n·H) of up to ``size`` live logged steps, drawn without replacement from a
    generator of their own (``SeedSequence(seed, spawn_key=(1,))``), sorted."""
    live = np.flatnonzero(np.asarray(mask).reshape(-1))
    if len(live) <= size:
        return live
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    return np.sort(rng.choice(live, size=size, replace=False))


def _relative_change(before: np.ndarray, after: np.ndarray) -> float:
    """RMS(after − before) / RMS(after) (0 when both vanish)."""
    scale = float(np.sqrt(np.mean(np.square(after))))
    diff = float(np.sqrt(np.mean(np.square(after - before))))
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def _trend(losses: np.ndarray) -> float:
    """(mean of the last 5% of the losses − mean of the 5% before) / (max − min of the curve)."""
    K = len(losses)
    w = max(1, K // 20)
    if K < 2 * w or not np.all(np.isfinite(losses)):
        return float("nan") if not np.all(np.isfinite(losses)) else 0.0
    spread = float(losses.max() - losses.min())
    late, early = float(losses[-w:].mean()), float(losses[-2 * w : -w].mean())
    return (late - early) / spread if spread > 0 else 0.0


def _converged(cfg: MinimaxConfig, change: float, trend: float, residual: float | None) -> bool:
    """The thresholds of the module docstring; ``residual`` None: the learner has none (a NaN fails)."""
    ok = bool(change < cfg.tol_change and abs(trend) < cfg.tol_trend)
    return ok and (residual is None or bool(residual < cfg.tol_residual))


def _torch() -> Any:
    try:
        import torch
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError("the neural minimax learners need torch: pip install 'opelab[rl]'") from error
    return torch


def _network(torch: Any, in_dim: int, hidden: tuple[int, ...], out_dim: int, dtype: Any = None) -> Any:
    layers: list[Any] = []
    width = in_dim
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    layers.append(torch.nn.Linear(width, out_dim))
    return torch.nn.Sequential(*layers).to(dtype or torch.float64)


MAX_ONE_HOT_STEPS = 32


def _time_features(horizon: int) -> np.ndarray:
    """Network features of t = 0..H: one-hot up to ``MAX_ONE_HOT_STEPS`` steps (exact for tabular data),
    else t/H and (t/H)² (the kernel keeps 1{t = t'} either way)."""
    if horizon <= MAX_ONE_HOT_STEPS:
        return np.eye(horizon + 1)
    u = np.arange(horizon + 1) / horizon
    return np.stack([u, u**2], axis=1)


def _inputs(encoder: StateEncoder, dataset: LoggedDataset, horizon: int, n_actions: int) -> dict[str, np.ndarray]:
    """Network inputs for the logged (t, s_t, a_t), for (t+1, s_{t+1}, a') and every a', and kernel features."""
    mask = dataset.mask
    n, H = mask.shape
    if H != horizon:
        raise ValueError(f"dataset.horizon: expected {horizon} like the training data, found {H}")
    x_state, k_state = encoder.encode(dataset.observations, mask)
    time = _time_features(H)  # (H + 1, width)
    steps = np.broadcast_to(time[:H], (n, H, time.shape[1]))
    actions = np.where(mask, np.asarray(dataset.actions), 0)
    a_onehot = np.eye(n_actions)[actions]
    current = np.concatenate([x_state, steps, a_onehot], axis=-1)
    # next step's state (absorbing after the end; a row of zeros at t = H, where every value is 0)
    nxt_state = np.concatenate([x_state[:, 1:], np.zeros_like(x_state[:, :1])], axis=1)
    nxt_steps = np.broadcast_to(time[1:], (n, H, time.shape[1]))
    nxt = np.concatenate(
        [np.broadcast_to(nxt_state[:, :, None], (n, H, n_actions, nxt_state.shape[-1])),
         np.broadcast_to(nxt_steps[:, :, None], (n, H, n_actions, time.shape[1])),
         np.broadcast_to(np.eye(n_actions), (n, H, n_actions, n_actions))],
        axis=-1,
    )  # (n, H, A, in)
    k_next = np.concatenate([k_state[:, 1:], np.zeros_like(k_state[:, :1])], axis=1)
    return {"current": current, "next": nxt, "k_current": k_state, "k_next": k_next, "actions": actions}


def _next_probs(eval_action_probs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """π_{t+1}(· | s_{t+1}) for every step (P, n, H, A), and whether the next step is live (n, H).

    After the end of a trajectory the next state is the absorbing one, whose only action is 0; after the
    last step (t = H − 1) nothing follows and the row is 0.
    """
    probs = np.asarray(eval_action_probs, dtype=np.float64)
    n, H = mask.shape
    live_next = np.concatenate([mask[:, 1:], np.zeros((n, 1), dtype=bool)], axis=1)
    nxt = np.concatenate([probs[:, :, 1:], np.zeros_like(probs[:, :, :1])], axis=2)
    absorbing = np.zeros(probs.shape[-1])
    absorbing[0] = 1.0
    has_next = np.broadcast_to(np.arange(H) < H - 1, (n, H))
    nxt = np.where(live_next[None, ..., None], nxt, np.where(has_next[None, ..., None], absorbing, 0.0))
    return nxt, live_next


def _check_probs(dataset: LoggedDataset, eval_action_probs: np.ndarray) -> np.ndarray:
    if not dataset.action_space.is_discrete:
        raise ValueError("dataset.action_space: the minimax learners need discrete actions, found continuous")
    probs = np.asarray(eval_action_probs, dtype=np.float64)
    shape = (dataset.n_trajectories, dataset.horizon, dataset.action_space.n_actions)
    if probs.ndim != 4 or probs.shape[1:] != shape:
        raise ValueError(f"eval_action_probs: expected shape (P, {', '.join(map(str, shape))}), found {probs.shape}")
    return probs


def _forward(torch: Any, network: Any, x: np.ndarray) -> np.ndarray:
    """The network's outputs on ``x`` as float64, the input cast to the network's own precision."""
    dtype = next(network.parameters()).dtype
    with torch.no_grad():
        return network(torch.as_tensor(x, dtype=dtype)).double().numpy()


def _unique_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows and the index of each row among them (tabular data repeats few inputs many times)."""
    unique, inverse = np.unique(x, axis=0, return_inverse=True)
    return unique, inverse.reshape(-1)


def _prepare(torch: Any, dataset: LoggedDataset, eval_action_probs: np.ndarray, cfg: MinimaxConfig, n_states: int | None) -> tuple:
    """What both learners start from: checked π, the fitted encoder, the inputs and the next-step π."""
    probs = _check_probs(dataset, eval_action_probs)
    torch.manual_seed(cfg.seed)
    encoder = StateEncoder.fit(dataset, cfg, n_states)
    data = _inputs(encoder, dataset, probs.shape[2], probs.shape[3])
    nxt_probs, live_next = _next_probs(probs, dataset.mask)
    return probs, encoder, data, nxt_probs, live_next


def _penalty(torch: Any, norm: Any, alpha_q: float, radius: float) -> Any:
    """h(‖m‖): the value of the ν-player's best response in the ball of radius C (see the docstring)."""
    if alpha_q > 0:
        quad = norm**2 / (2 * alpha_q)
        lin = radius * norm - alpha_q * radius**2 / 2
        return torch.where(norm <= alpha_q * radius, quad, lin)
    return radius * norm


def _sum_over_logged_steps(distinct_size: int, logged_size: int) -> bool:
    """Whether fit_weights takes the flow residual's sums over the logged steps (``_flow_terms_logged``)
    rather than from per-distinct-input statistics: when those statistics would be the larger arrays."""
    return distinct_size > logged_size


def _flow_terms_distinct(data: dict, nxt_probs: np.ndarray, occurrences: Any, step_u: np.ndarray, act_u: np.ndarray, per_step: np.ndarray, dims: tuple, t: Any) -> Any:
    """The two sums of m_ζ from statistics per distinct input (tabular data): a function of ζ (P, U) that
    returns Σ ζ φ(t, s_t, a_t) and Σ ζ Σ_a' π(a'|s_{t+1}) φ(s_{t+1}, a'), both (P, H, A, D), the second on
    the step it leaves from. The distinct inputs are padded per step, so both are batched matrix products
    (no (P, U, A, D) temporaries in the loop): slot[u] is u's position among the inputs of its step."""
    torch = _torch()
    P, n, H, A, D = dims
    U = len(step_u)
    feat_u = occurrences @ data["k_current"].reshape(n * H, D)  # (U, D)
    pi_flat = nxt_probs.reshape(P, n * H, A)
    k_next_flat = data["k_next"].reshape(n * H, D)
    moved_u = np.stack([np.stack([occurrences @ (pi_flat[p, :, a, None] * k_next_flat) for a in range(A)], axis=1) for p in range(P)])
    order = np.argsort(step_u, kind="stable")
    slot = np.empty(U, dtype=np.int64)
    slot[order] = np.arange(U) - np.repeat(np.cumsum(per_step) - per_step, per_step)
    width = int(per_step.max())
    current_pad = np.zeros((H, width, A, D))
    current_pad[step_u, slot, act_u] = feat_u  # φ(s) in the block of the logged action
    moved_pad = np.zeros((P, H, width, A * D))
    moved_pad[:, step_u, slot] = moved_u.reshape(P, U, A * D)
    current_stats, moved_stats = t(current_pad.reshape(H, width, A * D)), t(moved_pad)
    flat_idx = torch.as_tensor(step_u * width + slot)

    def terms(zeta: Any) -> tuple[Any, Any]:
        padded = torch.zeros(P, H * width, dtype=torch.float64).index_add(1, flat_idx, zeta).reshape(P, H, width)
        current = torch.bmm(padded.transpose(0, 1), current_stats).transpose(0, 1).reshape(P, H, A, D)
        moved = torch.matmul(padded[:, :, None, :], moved_stats)[:, :, 0].reshape(P, H, A, D)
        return current, moved

    return terms


def _flow_terms_logged(actions: np.ndarray, k_current: np.ndarray, nxt_probs: np.ndarray, k_next: np.ndarray, rows: np.ndarray, dims: tuple) -> Any:
    """The two sums of m_ζ as ``_flow_terms_distinct`` returns them, taken over the n·H logged steps:
    ζ of each step is gathered from its distinct input (``rows``, in the steps' (n, H) order), and each
    sum is one batched matrix product over the steps t of (P·A, n) by (n, D). Holds the (n, H, D)
    features and (P, n, H, A) π, step-major and in float32 (the products are the cost of every iteration,
    about twice as fast as in float64; each term of the sums is O(1), so float32's relative error of
    6·10⁻⁸ stays far below the residuals these fits reach)."""
    torch = _torch()
    P, n, H, A, D = dims
    f32 = lambda x: torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))  # noqa: E731
    onehot = f32(np.eye(A, dtype=np.float32)[actions].transpose(1, 2, 0)[:, None])  # (H, 1, A, n)
    pi = f32(nxt_probs.transpose(2, 0, 3, 1))  # (H, P, A, n)
    k_cur, k_nxt = f32(k_current.transpose(1, 0, 2)), f32(k_next.transpose(1, 0, 2))  # (H, n, D)
    step_rows = torch.as_tensor(np.ascontiguousarray(rows.reshape(n, H).T).reshape(-1))  # (t, i) order

    def terms(zeta: Any) -> tuple[Any, Any]:
        z = torch.index_select(zeta.to(torch.float32), 1, step_rows).reshape(P, H, n).transpose(0, 1)[:, :, None]  # (H, P, 1, n)

        def summed(coef: Any, feats: Any) -> Any:  # Σ_i coef[t, p, a, i] feats[t, i, :] -> (P, H, A, D)
            return torch.bmm(coef.reshape(H, P * A, n), feats).reshape(H, P, A, D).transpose(0, 1).double()

        return summed(z * onehot, k_cur), summed(z * pi, k_nxt)

    return terms


@_recorded
def fit_weights(
    dataset: LoggedDataset,
    eval_action_probs: np.ndarray,
    settings: str | DiceSettings = "mwl",
    config: MinimaxConfig | None = None,
    n_states: int | None = None,
) -> MinimaxFit:
    """Fit per-step state-action marginal weights ζ_t(s, a) of P policies (``eval_action_probs``
    (P, n, H, A) is π_t(· | s_t) on the logged steps, 0 on padding). ``fit_state_weights`` turns the fit
    into state weights w_t(s)."""
    torch = _torch()
    cfg, s = config or MinimaxConfig(), dice_settings(settings)
    probs, encoder, data, nxt_probs, _ = _prepare(torch, dataset, eval_action_probs, cfg, n_states)
    P, n, H, A = probs.shape
    mask = dataset.mask
    D = encoder.kernel_dim
    # Fixed pieces of m_ζ, all as (H, A, D) coefficient arrays (per policy where π enters).
    init = np.einsum("pia,id->pad", probs[:, :, 0], data["k_current"][:, 0]) / n  # (P, A, D) at t = 0
    # Sufficient statistics per distinct input u = (t, s, a): the loss only needs, for each u, how often it
    # was logged, Σ φ(s_t), Σ π(a'|s_{t+1}) φ(s_{t+1}) and Σ r_t over its occurrences, so an iteration costs
    # O(distinct inputs), not O(logged steps) (tabular data repeat few inputs many times).
    x_unique, rows = _unique_rows(data["current"].reshape(n * H, -1))
    U = len(x_unique)
    steps_flat = np.tile(np.arange(H), n)
    step_u = np.zeros(U, dtype=np.int64)
    step_u[rows] = steps_flat
    act_u = np.zeros(U, dtype=np.int64)
    act_u[rows] = data["actions"].reshape(-1)
    occurrences = sparse.csr_matrix((np.ones(n * H), (rows, np.arange(n * H))), shape=(U, n * H))
    count_u = np.asarray(occurrences.sum(axis=1)).ravel()
    reward_u = occurrences @ np.where(mask, dataset.rewards, 0.0).reshape(-1)  # (U,)
    t = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float64)  # noqa: E731
    # Per distinct input the statistics take (P + 1)·H·width·A·D numbers (width: the most distinct inputs
    # of a step). When that is more than the logged arrays they summarise (vector states: nearly every
    # input is distinct), the two sums of m_ζ are taken over the logged steps instead
    # (_flow_terms_logged), which holds only (n, H, D) features and (P, n, H, A) probabilities: the
    # smaller of the two is also the faster (each iteration's products scale with the same sizes).
    per_step = np.bincount(step_u, minlength=H)
    width = int(per_step.max())
    if _sum_over_logged_steps((P + 1) * H * width * A * D, P * n * H * A + 2 * n * H * D):
        flow_terms = _flow_terms_logged(data["actions"], data["k_current"], nxt_probs, data["k_next"], rows, (P, n, H, A, D))
    else:
        flow_terms = _flow_terms_distinct(data, nxt_probs, occurrences, step_u, act_u, per_step, (P, n, H, A, D), t)
    x_cur = torch.as_tensor(x_unique, dtype=torch.float32)  # the network runs in float32, the kernel algebra in float64
    rewards, counts = t(reward_u), t(count_u)
    step_idx = torch.as_tensor(step_u)
    init_t = torch.zeros(P, H, A, D, dtype=torch.float64)
    init_t[:, 0] = t(init)
    net = _network(torch, x_cur.shape[1], cfg.hidden, P, torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.n_steps)
    losses = np.empty(cfg.n_steps)

    def zeta_of(raw: Any) -> tuple[Any, Any]:
        z = raw.double().T  # (P, U)
        if s.positive:
            z = torch.nn.functional.softplus(z)
        if not s.normalize:
            return z, None
        # E_{d_t^D}[ζ_t] over all n trajectories (absorbed ones included), (P, H)
        means = torch.zeros(P, H, dtype=torch.float64).index_add_(1, step_idx, z * counts) / n
        return z / means[:, step_idx], means

    def flow_norm(zeta: Any) -> Any:
        """‖m_ζ‖ per policy, (P,)."""
        # m = init − E[ζ φ(t, s_t, a_t)] + E[ζ Σ_a' π(a'|s_{t+1}) φ(t+1, s_{t+1}, a')], per (t, a) cell.
        current, moved = flow_terms(zeta)
        nxt = torch.cat([torch.zeros_like(moved[:, :1]), moved[:, :-1]], dim=1)  # lands on step t + 1
        m = init_t + (nxt - current) / n
        return torch.sqrt((m**2).sum(dim=(1, 2, 3)) + 1e-24)

    probe = rows[_probe(mask, cfg.probe_size, cfg.seed)]  # distinct-input index of each probe step
    checkpoint, k0 = None, int(0.9 * cfg.n_steps)
    for it in range(cfg.n_steps):
        opt.zero_grad()
        zeta, _ = zeta_of(net(x_cur))
        if it == k0:
            checkpoint = zeta.detach()[:, probe].numpy().copy()
        norm = flow_norm(zeta)  # (P,)
        loss = _penalty(torch, norm, s.alpha_q, cfg.nu_radius)
        if s.alpha_r:
            loss = loss - s.alpha_r * (zeta * rewards).sum(dim=1) / n
        if s.alpha_zeta:
            loss = loss + s.alpha_zeta * (zeta**2 * counts).sum(dim=1) / (2 * n)
        total = loss.sum()
        total.backward()
        opt.step()
        sched.step()
        losses[it] = float(total.detach())
    with torch.no_grad():
        final, means = zeta_of(net(x_cur))
        start = torch.sqrt((init_t**2).sum(dim=(1, 2, 3)) + 1e-24)  # ‖m_0‖, the residual of ζ ≡ 0
        residual = float((flow_norm(final) / start).max())
    change, trend = _relative_change(checkpoint, final[:, probe].numpy()), _trend(losses)
    return MinimaxFit(
        kind="weights",
        settings=s,
        encoder=encoder,
        network=net,
        horizon=H,
        n_actions=A,
        step_means=None if means is None else means.numpy().copy(),
        losses=losses,
        change=change,
        trend=trend,
        residual=residual,
        converged=_converged(cfg, change, trend, residual),
    )  # fmt: skip


def predict_weights(fit: MinimaxFit, dataset: LoggedDataset, every_action: bool = False) -> np.ndarray:
    """ζ_t(s_t, a_t) on every step of ``dataset``, shape (P, n, H); padded steps hold the absorbing weight.

    ``every_action`` returns ζ_t(s_t, a) for every action instead, shape (P, n, H, A). A fit of state
    weights returns w_t(s_t).
    """
    torch = _torch()
    if fit.kind not in ("weights", "state_weights"):
        raise ValueError(f"fit: expected a weights fit, found a {fit.kind!r} fit")
    n, H = dataset.mask.shape
    A = fit.n_actions
    data = _inputs(fit.encoder, dataset, fit.horizon, A)
    x = data["current"]
    if fit.kind == "state_weights":
        if every_action:
            raise ValueError("every_action: a fit of state weights has no action input")
        steps = np.arange(H)
        raw = _forward(torch, fit.network, x[..., :-A].reshape(n * H, -1))
        w = raw.reshape(n, H, -1).transpose(2, 0, 1)
        # w_0 ≡ 1 (both policies start from the same states); true weights are never negative, so a
        # regression that undershoots is projected back to 0
        return np.where(steps == 0, 1.0, np.maximum(w, 0.0))
    if every_action:
        x = _with_every_action(x, A)
    raw = _forward(torch, fit.network, x.reshape(-1, x.shape[-1]))
    z = np.moveaxis(raw.reshape(*x.shape[:-1], -1), -1, 0)
    if fit.settings is not None and fit.settings.positive:
        z = np.logaddexp(0.0, z)  # softplus
    if fit.step_means is not None:
        z = z / (fit.step_means[:, None, :, None] if every_action else fit.step_means[:, None, :])
    return np.maximum(z, 0.0)  # ratios of probabilities: an unconstrained setting's negative outputs are projected to 0


REGRESSION_BATCH = 1024  # distinct inputs per step of the state-weight regression


@_recorded
def fit_state_weights(fit: MinimaxFit, dataset: LoggedDataset, config: MinimaxConfig | None = None) -> MinimaxFit:
    """State weights w_t(s) from a fit of state-action weights, by the flow identity

        w_{t+1}(s') = d_{t+1}^π(s') / d_{t+1}^D(s') = E_D[ζ_t(s_t, a_t) | s_{t+1} = s'],   w_0 ≡ 1,

    i.e. a least-squares regression of the previous step's ζ on the state reached (the absorbing state
    after the end). With integer states this is a group mean, and the tabular flow weights are recovered
    exactly from the tabular ζ; the network generalises it to vector states.
    """
    torch = _torch()
    if fit.kind != "weights":
        raise ValueError(f"fit: expected a weights fit, found a {fit.kind!r} fit")
    cfg = config or MinimaxConfig()
    n, H = dataset.mask.shape
    A = fit.n_actions
    zeta = predict_weights(fit, dataset)  # (P, n, H)
    x = _inputs(fit.encoder, dataset, H, A)["current"][:, 1:, :-A]  # (t + 1, s_{t+1}) for t < H − 1
    targets = zeta[:, :, :-1].reshape(zeta.shape[0], -1).T  # (n (H − 1), P)
    unique, inverse = _unique_rows(x.reshape(n * (H - 1), -1))
    counts = np.bincount(inverse, minlength=len(unique)).astype(np.float64)
    means = np.zeros((len(unique), targets.shape[1]))
    np.add.at(means, inverse, targets)
    means /= counts[:, None]  # the squared loss over samples = the count-weighted loss over distinct inputs
    torch.manual_seed(cfg.seed)
    net = _network(torch, unique.shape[1], cfg.hidden, targets.shape[1], torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.n_steps)
    x_t, y_t, w_t = (torch.as_tensor(a, dtype=torch.float32) for a in (unique, means, counts / counts.sum()))
    losses = np.empty(cfg.n_steps)
    rng = np.random.default_rng(cfg.seed)
    G = len(unique)
    live = dataset.mask[:, 1:].reshape(-1)  # the regression's rows whose s_{t+1} is a live step
    probe = inverse[_probe(live, cfg.probe_size, cfg.seed)] if live.any() else inverse[:1]
    checkpoint, k0 = None, int(0.9 * cfg.n_steps)
    for it in range(cfg.n_steps):
        if it == k0:
            with torch.no_grad():
                checkpoint = net(x_t[probe]).double().numpy()
        opt.zero_grad()
        batch = slice(None) if G <= REGRESSION_BATCH else torch.as_tensor(rng.choice(G, REGRESSION_BATCH, replace=False))
        scale = 1.0 if G <= REGRESSION_BATCH else G / REGRESSION_BATCH
        loss = scale * (w_t[batch][:, None] * (net(x_t[batch]) - y_t[batch]) ** 2).sum()
        loss.backward()
        opt.step()
        sched.step()
        losses[it] = float(loss.detach())
    with torch.no_grad():
        change = _relative_change(checkpoint, net(x_t[probe]).double().numpy())
    trend = _trend(losses)
    return MinimaxFit(
        kind="state_weights", settings=fit.settings, encoder=fit.encoder, network=net, horizon=H, n_actions=A, step_means=None, losses=losses,
        change=change, trend=trend, converged=_converged(cfg, change, trend, None),
    )  # fmt: skip


def _with_every_action(current: np.ndarray, n_actions: int) -> np.ndarray:
    """Inputs (n, H, in) with the action one-hot (the last A columns) replaced by each action: (n, H, A, in)."""
    n, H, width = current.shape
    return np.concatenate(
        [np.broadcast_to(current[:, :, None, : width - n_actions], (n, H, n_actions, width - n_actions)),
         np.broadcast_to(np.eye(n_actions), (n, H, n_actions, n_actions))],
        axis=-1,
    )


@_recorded
def fit_q(
    dataset: LoggedDataset,
    eval_action_probs: np.ndarray,
    config: MinimaxConfig | None = None,
    n_states: int | None = None,
) -> MinimaxFit:
    """Minimax Q-learning (MQL) of the per-step Q-functions q_t(s, a) of P policies (``eval_action_probs``
    (P, n, H, A) as for ``fit_weights``). Values include the dataset's discount, like FQE's."""
    torch = _torch()
    cfg = config or MinimaxConfig()
    probs, encoder, data, nxt_probs, live_next = _prepare(torch, dataset, eval_action_probs, cfg, n_states)
    P, n, H, A = probs.shape
    mask = dataset.mask
    t = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float64)  # noqa: E731
    # The net is evaluated once per distinct input among the logged (t, s_t, a_t) and every (t+1, s_{t+1}, a').
    stacked = np.concatenate([data["current"].reshape(n * H, -1), data["next"].reshape(n * H * A, -1)])
    x_all, rows = _unique_rows(stacked)
    x_all, rows = t(x_all), torch.as_tensor(rows)
    alive = t(mask.astype(np.float64))
    pi_live = t(nxt_probs * live_next[None, ..., None])  # the absorbing state and t = H are worth 0
    a_onehot, k_cur = t(np.eye(A)[data["actions"]]), t(data["k_current"])
    rewards = t(np.where(mask, dataset.rewards, 0.0))
    net = _network(torch, x_all.shape[1], cfg.hidden, P)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.n_steps)
    losses = np.empty(cfg.n_steps)

    def moment(out: Any) -> Any:
        """E_D[Σ_t δ_t φ(t, s_t, a_t)] per policy, (P, H, A, D), from the network's outputs on the rows."""
        q_cur = out[: n * H].reshape(n, H, P).permute(2, 0, 1)
        q_nxt = out[n * H :].reshape(n, H, A, P).permute(3, 0, 1, 2)
        delta = alive * (rewards + dataset.gamma * (pi_live * q_nxt).sum(-1) - q_cur)  # (P, n, H)
        return torch.einsum("pit,ita,itd->ptad", delta, a_onehot, k_cur) / n

    probe = _probe(mask, cfg.probe_size, cfg.seed)  # among the logged (t, s_t, a_t), the first n·H rows
    checkpoint, k0 = None, int(0.9 * cfg.n_steps)
    for it in range(cfg.n_steps):
        opt.zero_grad()
        out = net(x_all)[rows]  # (n·H + n·H·A, P)
        if it == k0:
            checkpoint = out.detach()[: n * H][probe].numpy().copy()
        m = moment(out)
        loss = (m**2).sum()
        loss.backward()
        opt.step()
        sched.step()
        losses[it] = float(loss.detach())
    with torch.no_grad():
        out = net(x_all)[rows]
        start = torch.sqrt((moment(torch.zeros_like(out)) ** 2).sum(dim=(1, 2, 3)))  # at q ≡ 0
        end = torch.sqrt((moment(out) ** 2).sum(dim=(1, 2, 3)))
        residual = float((end / torch.clamp(start, min=1e-12)).max())
        change = _relative_change(checkpoint, out[: n * H][probe].numpy())
    trend = _trend(losses)
    return MinimaxFit(
        kind="q", settings=None, encoder=encoder, network=net, horizon=H, n_actions=A, step_means=None, losses=losses,
        change=change, trend=trend, residual=residual, converged=_converged(cfg, change, trend, residual),
    )  # fmt: skip


def predict_q(fit: MinimaxFit, dataset: LoggedDataset) -> np.ndarray:
    """q_t(s_t, ·) on every step of ``dataset``, shape (P, n, H, A); 0 on padded steps."""
    torch = _torch()
    if fit.kind != "q":
        raise ValueError(f"fit: expected a q fit, found a {fit.kind!r} fit")
    n, H = dataset.mask.shape
    A = fit.n_actions
    data = _inputs(fit.encoder, dataset, fit.horizon, A)
    every_action = _with_every_action(data["current"], A)
    q = _forward(torch, fit.network, every_action.reshape(n * H * A, -1))
    return np.where(dataset.mask[None, ..., None], q.reshape(n, H, A, -1).transpose(3, 0, 1, 2), 0.0)
