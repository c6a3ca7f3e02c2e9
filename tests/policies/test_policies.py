"""Tests for opelab.policies: protocols, sampling, tabular policies, heads and candidate families.

Ground truth: closed forms of the heads (ε-greedy mixture, softmax), hand-worked tie cases, binomial standard
errors for sampling frequencies, and exact values on the gridworld task.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opelab.envs import TabularMDP, collect, gridworld
from opelab.policies import (
    ActionValues,
    CategoricalPolicy,
    DiscretePolicy,
    EpsilonGreedyPolicy,
    GreedyPolicy,
    Policy,
    SoftmaxPolicy,
    TabularPolicy,
    TabularQ,
    UniformPolicy,
    candidate_family,
    sample_categorical,
)

S, A, H = 6, 4, 5
RNG = np.random.default_rng(0)
Q_STAT = RNG.normal(size=(S, A))
Q_TIME = RNG.normal(size=(H, S, A))
PI_STAT = RNG.dirichlet(np.ones(A), size=S)
PI_TIME = RNG.dirichlet(np.ones(A), size=(H, S))
OBS = np.random.default_rng(1).integers(S, size=200)
STEPS = np.random.default_rng(2).integers(H, size=200)


def family_members():
    return [(f"family:{p.name}", p) for p in candidate_family(TabularQ(Q_TIME))]


HEADS = [
    ("greedy", GreedyPolicy(TabularQ(Q_STAT))),
    ("greedy-time", GreedyPolicy(TabularQ(Q_TIME))),
    ("softmax", SoftmaxPolicy(TabularQ(Q_STAT), 0.5)),
    ("softmax-time", SoftmaxPolicy(TabularQ(Q_TIME), 2.0)),
    ("eps-greedy", EpsilonGreedyPolicy(GreedyPolicy(TabularQ(Q_STAT)), 0.2)),
    ("eps-stochastic-base", EpsilonGreedyPolicy(TabularPolicy(PI_STAT), 0.3)),
    ("uniform", UniformPolicy(A)),
    ("tabular", TabularPolicy(PI_STAT)),
    ("tabular-time", TabularPolicy(PI_TIME)),
    *family_members(),
]


def onehot(idx: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n)[idx]


# ---------------------------------------------------------------------------------------------- every head
@pytest.mark.parametrize("policy", [p for _, p in HEADS], ids=[n for n, _ in HEADS])
def test_action_probs_are_distributions(policy):
    probs = policy.action_probs(OBS, STEPS)
    assert probs.shape == (len(OBS), A)
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    assert isinstance(policy, DiscretePolicy) and isinstance(policy, Policy)
    assert policy.n_actions == A
    # pscore agrees with action_probs
    acts = np.random.default_rng(3).integers(A, size=len(OBS))
    np.testing.assert_array_equal(policy.pscore(OBS, acts, STEPS), probs[np.arange(len(OBS)), acts])


def test_tabular_policy_reads_the_table():
    np.testing.assert_array_equal(TabularPolicy(PI_STAT).action_probs(OBS), PI_STAT[OBS])
    np.testing.assert_array_equal(TabularPolicy(PI_TIME).action_probs(OBS, STEPS), PI_TIME[STEPS, OBS])
    # a stationary table ignores the steps
    np.testing.assert_array_equal(TabularPolicy(PI_STAT).action_probs(OBS, STEPS), PI_STAT[OBS])
    # a scalar step is broadcast to every observation
    np.testing.assert_array_equal(TabularPolicy(PI_TIME).action_probs(OBS, 3), PI_TIME[3, OBS])
    np.testing.assert_array_equal(TabularQ(Q_TIME).action_values(OBS, STEPS), Q_TIME[STEPS, OBS])


# ---------------------------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.5, 1.0])
@pytest.mark.parametrize("q", [Q_STAT, Q_TIME], ids=["stationary", "time"])
def test_epsilon_greedy_closed_form(q, eps):
    policy = EpsilonGreedyPolicy(GreedyPolicy(TabularQ(q)), eps)
    values = q[OBS] if q.ndim == 2 else q[STEPS, OBS]
    expected = (1 - eps) * onehot(values.argmax(axis=-1), A) + eps / A
    np.testing.assert_allclose(policy.action_probs(OBS, STEPS), expected, rtol=0, atol=1e-15)


def test_epsilon_mixture_over_stochastic_base():
    eps = 0.3
    policy = EpsilonGreedyPolicy(TabularPolicy(PI_STAT), eps)
    np.testing.assert_allclose(policy.action_probs(OBS), (1 - eps) * PI_STAT[OBS] + eps / A, rtol=0, atol=1e-15)


@pytest.mark.parametrize("tau", [0.1, 1.0, 7.0])
def test_softmax_closed_form(tau):
    policy = SoftmaxPolicy(TabularQ(Q_TIME), tau)
    values = Q_TIME[STEPS, OBS]
    expected = np.exp(values / tau) / np.exp(values / tau).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(policy.action_probs(OBS, STEPS), expected, rtol=1e-12, atol=0)


def test_softmax_temperature_limits():
    q = np.array([[0.0, 1.0, 0.5, -2.0], [3.0, 2.9, -1.0, 0.0]])  # gaps between best and the rest ≥ 0.1
    obs = np.arange(2)
    hot = SoftmaxPolicy(TabularQ(q), 1e6).action_probs(obs)
    # |Q| ≤ 3 → every logit differs by ≤ 6e-6: probabilities within a factor e^{±6e-6} of 1/A
    np.testing.assert_allclose(hot, 1 / A, rtol=1e-5, atol=0)
    cold = SoftmaxPolicy(TabularQ(q), 1e-3).action_probs(obs)
    # the best action wins by ≥ 0.1/1e-3 = 100 nats: others have probability ≤ e^{-100}
    np.testing.assert_allclose(cold, onehot(q.argmax(axis=-1), A), rtol=0, atol=1e-40)


def test_softmax_is_stable_for_huge_values():
    q = np.array([[1e6, 1e6 - 1.0, 0.0, -1e6], [-1e6, -1e6 + 2.0, -1e6 + 2.0, -1e6]])
    probs = SoftmaxPolicy(TabularQ(q), 1.0).action_probs(np.arange(2))  # filterwarnings=error: no overflow
    e = np.exp(-1.0)
    z = 2 + 2 * np.exp(2.0)
    expected = np.array([[1 / (1 + e), e / (1 + e), 0.0, 0.0], [1 / z, np.exp(2) / z, np.exp(2) / z, 1 / z]])
    np.testing.assert_allclose(probs, expected, rtol=1e-12, atol=1e-300)
    assert np.isfinite(probs).all()


def test_softmax_is_stable_for_tiny_temperature():
    q = np.array([[1e10, 0.0, -1.0, 5.0]])
    probs = SoftmaxPolicy(TabularQ(q), 1e-300).action_probs(np.arange(1))
    np.testing.assert_array_equal(probs, [[1.0, 0.0, 0.0, 0.0]])


def test_greedy_ties_go_to_lowest_index():
    q = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 2.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0], [-1.0, -2.0, -1.0, -1.0]])
    probs = GreedyPolicy(TabularQ(q)).action_probs(np.arange(4))
    np.testing.assert_array_equal(probs, onehot(np.array([0, 1, 0, 0]), A))


def test_uniform_policy():
    np.testing.assert_array_equal(UniformPolicy(3).action_probs(np.arange(5)), np.full((5, 3), 1 / 3))
    assert UniformPolicy(3).action_probs(np.zeros((0,), dtype=int)).shape == (0, 3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=2, max_size=6), st.floats(0.0, 1.0))
def test_epsilon_greedy_of_softmax_is_a_mixture(values, eps):
    q = np.array([values])
    base = SoftmaxPolicy(TabularQ(q), 1.0)
    mixed = EpsilonGreedyPolicy(base, eps).action_probs(np.array([0]))
    expected = (1 - eps) * base.action_probs(np.array([0])) + eps / len(values)
    np.testing.assert_allclose(mixed, expected, rtol=0, atol=1e-14)
    assert abs(mixed.sum() - 1) < 1e-12


# ---------------------------------------------------------------------------------------------- sampling
@pytest.mark.statistical
def test_sample_categorical_frequencies():
    p = np.array([0.05, 0.15, 0.3, 0.5])
    N = 100_000
    draws = sample_categorical(np.broadcast_to(p, (N, 4)), np.random.default_rng(123))
    assert draws.shape == (N,) and draws.dtype == np.int64
    freq = np.bincount(draws, minlength=4) / N
    se = np.sqrt(p * (1 - p) / N)
    assert (np.abs(freq - p) < 4 * se).all(), (freq, p)
    assert (np.abs(freq - 0.25) > 10 * se).any()  # a sampler ignoring p would fail


@pytest.mark.statistical
def test_sample_categorical_uses_each_rows_own_distribution():
    rows = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])
    N = 40_000
    which = np.random.default_rng(4).integers(2, size=N)
    draws = sample_categorical(rows[which], np.random.default_rng(5))
    for r in range(2):
        d = draws[which == r]
        freq = np.bincount(d, minlength=3) / len(d)
        se = np.sqrt(rows[r] * (1 - rows[r]) / len(d))
        assert (np.abs(freq - rows[r]) <= 4 * se).all(), (r, freq)


@pytest.mark.parametrize(
    "p",
    [
        [0.0, 0.5, 0.5, 0.0],  # first and last impossible
        [0.0, 0.0, 1.0, 0.0],
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
        [0.3, 0.0, 0.7, 0.0],
        [0.0, 1e-3, 0.0, 0.999],
    ],
)
def test_sample_categorical_never_draws_zero_probability_actions(p):
    p = np.array(p)
    draws = sample_categorical(np.broadcast_to(p, (50_000, 4)), np.random.default_rng(0))
    assert set(np.unique(draws)) <= set(np.flatnonzero(p > 0))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), min_size=1, max_size=8).filter(lambda w: sum(w) > 0),
    st.integers(0, 2**32 - 1),
)
def test_sample_categorical_support_property(weights, seed):
    p = np.array(weights) / np.sum(weights)
    draws = sample_categorical(np.broadcast_to(p, (2000, len(p))), np.random.default_rng(seed))
    assert draws.min() >= 0 and draws.max() < len(p)
    assert (p[draws] > 0).all()


def test_categorical_sample_returns_pscore_of_the_action():
    policy = TabularPolicy(PI_TIME)
    rng = np.random.default_rng(7)
    actions, ps = policy.sample(OBS, rng, STEPS)
    assert actions.shape == ps.shape == (len(OBS),)
    np.testing.assert_array_equal(ps, PI_TIME[STEPS, OBS, actions])
    np.testing.assert_array_equal(policy.pscore(OBS, actions, STEPS), ps)
    # deterministic: same rng seed, same draws
    again, _ = policy.sample(OBS, np.random.default_rng(7), STEPS)
    np.testing.assert_array_equal(actions, again)


# ---------------------------------------------------------------------------------------------- candidate family
EXPECTED_NAMES = [
    "optimal",
    "optimal+eps0.1",
    "optimal+eps0.3",
    "optimal+eps0.6",
    "optimal+softmax0.2",
    "optimal+softmax1",
    "uniform",
    "worst+eps0.1",
    "worst+eps0.5",
]


def test_candidate_family_names_order_and_members():
    q = TabularQ(Q_TIME)
    family = candidate_family(q)
    names = [p.name for p in family]
    assert names == EXPECTED_NAMES
    assert len(set(names)) == len(names)
    by_name = dict(zip(names, family))
    values = Q_TIME[STEPS, OBS]
    best, worst = onehot(values.argmax(axis=-1), A), onehot(values.argmin(axis=-1), A)
    np.testing.assert_array_equal(by_name["optimal"].action_probs(OBS, STEPS), best)
    np.testing.assert_allclose(by_name["optimal+eps0.3"].action_probs(OBS, STEPS), 0.7 * best + 0.3 / A, atol=1e-15)
    np.testing.assert_array_equal(by_name["uniform"].action_probs(OBS, STEPS), np.full((len(OBS), A), 1 / A))
    np.testing.assert_allclose(by_name["worst+eps0.1"].action_probs(OBS, STEPS), 0.9 * worst + 0.1 / A, atol=1e-15)
    soft = np.exp(values / 0.2) / np.exp(values / 0.2).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(by_name["optimal+softmax0.2"].action_probs(OBS, STEPS), soft, rtol=1e-12)


def test_candidate_family_options():
    q = TabularQ(Q_STAT)
    family = candidate_family(q, prefix="base", epsilons=(0.0, 0.2), temperatures=(0.5,), include_uniform=False,
                              adversarial_epsilons=(0.25, 0.75, 1.0))
    assert [p.name for p in family] == ["base", "base+eps0.2", "base+softmax0.5", "worst+eps0.25", "worst+eps0.75",
                                        "worst+eps1"]
    with pytest.raises(ValueError, match="names"):
        candidate_family(q, epsilons=(0.1, 0.1))


def test_candidate_family_values_span_a_wide_range_on_gridworld():
    g = gridworld()
    family = candidate_family(TabularQ(g.optimal_q()))
    values = dict(zip([p.name for p in family], g.policy_values(family)))
    # exact values: optimal ≈ 0.3583 (= the optimal policy's value), uniform ≈ −0.6389, worst+eps0.1 ≈ −0.8761
    assert values["optimal"] == pytest.approx(g.policy_value(g.optimal_policy()), abs=1e-12)
    assert values["optimal"] == pytest.approx(0.3583, abs=1e-3)
    assert values["worst+eps0.1"] == pytest.approx(-0.8761, abs=1e-3)
    assert max(values.values()) - min(values.values()) > 1.0
    assert max(values, key=values.get) == "optimal"
    # more exploration of the optimal greedy policy costs value
    assert values["optimal"] > values["optimal+eps0.1"] > values["optimal+eps0.3"] > values["optimal+eps0.6"]
    assert values["worst+eps0.1"] < values["uniform"] < values["optimal+eps0.6"]


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan")])
def test_softmax_rejects_bad_temperature(tau):
    with pytest.raises(ValueError, match="temperature"):
        SoftmaxPolicy(TabularQ(Q_STAT), tau)


@pytest.mark.parametrize("eps", [-0.01, 1.01, float("nan")])
def test_epsilon_greedy_rejects_bad_epsilon(eps):
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedyPolicy(UniformPolicy(A), eps)


@pytest.mark.parametrize(
    "table",
    [
        np.full((3, 2), 0.4),  # rows sum to 0.8
        np.array([[1.2, -0.2], [0.5, 0.5]]),  # negative entry
        np.full((2, 2, 2), 0.6),  # time-dependent rows not summing to 1
        np.full((2,), 0.5),  # wrong ndim
        np.array([[np.nan, 1.0]]),
    ],
)
def test_tabular_policy_rejects_bad_tables(table):
    with pytest.raises(ValueError, match="probs"):
        TabularPolicy(table)


def test_tabular_q_rejects_bad_tables():
    with pytest.raises(ValueError, match="q"):
        TabularQ(np.zeros(3))
    with pytest.raises(ValueError, match="q"):
        TabularQ(np.array([[np.inf, 0.0]]))


def test_time_dependent_lookup_needs_steps():
    with pytest.raises(ValueError, match="steps"):
        TabularPolicy(PI_TIME).action_probs(OBS)
    with pytest.raises(ValueError, match="steps"):
        GreedyPolicy(TabularQ(Q_TIME)).action_probs(OBS)
    with pytest.raises(ValueError, match="steps"):
        TabularPolicy(PI_TIME).action_probs(OBS, np.full(len(OBS), H))


@pytest.mark.parametrize("bad", [np.array([0, S]), np.array([-1, 0])])
@pytest.mark.parametrize("table", [PI_STAT, PI_TIME], ids=["stationary", "time"])
def test_out_of_range_states(table, bad):
    with pytest.raises(ValueError, match="observations"):
        TabularPolicy(table).action_probs(bad, np.zeros(2, dtype=int))


def test_non_integer_observations():
    with pytest.raises(ValueError, match="observations"):
        TabularPolicy(PI_STAT).action_probs(np.array([0.0, 1.0]))


def test_categorical_policy_rejects_no_actions():
    with pytest.raises(ValueError, match="n_actions"):
        UniformPolicy(0)


# ---------------------------------------------------------------------------------------------- protocols
class MyModel(CategoricalPolicy):
    """A user policy implementing only action_probs: prefers action (state mod n_actions)."""

    def __init__(self, n_actions: int) -> None:
        super().__init__(n_actions=n_actions, name="my-model")

    def action_probs(self, observations, steps=None):
        obs = np.asarray(observations)
        probs = np.full((len(obs), self.n_actions), 0.1 / (self.n_actions - 1))
        probs[np.arange(len(obs)), obs % self.n_actions] = 0.9
        return probs


def test_user_policy_satisfies_protocols_and_collects():
    policy = MyModel(3)
    assert isinstance(policy, DiscretePolicy)
    assert isinstance(policy, Policy)
    mdp = TabularMDP.random(5, 3, horizon=6, gamma=0.9, seed=2, n_terminal=1)
    ds = collect(mdp, policy, 200, seed=0)
    i, t = np.nonzero(ds.mask)
    obs, acts = ds.observations[i, t], ds.actions[i, t]
    expected = np.where(acts == obs % 3, 0.9, 0.05)
    np.testing.assert_allclose(ds.behavior_pscore[i, t], expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(ds.behavior_action_probs[i, t], policy.action_probs(obs), rtol=0, atol=0)
    assert ds.info.behavior_policy == "my-model"
    # and it has an exact value like any other discrete policy
    assert np.isfinite(mdp.policy_value(policy))


def test_protocol_negatives():
    class NoName:
        n_actions = 2

        def action_probs(self, observations, steps=None):
            return np.full((len(observations), 2), 0.5)

    assert not isinstance(NoName(), DiscretePolicy)
    assert not isinstance(NoName(), Policy)
    assert isinstance(TabularQ(Q_STAT), ActionValues)
    assert not isinstance(TabularQ(Q_STAT), DiscretePolicy)
    with pytest.raises(TypeError):
        CategoricalPolicy(2, "abstract")  # action_probs is abstract
