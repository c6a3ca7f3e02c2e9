"""``OPEInput`` for continuous actions: kernel-smoothed evaluation pscores (Kallus & Zhou, 2018).

Every estimator reads the step ratio w_t = eval_pscore / behavior_pscore. For continuous actions the
"evaluation pscore" of a logged step is

    deterministic π_e (a = μ_e(s)):   K_h(a_t − μ_e(s_t)) = Π_j K((a_{t,j} − μ_{e,j}(s_t)) / h_j) / h_j
    stochastic π_e, ``"density"``:    π_e(a_t | s_t), the policy's own density (no smoothing, no bias)
    stochastic π_e, ``"sample"``:     K_h(a_t − ã_t), ã_t ~ π_e(· | s_t) drawn once per step
    stochastic π_e, ``"mean"``:       K_h(a_t − μ_e(s_t)): evaluates the deterministic mean policy instead

so TIS, PDIS, DR, their self-normalised forms and the marginal forms (given marginal weights) run unchanged
(``opelab.ope.kernels`` has the kernels, the bandwidth units and the bias–variance trade-off).
``"sample"`` is unbiased for the smoothed stochastic policy: E_{ã ~ π_e}[K_h(a − ã)] = (π_e * K_h)(a), the
density of ã + h ⊙ U, whose value tends to J(π_e) as h → 0; ``"density"`` (the default) is exact and
preferable whenever π_e exposes a density.

Doubly robust forms need Q̂(s_t, a_t) and V̂(s_t) = E_{a ~ π_e(s_t)} Q̂(s_t, a): for a deterministic policy (and
``"mean"``) V̂(s) = Q̂(s, μ_e(s)) (Kallus & Zhou, 2018); for a stochastic one it is the mean of Q̂ over
``n_value_samples`` actions drawn from π_e (Monte Carlo, seeded; by default from the dataset's content digest).

Marginal weights. ``weights=`` (a DICE setting, e.g. ``"mwl"``) learns ζ_t(s, a) and w_t(s) with the neural
learner of ``opelab.ope.minimax_continuous`` (budget ``minimax``) from ``n_weight_samples`` draws of each
policy's action at every logged state, and fills ``marginal_weights`` and ``state_marginal_weights`` for the
``sam_*`` / ``sm_*`` estimators. The draws come from the policy that the evaluation pscores describe: π_e itself
(``"density"``), or the kernel-smoothed policy μ_e(s) + h ⊙ U, U ~ K (deterministic π_e, ``"mean"``; ``"sample"``:
ã + h ⊙ U with ã ~ π_e), so the SAM and SM weights and the step ratios target the same policy.

Action bounds. K_h is a density with respect to Lebesgue measure. A clipped behavior policy logs actions
*on* the bounds with positive probability, and its pscore there is the atom's probability (see
``opelab.policies.continuous``), which a kernel density cannot be compared with: kernel ratios on such data are
only meaningful where μ_e(s) stays inside the box, away from the bounds by more than the kernel's reach.
Near a bound the smoothed policy also puts part of its mass outside the box (boundary bias, O(h)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from opelab.data import LoggedDataset
from opelab.data.validation import freeze
from opelab.ope.inputs import OPEInput, OPEInputError
from opelab.ope.kernels import KERNELS, Kernel, action_scales, effective_bandwidth, get_kernel, kernel_density
from opelab.policies.continuous import DeterministicPolicy

if TYPE_CHECKING:
    from opelab.ope.dice import DiceSettings
    from opelab.ope.minimax import MinimaxConfig

QFunction = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""Q̂(observations (m, ...), actions (m, d), steps (m,)) -> values (m,)."""

StochasticMode = Literal["density", "sample", "mean"]
STOCHASTIC_MODES = ("density", "sample", "mean")


def is_deterministic(policy: Any) -> bool:
    """A ``DeterministicPolicy``, or any policy with ``mean(observations, steps)`` and no ``pscore``."""
    return isinstance(policy, DeterministicPolicy) or (hasattr(policy, "mean") and not hasattr(policy, "pscore"))


def _policy_actions(policy: Any, p: int, d: int, obs: np.ndarray, steps: np.ndarray, what: str, rng=None) -> np.ndarray:
    """μ_e(s) (``what="mean"``) or ã ~ π_e(s) (``what="sample"``), checked to be finite of shape (m, d)."""
    label = f"policies[{p}] ({getattr(policy, 'name', '?')!r})"
    if not hasattr(policy, what):
        raise OPEInputError(f"{label}: expected a {what}(observations, ...) method for this mode, found {type(policy).__name__} without one")
    if what == "mean":
        actions = policy.mean(obs, steps)
    else:
        actions = policy.sample(obs, rng, steps)[0]
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim == 1 and d == 1:
        actions = actions[:, None]
    if actions.shape != (len(obs), d):
        raise OPEInputError(f"{label}.{what}: expected actions of shape ({len(obs)}, action_dim={d}), found {actions.shape}")
    if not np.isfinite(actions).all():
        raise OPEInputError(f"{label}.{what}: expected finite actions, found non-finite values")
    return actions


def kernel_noise(kernel: Kernel, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Draws U ~ K of one of ``KERNELS`` (so that μ + h U has density K_h(· − μ)): Gaussian and uniform directly,
    triangular as U₁ + U₂ − 1 (U_i ~ U(0, 1)), Epanechnikov by Devroye's rule (of three U(−1, 1) draws, the middle
    one unless the third is the largest in absolute value), cosine by its inverse CDF (2/π) arcsin(2V − 1)."""
    name = kernel.name
    if name not in KERNELS or kernel.density is not KERNELS[name].density:
        raise OPEInputError(
            f"kernel: drawing from the smoothed policy needs one of {sorted(KERNELS)}, found a custom kernel {name!r}"
        )
    if name == "gaussian":
        return rng.standard_normal(shape)
    if name == "uniform":
        return rng.uniform(-1.0, 1.0, shape)
    if name == "triangular":
        return rng.random(shape) + rng.random(shape) - 1.0
    if name == "cosine":
        return (2.0 / np.pi) * np.arcsin(2.0 * rng.random(shape) - 1.0)
    u1, u2, u3 = (rng.uniform(-1.0, 1.0, shape) for _ in range(3))  # epanechnikov
    return np.where((np.abs(u3) >= np.abs(u2)) & (np.abs(u3) >= np.abs(u1)), u2, u3)


def _q_values(q: QFunction, p: int, obs: np.ndarray, actions: np.ndarray, steps: np.ndarray) -> np.ndarray:
    values = np.asarray(q(obs, actions, steps), dtype=np.float64)
    if values.shape == (len(obs), 1):
        values = values[:, 0]
    if values.shape != (len(obs),):
        raise OPEInputError(f"q_functions[{p}]: expected values of shape ({len(obs)},), found {values.shape}")
    if not np.isfinite(values).all():
        raise OPEInputError(f"q_functions[{p}]: expected finite values, found non-finite ones")
    return values


def build_continuous_inputs(
    dataset: LoggedDataset,
    policies: Sequence[Any],
    *,
    kernel: str | Kernel = "gaussian",
    bandwidth: float | Sequence[float] | None,
    action_scale: str | Sequence[float] = "none",
    stochastic: StochasticMode = "density",
    q_functions: Sequence[QFunction] | None = None,
    n_value_samples: int = 32,
    seed: int | None = None,
    state_marginal_weights: np.ndarray | None = None,
    marginal_weights: np.ndarray | None = None,
    weights: str | DiceSettings | None = None,
    minimax: MinimaxConfig | None = None,
    n_weight_samples: int = 16,
    ground_truth: Sequence[float] | np.ndarray | None = None,
    ground_truth_se: Sequence[float] | np.ndarray | None = None,
) -> OPEInput:
    """Stack what the estimators need for continuous-action ``policies`` on ``dataset`` (module docstring).

    ``kernel`` is one of ``opelab.ope.kernels.KERNELS``. ``bandwidth`` h (one float, or one per action
    dimension) is measured in units of ``action_scale``: ``"none"`` (action units), ``"range"`` (a fraction
    of each dimension's box width high_j − low_j) or ``"std"`` (standard deviations of the logged actions), or
    explicit per-dimension units; the kernel is a product over dimensions normalised by the bandwidths in
    action units, h_j = h · s_j (``opelab.ope.kernels``). ``bandwidth=None`` is allowed only when no policy
    is smoothed (all stochastic with ``stochastic="density"``).

    ``q_functions`` gives one Q̂ callable per policy, ``q(observations, actions, steps) -> (m,)``, evaluated on
    the logged steps only; it fills ``q_hat``, ``v_hat`` and ``initial_v_hat`` (else they stay None and the DR
    and DM estimators are skipped). ``state_marginal_weights`` / ``marginal_weights`` (P, n, H) are passed
    through for the marginal estimators; or ``weights`` (``"mwl"``, ``"dualdice"``, ``"gendice"``, ``"bestdice"``
    or a ``DiceSettings``; default None: no weights are learned) learns both with
    ``opelab.ope.minimax_continuous`` (network and budget: ``minimax``, a ``MinimaxConfig``; the flow term
    E_{a'~π(s')} of each logged state is a mean over ``n_weight_samples`` draws of the policy's action, see the
    module docstring; needs the ``[rl]`` extra).

    ``seed`` drives the ``"sample"`` mode and the V̂ Monte Carlo. The default (None) derives it from the
    dataset's ``content_digest``: one dataset always gets the same draws (reruns are reproducible), and
    different datasets get independent ones, so a loop over datasets does not reuse one set of Monte Carlo
    draws in every dataset (which a fixed default would, correlating the errors across datasets). Pass an
    int to choose the draws yourself; the pipeline and the benchmark pass seeds of their own.
    """
    if not isinstance(dataset, LoggedDataset):
        raise OPEInputError(f"dataset: expected a LoggedDataset, found {type(dataset).__name__}")
    space = dataset.action_space
    if space.is_discrete:
        raise OPEInputError(
            f"dataset.action_space: expected continuous actions, found discrete with n_actions={space.n_actions}; "
            "use build_inputs for discrete actions"
        )
    policies = list(policies)
    if len(policies) == 0:
        raise OPEInputError("policies: expected at least one policy, found 0")
    if stochastic not in STOCHASTIC_MODES:
        raise OPEInputError(f"stochastic: expected one of {list(STOCHASTIC_MODES)}, found {stochastic!r}")
    if q_functions is not None and len(q_functions) != len(policies):
        raise OPEInputError(f"q_functions: expected one Q̂ callable per policy ({len(policies)}), found {len(q_functions)}")
    if isinstance(n_value_samples, bool) or not isinstance(n_value_samples, (int, np.integer)) or n_value_samples < 1:
        raise OPEInputError(f"n_value_samples: expected a positive int, found {n_value_samples!r}")
    if ground_truth_se is not None and ground_truth is None:
        raise OPEInputError("ground_truth_se: given without ground_truth")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise OPEInputError(f"seed: expected a non-negative int or None (derived from the dataset), found {seed!r}")
    if isinstance(n_weight_samples, bool) or not isinstance(n_weight_samples, (int, np.integer)) or n_weight_samples < 1:
        raise OPEInputError(f"n_weight_samples: expected a positive int, found {n_weight_samples!r}")
    if weights is not None:
        from opelab.ope.dice import DICE_SETTINGS, DiceSettings

        if not isinstance(weights, DiceSettings) and not (isinstance(weights, str) and weights in DICE_SETTINGS):
            raise OPEInputError(f"weights: expected None, one of {sorted(DICE_SETTINGS)} or a DiceSettings, found {weights!r}")
        pairs = (("state_marginal_weights", state_marginal_weights), ("marginal_weights", marginal_weights))
        given = [name for name, value in pairs if value is not None]
        if given:
            raise OPEInputError(
                f"weights: learns the marginal weights, but {' and '.join(given)} are given too; pass one or the other"
            )
    elif minimax is not None:
        raise OPEInputError("minimax: a MinimaxConfig is used with weights= (a DICE setting), found weights=None")
    try:
        k = get_kernel(kernel)
    except ValueError as error:
        raise OPEInputError(str(error)) from None

    d = space.action_dim
    traj, step = np.nonzero(dataset.mask)
    obs = np.asarray(dataset.observations)[traj, step]
    logged = np.asarray(dataset.actions)[traj, step]  # (m, d)
    smoothed = [is_deterministic(p) or stochastic != "density" for p in policies]
    h = None
    if any(smoothed):
        if bandwidth is None:
            raise OPEInputError("bandwidth: expected a positive float (kernel smoothing is needed), found None")
        try:
            h = effective_bandwidth(bandwidth, action_scales(logged, action_scale, space.low, space.high))
        except ValueError as error:
            raise OPEInputError(str(error)) from None

    root = int(dataset.content_digest[:16], 16) if seed is None else int(seed)
    rng = np.random.default_rng(root)
    P, n, H = len(policies), dataset.n_trajectories, dataset.horizon
    pscore = np.ones((P, n, H))
    q_hat = v_hat = None
    if q_functions is not None:
        q_hat, v_hat = np.zeros((P, n, H)), np.zeros((P, n, H))
    draws = None if weights is None else np.zeros((P, n, H, int(n_weight_samples), d))  # π's actions for the weights
    # the weights' draws come from a generator of their own, so turning them on leaves the other draws unchanged
    draw_rng = np.random.default_rng(np.random.SeedSequence(root, spawn_key=(1,)))
    for p, policy in enumerate(policies):
        deterministic = is_deterministic(policy)
        if deterministic or stochastic == "mean":
            center = _policy_actions(policy, p, d, obs, step, "mean")
        elif stochastic == "sample":
            center = _policy_actions(policy, p, d, obs, step, "sample", rng)
        else:
            center = None
        if center is not None:
            values = kernel_density(logged, center, h, k)
        else:
            if not hasattr(policy, "pscore"):
                raise OPEInputError(f"policies[{p}] ({getattr(policy, 'name', '?')!r}): expected a pscore method for stochastic='density'")
            values = np.asarray(policy.pscore(obs, logged, step), dtype=np.float64)
            if values.shape != (len(obs),):
                raise OPEInputError(f"policies[{p}] ({policy.name!r}).pscore: expected shape ({len(obs)},), found {values.shape}")
        if not (np.isfinite(values).all() and (values >= 0).all()):
            raise OPEInputError(f"policies[{p}] ({getattr(policy, 'name', '?')!r}): expected finite non-negative evaluation pscores")
        pscore[p, traj, step] = values
        if draws is not None:
            for j in range(draws.shape[3]):
                if not smoothed[p]:
                    draws[p, traj, step, j] = _policy_actions(policy, p, d, obs, step, "sample", draw_rng)
                    continue
                resampled = stochastic == "sample" and not deterministic
                base = _policy_actions(policy, p, d, obs, step, "sample", draw_rng) if resampled else center
                draws[p, traj, step, j] = base + h * kernel_noise(k, base.shape, draw_rng)
        if q_functions is not None:
            q = q_functions[p]
            q_hat[p, traj, step] = _q_values(q, p, obs, logged, step)
            if deterministic or stochastic == "mean":
                v = _q_values(q, p, obs, center, step)
            else:
                v = np.zeros(len(obs))
                for _ in range(n_value_samples):
                    v += _q_values(q, p, obs, _policy_actions(policy, p, d, obs, step, "sample", rng), step)
                v /= n_value_samples
            v_hat[p, traj, step] = v

    if draws is not None:
        from opelab.ope.minimax_continuous import continuous_marginal_weights

        w_state, w_pair = continuous_marginal_weights(dataset, draws, weights, minimax)
        del draws
        state_marginal_weights, marginal_weights = freeze(w_state), freeze(w_pair)
    names = tuple(str(getattr(p, "name", f"policy-{i}")) for i, p in enumerate(policies))
    return OPEInput(  # arrays made here are frozen, so the container holds them without copying
        policy_names=names,
        eval_pscore=freeze(pscore),
        q_hat=None if q_hat is None else freeze(q_hat),
        v_hat=None if v_hat is None else freeze(v_hat),
        initial_v_hat=None if v_hat is None else v_hat[:, :, 0],
        state_marginal_weights=state_marginal_weights,
        marginal_weights=marginal_weights,
        ground_truth=None if ground_truth is None else np.asarray(ground_truth, dtype=np.float64),
        ground_truth_se=(
            None
            if ground_truth is None
            else np.zeros(len(policies)) if ground_truth_se is None else np.asarray(ground_truth_se, dtype=np.float64)
        ),
    )
