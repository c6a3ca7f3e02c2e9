"""Tests for opelab.envs.tabular (TabularMDP) and opelab.envs.tasks (gridworld, chain, random_task, make).

Ground truth used here, never the code under test checking itself:
- closed forms on tiny hand-built MDPs (geometric sums);
- the Bellman (optimality) equations, re-implemented in the test with einsum over an independently built
  policy table and an independently computed R̄;
- brute-force enumeration of every deterministic time-dependent policy of a tiny MDP;
- Monte-Carlo returns of ``collect`` compared with exact values within 4 standard errors (fixed seeds).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from opelab.envs import TASKS, TabularMDP, chain, collect, gridworld, make, random_task
from opelab.policies import GreedyPolicy, SoftmaxPolicy, TabularPolicy, TabularQ, UniformPolicy

N_MC = 20_000


# ---------------------------------------------------------------------------------------------- helpers
def hand_built_sas(seed: int, *, n_states: int = 5, n_actions: int = 3, horizon: int = 7, gamma: float = 0.9,
                   n_terminal: int = 1, reward_noise: float = 0.3) -> TabularMDP:
    """An MDP with next-state dependent rewards R(s, a, s') built by hand (not via TabularMDP.random)."""
    rng = np.random.default_rng(seed)
    S, A = n_states, n_actions
    P = rng.dirichlet(np.full(S, 0.7), size=(S, A))
    R = rng.normal(0.0, 1.0, size=(S, A, S))
    term = np.zeros(S, dtype=bool)
    term[S - n_terminal:] = True
    mu = np.zeros(S)
    mu[: S - n_terminal] = rng.dirichlet(np.ones(S - n_terminal))
    return TabularMDP(initial=mu, transitions=P, rewards=R, horizon=horizon, gamma=gamma,
                      reward_noise=reward_noise, terminal_states=term, name=f"sas{seed}")


MDP_FACTORIES = {
    # no terminal states, no reward noise
    "random-plain": lambda: TabularMDP.random(5, 3, horizon=8, gamma=0.9, seed=11),
    # terminal states (episodes of varying length) and reward noise
    "random-terminal-noise": lambda: TabularMDP.random(6, 3, horizon=10, gamma=0.95, seed=12,
                                                       reward_noise=0.5, n_terminal=2),
    # undiscounted, one terminal state, two actions
    "random-gamma1": lambda: TabularMDP.random(4, 2, horizon=6, gamma=1.0, seed=13, reward_noise=0.2,
                                               n_terminal=1),
    # rewards of shape (S, A, S) built by hand, terminal state, noise
    "hand-sas": lambda: hand_built_sas(14),
    # (S, A, S) rewards without terminals
    "hand-sas-noterm": lambda: hand_built_sas(15, n_terminal=0, reward_noise=0.0, gamma=0.8),
}


def stationary_policy(mdp: TabularMDP, seed: int, deterministic: bool = False) -> TabularPolicy:
    rng = np.random.default_rng(seed)
    S, A = mdp.n_states, mdp.n_actions
    if deterministic:
        return TabularPolicy(np.eye(A)[rng.integers(A, size=S)], name="det-stationary")
    return TabularPolicy(rng.dirichlet(np.ones(A), size=S), name="stationary")


def time_dependent_policy(mdp: TabularMDP, seed: int, deterministic: bool = False) -> TabularPolicy:
    rng = np.random.default_rng(seed)
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    if deterministic:
        return TabularPolicy(np.eye(A)[rng.integers(A, size=(H, S))], name="det-time")
    return TabularPolicy(rng.dirichlet(np.ones(A), size=(H, S)), name="time")


def softmax_policy(mdp: TabularMDP, seed: int) -> SoftmaxPolicy:
    rng = np.random.default_rng(seed)
    q = rng.normal(0.0, 1.0, size=(mdp.horizon, mdp.n_states, mdp.n_actions))
    return SoftmaxPolicy(TabularQ(q), temperature=0.7)


POLICY_FACTORIES = {
    "stationary": stationary_policy,
    "time-dependent": time_dependent_policy,
    "softmax": softmax_policy,
}


def pi_table(policy, H: int, S: int) -> np.ndarray:
    """π_t(a|s) built by querying the policy one step at a time (independent of TabularMDP.policy_table)."""
    return np.stack([policy.action_probs(np.arange(S), np.full(S, t)) for t in range(H)])


def r_bar(mdp: TabularMDP) -> np.ndarray:
    """R̄(s, a) computed with explicit loops (independent of TabularMDP.expected_rewards)."""
    R = np.asarray(mdp.rewards)
    if R.ndim == 2:
        return R.copy()
    S, A = mdp.n_states, mdp.n_actions
    out = np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            out[s, a] = sum(mdp.transitions[s, a, u] * R[s, a, u] for u in range(S))
    return out


def mc_mean_se(returns: np.ndarray) -> tuple[float, float]:
    """Sample mean and its standard error."""
    mean = float(returns.mean())
    se = float(returns.std(ddof=1) / np.sqrt(len(returns)))
    return mean, se


# ---------------------------------------------------------------------------------------------- closed forms
def test_single_state_value_is_geometric_sum():
    # one state, one action, reward r every step: J = r (1 − γ^H) / (1 − γ)
    r, gamma, H = 0.7, 0.9, 12
    mdp = TabularMDP(initial=np.ones(1), transitions=np.ones((1, 1, 1)), rewards=np.full((1, 1), r),
                     horizon=H, gamma=gamma)
    assert mdp.policy_value(UniformPolicy(1)) == pytest.approx(r * (1 - gamma**H) / (1 - gamma), abs=1e-12)
    # Q_t = r (1 − γ^{H−t}) / (1 − γ)
    expected_q = np.array([r * (1 - gamma ** (H - t)) / (1 - gamma) for t in range(H)])
    np.testing.assert_allclose(mdp.q_values(UniformPolicy(1))[:, 0, 0], expected_q, atol=1e-12)


def test_terminal_state_stops_rewards_closed_form():
    # state 0 pays 1 per step and enters terminal state 1 w.p. p (the entering step is paid). Terminal state 1
    # would pay 100 per step if it were ever continued from. J = Σ_{t<H} (γ (1 − p))^t.
    p, gamma, H = 0.3, 0.95, 9
    P = np.zeros((2, 1, 2))
    P[0, 0] = [1 - p, p]
    P[1, 0] = [0.0, 1.0]
    R = np.array([[1.0], [100.0]])
    mdp = TabularMDP(initial=np.array([1.0, 0.0]), transitions=P, rewards=R, horizon=H, gamma=gamma,
                     terminal_states=np.array([False, True]))
    x = gamma * (1 - p)
    assert mdp.policy_value(UniformPolicy(1)) == pytest.approx((1 - x**H) / (1 - x), abs=1e-12)
    # the same chain without the terminal flag collects the 100s
    no_term = TabularMDP(initial=np.array([1.0, 0.0]), transitions=P, rewards=R, horizon=H, gamma=gamma)
    assert no_term.policy_value(UniformPolicy(1)) > 10


def test_sas_rewards_expected_reward_closed_form():
    # R(s, a, s') depends only on s': R̄(s, a) = Σ_s' P(s'|s,a) R(s') exactly
    P = np.array([[[0.25, 0.75]], [[0.5, 0.5]]])
    R = np.broadcast_to(np.array([2.0, -4.0]), (2, 1, 2)).copy()
    mdp = TabularMDP(initial=np.array([1.0, 0.0]), transitions=P, rewards=R, horizon=1, gamma=0.5)
    np.testing.assert_allclose(mdp.expected_rewards, [[0.25 * 2 - 0.75 * 4], [0.5 * 2 - 0.5 * 4]], atol=1e-15)
    assert mdp.policy_value(UniformPolicy(1)) == pytest.approx(-2.5, abs=1e-15)


# ---------------------------------------------------------------------------------------------- Monte-Carlo
@pytest.mark.statistical
@pytest.mark.parametrize("policy_kind", list(POLICY_FACTORIES))
@pytest.mark.parametrize("mdp_kind", list(MDP_FACTORIES))
def test_policy_value_matches_monte_carlo(mdp_kind, policy_kind):
    mdp = MDP_FACTORIES[mdp_kind]()
    seed = 100 + 10 * list(MDP_FACTORIES).index(mdp_kind) + list(POLICY_FACTORIES).index(policy_kind)
    policy = POLICY_FACTORIES[policy_kind](mdp, seed)
    exact = mdp.policy_value(policy)
    mean, se = mc_mean_se(collect(mdp, policy, N_MC, seed=seed).returns)
    assert se > 0
    assert abs(mean - exact) < 4 * se, f"MC {mean:.5f} ± {se:.5f} vs exact {exact:.5f}"


@pytest.mark.statistical
def test_monte_carlo_check_has_power():
    """The 4·SE bound is tight enough to reject the values of plausible modelling mistakes."""
    # terminal handling: ignoring the terminal states gives a value the MC estimate rejects
    mdp = MDP_FACTORIES["random-terminal-noise"]()
    policy = stationary_policy(mdp, 1)
    mean, se = mc_mean_se(collect(mdp, policy, N_MC, seed=1).returns)
    assert abs(mean - mdp.policy_value(policy)) < 4 * se
    ignoring = TabularMDP(initial=mdp.initial, transitions=mdp.transitions, rewards=mdp.rewards,
                          horizon=mdp.horizon, gamma=mdp.gamma)
    assert abs(mean - ignoring.policy_value(policy)) > 4 * se

    # next-state rewards: averaging R(s, a, ·) uniformly instead of under P gives a rejected value
    mdp = MDP_FACTORIES["hand-sas"]()
    policy = stationary_policy(mdp, 2)
    mean, se = mc_mean_se(collect(mdp, policy, N_MC, seed=2).returns)
    assert abs(mean - mdp.policy_value(policy)) < 4 * se
    wrong = TabularMDP(initial=mdp.initial, transitions=mdp.transitions, rewards=mdp.rewards.mean(axis=-1),
                       horizon=mdp.horizon, gamma=mdp.gamma, terminal_states=mdp.terminal_states)
    assert abs(mean - wrong.policy_value(policy)) > 4 * se


# ---------------------------------------------------------------------------------------------- Bellman
@pytest.mark.parametrize("policy_kind", list(POLICY_FACTORIES))
@pytest.mark.parametrize("mdp_kind", list(MDP_FACTORIES))
def test_q_values_satisfy_bellman_equation(mdp_kind, policy_kind):
    mdp = MDP_FACTORIES[mdp_kind]()
    policy = POLICY_FACTORIES[policy_kind](mdp, 7)
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    q = mdp.q_values(policy)
    assert q.shape == (H, S, A)
    pi = pi_table(policy, H, S)
    Rb = r_bar(mdp)
    cont = 1.0 - mdp.terminal_states.astype(float)
    np.testing.assert_allclose(q[H - 1], Rb, rtol=0, atol=1e-10)
    for t in range(H - 1):
        rhs = Rb + mdp.gamma * np.einsum("sau,u,ub,ub->sa", mdp.transitions, cont, pi[t + 1], q[t + 1])
        np.testing.assert_allclose(q[t], rhs, rtol=0, atol=1e-10)
    # V and J follow from Q
    v = mdp.state_values(policy)
    np.testing.assert_allclose(v, np.einsum("tsa,tsa->ts", pi, q), rtol=0, atol=1e-10)
    assert mdp.policy_value(policy) == pytest.approx(float(mdp.initial @ v[0]), abs=1e-10)
    assert mdp.policy_values([policy, policy])[1] == pytest.approx(mdp.policy_value(policy), abs=1e-12)


@pytest.mark.parametrize("mdp_kind", list(MDP_FACTORIES))
def test_optimal_q_satisfies_bellman_optimality(mdp_kind):
    mdp = MDP_FACTORIES[mdp_kind]()
    H = mdp.horizon
    q = mdp.optimal_q()
    Rb = r_bar(mdp)
    cont = 1.0 - mdp.terminal_states.astype(float)
    np.testing.assert_allclose(q[H - 1], Rb, rtol=0, atol=1e-10)
    for t in range(H - 1):
        rhs = Rb + mdp.gamma * np.einsum("sau,u,u->sa", mdp.transitions, cont, q[t + 1].max(axis=-1))
        np.testing.assert_allclose(q[t], rhs, rtol=0, atol=1e-10)

    opt = mdp.optimal_policy()
    assert isinstance(opt, GreedyPolicy)
    S = mdp.n_states
    for t in range(H):  # greedy on Q*_t with ties to the lowest index
        np.testing.assert_array_equal(opt.action_probs(np.arange(S), np.full(S, t)).argmax(axis=-1),
                                      q[t].argmax(axis=-1))
    v_opt = mdp.policy_value(opt)
    assert v_opt == pytest.approx(float(mdp.initial @ q[0].max(axis=-1)), abs=1e-10)

    rivals = []
    for k in range(50):
        rivals += [stationary_policy(mdp, 1000 + k), stationary_policy(mdp, 2000 + k, deterministic=True),
                   time_dependent_policy(mdp, 3000 + k), time_dependent_policy(mdp, 4000 + k, deterministic=True)]
    values = mdp.policy_values(rivals)
    assert (values <= v_opt + 1e-12).all()
    assert values.min() < v_opt - 1e-3  # the comparison is not vacuous: some rivals are clearly worse


def test_optimal_value_equals_brute_force_over_all_deterministic_policies():
    # tiny MDP: (A^S)^H = (2^3)^3 = 512 deterministic time-dependent policies; the best of them is optimal
    mdp = TabularMDP.random(3, 2, horizon=3, gamma=0.9, seed=5, n_terminal=1, concentration=0.5)
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    best = -np.inf
    for choice in itertools.product(range(A), repeat=H * S):
        table = np.eye(A)[np.array(choice).reshape(H, S)]
        best = max(best, mdp.policy_value(TabularPolicy(table)))
    assert mdp.policy_value(mdp.optimal_policy()) == pytest.approx(best, abs=1e-12)


def test_policy_table_rejects_wrong_n_actions():
    mdp = MDP_FACTORIES["random-plain"]()
    with pytest.raises(ValueError, match="n_actions"):
        mdp.policy_value(UniformPolicy(mdp.n_actions + 1))


# ---------------------------------------------------------------------------------------------- simulation
def test_reset_and_step_shapes_and_support():
    mdp = MDP_FACTORIES["hand-sas"]()
    rng = np.random.default_rng(0)
    s = mdp.reset(1000, rng)
    assert s.shape == (1000,) and s.dtype == np.int64
    assert (mdp.initial[s] > 0).all()
    a = rng.integers(mdp.n_actions, size=1000)
    nxt, r, done = mdp.step(s, a, rng)
    assert nxt.shape == r.shape == done.shape == (1000,)
    assert (mdp.transitions[s, a, nxt] > 0).all()
    np.testing.assert_array_equal(done, mdp.terminal_states[nxt])


def test_step_rewards_without_noise_are_exact():
    mdp = hand_built_sas(3, reward_noise=0.0)
    rng = np.random.default_rng(1)
    s = rng.integers(mdp.n_states, size=500)
    a = rng.integers(mdp.n_actions, size=500)
    nxt, r, _ = mdp.step(s, a, rng)
    np.testing.assert_array_equal(r, mdp.rewards[s, a, nxt])


# ---------------------------------------------------------------------------------------------- tasks
def test_gridworld_structure():
    g = gridworld(reward_noise=0.0)
    names = g.state_names
    assert g.n_states == 22 and g.n_actions == 4  # 25 cells minus 3 walls
    start, goal, pit = names.index("S(4,0)"), names.index("G(0,4)"), names.index("X(2,2)")
    assert g.initial[start] == 1.0
    np.testing.assert_array_equal(np.flatnonzero(g.terminal_states), sorted([goal, pit]))
    # from the start (bottom-left corner) "up" succeeds w.p. 0.9; slipping right moves, down/left bump and stay
    up, right = 0, 1
    assert g.transitions[start, up, names.index(".(3,0)")] == pytest.approx(0.9)
    assert g.transitions[start, up, names.index(".(4,1)")] == pytest.approx(0.1 / 3)
    assert g.transitions[start, up, start] == pytest.approx(0.2 / 3)
    # (2,1) has walls above (1,1) and below (3,1): "up" stays put w.p. 0.9 + 0.1/3 (slipping down also bumps)
    c21 = names.index(".(2,1)")
    assert g.transitions[c21, up, c21] == pytest.approx(0.9 + 0.1 / 3)
    assert g.transitions[c21, up, names.index(".(2,0)")] == pytest.approx(0.1 / 3)
    # R(s, a, s') = −0.04 + bonus(s')
    assert g.rewards[start, right, goal] == pytest.approx(0.96)
    assert g.rewards[start, right, pit] == pytest.approx(-1.04)
    assert g.rewards[start, right, start] == pytest.approx(-0.04)


def test_gridworld_optimal_clearly_beats_uniform():
    g = gridworld()
    v_opt = g.policy_value(g.optimal_policy())
    v_unif = g.policy_value(UniformPolicy(g.n_actions))
    # exact values: optimal ≈ 0.3583, uniform ≈ −0.6389
    assert v_opt == pytest.approx(0.3583, abs=1e-3)
    assert v_unif == pytest.approx(-0.6389, abs=1e-3)
    assert v_opt - v_unif > 0.9


@pytest.mark.statistical
def test_gridworld_uniform_episodes_vary_and_end_in_goal_or_pit():
    g = gridworld(reward_noise=0.0)  # noiseless: the reward identifies where the last step went
    ds = collect(g, UniformPolicy(g.n_actions), 3000, seed=3)
    lengths = ds.lengths
    assert len(np.unique(lengths)) >= 10
    assert lengths.min() < 10 and lengths.max() == g.horizon
    last = lengths - 1
    idx = np.arange(ds.n_trajectories)
    term = ds.terminals[idx, last]
    assert term.any() and (~term).any()
    assert term[lengths < g.horizon].all()  # every short episode terminated
    r_last = ds.rewards[idx, last]
    # terminated episodes paid goal (−0.04 + 1) or pit (−0.04 − 1) on their last step, both occur
    np.testing.assert_allclose(np.minimum(abs(r_last[term] - 0.96), abs(r_last[term] + 1.04)), 0, atol=1e-12)
    assert (abs(r_last[term] - 0.96) < 1e-9).any() and (abs(r_last[term] + 1.04) < 1e-9).any()
    # every other logged step paid the plain step cost (did not enter goal or pit)
    other = ds.mask.copy()
    other[idx[term], last[term]] = False
    np.testing.assert_allclose(ds.rewards[other], -0.04, atol=1e-12)
    # no observation is ever the goal or the pit
    assert not g.terminal_states[ds.observations[ds.mask]].any()


def test_chain_right_beats_left():
    c = chain()
    S = c.n_states
    right = TabularPolicy(np.tile([0.0, 1.0], (S, 1)), name="right")
    left = TabularPolicy(np.tile([1.0, 0.0], (S, 1)), name="left")
    v_right, v_left = c.policy_value(right), c.policy_value(left)
    # always-left, closed form: from state 0 collect 0.05 every step; from state 1 the first step moves to 0
    gamma, H = c.gamma, c.horizon
    geo = lambda n: (1 - gamma**n) / (1 - gamma)  # noqa: E731
    assert v_left == pytest.approx(0.5 * 0.05 * geo(H) + 0.5 * gamma * 0.05 * geo(H - 1), abs=1e-12)
    # exact values: right ≈ 2.8228, left ≈ 0.6165
    assert v_right == pytest.approx(2.8228, abs=1e-3)
    assert v_right > 4 * v_left


def test_make_builds_every_registered_task():
    assert set(TASKS) == {"gridworld", "chain", "random"}
    for name in TASKS:
        task = make(name)
        assert isinstance(task, TabularMDP)
        assert task.n_states >= 3 and task.horizon >= 1
    assert make("gridworld").name == "gridworld"
    assert make("chain").name == "chain"
    r = make("random")
    assert r.terminal_states.sum() == 2 and r.n_states == 10 and r.n_actions == 3
    np.testing.assert_array_equal(r.transitions, random_task(0).transitions)


def test_make_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match="task") as info:
        make("nope")
    for name in ("gridworld", "chain", "random", "nope"):
        assert name in str(info.value)


def test_random_is_reproducible_and_seed_dependent():
    a = TabularMDP.random(5, 2, 4, 0.9, seed=1, n_terminal=1)
    b = TabularMDP.random(5, 2, 4, 0.9, seed=1, n_terminal=1)
    c = TabularMDP.random(5, 2, 4, 0.9, seed=2, n_terminal=1)
    np.testing.assert_array_equal(a.transitions, b.transitions)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    assert not np.array_equal(a.transitions, c.transitions)
    np.testing.assert_array_equal(a.terminal_states, [False] * 4 + [True])
    assert a.initial[-1] == 0.0


# ---------------------------------------------------------------------------------------------- validation
def _valid_kwargs() -> dict:
    P = np.full((3, 2, 3), 1 / 3)
    return dict(initial=np.array([0.5, 0.5, 0.0]), transitions=P, rewards=np.zeros((3, 2)), horizon=4, gamma=0.9,
                terminal_states=np.array([False, False, True]))


def test_valid_kwargs_construct():
    mdp = TabularMDP(**_valid_kwargs())
    assert mdp.n_states == 3 and mdp.n_actions == 2
    assert not mdp.transitions.flags.writeable and not mdp.initial.flags.writeable


def _bad_rowsum():
    P = np.full((3, 2, 3), 1 / 3)
    P[1, 0] = [0.3, 0.3, 0.3]
    return P


def _negative():
    P = np.full((3, 2, 3), 1 / 3)
    P[2, 1] = [1.5, -0.5, 0.0]
    return P


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (dict(transitions=_bad_rowsum()), "transitions"),
        (dict(transitions=_negative()), "transitions"),
        (dict(transitions=np.full((3, 2), 0.5)), "transitions"),
        (dict(transitions=np.full((3, 2, 4), 0.25)), "transitions"),
        (dict(initial=np.array([0.5, 0.5])), "initial"),
        (dict(initial=np.array([0.7, 0.7, 0.0])), "initial"),
        (dict(initial=np.array([0.5, 0.0, 0.5])), "initial"),  # mass on a terminal state
        (dict(rewards=np.zeros((3, 3))), "rewards"),
        (dict(rewards=np.zeros((3, 2, 2))), "rewards"),
        (dict(rewards=np.array([[0.0, np.nan]] * 3)), "rewards"),
        (dict(terminal_states=np.array([0, 0, 1])), "terminal_states"),
        (dict(terminal_states=np.array([False, True])), "terminal_states"),
        (dict(gamma=-0.1), "gamma"),
        (dict(gamma=1.5), "gamma"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(horizon=0), "horizon"),
        (dict(horizon=-3), "horizon"),
        (dict(horizon=2.5), "horizon"),
        (dict(reward_noise=-0.1), "reward_noise"),
        (dict(state_names=("a", "b")), "state_names"),
    ],
)
def test_validation_names_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        TabularMDP(**{**_valid_kwargs(), **changes})


def test_random_rejects_too_many_terminals():
    with pytest.raises(ValueError, match="n_terminal"):
        TabularMDP.random(3, 2, 4, 0.9, seed=0, n_terminal=3)


def test_mdp_does_not_alias_caller_arrays():
    kwargs = {**_valid_kwargs(), "rewards": np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])}
    P = kwargs["transitions"]
    mdp = TabularMDP(**kwargs)
    before = mdp.policy_value(UniformPolicy(2))
    P[0, 0] = [1.5, -0.5, 0.0]  # would never pass validation
    assert (mdp.transitions >= 0).all()
    assert mdp.policy_value(UniformPolicy(2)) == before
