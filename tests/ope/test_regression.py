"""Cross-fitted reward models on one-step logs (``opelab.ope.regression``) and the overlap diagnostics
(``opelab.ope.diagnostics``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsRegressor
from threadpoolctl import threadpool_limits

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.data.behavior import fold_indices
from opelab.ope import OPEInput, OPEInputError, evaluate
from opelab.ope.diagnostics import overlap_diagnostics
from opelab.ope.regression import RewardModel, fit_reward_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny fits: OpenMP threads of the boosted trees only contend with each other on a shared machine."""
    with threadpool_limits(1):
        yield


def bandit(
    context: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    n_actions: int,
    pscore: np.ndarray | None = None,
    **extra: object,
) -> LoggedDataset:
    """One-step logs: ``context`` (n, d) float, with ``extra`` arrays (n,) and ``DatasetInfo`` fields."""
    n = len(actions)
    info = {key: extra.pop(key) for key in ("len_list", "action_context") if key in extra}
    arrays = {key: np.asarray(value)[:, None] for key, value in extra.items()}
    return LoggedDataset(
        observations=np.asarray(context, dtype=np.float64).reshape(n, 1, -1),
        actions=np.asarray(actions)[:, None],
        rewards=np.asarray(rewards, dtype=np.float64)[:, None],
        terminals=np.zeros((n, 1), dtype=bool),
        mask=np.ones((n, 1), dtype=bool),
        behavior_pscore=(np.full(n, 1.0 / n_actions) if pscore is None else pscore)[:, None],
        info=DatasetInfo("bandit", 1.0, ActionSpace.discrete(n_actions), **info),
        **arrays,
    )


def random_bandit(n: int = 300, n_actions: int = 3, binary: bool = False, seed: int = 0, **extra: object) -> LoggedDataset:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    a = rng.integers(0, n_actions, n)
    mean = 1 / (1 + np.exp(-(x[:, 0] + 0.5 * a - 0.5)))
    r = (rng.random(n) < mean).astype(float) if binary else mean + 0.1 * rng.standard_normal(n)
    return bandit(x, a, r, n_actions, **extra)


def expanded_features(ds: LoggedDataset, rounds: np.ndarray) -> np.ndarray:
    """[x_i | e_a] for every round of ``rounds`` and every action, round-major, written out by hand."""
    A = ds.action_space.n_actions
    x = ds.observations[rounds, 0].reshape(len(rounds), -1)
    return np.hstack([np.repeat(x, A, axis=0), np.tile(np.eye(A), (len(rounds), 1))])


# ------------------------------------------------------------------------------------------ cross-fitting
def test_each_fold_is_predicted_by_a_model_that_never_saw_it():
    """A 1-NN regressor memorises its training rows: fit on everything (K = 1) it returns each logged reward
    at the logged (x_i, a_i); cross-fitted (K = 2) it cannot, and it equals a hand-written fold loop."""
    ds = random_bandit()
    r, a = ds.rewards[:, 0], ds.actions[:, 0]
    one_nn = KNeighborsRegressor(n_neighbors=1)
    whole = fit_reward_model(ds, one_nn, n_folds=1)
    np.testing.assert_array_equal(whole.q_logged, r)
    crossed = fit_reward_model(ds, one_nn, n_folds=2, fold_seed=5)
    assert not np.isclose(crossed.q_logged, r).any()
    assert crossed.n_folds == 2 and len(crossed.models) == 2 and not crossed.uses_proba
    by_hand = np.empty((ds.n_trajectories, 3))
    for train, test in fold_indices(ds.n_trajectories, 2, 5):
        x_train = np.hstack([ds.observations[train, 0], np.eye(3)[a[train]]])
        fitted = KNeighborsRegressor(n_neighbors=1).fit(x_train, r[train])
        by_hand[test] = fitted.predict(expanded_features(ds, test)).reshape(len(test), 3)
    np.testing.assert_array_equal(crossed.q, by_hand)
    np.testing.assert_array_equal(crossed.q_logged, by_hand[np.arange(len(a)), a])
    assert not crossed.q.flags.writeable and not crossed.q_logged.flags.writeable
    assert one_nn.__dict__.get("n_samples_fit_") is None  # the given model is cloned, never fit itself


# ------------------------------------------------------------------------------------------ models
def test_binary_rewards_use_predict_proba_and_others_a_regressor():
    binary = random_bandit(binary=True)
    default = fit_reward_model(binary)
    assert default.uses_proba and isinstance(default.models[0], HistGradientBoostingClassifier)
    model = default.models[0]
    np.testing.assert_array_equal(default.q.ravel(), model.predict_proba(expanded_features(binary, np.arange(300)))[:, 1])
    assert model.random_state == 0

    given = fit_reward_model(binary, LogisticRegression(), n_folds=1)
    manual = LogisticRegression().fit(np.hstack([binary.observations[:, 0], np.eye(3)[binary.actions[:, 0]]]), binary.rewards[:, 0])
    np.testing.assert_allclose(given.q.ravel(), manual.predict_proba(expanded_features(binary, np.arange(300)))[:, 1], rtol=1e-12)

    continuous = fit_reward_model(random_bandit(binary=False))
    assert not continuous.uses_proba and isinstance(continuous.models[0], HistGradientBoostingRegressor)
    assert fit_reward_model(random_bandit(binary=False)).q.tobytes() == continuous.q.tobytes()  # fixed random_state

    constant = bandit(np.zeros((8, 1)), np.arange(8) % 2, np.ones(8), 2)  # one class: nothing for a classifier to fit
    np.testing.assert_array_equal(fit_reward_model(constant, n_folds=2).q, 1.0)


def test_positions_and_action_features_enter_the_features():
    """Noise-free rewards linear in [x | action features | position one-hot]: least squares recovers q̂ exactly,
    at each round's logged position."""
    rng = np.random.default_rng(1)
    n, features = 60, np.array([[0.0, 1.0], [1.0, 0.5], [2.0, -1.0], [-1.0, 0.0]])
    x, a, k = rng.standard_normal((n, 3)), rng.integers(0, 4, n), rng.integers(0, 3, n)
    beta, gamma, offset = np.array([1.0, -2.0, 0.5]), np.array([0.3, 2.0]), np.array([0.0, 1.5, -0.7])
    truth = (x @ beta)[:, None] + (features @ gamma)[None, :] + offset[k][:, None]  # (n, A)
    ds = bandit(x, a, truth[np.arange(n), a], 4, positions=k, len_list=3, action_context=features)
    fitted = fit_reward_model(ds, LinearRegression())
    np.testing.assert_allclose(fitted.q, truth, atol=1e-10)
    np.testing.assert_array_equal(fitted.models[0].n_features_in_, 3 + 2 + 3)
    without = fit_reward_model(ds.with_info(action_context=None), LinearRegression())
    assert without.models[0].n_features_in_ == 3 + 4 + 3  # one-hot actions when no action features


class _RowCounter(BaseEstimator, RegressorMixin):
    """Predicts the sum of each feature row and records the rows of every predict call."""

    def fit(self, X, y):
        self.calls_: list[int] = []
        return self

    def predict(self, X):
        self.calls_.append(len(X))
        return np.asarray(X).sum(axis=1)


def test_chunked_prediction_equals_unchunked_and_stays_within_the_chunk():
    ds = random_bandit(n=200, n_actions=3, binary=True)
    whole = fit_reward_model(ds, chunk_rows=10**9)
    for rows in (None, 1, 7, 64):
        np.testing.assert_array_equal(fit_reward_model(ds, chunk_rows=rows).q, whole.q)
    counted = fit_reward_model(ds, _RowCounter(), n_folds=2, chunk_rows=64)
    calls = counted.models[0].calls_ + counted.models[1].calls_
    assert max(calls) == 63 and sum(calls) == 200 * 3  # 21 rounds × 3 actions per call


# ------------------------------------------------------------------------------------------ what estimators read
def test_q_hat_is_a_broadcast_view_and_v_hat_the_explicit_sum():
    ds = random_bandit(n=50)
    fitted = fit_reward_model(ds, LinearRegression())
    pi = softmax(np.random.default_rng(0).standard_normal((4, 50, 3)), axis=-1)
    q_hat, v_hat = fitted.q_and_v(pi)
    assert q_hat.shape == v_hat.shape == (4, 50, 1)
    assert q_hat.strides[0] == 0 and not q_hat.flags.writeable and np.shares_memory(q_hat, fitted.q_logged)
    np.testing.assert_array_equal(q_hat[2, :, 0], fitted.q[np.arange(50), ds.actions[:, 0]])
    explicit = np.array([[sum(pi[p, i, a] * fitted.q[i, a] for a in range(3)) for i in range(50)] for p in range(4)])
    np.testing.assert_allclose(v_hat[..., 0], explicit, rtol=1e-13)
    q4, v4 = fitted.q_and_v(pi[:, :, None])  # OPEInput's (P, n, H = 1, A) layout
    np.testing.assert_array_equal(v4, v_hat)
    np.testing.assert_array_equal(q4, q_hat)
    inputs = OPEInput(
        policy_names=tuple("abcd"),
        eval_pscore=np.take_along_axis(pi, ds.actions[None, :, :], axis=-1),
        eval_action_probs=pi[:, :, None],
        q_hat=q_hat,
        v_hat=v_hat,
        initial_v_hat=v_hat[:, :, 0],
    )
    assert inputs.q_hat.strides[0] == 0  # held as given, not copied per policy


class _TrueQ(BaseEstimator, RegressorMixin):
    """The exact q(x, a) of ``finite_bandit``, read off the features [x | e_a]; fit learns nothing."""

    def __init__(self, contexts=None, table=None):
        self.contexts, self.table = contexts, table

    def fit(self, X, y):
        return self

    def predict(self, X):
        d = self.contexts.shape[1]
        k = np.abs(X[:, None, :d] - self.contexts[None]).sum(axis=2).argmin(axis=1)
        return self.table[k, X[:, d:].argmax(axis=1)]


def finite_bandit(n: int, seed: int):
    """Five contexts (2-d vectors) with probabilities p, Bernoulli rewards with mean q(k, a), a softmax
    behavior policy, two evaluation policies, and the exact value Σ_k p_k Σ_a π(a | k) q(k, a)."""
    rng = np.random.default_rng(seed)
    contexts = rng.standard_normal((5, 2))
    p = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
    table = rng.uniform(0.1, 0.9, (5, 3))
    behavior = softmax(0.5 * contexts @ rng.standard_normal((2, 3)), axis=1)
    evals = np.stack([softmax(4 * table, axis=1), np.full((5, 3), 1 / 3)])  # (P, K, A)
    k = rng.choice(5, n, p=p)
    a = (rng.random(n)[:, None] > behavior[k].cumsum(axis=1)).sum(axis=1)
    r = (rng.random(n) < table[k, a]).astype(float)
    ds = bandit(contexts[k], a, r, 3, pscore=behavior[k, a])
    truth = np.einsum("k,pka,ka->p", p, evals, table)
    return ds, evals[:, k], truth, contexts, table


def _inputs(ds: LoggedDataset, pi: np.ndarray, fitted: RewardModel) -> OPEInput:
    q_hat, v_hat = fitted.q_and_v(pi)
    return OPEInput(
        policy_names=("greedy", "uniform"),
        eval_pscore=np.take_along_axis(pi, ds.actions[None], axis=-1),
        eval_action_probs=pi[:, :, None],
        q_hat=q_hat,
        v_hat=v_hat,
        initial_v_hat=v_hat[:, :, 0],
    )


@pytest.mark.statistical
def test_dm_with_the_true_q_model_recovers_the_exact_value():
    """With q̂ = q, DM averages V(x_i) over the logged contexts: unbiased, with the t interval's SE. DR on the
    default boosted model, cross-fitted, is unbiased too (to its SE)."""
    ds, pi, truth, contexts, table = finite_bandit(4000, seed=2)
    exact = fit_reward_model(ds, _TrueQ(contexts, table))
    np.testing.assert_allclose(exact.q, table[np.abs(ds.observations[:, 0, None] - contexts).sum(axis=2).argmin(axis=1)])
    result = evaluate(ds, _inputs(ds, pi, exact), estimators=["dm", "dr"], interval="t")
    learned = evaluate(ds, _inputs(ds, pi, fit_reward_model(ds, n_folds=2)), estimators=["dr"], interval="t")
    for table_, name in ((result, "dm"), (result, "dr"), (learned, "dr")):
        lower, upper = table_.bounds(name)
        se = (upper - lower) / (2 * 1.96)
        assert np.all(np.abs(table_.estimate(name) - truth) <= 3.5 * se), (name, table_.estimate(name), truth, se)


# ------------------------------------------------------------------------------------------ errors
def test_clear_errors():
    ds = random_bandit(n=10)
    with pytest.raises(OPEInputError, match=r"dataset: expected one-step \(bandit\) logs with horizon 1 .* found horizon 2; .*FQE"):
        two_steps = LoggedDataset.from_trajectories(
            [{"observations": [0, 1], "actions": [0, 1], "rewards": [1.0, 0.0], "behavior_pscore": [0.5, 0.5]}],
            DatasetInfo("t", 0.9, ActionSpace.discrete(2)),
        )
        fit_reward_model(two_steps)
    continuous = LoggedDataset(
        observations=np.zeros((3, 1, 1)), actions=np.zeros((3, 1, 1)), rewards=np.zeros((3, 1)),
        terminals=np.zeros((3, 1), dtype=bool), mask=np.ones((3, 1), dtype=bool), behavior_pscore=np.ones((3, 1)),
        info=DatasetInfo("c", 1.0, ActionSpace.continuous(1)),
    )  # fmt: skip
    with pytest.raises(OPEInputError, match="dataset: expected discrete actions for a reward model, found continuous"):
        fit_reward_model(continuous)
    with pytest.raises(OPEInputError, match="dataset: expected a LoggedDataset, found dict"):
        fit_reward_model({})
    for bad in (0, 11, True, 2.0):
        with pytest.raises(OPEInputError, match=r"n_folds: expected an int in \[1, n_rounds = 10\], found"):
            fit_reward_model(ds, n_folds=bad)
    with pytest.raises(OPEInputError, match="model: expected a scikit-learn estimator with fit and predict, found object without fit"):
        fit_reward_model(ds, object())
    with pytest.raises(OPEInputError, match=r"model: expected an estimator instance, found the class LinearRegression; give LinearRegression\(\)"):
        fit_reward_model(ds, LinearRegression)
    with pytest.raises(OPEInputError, match=r"model: a classifier \(LogisticRegression\) needs rewards in \{0, 1\}, found .* at round 0; give a regressor"):
        fit_reward_model(ds, LogisticRegression())
    with pytest.raises(OPEInputError, match="chunk_rows: expected a positive int or None, found 0"):
        fit_reward_model(ds, chunk_rows=0)
    with pytest.raises(OPEInputError, match="fold_seed: expected an int, found 'a'"):
        fit_reward_model(ds, fold_seed="a")
    fitted = fit_reward_model(ds, LinearRegression())
    with pytest.raises(OPEInputError, match=r"eval_action_probs: expected shape \(P, n=10, A=3\) or \(P, 10, 1, 3\), found \(2, 10, 4\)"):
        fitted.q_and_v(np.full((2, 10, 4), 0.25))


# ------------------------------------------------------------------------------------------ overlap diagnostics
def _diagnostics_case(log_space: bool = False):
    """Four rounds, π_b(a_i | x_i) = (1/2, 1/4, 1/2, 1/4); policy "a" gives the logged actions (1, 0, 1/2,
    1/2): weights (2, 0, 1, 2); policy "b" is π_b itself: weights 1."""
    pscore = np.array([0.5, 0.25, 0.5, 0.25])
    ds = bandit(np.zeros((4, 1)), np.array([0, 1, 0, 1]), np.zeros(4), 4, pscore=pscore)
    eval_pscore = np.stack([[1.0, 0.0, 0.5, 0.5], pscore])[:, :, None]
    if not log_space:
        return ds, OPEInput(policy_names=("a", "b"), eval_pscore=eval_pscore)
    # the same ratios from propensities that underflow float64: exp(-800 + log p)
    shift = -800.0
    log_b = np.log(pscore) + shift
    ds = LoggedDataset(**{**{f: getattr(ds, f) for f in ("observations", "actions", "rewards", "terminals", "mask", "info")},
                          "behavior_pscore": np.exp(log_b)[:, None], "behavior_log_pscore": log_b[:, None]})  # fmt: skip
    with np.errstate(divide="ignore"):
        log_e = np.log(eval_pscore) + shift
    return ds, OPEInput(policy_names=("a", "b"), eval_pscore=np.exp(log_e), eval_log_pscore=np.where(np.isfinite(log_e), log_e, -1e300))


@pytest.mark.parametrize("log_space", [False, True])
def test_overlap_diagnostics_by_hand(log_space):
    ds, inputs = _diagnostics_case(log_space)
    table = overlap_diagnostics(ds, inputs)
    assert isinstance(table, pd.DataFrame) and list(table.policy) == ["a", "b"]
    # policy a: Σw = 5, Σw² = 9 → ess = 25/9; policy b: ess = n = 4
    expected = pd.DataFrame(
        {
            "policy": ["a", "b"],
            "n": [4, 4],
            "ess": [25 / 9, 4.0],
            "ess_fraction": [25 / 36, 1.0],
            "max_weight": [2.0, 1.0],
            "mean_weight": [1.25, 1.0],
            "zero_weight_share": [0.25, 0.0],
        }
    )
    pd.testing.assert_frame_equal(table, expected, rtol=1e-12, check_dtype=False)


def test_overlap_diagnostics_of_trajectories_use_the_product_of_the_step_ratios():
    info = DatasetInfo("t", 0.9, ActionSpace.discrete(2))
    ds = LoggedDataset.from_trajectories(
        [
            {"observations": [0, 1], "actions": [0, 1], "rewards": [1.0, 0.0], "behavior_pscore": [0.5, 0.25]},
            {"observations": [0], "actions": [1], "rewards": [0.0], "behavior_pscore": [0.5]},
        ],
        info,
    )
    eval_pscore = np.array([[[1.0, 0.5], [0.25, 1.0]]])  # padded step: 1; weights 1/0.5 · 0.5/0.25 = 4 and 0.5
    table = overlap_diagnostics(ds, OPEInput(policy_names=("p",), eval_pscore=eval_pscore))
    np.testing.assert_allclose(table.loc[0, ["ess", "max_weight", "mean_weight"]].to_numpy(float), [4.5**2 / 16.25, 4.0, 2.25])
    zero = overlap_diagnostics(ds, OPEInput(policy_names=("z",), eval_pscore=np.array([[[0.0, 0.5], [0.0, 1.0]]])))
    assert zero.loc[0, "ess"] == 0.0 and zero.loc[0, "zero_weight_share"] == 1.0
