"""``OPEInput``: everything the estimators need for P candidate policies, stacked on a leading policy axis.

Arrays (P policies, n trajectories, H horizon, A actions), aligned with a ``LoggedDataset``:
    eval_pscore        (P, n, H)     π_e(a_t | s_t) of the logged action (1 on padded steps)
    eval_action_probs  (P, n, H, A)  π_e(· | s_t) (discrete actions; 0 on padded steps) or None
    q_hat              (P, n, H)     Q̂(s_t, a_t) for the logged action (0 on padded steps) or None
    v_hat              (P, n, H)     V̂(s_t) = Σ_a π_e(a | s_t) Q̂(s_t, a) (0 on padded steps) or None
    initial_v_hat      (P, n)        V̂(s_0) or None
    state_marginal_weights  (P, n, H)  w_t(s_t) = d_t^π(s_t) / d_t^D(s_t) or None (see ``opelab.ope.weights``;
                                       padded steps hold the absorbing state's weight)
    marginal_weights        (P, n, H)  w_t(s_t, a_t) = d_t^π(s_t, a_t) / d_t^D(s_t, a_t) or None
    ground_truth       (P,)          true policy values, when known, with their standard error (0 if exact)
    cross_fit_folds    K when Q̂ and the marginal weights were cross-fitted (``build_inputs(n_folds=K)``)
    eval_log_pscore    (P, n, H)     log π_e(a_t | s_t) (−inf where π_e is 0; 0 on padded steps) or None: given, the estimators form
                                     every ratio in log space (``EstimationContext.step_ratio``), and
                                     ``eval_pscore`` must be its exp (0 where that underflows)

Arrays that do not depend on the policy (Q̂ of the logged action from one reward model) may be given as
read-only broadcast views (``np.broadcast_to(q, (P, n, H))``): they are held as given, never copied per policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from opelab.data import LoggedDataset
from opelab.data.validation import check_finite, first_index, format_index, freeze, owned_readonly
from opelab.policies import DiscretePolicy
from opelab.policies.given import ActionDistribution, ActionDistributionError

if TYPE_CHECKING:
    from opelab.ope.dice import DiceSettings
    from opelab.ope.fqe import FQEConfig
    from opelab.ope.minimax import MinimaxConfig
    from opelab.ope.weights import FlowWeights


class OPEInputError(ValueError):
    """An ``OPEInput`` that is inconsistent in itself or with its dataset."""


@dataclass(frozen=True, eq=False)
class OPEInput:
    policy_names: tuple[str, ...]
    eval_pscore: np.ndarray
    q_hat: np.ndarray | None = None
    v_hat: np.ndarray | None = None
    initial_v_hat: np.ndarray | None = None
    eval_action_probs: np.ndarray | None = None
    state_marginal_weights: np.ndarray | None = None
    marginal_weights: np.ndarray | None = None
    ground_truth: np.ndarray | None = None
    ground_truth_se: np.ndarray | None = None
    cross_fit_folds: int | None = None  # K when Q̂ and the weights were cross-fitted over K folds
    eval_log_pscore: np.ndarray | None = None

    def __post_init__(self) -> None:
        names = tuple(self.policy_names)
        if len(names) == 0 or len(set(names)) != len(names):
            raise OPEInputError(f"policy_names: expected unique, non-empty names, found {list(names)}")
        object.__setattr__(self, "policy_names", names)
        P = len(names)
        pscore = np.asarray(self.eval_pscore, dtype=np.float64)
        if pscore.ndim != 3 or pscore.shape[0] != P:
            raise OPEInputError(f"eval_pscore: expected shape (P={P}, n, H), found {pscore.shape}")
        shape = pscore.shape
        expected = {
            "eval_pscore": shape,
            "q_hat": shape,
            "v_hat": shape,
            "initial_v_hat": shape[:2],
            "state_marginal_weights": shape,
            "marginal_weights": shape,
            "eval_log_pscore": shape,
            "ground_truth": (P,),
            "ground_truth_se": (P,),
        }
        for name in expected:
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, dtype=np.float64)
            if value.shape != expected[name]:
                raise OPEInputError(f"{name}: expected shape {expected[name]}, found {value.shape}")
            if name == "eval_log_pscore":  # −inf is log 0: π_e gives the logged action no probability
                bad = np.isnan(value) | (value == np.inf)
                if bad.any():
                    idx = first_index(bad)
                    raise OPEInputError(
                        f"{name}: expected log-probabilities (finite, or -inf where π_e is 0), found {value[idx]!r} at index {format_index(idx)}"
                    )
            else:
                check_finite(name, value, OPEInputError)
            object.__setattr__(self, name, owned_readonly(value))
        for name in ("eval_pscore", "state_marginal_weights", "marginal_weights"):
            value = getattr(self, name)
            if value is not None and (value < 0).any():
                idx = first_index(value < 0)
                raise OPEInputError(f"{name}: expected non-negative values, found {value[idx]!r} at index {format_index(idx)}")
        if self.ground_truth_se is not None and self.ground_truth is None:
            raise OPEInputError("ground_truth_se: given without ground_truth")
        if self.eval_log_pscore is not None:
            with np.errstate(under="ignore"):
                linear = np.exp(self.eval_log_pscore)
            bad = np.abs(self.eval_pscore - linear) > 1e-9 * linear + 1e-300
            if bad.any():
                idx = first_index(bad)
                raise OPEInputError(
                    f"eval_pscore: expected exp(eval_log_pscore) = {linear[idx]!r}, found {self.eval_pscore[idx]!r} at index {format_index(idx)}"
                )
        probs = self.eval_action_probs
        if probs is not None:
            probs = np.asarray(probs, dtype=np.float64)
            if probs.ndim != 4 or probs.shape[:3] != shape:
                raise OPEInputError(f"eval_action_probs: expected shape {shape + ('n_actions',)}, found {probs.shape}")
            check_finite("eval_action_probs", probs, OPEInputError)
            object.__setattr__(self, "eval_action_probs", owned_readonly(probs))

    @property
    def n_policies(self) -> int:
        return len(self.policy_names)

    def check_dataset(self, dataset: LoggedDataset) -> None:
        """Raise ``OPEInputError`` unless these inputs line up with ``dataset`` (shapes and padding)."""
        n, H = dataset.n_trajectories, dataset.horizon
        if self.eval_pscore.shape[1:] != (n, H):
            raise OPEInputError(
                f"eval_pscore: expected (n, H) = {(n, H)} to match the dataset, found {self.eval_pscore.shape[1:]}"
            )
        padded = ~dataset.mask
        if padded.any():
            for name, fill in (("eval_pscore", 1.0), ("q_hat", 0.0), ("v_hat", 0.0), ("eval_log_pscore", 0.0)):
                value = getattr(self, name)
                if value is None:
                    continue
                bad = (value != fill) & padded
                if bad.any():
                    idx = first_index(bad)
                    raise OPEInputError(
                        f"{name}: expected {fill} on padded steps (mask False), found {value[idx]!r} at index {format_index(idx)}"
                    )
        if self.eval_action_probs is not None and dataset.action_space.is_discrete:
            if self.eval_action_probs.shape[-1] != dataset.action_space.n_actions:
                raise OPEInputError(
                    f"eval_action_probs: expected {dataset.action_space.n_actions} actions, found {self.eval_action_probs.shape[-1]}"
                )

    @classmethod
    def from_obp(
        cls,
        dataset: LoggedDataset,
        action_dist: np.ndarray | Mapping[str, np.ndarray] | None = None,
        estimated_rewards_by_reg_model: np.ndarray | None = None,
        *,
        evaluation_policy_pscore_cascade: np.ndarray | Mapping[str, np.ndarray] | None = None,
        evaluation_policy_pscore_item_position: np.ndarray | Mapping[str, np.ndarray] | None = None,
        keep_action_dist: bool = False,
        ground_truth: Sequence[float] | np.ndarray | None = None,
    ) -> OPEInput:
        """Inputs from the arrays Open Bandit Pipeline's estimators take, under OBP's argument names.

        One-step logs: ``action_dist`` (n, A, len_list) or (n, A) — one array, or a dict of policy name → array
        (a single array is named ``"evaluation_policy"``); ``estimated_rewards_by_reg_model`` q̂(x, a, slot) of the
        same shape, one array for every policy (it does not depend on the policy). Only what the estimators
        read is kept: π_e of the logged action at the logged position, V̂(x) = Σ_a π_e(a | x) q̂(x, a) and q̂ of
        the logged action, the last a broadcast view, not a copy per policy; the (n, A) distributions are
        kept (``eval_action_probs``, for ``mips``) only with ``keep_action_dist``. Policies are processed one at
        a time, so the peak is one policy's distribution at its logged positions.

        Ranking logs (``dataset.info.slate``): ``evaluation_policy_pscore_cascade`` (OBP's flat
        (n · len_list,) layout, or (n, len_list)), π_e of the logged top-t prefix, becomes the per-slot
        conditional ``eval_pscore``; ``evaluation_policy_pscore_item_position`` gives the item-position
        marginal ratios (``marginal_weights``) that ``iips`` reads.
        """
        if dataset.info.slate:
            given = [k for k, v in (("action_dist", action_dist), ("estimated_rewards_by_reg_model", estimated_rewards_by_reg_model)) if v is not None]
            if given or keep_action_dist:
                raise OPEInputError(
                    f"{', '.join(given) or 'keep_action_dist'}: expected None for a ranking log (info.slate; it reads "
                    "evaluation_policy_pscore_cascade and evaluation_policy_pscore_item_position), found one given"
                )
            return _slate_from_obp(cls, dataset, evaluation_policy_pscore_cascade, evaluation_policy_pscore_item_position, ground_truth)
        slate_keys = [
            k for k, v in (("evaluation_policy_pscore_cascade", evaluation_policy_pscore_cascade),
                           ("evaluation_policy_pscore_item_position", evaluation_policy_pscore_item_position)) if v is not None
        ]  # fmt: skip
        if slate_keys:
            raise OPEInputError(
                f"{', '.join(slate_keys)}: expected None for a one-step log (info.slate False; it reads action_dist), found one given"
            )
        return _bandit_from_obp(cls, dataset, action_dist, estimated_rewards_by_reg_model, keep_action_dist, ground_truth)

    @classmethod
    def from_scope_rl(cls, input_dict: Mapping[str, Mapping[str, Any]], dataset: LoggedDataset) -> OPEInput:
        """Convert SCOPE-RL's per-policy input dict (discrete actions).

        Each policy's entry holds flat arrays over the dataset's ``n * H`` steps (index ``i * H + t``):
        ``evaluation_policy_action_dist`` (size, n_actions), ``state_action_value_prediction``
        (size, n_actions) or None, ``initial_state_value_prediction`` (n,) or None,
        ``on_policy_policy_value`` (on-policy returns; their mean and standard error become the ground truth)
        or None, optional ``state_marginal_importance_weight`` and ``state_action_marginal_importance_weight``
        (size,), and ``gamma``, which must equal the dataset's.
        """
        return _from_scope_rl(cls, input_dict, dataset)


def truth_fields(
    ground_truth: Sequence[float] | np.ndarray | None, ground_truth_se: Sequence[float] | np.ndarray | None, n_policies: int
) -> dict[str, np.ndarray | None]:
    """``ground_truth`` / ``ground_truth_se`` as OPEInput takes them: None without a truth, standard errors 0
    (exact values) when only the truth is given."""
    if ground_truth is None:
        return {"ground_truth": None, "ground_truth_se": None}
    se = np.zeros(n_policies) if ground_truth_se is None else np.asarray(ground_truth_se, dtype=np.float64)
    return {"ground_truth": np.asarray(ground_truth, dtype=np.float64), "ground_truth_se": se}


def _gather(probs_or_values: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Entry of the logged action along the last axis: (..., n, H, A), (n, H) -> (..., n, H)."""
    index = np.broadcast_to(np.asarray(actions, dtype=np.intp)[..., None], probs_or_values.shape[:-1] + (1,))  # a view
    return np.take_along_axis(probs_or_values, index, axis=-1)[..., 0]


def evaluation_action_probs(dataset: LoggedDataset, policies: Sequence[DiscretePolicy]) -> np.ndarray:
    """π_e(· | s_t) of every policy on every logged step, shape (P, n, H, A); zeros on padded steps."""
    if not dataset.action_space.is_discrete:
        raise OPEInputError("policies: continuous-action evaluation policies are not supported yet (kernel ratios)")
    A = dataset.action_space.n_actions
    traj, step = np.nonzero(dataset.mask)
    obs = dataset.observations[traj, step]
    out = np.zeros((len(policies), dataset.n_trajectories, dataset.horizon, A))
    for p, policy in enumerate(policies):
        if isinstance(policy, ActionDistribution):
            try:
                given = policy.on_steps(dataset.n_trajectories, dataset.horizon, A, dataset.positions, dataset.mask)
            except ActionDistributionError as error:
                raise OPEInputError(f"policies[{p}]: {error}") from None
            out[p] = np.where(dataset.mask[..., None], given, 0.0)
            continue
        if not isinstance(policy, DiscretePolicy):
            raise OPEInputError(f"policies[{p}]: expected a DiscretePolicy (with n_actions and action_probs), found {type(policy).__name__}")
        if policy.n_actions != A:
            raise OPEInputError(f"policies[{p}] ({policy.name!r}).n_actions: expected {A}, found {policy.n_actions}")
        probs = np.asarray(policy.action_probs(obs, step), dtype=np.float64)
        if probs.shape != (len(obs), A):
            raise OPEInputError(f"policies[{p}] ({policy.name!r}).action_probs: expected shape {(len(obs), A)}, found {probs.shape}")
        sums = probs.sum(axis=-1)
        if not np.isfinite(probs).all() or (probs < 0).any() or not np.allclose(sums, 1.0, atol=1e-6):
            raise OPEInputError(f"policies[{p}] ({policy.name!r}).action_probs: expected non-negative rows summing to 1")
        out[p, traj, step] = probs
    return out


def build_inputs(
    dataset: LoggedDataset,
    policies: Sequence[DiscretePolicy],
    *,
    q_tables: Sequence[np.ndarray] | None = None,
    q_function: str = "auto",
    weights: str | DiceSettings | FlowWeights | None = "auto",
    minimax: MinimaxConfig | None = None,
    fqe: FQEConfig | None = None,
    n_folds: int = 1,
    fold_seed: int = 0,
    ground_truth: Sequence[float] | np.ndarray | None = None,
    ground_truth_se: Sequence[float] | np.ndarray | None = None,
    model: Any = None,
) -> OPEInput:
    """Stack everything the estimators need for ``policies`` on ``dataset``.

    ``policies`` are ``DiscretePolicy`` objects or ``ActionDistribution`` arrays of their probabilities on the
    logged steps (``opelab.policies.given``).

    Q̂ comes from ``q_function``: ``"fqe"``, tabular fitted Q evaluation on the logged data
    (``opelab.ope.qfunction``), ``"neural_fqe"``, FQE with one torch network for all policies
    (``opelab.ope.fqe``, budget ``fqe``), or ``"mql"``, minimax Q-learning (``opelab.ope.minimax``); the
    last two need the ``[rl]`` extra; or ``"regression"`` on one-step logs, a reward model q̂(x, a) from
    scikit-learn (``model``, default gradient boosting; ``opelab.ope.regression``), cross-fitted over
    ``n_folds`` folds and stored once for all policies (``q_hat`` is a broadcast view). ``"auto"`` is tabular
    FQE for integer states, ``"regression"`` for other one-step logs and neural FQE otherwise — unless
    ``q_tables`` gives one Q table per policy,
    indexed ``[t, s, a]`` (shape (H, S, A)) or ``[s, a]`` (shape (S, A)), e.g. the exact Q-function of a
    tabular task.

    Marginal weights: ``"tabular"`` estimates them from the data by the empirical flow
    (``opelab.ope.weights``; on tables this is the solution of MWL and of every DICE setting); a DICE
    setting (``"dualdice"``, ``"gendice"``, ``"bestdice"``, ``"mwl"`` or a ``DiceSettings``) learns them with
    the neural solver of ``opelab.ope.minimax`` (ζ_t(s, a), then w_t(s) by regression, see ``fit_state_weights``); a ``FlowWeights``
    gives per-step tables (e.g. the exact ones of a known model); ``None`` leaves them out; ``"auto"`` is
    ``"tabular"`` for integer states and ``None`` otherwise. ``minimax`` sets the networks and budget of
    the neural learners.

    ``n_folds = K > 1`` cross-fits what is estimated from the data (Q̂ and tabular weights): the
    trajectories are split into K random folds (``fold_seed``) and each fold's values come from models fit
    on the other K − 1 folds, as double reinforcement learning requires (Kallus & Uehara, 2020).
    """
    from opelab.data.behavior import fold_indices  # here: it imports scipy.optimize
    from opelab.ope.dice import DICE_SETTINGS, DiceSettings
    from opelab.ope.qfunction import fit_tabular_fqe, q_on_logged_steps
    from opelab.ope.weights import FlowWeights, on_logged_steps, solve_flow_weights, transition_counts

    if len(policies) == 0:
        raise OPEInputError("policies: expected at least one policy, found 0")
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or not 1 <= n_folds <= dataset.n_trajectories:
        raise OPEInputError(f"n_folds: expected an int in [1, n_trajectories = {dataset.n_trajectories}], found {n_folds!r}")
    obs = np.asarray(dataset.observations)
    integer_states = obs.dtype.kind in "iu" and obs.ndim == 2
    if q_function == "auto":
        q_function = "fqe" if integer_states else "regression" if dataset.horizon == 1 else "neural_fqe"
    if isinstance(weights, str) and weights == "auto":
        weights = "tabular" if integer_states and q_function != "regression" else None
    if model is not None and q_function != "regression":
        raise OPEInputError(f"model: a scikit-learn reward model is used with q_function='regression', found q_function={q_function!r}")
    neural_w = isinstance(weights, DiceSettings) or (isinstance(weights, str) and weights in DICE_SETTINGS)
    if weights is not None and not isinstance(weights, FlowWeights) and weights != "tabular" and not neural_w:
        raise OPEInputError(
            f"weights: expected 'tabular', one of {sorted(DICE_SETTINGS)}, a DiceSettings, a FlowWeights or None, found {weights!r}"
        )
    if q_function not in ("auto", "fqe", "neural_fqe", "mql", "regression"):
        raise OPEInputError(f"q_function: expected 'auto', 'fqe', 'neural_fqe', 'mql' or 'regression', found {q_function!r}")
    if ground_truth_se is not None and ground_truth is None:
        raise OPEInputError("ground_truth_se: given without ground_truth")
    probs = evaluation_action_probs(dataset, policies)
    actions = np.asarray(dataset.actions)
    pscore = np.where(dataset.mask, _gather(probs, actions), 1.0)
    if q_function == "regression" and q_tables is None:
        return _regression_inputs(dataset, policies, probs, pscore, weights, model, n_folds, fold_seed, ground_truth, ground_truth_se)
    fit_q, fit_w = q_tables is None and q_function == "fqe", isinstance(weights, str) and weights == "tabular"
    neural_q = q_tables is None and q_function in ("mql", "neural_fqe")
    tables = policy_tables(dataset, policies) if fit_q or fit_w else None

    if q_tables is not None:
        if len(q_tables) != len(policies):
            raise OPEInputError(f"q_tables: expected one table per policy ({len(policies)}), found {len(q_tables)}")
        q_full = q_on_logged_steps(dataset, _stack_q_tables(dataset, q_tables))
    w_state = w_pair = None
    if isinstance(weights, FlowWeights):
        w_state, w_pair = on_logged_steps(dataset, weights)

    if fit_q or fit_w or neural_q or neural_w:
        from opelab.ope import minimax as mm

        if tables is not None:
            S = tables.shape[2]
            absorbing = np.concatenate([tables, np.zeros((len(policies), dataset.horizon, 1, tables.shape[3]))], axis=2)
        n_states = int(obs.max()) + 1 if integer_states else None
        if fit_q or neural_q:
            q_full = np.zeros_like(probs)
        if fit_w or neural_w:
            w_pair = np.zeros(pscore.shape)
            w_state = np.zeros(pscore.shape)
        for train, test in fold_indices(dataset.n_trajectories, n_folds, fold_seed):
            train_ds = dataset if n_folds == 1 else dataset.subset(train)
            test_ds = dataset if n_folds == 1 else dataset.subset(test)
            train_probs = probs if n_folds == 1 else probs[:, train]  # no copy of (P, n, H, A) without folds
            if fit_q:
                q_full[:, test] = q_on_logged_steps(test_ds, fit_tabular_fqe(train_ds, tables))
            if neural_q and q_function == "mql":
                q_full[:, test] = mm.predict_q(mm.fit_q(train_ds, train_probs, minimax, n_states), test_ds)
            if neural_q and q_function == "neural_fqe":
                from opelab.ope.fqe import fit_fqe, predict_fqe

                fitted_q = fit_fqe(train_ds, train_probs, config=fqe, n_states=n_states)
                if n_folds == 1:  # no second (P, n, H, A) array: the untouched zeros above are never paged in
                    q_full = predict_fqe(fitted_q, test_ds)[0]
                else:
                    q_full[:, test] = predict_fqe(fitted_q, test_ds)[0]
            if fit_w:
                fitted = solve_flow_weights(transition_counts(train_ds, n_states=S), absorbing)
                w_state[:, test], w_pair[:, test] = on_logged_steps(test_ds, fitted)
            if neural_w:
                fitted_pair = mm.fit_weights(train_ds, train_probs, weights, minimax, n_states)
                fitted_state = mm.fit_state_weights(fitted_pair, train_ds, minimax)
                w_pair[:, test] = mm.predict_weights(fitted_pair, test_ds)
                w_state[:, test] = mm.predict_weights(fitted_state, test_ds)

    q_hat = _gather(q_full, actions)
    q_hat[:, ~dataset.mask] = 0.0  # in place: no second (P, n, H) array
    v_hat = np.einsum("pnha,pnha->pnh", probs, q_full)  # Σ_a π(a|s_t) Q̂(s_t, a), without a (P, n, H, A) temporary
    del q_full  # (P, n, H, A): not part of the inputs, so not held while they are checked
    return OPEInput(  # arrays made here are frozen, so the container holds them without copying
        policy_names=tuple(p.name for p in policies),
        eval_pscore=freeze(pscore),
        eval_action_probs=freeze(probs),
        q_hat=freeze(q_hat),
        v_hat=freeze(v_hat),
        initial_v_hat=v_hat[:, :, 0],
        state_marginal_weights=None if w_state is None else freeze(w_state),
        marginal_weights=None if w_pair is None else freeze(w_pair),
        **truth_fields(ground_truth, ground_truth_se, len(policies)),
        cross_fit_folds=(  # only when every nuisance was
            n_folds if n_folds > 1 and (fit_q or neural_q) and (fit_w or neural_w) else None
        ),
    )


def _regression_inputs(
    dataset: LoggedDataset,
    policies: Sequence[Any],
    probs: np.ndarray,
    pscore: np.ndarray,
    weights: Any,
    model: Any,
    n_folds: int,
    fold_seed: int,
    ground_truth: Sequence[float] | np.ndarray | None,
    ground_truth_se: Sequence[float] | np.ndarray | None,
) -> OPEInput:
    """One-step logs with a scikit-learn reward model: q̂ once for every policy, V̂ = Σ_a π(a | x) q̂(x, a)."""
    from opelab.ope.regression import fit_reward_model

    if weights is not None:
        raise OPEInputError(f"weights: expected None with q_function='regression' (one-step logs need no marginal weights), found {weights!r}")
    fitted = fit_reward_model(dataset, model, n_folds, fold_seed)
    q_hat, v_hat = fitted.q_and_v(probs)
    return OPEInput(
        policy_names=tuple(p.name for p in policies),
        eval_pscore=freeze(pscore),
        eval_action_probs=freeze(probs),
        q_hat=q_hat,
        v_hat=v_hat,
        initial_v_hat=v_hat[:, :, 0],
        **truth_fields(ground_truth, ground_truth_se, len(policies)),
        cross_fit_folds=n_folds if n_folds > 1 else None,
    )


def policy_tables(dataset: LoggedDataset, policies: Sequence[DiscretePolicy]) -> np.ndarray:
    """π_t(a | s) of each policy on every step and every state id up to the largest logged one,
    shape (P, H, S, A), for tabular methods that need the policies beyond the logged pairs."""
    states = np.asarray(dataset.observations)
    if states.dtype.kind not in "iu" or states.ndim != 2:
        raise OPEInputError("policies: tabular policy tables need integer state observations of shape (n, H)")
    given = [p.name for p in policies if isinstance(p, ActionDistribution)]
    if given:
        raise OPEInputError(
            f"policies: tabular FQE and tabular weights need each policy on every state, but {given} are given only on the "
            "logged steps (ActionDistribution); pass q_function='neural_fqe' (or 'regression' on one-step logs) and weights=None"
        )
    S, H = int(states.max()) + 1, dataset.horizon
    grid_states, grid_steps = np.tile(np.arange(S), H), np.repeat(np.arange(H), S)
    return np.stack([np.asarray(p.action_probs(grid_states, grid_steps), dtype=np.float64).reshape(H, S, -1) for p in policies])


def _stack_q_tables(dataset: LoggedDataset, q_tables: Sequence[np.ndarray]) -> np.ndarray:
    """Given Q tables, each (H, S, A) or stationary (S, A), checked and stacked as (P, H, S, A)."""
    states = np.asarray(dataset.observations)
    if states.dtype.kind not in "iu" or states.ndim != 2:
        raise OPEInputError("q_tables: tables need integer state observations of shape (n, H)")
    A, H = dataset.action_space.n_actions, dataset.horizon
    stacked = []
    for i, q in enumerate(q_tables):
        table = np.asarray(q, dtype=np.float64)
        if table.ndim == 2:
            table = table[None]
        if table.ndim != 3 or table.shape[-1] != A or table.shape[0] not in (1, H):
            raise OPEInputError(f"q_tables[{i}]: expected shape (H={H}, S, {A}) or (S, {A}), found {np.shape(q)}")
        if states.max() >= table.shape[1]:
            raise OPEInputError(f"q_tables[{i}]: has {table.shape[1]} states, but the data holds state {states.max()}")
        if stacked and table.shape[1] != stacked[0].shape[1]:
            raise OPEInputError(f"q_tables[{i}]: expected {stacked[0].shape[1]} states like q_tables[0], found {table.shape[1]}")
        stacked.append(np.broadcast_to(table, (H, *table.shape[1:])))
    return np.stack(stacked)


def _from_scope_rl(
    cls: type[OPEInput], input_dict: Mapping[str, Mapping[str, Any]], dataset: LoggedDataset
) -> OPEInput:
    if not dataset.action_space.is_discrete:
        raise OPEInputError("input_dict: only discrete-action SCOPE-RL inputs are supported so far")
    if len(input_dict) == 0:
        raise OPEInputError("input_dict: expected at least one evaluation policy, found none")
    n, H, A = dataset.n_trajectories, dataset.horizon, dataset.action_space.n_actions
    size = n * H
    actions = np.asarray(dataset.actions)
    mask = dataset.mask
    names, pscores, probs_all, q_all, v_all, init_all, truth, truth_se = [], [], [], [], [], [], [], []
    sm_all: list[np.ndarray] = []
    sam_all: list[np.ndarray] = []
    for name, entry in input_dict.items():
        where = f"input_dict[{name!r}]"
        if "gamma" in entry and not np.isclose(float(entry["gamma"]), dataset.gamma):
            raise OPEInputError(f"{where}.gamma: expected the dataset's gamma {dataset.gamma}, found {entry['gamma']}")
        dist = np.asarray(entry.get("evaluation_policy_action_dist"), dtype=np.float64)
        if dist.shape != (size, A):
            raise OPEInputError(f"{where}.evaluation_policy_action_dist: expected shape {(size, A)}, found {dist.shape}")
        dist = np.where(mask[..., None], dist.reshape(n, H, A), 0.0)
        names.append(str(name))
        probs_all.append(dist)
        pscores.append(np.where(mask, _gather(dist, actions), 1.0))
        sav = entry.get("state_action_value_prediction")
        if sav is not None:
            sav = np.asarray(sav, dtype=np.float64)
            if sav.shape != (size, A):
                raise OPEInputError(f"{where}.state_action_value_prediction: expected shape {(size, A)}, found {sav.shape}")
            sav = np.where(mask[..., None], sav.reshape(n, H, A), 0.0)
            q_all.append(np.where(mask, _gather(sav, actions), 0.0))
            v_all.append((dist * sav).sum(axis=-1))
        for key, parts in (("state_marginal_importance_weight", sm_all), ("state_action_marginal_importance_weight", sam_all)):
            weights = entry.get(key)
            if weights is not None:
                weights = np.asarray(weights, dtype=np.float64)
                if weights.shape != (size,):
                    raise OPEInputError(f"{where}.{key}: expected shape ({size},), found {weights.shape}")
                parts.append(weights.reshape(n, H))
        init = entry.get("initial_state_value_prediction")
        if init is not None:
            init = np.asarray(init, dtype=np.float64)
            if init.shape != (n,):
                raise OPEInputError(f"{where}.initial_state_value_prediction: expected shape ({n},), found {init.shape}")
            init_all.append(init)
        on_policy = entry.get("on_policy_policy_value")
        if on_policy is not None:
            returns = np.atleast_1d(np.asarray(on_policy, dtype=np.float64))
            truth.append(returns.mean())
            truth_se.append(returns.std(ddof=1) / np.sqrt(len(returns)) if len(returns) > 1 else 0.0)

    def stacked(parts: list[np.ndarray], key: str) -> np.ndarray | None:
        if len(parts) == 0:
            return None
        if len(parts) != len(names):
            raise OPEInputError(f"input_dict: {key} is given for some policies but not all")
        return np.stack(parts)

    return cls(
        policy_names=tuple(names),
        eval_pscore=np.stack(pscores),
        eval_action_probs=np.stack(probs_all),
        q_hat=stacked(q_all, "state_action_value_prediction"),
        v_hat=stacked(v_all, "state_action_value_prediction"),
        initial_v_hat=stacked(init_all, "initial_state_value_prediction"),
        state_marginal_weights=stacked(sm_all, "state_marginal_importance_weight"),
        marginal_weights=stacked(sam_all, "state_action_marginal_importance_weight"),
        ground_truth=stacked([np.asarray(t) for t in truth], "on_policy_policy_value"),
        ground_truth_se=stacked([np.asarray(t) for t in truth_se], "on_policy_policy_value"),
    )


def _named(value: np.ndarray | Mapping[str, np.ndarray] | None, key: str) -> dict[str, Any]:
    if value is None:
        raise OPEInputError(f"{key}: expected an array or a dict of policy name -> array, found None")
    if isinstance(value, Mapping):
        if len(value) == 0:
            raise OPEInputError(f"{key}: expected at least one policy, found an empty dict")
        return {str(name): array for name, array in value.items()}
    return {"evaluation_policy": value}


_OBP_CHUNK = 256  # rounds of an (n, A, L) array read at a time: a chunk stays in cache for its passes


def _positioned(array: Any, key: str, n: int, A: int, positions: np.ndarray | None) -> np.ndarray:
    """An (n, A) or (n, A, L) array as (n, A, L) (a view), checked against the logged positions."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[:2] != (n, A):
        raise OPEInputError(f"{key}: expected shape (n_rounds, n_actions, len_list) = ({n}, {A}, L) or ({n}, {A}), found {array.shape}")
    L = array.shape[2]
    if positions is None and L != 1:
        raise OPEInputError(f"{key}: has len_list = {L} positions, but the dataset logs no positions")
    if positions is not None and positions.max() >= L:
        raise OPEInputError(f"{key}: has len_list = {L} positions, but the dataset logs position {positions.max()}")
    return array


def _first_bad(chunk: np.ndarray, key: str, offset: int, probabilities: bool) -> None:
    bad = ~np.isfinite(chunk) | (chunk < 0) if probabilities else ~np.isfinite(chunk)
    if bad.any():
        i, a, slot = first_index(bad)
        what = "finite non-negative probabilities" if probabilities else "finite values"
        raise OPEInputError(f"{key}: expected {what}, found {chunk[i, a, slot]!r} at (round, action, position) ({offset + i}, {a}, {slot})")


def _bandit_from_obp(
    cls: type[OPEInput],
    dataset: LoggedDataset,
    action_dist: np.ndarray | Mapping[str, np.ndarray] | None,
    q_model: np.ndarray | None,
    keep_action_dist: bool,
    ground_truth: Sequence[float] | np.ndarray | None,
) -> OPEInput:
    """One pass over each policy's (n, A, L) array, a chunk of rounds at a time: the chunk is checked
    (finite, non-negative, summing to 1 at the logged position), and π_e of the logged action and
    V̂ = Σ_a π_e q̂ at the logged position are read off it. Every position's sums are formed (contiguous
    reads; the positions interleave in memory, so reading only the logged one would touch the same cache
    lines), and the logged one is kept."""
    if dataset.horizon != 1 or not dataset.action_space.is_discrete:
        raise OPEInputError(
            f"dataset: expected a one-step log with discrete actions (horizon 1), found horizon {dataset.horizon}, "
            f"{dataset.action_space.type} actions; use build_inputs for trajectories"
        )
    dists = _named(action_dist, "action_dist")
    n, A = dataset.n_trajectories, dataset.action_space.n_actions
    positions = None if dataset.positions is None else dataset.positions[:, 0]
    pos = np.zeros(n, dtype=np.intp) if positions is None else positions.astype(np.intp)
    actions = dataset.actions[:, 0].astype(np.intp)
    rows = np.arange(n)
    q = None if q_model is None else _positioned(q_model, "estimated_rewards_by_reg_model", n, A, positions)
    P = len(dists)
    pscore = np.empty((P, n, 1))
    v_hat = None if q is None else np.empty((P, n, 1))
    kept = np.empty((P, n, 1, A)) if keep_action_dist else None
    for p, (name, dist) in enumerate(dists.items()):
        key = f"action_dist[{name!r}]" if isinstance(action_dist, Mapping) else "action_dist"
        d = _positioned(dist, key, n, A, positions)
        if q is not None and q.shape[2] != d.shape[2]:
            raise OPEInputError(f"estimated_rewards_by_reg_model: expected len_list = {d.shape[2]} like {key}, found {q.shape[2]}")
        for lo in range(0, n, _OBP_CHUNK):
            hi = min(n, lo + _OBP_CHUNK)
            chunk, r, at = d[lo:hi], rows[: hi - lo], pos[lo:hi]
            if not (chunk.min() >= 0 and chunk.max() < np.inf):  # negative, NaN or inf: named with its index
                _first_bad(chunk, key, lo, probabilities=True)
            sums = np.einsum("nal->nl", chunk)[r, at]
            if (np.abs(sums - 1.0) > 1e-6).any():
                i = int(np.flatnonzero(np.abs(sums - 1.0) > 1e-6)[0])
                raise OPEInputError(f"{key}: expected each round's probabilities (at its logged position) to sum to 1, found {sums[i]!r} in round {lo + i}")
            pscore[p, lo:hi, 0] = chunk[r, actions[lo:hi], at]
            if v_hat is not None:
                q_chunk = q[lo:hi]
                if p == 0 and not np.isfinite(q_chunk.sum()):
                    _first_bad(q_chunk, "estimated_rewards_by_reg_model", lo, probabilities=False)
                v_hat[p, lo:hi, 0] = np.einsum("nal,nal->nl", chunk, q_chunk)[r, at]
            if kept is not None:
                kept[p, lo:hi, 0] = chunk[r, :, at]
    q_hat = None
    if q is not None:
        q_hat = np.broadcast_to(q[rows, actions, pos][None, :, None], (P, n, 1))  # one array for every policy
    return cls(
        policy_names=tuple(dists),
        eval_pscore=freeze(pscore),
        q_hat=q_hat,
        v_hat=None if v_hat is None else freeze(v_hat),
        initial_v_hat=None if v_hat is None else v_hat[:, :, 0],
        eval_action_probs=None if kept is None else freeze(kept),
        **truth_fields(ground_truth, None, P),
    )


def _slate_from_obp(
    cls: type[OPEInput],
    dataset: LoggedDataset,
    cascade: np.ndarray | Mapping[str, np.ndarray] | None,
    item_position: np.ndarray | Mapping[str, np.ndarray] | None,
    ground_truth: Sequence[float] | np.ndarray | None,
) -> OPEInput:
    n, L = dataset.n_trajectories, dataset.horizon
    if not dataset.mask.all():
        raise OPEInputError("dataset: expected every ranking-log round to fill all len_list slots")
    cascades = _named(cascade, "evaluation_policy_pscore_cascade")
    marginals = None if item_position is None else _named(item_position, "evaluation_policy_pscore_item_position")
    if marginals is not None and list(marginals) != list(cascades):
        raise OPEInputError(f"evaluation_policy_pscore_item_position: expected the policies {list(cascades)}, found {list(marginals)}")
    if marginals is not None and dataset.behavior_marginal_pscore is None:
        raise OPEInputError("evaluation_policy_pscore_item_position: given, but the dataset has no behavior_marginal_pscore")

    def per_slot(value: np.ndarray, key: str) -> np.ndarray:
        array = np.asarray(value, dtype=np.float64)
        if array.shape not in ((n * L,), (n, L)):
            raise OPEInputError(f"{key}: expected shape (n_rounds * len_list,) = ({n * L},) or {(n, L)}, found {array.shape}")
        array = array.reshape(n, L)
        bad = ~np.isfinite(array) | (array < 0) | (array > 1)
        if bad.any():
            idx = first_index(bad)
            raise OPEInputError(f"{key}: expected probabilities in [0, 1], found {array[idx]!r} at (round, slot) {format_index(idx)}")
        return array

    pscore = np.empty((len(cascades), n, L))
    weights = None if marginals is None else np.empty((len(cascades), n, L))
    for p, name in enumerate(cascades):
        key = "evaluation_policy_pscore_cascade" + (f"[{name!r}]" if isinstance(cascade, Mapping) else "")
        top = per_slot(cascades[name], key)
        increase = np.diff(top, axis=1) > 1e-12 * top[:, :-1]
        if increase.any():
            i, t = first_index(increase)
            raise OPEInputError(
                f"{key}: expected probabilities of top-t prefixes, non-increasing in t, found {top[i, t + 1].item()!r} after "
                f"{top[i, t].item()!r} at (round, slot) ({i}, {t + 1})"
            )
        previous = np.concatenate([np.ones((n, 1)), top[:, :-1]], axis=1)
        pscore[p] = safe_divide(top, previous)
        if weights is not None:
            key = "evaluation_policy_pscore_item_position" + (f"[{name!r}]" if isinstance(item_position, Mapping) else "")
            weights[p] = per_slot(marginals[name], key) / dataset.behavior_marginal_pscore
    return cls(
        policy_names=tuple(cascades),
        eval_pscore=freeze(pscore),
        marginal_weights=None if weights is None else freeze(weights),
        **truth_fields(ground_truth, None, len(cascades)),
    )


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (a prefix π_e never shows)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
