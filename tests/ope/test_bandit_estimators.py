"""The bandit and slate estimators (``opelab.ope.estimators.bandit``): hand-computed cases with their interval
values and bootstrap resamples, exact identities with the trajectory estimators, unbiasedness against the exact
values of small bandit and slate tasks built here, consistency on large logs, and errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.ope import OPEInputError, build_continuous_inputs, build_inputs, evaluate, get_estimator
from opelab.ope.estimators import EstimationContext
from opelab.ope.estimators.base import ESTIMATORS, applicable, estimator_grid
from opelab.ope.inputs import OPEInput
from opelab.ope.intervals import bootstrap_counts
from opelab.policies.continuous import DeterministicPolicy, GaussianPolicy

INF = math.inf
ARRAYS = ("eval_pscore", "q_hat", "v_hat", "initial_v_hat", "eval_action_probs", "marginal_weights", "eval_log_pscore")


# ----------------------------------------------------------------------------------------- builders


def bandit_log(contexts, actions, rewards, pscore, n_actions, action_probs=None, features=None) -> LoggedDataset:
    """A one-step log: one round per trajectory, horizon 1."""
    n = len(actions)
    return LoggedDataset(
        observations=np.asarray(contexts, dtype=np.int64)[:, None],
        actions=np.asarray(actions, dtype=np.int64)[:, None],
        rewards=np.asarray(rewards, dtype=np.float64)[:, None],
        terminals=np.ones((n, 1), dtype=bool),
        mask=np.ones((n, 1), dtype=bool),
        behavior_pscore=np.asarray(pscore, dtype=np.float64)[:, None],
        info=DatasetInfo(
            task="bandit", gamma=1.0, action_space=ActionSpace.discrete(n_actions), action_context=features
        ),
        behavior_action_probs=None if action_probs is None else np.asarray(action_probs, dtype=np.float64)[:, None, :],
    )


def slate_log(contexts, slates, rewards, pscore, n_items, marginal_pscore=None, log_pscore=None) -> LoggedDataset:
    """A ranking log: one round per trajectory, step t = slot t, γ = 1; ``pscore[i, t]`` = π_b(a_t | x, a_<t)."""
    slates = np.asarray(slates, dtype=np.int64)
    n, K = slates.shape
    return LoggedDataset(
        observations=np.repeat(np.asarray(contexts, dtype=np.int64)[:, None], K, axis=1),
        actions=slates,
        rewards=np.asarray(rewards, dtype=np.float64),
        terminals=np.zeros((n, K), dtype=bool),
        mask=np.ones((n, K), dtype=bool),
        behavior_pscore=np.asarray(pscore, dtype=np.float64),
        info=DatasetInfo(task="slate", gamma=1.0, action_space=ActionSpace.discrete(n_items), len_list=K, slate=True),
        behavior_marginal_pscore=None if marginal_pscore is None else np.asarray(marginal_pscore, dtype=np.float64),
        behavior_log_pscore=log_pscore,
    )


def subset_inputs(inputs: OPEInput, idx: np.ndarray) -> OPEInput:
    """The inputs of the rounds ``idx`` (repeats allowed), every array indexed along its trajectory axis."""
    arrays = {name: getattr(inputs, name)[:, idx] for name in ARRAYS if getattr(inputs, name) is not None}
    return OPEInput(policy_names=inputs.policy_names, **arrays)


def recomputed_on_resamples(ds: LoggedDataset, inputs: OPEInput, estimator, counts: np.ndarray) -> np.ndarray:
    """The estimate on each resample (row of ``counts``), by building the resampled log and evaluating it: (P, B)."""
    out = []
    for row in counts:
        idx = np.repeat(np.arange(ds.n_trajectories), row.astype(np.int64))
        out.append(evaluate(ds.subset(idx), subset_inputs(inputs, idx), [estimator]).estimates[0])
    return np.stack(out, axis=1)


# --------------------------------------------------------------------------- hand-computed one-step case
#
# Four rounds. Policy 0 has w = [0.5, 2, 2, 3]; policy 1 is the behavior policy (w = 1). Q̂ = 0.5 on every
# logged action and V̂ = [0.6, 0.4, 0.8, 0.2] for both policies, so DR's per-round value is V̂ + ŵ (r − 0.5).

HAND_PB = [0.5, 0.25, 0.25, 0.25]
HAND_PE = [[0.25, 0.5, 0.5, 0.75], HAND_PB]
HAND_R = [1.0, 0.0, 1.0, 1.0]
HAND_V = [0.6, 0.4, 0.8, 0.2]


def hand_bandit() -> tuple[LoggedDataset, OPEInput]:
    ds = bandit_log([0, 1, 2, 3], [0, 1, 2, 0], HAND_R, HAND_PB, n_actions=3)
    v = np.array([HAND_V, HAND_V])[..., None]
    inputs = OPEInput(
        policy_names=("target", "behavior"),
        eval_pscore=np.array(HAND_PE)[..., None],
        q_hat=np.full((2, 4, 1), 0.5),
        v_hat=v,
        initial_v_hat=v[..., 0],
    )
    return ds, inputs


def _dr(weights):
    return [v + w * (r - 0.5) for v, w, r in zip(HAND_V, weights, HAND_R)]


# (name, options, per-round values for policy 0, for policy 1)
HAND_CASES = [
    ("ipw", {}, [0.5, 0.0, 2.0, 3.0], HAND_R),
    ("ipw", {"lambda_": 2.0}, [0.5, 0.0, 2.0, 2.0], HAND_R),
    ("dr", {}, [0.85, -0.6, 1.8, 1.7], _dr([1, 1, 1, 1])),
    ("dr", {"lambda_": 2.0}, [0.85, -0.6, 1.8, 1.2], _dr([1, 1, 1, 1])),
    ("switch_dr", {"lambda_": 2.0}, [0.85, -0.6, 1.8, 0.2], _dr([1, 1, 1, 1])),
    ("switch_dr", {"lambda_": 0.0}, HAND_V, HAND_V),
    ("dr_os", {"lambda_": 1.0}, [0.8, 0.2, 1.0, 0.35], _dr([0.5, 0.5, 0.5, 0.5])),  # ŵ = w / (w² + 1)
    ("sg_ipw", {"lambda_": 0.5}, [2 / 3, 0.0, 4 / 3, 1.5], HAND_R),  # ŵ = 2w / (1 + w)
    ("sg_dr", {"lambda_": 0.5}, [0.6 + 1 / 3, 0.4 - 2 / 3, 0.8 + 2 / 3, 0.95], _dr([1, 1, 1, 1])),
]
HAND_ESTIMATES = {  # policy 0, written out by hand from the values above
    "ipw": 1.375,
    "ipw(lambda_=2.0)": 1.125,
    "dr": 0.9375,
    "dr(lambda_=2.0)": 0.8125,
    "switch_dr(lambda_=2.0)": 0.5625,
    "switch_dr(lambda_=0.0)": 0.5,
    "dr_os(lambda_=1.0)": 0.5875,
    "sg_ipw(lambda_=0.5)": 0.875,
    "sg_dr(lambda_=0.5)": 37 / 48,
}


def t_bounds(values: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """X̄ ± t_{1−α/2, n−1} s / √n of per-trajectory values (P, n)."""
    n = values.shape[1]
    half = stats.t.ppf(1 - alpha / 2, n - 1) * values.std(axis=1, ddof=1) / math.sqrt(n)
    return values.mean(axis=1) - half, values.mean(axis=1) + half


@pytest.mark.parametrize(("name", "options", "target", "behavior"), HAND_CASES)
def test_hand_computed_one_step_values_and_t_interval(name, options, target, behavior):
    ds, inputs = hand_bandit()
    est = get_estimator(name, **options)
    assert est.name == name + "".join(f"({k}={v!r})" for k, v in options.items())
    ctx = EstimationContext(ds, inputs)
    want = np.array([target, behavior])
    np.testing.assert_allclose(est.trajectory_values(ctx), want, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(est.interval_values(ctx), want, rtol=1e-14, atol=1e-15)
    table = evaluate(ds, inputs, [est], interval="t")
    assert table.estimate(est.name)[0] == pytest.approx(HAND_ESTIMATES[est.name], rel=1e-14)
    np.testing.assert_allclose(table.estimate(est.name), want.mean(axis=1), rtol=1e-14)
    lower, upper = t_bounds(want)
    np.testing.assert_allclose(table.bounds(est.name), (lower, upper), rtol=1e-12, atol=1e-14)


def test_hand_computed_snipw_and_its_linearised_interval_values():
    ds, inputs = hand_bandit()
    ctx = EstimationContext(ds, inputs)
    est = get_estimator("snipw")
    # Σ w r / Σ w = 5.5 / 7.5 for the target; the logged mean 0.75 for the behavior policy
    np.testing.assert_allclose(est.estimate(ctx), [11 / 15, 0.75], rtol=1e-14)
    # delta method: W̃ (r − μ) + μ with W̃ = w / mean(w) = w / 1.875
    mu = 11 / 15
    w_tilde = np.array([0.5, 2.0, 2.0, 3.0]) / 1.875
    want = w_tilde * (np.array(HAND_R) - mu) + mu
    np.testing.assert_allclose(est.interval_values(ctx)[0], want, rtol=1e-13)
    np.testing.assert_allclose(est.interval_values(ctx)[1], HAND_R, rtol=1e-14)
    table = evaluate(ds, inputs, ["snipw"], interval="t")
    np.testing.assert_allclose(table.bounds("snipw"), t_bounds(np.array([want, HAND_R])), rtol=1e-12)


def test_hand_computed_resampled_estimates():
    """Estimates on three given resamples (counts of each round), written out by hand."""
    ds, inputs = hand_bandit()
    ctx = EstimationContext(ds, inputs)
    counts = np.array([[2.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    ipw = get_estimator("ipw").resampled_estimates(ctx, counts)
    np.testing.assert_allclose(ipw[0], [(2 * 0.5 + 2 + 3) / 4, 3.0, 1.375], rtol=1e-14)
    clipped = get_estimator("ipw", lambda_=2.0).resampled_estimates(ctx, counts)
    np.testing.assert_allclose(clipped[0], [(2 * 0.5 + 2 + 2) / 4, 2.0, 1.125], rtol=1e-14)
    snipw = get_estimator("snipw").resampled_estimates(ctx, counts)
    np.testing.assert_allclose(snipw[0], [(1 + 2 + 3) / (1 + 2 + 3), 1.0, 11 / 15], rtol=1e-14)
    switch = get_estimator("switch_dr", lambda_=2.0).resampled_estimates(ctx, counts)
    np.testing.assert_allclose(switch[0], [(2 * 0.85 + 1.8 + 0.2) / 4, 0.2, 0.5625], rtol=1e-14)


def test_options_are_recorded_in_names_and_do_not_share_arrays():
    ds, inputs = hand_bandit()
    grid = estimator_grid("switch_dr", lambda_=[1, 10])
    assert [e.name for e in grid] == ["switch_dr(lambda_=1.0)", "switch_dr(lambda_=10.0)"]
    assert get_estimator("dr_os", lambda_=np.float64(2)).name == "dr_os(lambda_=2.0)"
    assert get_estimator("switch_dr", lambda_=INF).name == "switch_dr"
    assert get_estimator("sg_dr", lambda_=0).name == "sg_dr"
    assert get_estimator("cascade_dr", lambda_=3.0).name == "cascade_dr(lambda_=3.0)"
    # clipped and unclipped DR (and IPW) side by side in one table, each with its own weights
    names = ["dr", "dr(lambda_=2.0)", "ipw", "ipw(lambda_=2.0)", "switch_dr(lambda_=2.0)", "dr_os(lambda_=1.0)"]
    estimators = ["dr", get_estimator("dr", lambda_=2.0), "ipw", get_estimator("ipw", lambda_=2.0)]
    estimators += [get_estimator("switch_dr", lambda_=2.0), get_estimator("dr_os", lambda_=1.0)]
    table = evaluate(ds, inputs, estimators)
    assert table.estimator_names == tuple(names)
    np.testing.assert_allclose(table.estimates[:, 0], [HAND_ESTIMATES[n] for n in names], rtol=1e-14)
    assert get_estimator("dr").weight_key() != get_estimator("dr", lambda_=2.0).weight_key()
    assert get_estimator("dr").weight_key() == get_estimator("pdis").weight_key()  # shared when unclipped


# ----------------------------------------------------------------------------------- hand-computed MIPS
#
# Four actions with embeddings e(0) = e(1) = (0, 1), e(2) = (1, 0), e(3) = (2, 2). Three rounds:
#   round 0: action 1, π_b = (.4, .1, .25, .25), π_e = (.1, .1, .4, .4): w = (.1 + .1) / (.4 + .1) = 0.4, r = 1
#   round 1: action 0, π_b = (.25, .25, .25, .25), π_e = (.5, .25, .125, .125): w = .75 / .5 = 1.5, r = 0
#   round 2: action 2, π_b = (.1, .1, .4, .4), π_e = (.3, .3, .2, .2): w = .2 / .4 = 0.5, r = 1
# The second policy is the behavior policy (w = 1).

MIPS_FEATURES = [[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]
MIPS_PB = np.array([[0.4, 0.1, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25], [0.1, 0.1, 0.4, 0.4]])
MIPS_PE = np.array([[0.1, 0.1, 0.4, 0.4], [0.5, 0.25, 0.125, 0.125], [0.3, 0.3, 0.2, 0.2]])
MIPS_ACTIONS = [1, 0, 2]
MIPS_R = [1.0, 0.0, 1.0]


def hand_mips(features=MIPS_FEATURES, behavior_probs=True) -> tuple[LoggedDataset, OPEInput]:
    pb = MIPS_PB[np.arange(3), MIPS_ACTIONS]
    probs_b = MIPS_PB if behavior_probs else None
    ds = bandit_log([0, 1, 2], MIPS_ACTIONS, MIPS_R, pb, 4, action_probs=probs_b, features=features)
    probs = np.stack([MIPS_PE, MIPS_PB])[:, :, None, :]  # (P, n, 1, A)
    pscore = np.take_along_axis(probs, np.array(MIPS_ACTIONS)[None, :, None, None], axis=-1)[..., 0]
    return ds, OPEInput(policy_names=("target", "behavior"), eval_pscore=pscore, eval_action_probs=probs)


def test_hand_computed_mips_and_snmips():
    ds, inputs = hand_mips()
    ctx = EstimationContext(ds, inputs)
    mips, snmips = get_estimator("mips"), get_estimator("snmips")
    np.testing.assert_allclose(mips.trajectory_values(ctx), [[0.4, 0.0, 0.5], MIPS_R], rtol=1e-14)
    np.testing.assert_allclose(mips.estimate(ctx), [0.3, 2 / 3], rtol=1e-14)
    np.testing.assert_allclose(snmips.estimate(ctx), [0.9 / 2.4, 2 / 3], rtol=1e-14)
    # delta method: W̃ = w / mean(w) = w / 0.8, μ = 0.375
    want = np.array([0.4, 1.5, 0.5]) / 0.8 * (np.array(MIPS_R) - 0.375) + 0.375
    np.testing.assert_allclose(snmips.interval_values(ctx)[0], [0.6875, -0.328125, 0.765625], rtol=1e-14)
    np.testing.assert_allclose(snmips.interval_values(ctx)[0], want, rtol=1e-14)
    table = evaluate(ds, inputs, ["mips", "snmips"], interval="t")
    np.testing.assert_allclose(table.bounds("mips"), t_bounds(np.array([[0.4, 0.0, 0.5], MIPS_R])), rtol=1e-12)
    np.testing.assert_allclose(table.bounds("snmips"), t_bounds(np.array([want, MIPS_R])), rtol=1e-12)
    counts = np.array([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 2.0, 1.0]])
    np.testing.assert_allclose(mips.resampled_estimates(ctx, counts)[0], [0.4, 0.3, 0.5 / 3], rtol=1e-14)
    np.testing.assert_allclose(snmips.resampled_estimates(ctx, counts)[0], [1.0, 0.375, 0.5 / 3.5], rtol=1e-14)


def test_mips_with_one_embedding_per_action_is_ipw():
    ds, inputs = hand_mips(features=np.eye(4).tolist())
    table = evaluate(ds, inputs, ["mips", "ipw", "snmips", "snipw"])
    np.testing.assert_allclose(table.estimate("mips"), table.estimate("ipw"), rtol=1e-14)
    np.testing.assert_allclose(table.estimate("snmips"), table.estimate("snipw"), rtol=1e-14)


# ------------------------------------------------------------------------------------ hand-computed slate
#
# Three rounds, two slots, three items. Conditional ratios w_t, cascade ratios W_t, item-position ratios m_t:
#   round 0: w = (0.5, 2), W = (0.5, 1),  m = (0.5, 1.5), r = (1, 0)
#   round 1: w = (2, 1),   W = (2, 2),    m = (2, 0.5),   r = (0, 1)
#   round 2: w = (3, 0.5), W = (3, 1.5),  m = (3, 1),     r = (1, 1)
# Q̂ = 0.5 everywhere, V̂ = (0.4, 0.6), (0.5, 0.5), (0.8, 0.2).

SLATE_PB = [[0.5, 0.5], [0.25, 0.5], [0.25, 1.0]]
SLATE_PE = [[0.25, 1.0], [0.5, 0.5], [0.75, 0.5]]
SLATE_M = [[0.5, 1.5], [2.0, 0.5], [3.0, 1.0]]
SLATE_R = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
SLATE_V = [[0.4, 0.6], [0.5, 0.5], [0.8, 0.2]]
SLATE_VALUES = {  # per-round values
    "sips": [1.0, 2.0, 3.0],  # W_1 (r_0 + r_1)
    "rips": [0.5, 2.0, 4.5],  # Σ_t W_t r_t
    "iips": [0.5, 0.5, 4.0],  # Σ_t m_t r_t
    # Σ_t [W_t (r_t − 0.5) + W_{t−1} V̂_t]
    "cascade_dr": [0.25 + 0.4 - 0.5 + 0.3, -1.0 + 0.5 + 1.0 + 1.0, 1.5 + 0.8 + 0.75 + 0.6],
}


def hand_slate(log_space=False) -> tuple[LoggedDataset, OPEInput]:
    log_pb = np.log(SLATE_PB) if log_space else None
    ds = slate_log([0, 1, 2], [[0, 1], [2, 0], [1, 2]], SLATE_R, SLATE_PB, 3, log_pscore=log_pb)
    v = np.array(SLATE_V)[None]
    return ds, OPEInput(
        policy_names=("target",),
        eval_pscore=np.array(SLATE_PE)[None],
        eval_log_pscore=np.log(SLATE_PE)[None] if log_space else None,
        marginal_weights=np.array(SLATE_M)[None],
        q_hat=np.full((1, 3, 2), 0.5),
        v_hat=v,
        initial_v_hat=v[..., 0],
    )


@pytest.mark.parametrize("name", sorted(SLATE_VALUES))
def test_hand_computed_slate_values_and_t_interval(name):
    ds, inputs = hand_slate()
    ctx = EstimationContext(ds, inputs)
    est = get_estimator(name)
    want = np.array([SLATE_VALUES[name]])
    np.testing.assert_allclose(est.trajectory_values(ctx), want, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(est.interval_values(ctx), want, rtol=1e-14, atol=1e-15)
    table = evaluate(ds, inputs, [name], interval="t")
    np.testing.assert_allclose(table.estimate(name), want.mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(table.bounds(name), t_bounds(want), rtol=1e-12)
    by_hand = {"sips": 2.0, "rips": 7 / 3, "iips": 5 / 3, "cascade_dr": 5.6 / 3}
    assert table.estimate(name)[0] == pytest.approx(by_hand[name], rel=1e-14)


@pytest.mark.parametrize("name", sorted(SLATE_VALUES))
def test_slate_estimators_read_ratios_in_log_space(name):
    linear, log = hand_slate(), hand_slate(log_space=True)
    assert EstimationContext(*log).log_space
    np.testing.assert_allclose(evaluate(*log, [name]).estimates, evaluate(*linear, [name]).estimates, rtol=1e-13)


# -------------------------------------------------------------------------------------- the bootstrap path

BOOTSTRAP_CASES = [(hand_bandit, get_estimator(name, **options).name) for name, options, _, _ in HAND_CASES]
BOOTSTRAP_CASES += [(hand_bandit, "snipw"), (hand_bandit, "dm"), (hand_mips, "mips"), (hand_mips, "snmips")]
BOOTSTRAP_CASES += [(hand_slate, name) for name in sorted(SLATE_VALUES)]


def _estimator(label: str):
    if "(" not in label:
        return get_estimator(label)
    name, option = label[:-1].split("(")
    key, value = option.split("=")
    return get_estimator(name, **{key: float(value)})


@pytest.mark.parametrize(("case", "label"), BOOTSTRAP_CASES, ids=[f"{c.__name__}-{l}" for c, l in BOOTSTRAP_CASES])
def test_bootstrap_equals_recomputing_on_resampled_logs(case, label):
    """``evaluate(interval="bootstrap")`` equals the quantiles of the estimates recomputed on each resampled log."""
    ds, inputs = case()
    est = _estimator(label)
    B, seed = 40, 7
    counts = np.concatenate(list(bootstrap_counts(ds.n_trajectories, B, seed)))
    direct = recomputed_on_resamples(ds, inputs, est, counts)  # (P, B)
    resampled = est.resampled_estimates(EstimationContext(ds, inputs), counts)
    np.testing.assert_allclose(resampled, direct, rtol=1e-12, atol=1e-13)
    table = evaluate(ds, inputs, [est], interval="bootstrap", n_bootstrap=B, seed=seed)
    want = np.quantile(direct, [0.025, 0.975], axis=1)
    np.testing.assert_allclose(table.bounds(label), want, rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------------------------ a contextual bandit


class ContextualBandit:
    """Finite contexts (uniform), a known expected-reward table q(x, a), Bernoulli rewards, softmax policies.

    With ``n_embeddings`` the reward depends on the action only through its embedding e(a) = a mod K (several
    actions per embedding), the embeddings given as distinct two-dimensional feature rows.
    Exact value: V(π) = (1/|X|) Σ_x Σ_a π(a | x) q(x, a).
    """

    def __init__(self, seed: int, n_contexts: int = 20, n_actions: int = 6, n_embeddings: int | None = None):
        rng = np.random.default_rng(seed)
        X, A = n_contexts, n_actions
        if n_embeddings is None:
            self.q = rng.uniform(0.1, 0.9, size=(X, A))
            self.features = None
        else:
            group = np.arange(A) % n_embeddings
            self.q = rng.uniform(0.1, 0.9, size=(X, n_embeddings))[:, group]
            rows = np.stack([np.arange(n_embeddings), np.arange(n_embeddings) ** 2], axis=1).astype(float)
            self.features = rows[group].tolist()
        logits = rng.normal(0.0, 1.0, size=(X, A))
        self.pb = _softmax(logits)
        self.pe = _softmax(logits[None] + rng.normal(0.0, 1.0, size=(2, X, A)))  # two evaluation policies
        self.truth = (self.pe * self.q[None]).sum(axis=-1).mean(axis=-1)  # (P,)
        self.wrong_q = self.q + rng.normal(0.0, 0.3, size=self.q.shape)  # a fixed, deliberately wrong model
        self.n_actions = A

    def sample(self, n: int, seed: int) -> LoggedDataset:
        rng = np.random.default_rng(seed)
        x = rng.integers(0, len(self.q), size=n)
        a = (rng.random(n)[:, None] > np.cumsum(self.pb[x], axis=1)).sum(axis=1)
        a = np.minimum(a, self.n_actions - 1)
        r = rng.binomial(1, self.q[x, a]).astype(float)
        return bandit_log(x, a, r, self.pb[x, a], self.n_actions, action_probs=self.pb[x], features=self.features)

    def inputs(self, ds: LoggedDataset, q_model: np.ndarray) -> OPEInput:
        x, a = ds.observations[:, 0], ds.actions[:, 0]
        v = (self.pe[:, x] * q_model[x][None]).sum(axis=-1)[..., None]  # (P, n, 1)
        return OPEInput(
            policy_names=("pi_0", "pi_1"),
            eval_pscore=self.pe[:, x, a][..., None],
            eval_action_probs=self.pe[:, x][:, :, None, :],
            q_hat=np.broadcast_to(q_model[x, a][None, :, None], v.shape),
            v_hat=v,
            initial_v_hat=v[..., 0],
        )


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _repeated(task, names, n, n_datasets, seed, q_model=None) -> np.ndarray:
    """Estimates (datasets, estimators, policies) on independent logs."""
    q_model = task.wrong_q if q_model is None else q_model
    out = np.empty((n_datasets, len(names), 2))
    for d in range(n_datasets):
        ds = task.sample(n, seed + d)
        out[d] = evaluate(ds, task.inputs(ds, q_model), names).estimates
    return out


def _z_scores(estimates: np.ndarray, truth: np.ndarray) -> np.ndarray:
    se = estimates.std(axis=0, ddof=1) / math.sqrt(len(estimates))
    return np.abs(estimates.mean(axis=0) - truth) / se


@pytest.mark.statistical
def test_ipw_dr_and_mips_are_unbiased():
    """Mean over 300 logs within 3.5 standard errors of the exact value: IPW, DR with a wrong Q̂ (the wrong
    model alone is far off), and MIPS with a sufficient embedding (3 embeddings of 2 actions each), whose
    variance is below IPW's."""
    task = ContextualBandit(seed=1, n_embeddings=3)
    names = ["ipw", "dr", "mips", "dm"]
    est = _repeated(task, names, n=60, n_datasets=300, seed=100)
    z = _z_scores(est, task.truth)
    assert (z[:3] < 3.5).all(), f"z-scores (estimator, policy):\n{np.round(z, 2)}"
    assert (z[3] > 3.5).any(), "the wrong model must be visibly biased, or DR's test shows nothing"
    var = est.var(axis=0, ddof=1)
    assert (var[2] < var[0]).all(), f"var(mips) = {var[2]}, var(ipw) = {var[0]}"


@pytest.mark.statistical
def test_self_normalised_and_shrunk_estimators_are_consistent():
    """On one large log each estimate lies within 3.5 of its own standard errors (from ``interval_values``) of
    the exact value: SNIPW and SNDR (wrong Q̂) by consistency, Switch-DR and DR-OS with finite λ because with
    the exact Q̂ their correction has mean zero whatever the weight transform."""
    task = ContextualBandit(seed=2, n_embeddings=3)
    ds = task.sample(20_000, seed=5)
    for q_model, names in (
        (task.wrong_q, ["snipw", "sndr", "snmips"]),
        (task.q, ["switch_dr(lambda_=2.0)", "dr_os(lambda_=1.0)", "sg_dr(lambda_=0.5)"]),
    ):
        inputs = task.inputs(ds, q_model)
        ctx = EstimationContext(ds, inputs)
        for label in names:
            est = _estimator(label)
            values = est.interval_values(ctx)
            se = values.std(axis=1, ddof=1) / math.sqrt(ds.n_trajectories)
            z = np.abs(est.estimate(ctx) - task.truth) / se
            assert (z < 3.5).all(), f"{label}: z = {z}"
    # the transforms are active: they change the estimate compared with DR
    inputs = task.inputs(ds, task.wrong_q)
    table = evaluate(ds, inputs, ["dr", _estimator("switch_dr(lambda_=2.0)"), _estimator("dr_os(lambda_=1.0)")])
    assert not np.isclose(table.estimates[0], table.estimates[1]).any()
    assert not np.isclose(table.estimates[0], table.estimates[2]).any()


# --------------------------------------------------------------------------------------------- identities


@pytest.fixture(scope="module")
def random_bandit():
    task = ContextualBandit(seed=3, n_embeddings=3)
    ds = task.sample(200, seed=9)
    return ds, task.inputs(ds, task.wrong_q)


IDENTITIES = [
    ("ipw", "tis"),
    ("ipw(lambda_=inf)", "ipw"),
    ("snipw", "sntis"),
    ("dr(lambda_=inf)", "dr"),
    ("switch_dr(lambda_=inf)", "dr"),
    ("dr_os(lambda_=inf)", "dr"),
    ("switch_dr(lambda_=0.0)", "dm"),
    ("sg_ipw(lambda_=0.0)", "ipw"),
    ("sg_dr(lambda_=0.0)", "dr"),
]


@pytest.mark.parametrize(("left", "right"), IDENTITIES)
def test_one_step_identities_hold_exactly(left, right, random_bandit):
    ds, inputs = random_bandit
    for interval in ("t", "bootstrap"):  # one estimator per call: "ipw(lambda_=inf)" is named "ipw"
        a, b = (evaluate(ds, inputs, [_estimator(x)], interval=interval, n_bootstrap=50, seed=1) for x in (left, right))
        assert np.array_equal(a.estimates, b.estimates)
        assert np.array_equal(a.lower, b.lower) and np.array_equal(a.upper, b.upper)


@pytest.mark.parametrize(("slate_name", "name"), [("sips", "tis"), ("rips", "pdis"), ("cascade_dr", "dr")])
def test_slate_estimators_are_their_trajectory_forms_exactly(slate_name, name, slate_case):
    ds, inputs = slate_case
    a = evaluate(ds, inputs, [slate_name, name], interval="t")
    assert np.array_equal(a.estimates[0], a.estimates[1])
    assert np.array_equal(a.lower[0], a.lower[1]) and np.array_equal(a.upper[0], a.upper[1])
    ctx = EstimationContext(ds, inputs)
    assert np.array_equal(get_estimator(slate_name).trajectory_values(ctx), get_estimator(name).trajectory_values(ctx))


# -------------------------------------------------------------------------------------------- a slate task


class SlateTask:
    """Ranking of ``n_slots`` out of ``n_items`` items for a few contexts, Plackett–Luce policies (sampling
    without replacement with probabilities ∝ exp(score)), and exact values by enumerating every slate.

    Rewards are Bernoulli per slot, independent given the slate, with mean
        "independent": θ(x, a_t, t)                                 (each slot's own item and slot only)
        "cascade":     θ(x, a_t, t) Π_{s < t} (1 − c(x, a_s))         (depends on the items above)
    """

    def __init__(
        self,
        seed: int,
        n_contexts: int = 3,
        n_items: int = 4,
        n_slots: int = 3,
        reward: str = "independent",
        shift: float = 0.7,
    ):
        rng = np.random.default_rng(seed)
        X, A, K = n_contexts, n_items, n_slots
        self.K, self.A, self.reward = K, A, reward
        self.slates = np.array(list(itertools.permutations(range(A), K)))  # (S, K)
        self.code = np.full(A**K, -1)
        self.code[self.slates @ (A ** np.arange(K))] = np.arange(len(self.slates))
        self.sb = rng.normal(0.0, 1.0, size=(X, A))
        self.se = self.sb[None] + rng.normal(0.0, shift, size=(2, X, A))  # two evaluation policies
        self.theta = rng.uniform(0.1, 0.9, size=(X, A, K))
        self.attract = rng.uniform(0.2, 0.8, size=(X, A))
        self.cond_b = self._conditional(self.sb)  # (X, S, K)
        self.cond_e = np.stack([self._conditional(s) for s in self.se])  # (P, X, S, K)
        self.marg_b = self._marginal(self.cond_b)  # (X, K, A)
        self.marg_e = np.stack([self._marginal(c) for c in self.cond_e])  # (P, X, K, A)
        slate_prob_e = self.cond_e.prod(axis=-1)  # (P, X, S)
        self.truth = (slate_prob_e * self.mean_reward().sum(axis=-1)[None]).sum(axis=-1).mean(axis=-1)
        self.theta_hat = self.theta + rng.normal(0.0, 0.2, size=self.theta.shape)  # a wrong per-slot model

    def _conditional(self, scores: np.ndarray) -> np.ndarray:
        """π(a_t | x, a_<t) of every slate's items under Plackett–Luce, (X, S, K)."""
        w = np.exp(scores)  # (X, A)
        out = np.empty((len(scores), len(self.slates), self.K))
        for t in range(self.K):
            above = np.zeros((len(self.slates), self.A), dtype=bool)
            for s in range(t):
                above[np.arange(len(self.slates)), self.slates[:, s]] = True
            remaining = (w[:, None, :] * ~above[None]).sum(axis=-1)  # (X, S)
            out[:, :, t] = w[:, self.slates[:, t]] / remaining
        return out

    def _marginal(self, cond: np.ndarray) -> np.ndarray:
        """P(item a at slot t | x), summing the slate probabilities, (X, K, A)."""
        prob = cond.prod(axis=-1)  # (X, S)
        out = np.zeros((len(cond), self.K, self.A))
        for t in range(self.K):
            for a in range(self.A):
                out[:, t, a] = prob[:, self.slates[:, t] == a].sum(axis=-1)
        return out

    def iips_expectation(self) -> np.ndarray:
        """E_b[Σ_t (P_e(a_t at t) / P_b(a_t at t)) r_t], exactly: the value only when rewards do not interact, (P,)."""
        slots = np.arange(self.K)
        ratio = self.marg_e[:, :, slots, self.slates] / self.marg_b[:, slots, self.slates][None]  # (P, X, S, K)
        per_slate = (ratio * self.mean_reward()[None]).sum(axis=-1)
        return (self.cond_b.prod(axis=-1)[None] * per_slate).sum(axis=-1).mean(axis=-1)

    def mean_reward(self) -> np.ndarray:
        """E[r_t | x, slate], (X, S, K)."""
        X = len(self.theta)
        mean = self.theta[:, self.slates, np.arange(self.K)]  # (X, S, K)
        if self.reward == "cascade":
            survive = np.cumprod(1.0 - self.attract[:, self.slates], axis=-1)  # (X, S, K): Π_{s ≤ t}
            mean = mean * np.concatenate([np.ones((X, len(self.slates), 1)), survive[..., :-1]], axis=-1)
        return mean

    def sample(self, n: int, seed: int) -> tuple[LoggedDataset, OPEInput]:
        rng = np.random.default_rng(seed)
        x = rng.integers(0, len(self.sb), size=n)
        gumbel = self.sb[x] + rng.gumbel(size=(n, self.A))  # Gumbel top-K: a Plackett–Luce sample
        slate = np.argsort(-gumbel, axis=1)[:, : self.K]
        s = self.code[slate @ (self.A ** np.arange(self.K))]
        r = rng.binomial(1, self.mean_reward()[x, s]).astype(float)
        slots = np.arange(self.K)
        mb = self.marg_b[x[:, None], slots, slate]  # (n, K)
        ds = slate_log(x, slate, r, self.cond_b[x, s], self.A, marginal_pscore=mb)
        # Q̂_t = θ̂(x, a_t, t); V̂_t = Σ_a π_e(a | x, a_<t) θ̂(x, a, t) over the items not shown above slot t
        above = np.zeros((n, self.K, self.A), dtype=bool)
        for t in range(1, self.K):
            above[:, t] = above[:, t - 1]
            above[np.arange(n), t, slate[:, t - 1]] = True
        w = np.exp(self.se[:, x])[:, :, None, :] * ~above[None]  # (P, n, K, A)
        pi = w / w.sum(axis=-1, keepdims=True)
        theta_hat = self.theta_hat[x].transpose(0, 2, 1)  # (n, K, A)
        v = (pi * theta_hat[None]).sum(axis=-1)
        q = np.broadcast_to(np.take_along_axis(theta_hat, slate[..., None], axis=-1)[..., 0], v.shape)
        inputs = OPEInput(
            policy_names=("pi_0", "pi_1"),
            eval_pscore=self.cond_e[:, x, s],
            marginal_weights=self.marg_e[:, x[:, None], slots, slate] / mb,
            q_hat=q,
            v_hat=v,
            initial_v_hat=v[..., 0],
        )
        return ds, inputs


@pytest.fixture(scope="module")
def slate_case():
    return SlateTask(seed=4, reward="cascade").sample(150, seed=3)


def test_slate_task_is_consistent_with_itself():
    """The enumerated probabilities sum to one and the logged propensities match the enumeration."""
    task = SlateTask(seed=4)
    np.testing.assert_allclose(task.cond_b.prod(axis=-1).sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(task.marg_b.sum(axis=-1), 1.0, rtol=1e-12)  # one item per slot
    np.testing.assert_allclose(task.marg_b.sum(axis=(1, 2)), task.K, rtol=1e-12)  # K items shown in all
    np.testing.assert_allclose(task.marg_e.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(SlateTask(seed=4, reward="independent").iips_expectation(), task.truth, rtol=1e-12)
    ds, inputs = task.sample(5000, seed=0)
    # the empirical frequency of the first slot's item matches its marginal probability
    x0 = ds.observations[:, 0] == 0
    freq = np.bincount(ds.actions[x0, 0], minlength=task.A) / x0.sum()
    se = np.sqrt(task.marg_b[0, 0] * (1 - task.marg_b[0, 0]) / x0.sum())
    assert (np.abs(freq - task.marg_b[0, 0]) < 4 * se).all()


def _repeated_slates(task, names, n, n_datasets, seed) -> np.ndarray:
    out = np.empty((n_datasets, len(names), 2))
    for d in range(n_datasets):
        out[d] = evaluate(*task.sample(n, seed + d), names).estimates
    return out


@pytest.mark.statistical
def test_sips_iips_rips_are_unbiased_with_independent_slot_rewards():
    task = SlateTask(seed=5, reward="independent")
    est = _repeated_slates(task, ["sips", "iips", "rips"], n=60, n_datasets=300, seed=1000)
    z = _z_scores(est, task.truth)
    assert (z < 3.5).all(), f"z-scores (estimator, policy):\n{np.round(z, 2)}"
    var = est.var(axis=0, ddof=1)
    assert (var[1] < var[0]).all(), "item-position weights must vary less than joint slate weights"


@pytest.mark.statistical
def test_sips_rips_cascade_dr_are_unbiased_with_cascade_rewards():
    """Under the cascade reward RIPS and Cascade-DR (with a per-slot model that ignores the interaction) are
    unbiased, and IIPS, whose assumption fails, is not (its exact expectation differs from the value)."""
    task = SlateTask(seed=7, reward="cascade", shift=1.5)
    est = _repeated_slates(task, ["sips", "rips", "cascade_dr", "iips"], n=60, n_datasets=300, seed=2000)
    z = _z_scores(est, task.truth)
    assert (z[:3] < 3.5).all(), f"z-scores (estimator, policy):\n{np.round(z, 2)}"
    assert (np.abs(task.iips_expectation() - task.truth) > 0.02).any()
    assert (z[3] > 3.5).any(), f"iips should be biased under the cascade reward: z = {z[3]}"


# ----------------------------------------------------------------------------------- continuous actions


def continuous_log(observations, actions, rewards, pscore) -> LoggedDataset:
    n = len(actions)
    return LoggedDataset(
        observations=np.asarray(observations, dtype=np.float64).reshape(n, 1, 1),
        actions=np.asarray(actions, dtype=np.float64).reshape(n, 1, 1),
        rewards=np.asarray(rewards, dtype=np.float64)[:, None],
        terminals=np.ones((n, 1), dtype=bool),
        mask=np.ones((n, 1), dtype=bool),
        behavior_pscore=np.asarray(pscore, dtype=np.float64)[:, None],
        info=DatasetInfo(task="continuous-bandit", gamma=1.0, action_space=ActionSpace.continuous(1)),
    )


def test_hand_computed_kernel_ipw_and_kernel_dr():
    """Uniform kernel of bandwidth 0.5: K_h(u) = 1 for |u| ≤ 0.5, so with π_e(x) = x the rounds
    a = (0.1, 0.5, 0.9) at x = (0.0, 1.2, 0.9) get K_h = (1, 0, 1) and, with π_b = (0.5, 2, 1), w = (2, 0, 1)."""
    ds = continuous_log([0.0, 1.2, 0.9], [0.1, 0.5, 0.9], [1.0, 3.0, 2.0], [0.5, 2.0, 1.0])
    policy = DeterministicPolicy(lambda obs: obs, name="identity")
    q = lambda obs, actions, steps: np.full(len(obs), 1.5)  # noqa: E731
    inputs = build_continuous_inputs(ds, [policy], kernel="uniform", bandwidth=0.5, q_functions=[q])
    ctx = EstimationContext(ds, inputs)
    np.testing.assert_allclose(get_estimator("kernel_ipw").trajectory_values(ctx), [[2.0, 0.0, 2.0]], rtol=1e-14)
    # V̂ + w (r − Q̂) = 1.5 + (2 · (−0.5), 0, 1 · 0.5)
    np.testing.assert_allclose(get_estimator("kernel_dr").trajectory_values(ctx), [[0.5, 1.5, 2.0]], rtol=1e-14)
    names = ["kernel_ipw", "tis", "kernel_dr", "dr", get_estimator("kernel_ipw", lambda_=1.0)]
    table = evaluate(ds, inputs, names, interval="t")
    np.testing.assert_allclose(table.estimate("kernel_ipw"), [4 / 3], rtol=1e-14)
    np.testing.assert_allclose(table.estimate("kernel_ipw(lambda_=1.0)"), [1.0], rtol=1e-14)  # min(w, 1) r
    assert np.array_equal(table.estimates[0], table.estimates[1])  # kernel_ipw is tis
    assert np.array_equal(table.estimates[2], table.estimates[3])  # kernel_dr is dr
    np.testing.assert_allclose(table.bounds("kernel_ipw"), t_bounds(np.array([[2.0, 0.0, 2.0]])), rtol=1e-12)


# ---------------------------------------------------------------------------------------- default sets


def test_default_estimators_per_kind_of_data():
    ds, inputs = hand_bandit()
    bandit = set(evaluate(ds, inputs).estimator_names)
    assert {"ipw", "snipw", "dr", "sndr", "dm"} <= bandit
    assert not bandit & {"tis", "sntis", "pdis", "sips", "switch_dr", "dr_os", "sg_ipw", "mips", "kernel_ipw"}
    slate = set(evaluate(*hand_slate()).estimator_names)
    assert {"sips", "iips", "rips", "cascade_dr"} <= slate
    assert not slate & {"tis", "pdis", "ipw", "snipw"}


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ipw", -1.0, r"lambda_: expected a float in \[0.0, inf\] for ipw, found -1.0"),
        ("dr", float("nan"), r"lambda_: expected a float in \[0.0, inf\] for dr, found nan"),
        ("switch_dr", -0.5, r"lambda_: expected a float in \[0.0, inf\] for switch_dr, found -0.5"),
        ("dr_os", True, r"lambda_: expected a float in \[0.0, inf\] for dr_os, found True"),
        ("sg_ipw", 1.5, r"lambda_: expected a float in \[0.0, 1.0\] for sg_ipw, found 1.5"),
        ("sg_dr", -0.1, r"lambda_: expected a float in \[0.0, 1.0\] for sg_dr, found -0.1"),
        ("cascade_dr", "big", r"lambda_: expected a float in \[0.0, inf\] for cascade_dr, found 'big'"),
    ],
)
def test_bad_options_are_refused(name, value, expected):
    with pytest.raises(ValueError, match=expected):
        get_estimator(name, lambda_=value)


def test_unknown_options_are_refused():
    message = r"options: expected options of switch_dr among \['lambda_'\], found \['tau'\]"
    with pytest.raises(ValueError, match=message):
        get_estimator("switch_dr", tau=1.0)
    with pytest.raises(ValueError, match="options of sips among none"):
        get_estimator("sips", lambda_=1.0)


@pytest.mark.parametrize("name", ["sips", "iips", "rips", "cascade_dr"])
@pytest.mark.parametrize("interval", [None, "t", "bootstrap"])
def test_slate_estimators_refuse_other_logs(name, interval, random_bandit):
    ds, inputs = random_bandit
    fields = {k: getattr(inputs, k) for k in ("policy_names", *ARRAYS)}
    inputs = OPEInput(**{**fields, "marginal_weights": inputs.eval_pscore})  # so that iips has its input
    message = rf"{name}: expected a ranking log \(info.slate True\), found a one-step log \(info.slate False, horizon 1"
    with pytest.raises(OPEInputError, match=message):
        evaluate(ds, inputs, [name], interval=interval, n_bootstrap=10)


def test_missing_inputs_and_data_are_named():
    ds, inputs = hand_slate()
    bare = OPEInput(policy_names=inputs.policy_names, eval_pscore=inputs.eval_pscore)
    with pytest.raises(OPEInputError, match="iips: needs marginal_weights"):
        evaluate(ds, bare, ["iips"])
    with pytest.raises(OPEInputError, match="cascade_dr: needs q_hat, v_hat"):
        evaluate(ds, bare, ["cascade_dr"])
    with pytest.raises(OPEInputError, match="switch_dr: needs q_hat, v_hat"):
        evaluate(ds, bare, ["switch_dr"])
    uniform = np.ones((1, 3, 2, 3)) / 3
    with_probs = OPEInput(policy_names=("p",), eval_pscore=inputs.eval_pscore, eval_action_probs=uniform)
    with pytest.raises(OPEInputError, match=r"mips: expected a one-step log \(horizon 1\), found a ranking log"):
        evaluate(ds, with_probs, ["mips"])

    ds, inputs = hand_mips()
    with pytest.raises(OPEInputError, match="mips: needs eval_action_probs"):
        evaluate(ds, OPEInput(policy_names=inputs.policy_names, eval_pscore=inputs.eval_pscore), ["mips"])
    with pytest.raises(OPEInputError, match=r"snmips: needs the actions' embeddings in dataset.info.action_context"):
        evaluate(ds.with_info(action_context=None), inputs, ["snmips"], interval="bootstrap", n_bootstrap=10)
    ds_no_probs, _ = hand_mips(behavior_probs=False)
    with pytest.raises(OPEInputError, match=r"mips: needs dataset.behavior_action_probs"):
        evaluate(ds_no_probs, inputs, ["mips"], interval="t")

    ds, inputs = hand_bandit()
    message = r"kernel_ipw: expected continuous actions .* found discrete actions \(n_actions=3\); use ipw / dr"
    with pytest.raises(OPEInputError, match=message):
        evaluate(ds, inputs, ["kernel_ipw"])
    with pytest.raises(OPEInputError, match=r"kernel_dr: expected continuous actions"):
        evaluate(ds, inputs, ["kernel_dr"], interval="bootstrap", n_bootstrap=10)


def test_kernel_estimators_refuse_trajectories():
    n, H = 3, 2
    ds = LoggedDataset(
        observations=np.zeros((n, H, 1)),
        actions=np.zeros((n, H, 1)),
        rewards=np.ones((n, H)),
        terminals=np.zeros((n, H), dtype=bool),
        mask=np.ones((n, H), dtype=bool),
        behavior_pscore=np.ones((n, H)),
        info=DatasetInfo(task="continuous", gamma=0.9, action_space=ActionSpace.continuous(1)),
    )
    inputs = OPEInput(policy_names=("p",), eval_pscore=np.ones((1, n, H)))
    message = r"kernel_ipw: expected a one-step log \(horizon 1\), found trajectories .*; use tis / dr"
    with pytest.raises(OPEInputError, match=message):
        evaluate(ds, inputs, ["kernel_ipw"])


# ------------------------------------------------------------------------------- the multi-step reading


def _reference_transformed(ds, inputs, p, transform, form):
    """Σ_t γ^t ŵ_t r_t (IS) or Σ_t γ^t [ŵ_t (r_t − Q̂_t) + ŵ_{t−1} V̂_t] (DR) with ŵ_t = f(W_t), a loop over each
    trajectory's own steps."""
    values = []
    for i in range(ds.n_trajectories):
        total, W, previous = 0.0, 1.0, 1.0
        for t in range(int(ds.lengths[i])):
            W *= inputs.eval_pscore[p, i, t] / ds.behavior_pscore[i, t]
            w_hat = transform(W)
            discount = ds.gamma**t
            if form == "is":
                total += discount * w_hat * ds.rewards[i, t]
            else:
                residual = ds.rewards[i, t] - inputs.q_hat[p, i, t]
                total += discount * (w_hat * residual + previous * inputs.v_hat[p, i, t])
            previous = w_hat
        values.append(total)
    return np.mean(values)


TRANSFORMS = [
    ("dr", 2.0, "dr", lambda lam: lambda W: min(W, lam)),
    ("switch_dr", 2.0, "dr", lambda lam: lambda W: W if W <= lam else 0.0),
    ("dr_os", 1.5, "dr", lambda lam: lambda W: lam * W / (W * W + lam)),
    ("sg_ipw", 0.3, "is", lambda lam: lambda W: W / ((1 - lam) + lam * W)),
    ("sg_dr", 0.3, "dr", lambda lam: lambda W: W / ((1 - lam) + lam * W)),
]


@pytest.mark.parametrize(("name", "lam", "form", "make"), TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_transforms_on_trajectories_are_the_per_decision_forms(name, lam, form, make, variable_length_case):
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals)
    got = evaluate(ds, inputs, [get_estimator(name, lambda_=lam)]).estimates[0]
    want = [_reference_transformed(ds, inputs, p, make(lam), form) for p in range(len(evals))]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_clipped_ipw_on_trajectories_clips_the_trajectory_ratio(variable_length_case):
    task, _, evals, ds = variable_length_case
    inputs = build_inputs(ds, evals)
    W = (inputs.eval_pscore / ds.behavior_pscore[None]).prod(axis=-1)  # (P, n)
    got = evaluate(ds, inputs, [get_estimator("ipw", lambda_=1.5), "ipw"]).estimates
    np.testing.assert_allclose(got[0], (np.minimum(W, 1.5) * ds.returns).mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(got[1], (W * ds.returns).mean(axis=1), rtol=1e-12)
    assert (W > 1.5).any()


# ------------------------------------------------------------------ every estimator on every kind of log


@pytest.fixture(scope="module")
def continuous_bandit():
    """One-step continuous actions: a Gaussian behavior policy around x, a deterministic and a Gaussian target."""
    rng = np.random.default_rng(8)
    n = 150
    x = rng.uniform(-1.0, 1.0, size=(n, 1))
    behavior = GaussianPolicy(lambda obs: obs[:, 0], 0.5)
    a, pb = behavior.sample(x, rng)
    r = 1.0 - (a[:, 0] - 0.5 * x[:, 0]) ** 2 + rng.normal(0.0, 0.1, size=n)
    ds = continuous_log(x[:, 0], a[:, 0], r, pb)
    half = lambda obs: 0.5 * obs[:, 0]  # noqa: E731
    targets = [DeterministicPolicy(half, name="det"), GaussianPolicy(half, 0.3, name="g")]
    q = lambda obs, actions, steps: 1.0 - (actions[:, 0] - 0.4 * obs[:, 0]) ** 2  # noqa: E731
    return ds, build_continuous_inputs(ds, targets, bandwidth=0.3, q_functions=[q, q], seed=0)


@pytest.mark.parametrize(
    ("case", "kind", "action_type"),
    [
        ("random_bandit", "bandit", "discrete"),
        ("slate_case", "slate", "discrete"),
        ("continuous_bandit", "bandit", "continuous"),
    ],
)
def test_every_estimator_runs_on_the_logs_it_applies_to_and_refuses_the_others(case, kind, action_type, request):
    """Shape, finiteness, determinism, interval values averaging to the estimate and the bootstrap shortcut equal to
    explicit resamples, for every registered estimator defined on this kind of log whose inputs are there; an
    ``OPEInputError`` from every estimator that is not defined on it."""
    ds, inputs = request.getfixturevalue(case)
    ctx = EstimationContext(ds, inputs)
    defined = applicable(kind, action_type)
    counts = np.concatenate(list(bootstrap_counts(ds.n_trajectories, 8, 0)))
    ran = []
    for name in ESTIMATORS:
        est = get_estimator(name)
        if name not in defined:
            with pytest.raises(OPEInputError, match=f"^{name}: expected"):
                est.estimate(ctx)
            continue
        if any(getattr(inputs, r) is None for r in est.requires):
            continue
        ran.append(name)
        first = est.estimate(ctx)
        assert first.shape == (inputs.n_policies,) and np.isfinite(first).all(), name
        np.testing.assert_array_equal(first, get_estimator(name).estimate(EstimationContext(ds, inputs)), err_msg=name)
        np.testing.assert_allclose(est.interval_values(ctx).mean(axis=1), first, rtol=1e-10, atol=1e-12, err_msg=name)
        if est.resample_exact:
            direct = recomputed_on_resamples(ds, inputs, est, counts)
            resampled = est.resampled_estimates(ctx, counts)
            np.testing.assert_allclose(resampled, direct, rtol=1e-10, atol=1e-12, err_msg=name)
    expected = {"ipw", "snipw", "dr", "switch_dr", "dr_os", "sg_ipw", "sg_dr"}
    expected |= {"sips", "iips", "rips", "cascade_dr"} if kind == "slate" else set()
    expected |= {"mips", "snmips"} if (kind, action_type) == ("bandit", "discrete") else set()
    expected |= {"kernel_ipw", "kernel_dr"} if action_type == "continuous" else set()
    assert expected <= set(ran), sorted(expected - set(ran))
