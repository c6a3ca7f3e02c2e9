"""Tests for opelab.envs.collect: reproducibility, logged propensities, episode boundaries, errors."""

from __future__ import annotations

import numpy as np
import pytest

from opelab.envs import TabularMDP, collect
from opelab.policies import CategoricalPolicy, DiscretePolicy, Policy, SoftmaxPolicy, TabularPolicy, TabularQ


# ---------------------------------------------------------------------------------------------- helpers
def random_mdp(seed: int = 0, n_terminal: int = 2, horizon: int = 8) -> TabularMDP:
    return TabularMDP.random(7, 3, horizon=horizon, gamma=0.9, seed=seed, reward_noise=0.1, n_terminal=n_terminal)


def next_state_reward_mdp(n_terminal: int = 2, seed: int = 0) -> TabularMDP:
    """R(s, a, s') = s' with no noise: every logged reward reveals the next state exactly."""
    rng = np.random.default_rng(seed)
    S, A = 6, 2
    P = rng.dirichlet(np.full(S, 0.5), size=(S, A))
    R = np.broadcast_to(np.arange(S, dtype=float), (S, A, S)).copy()
    term = np.zeros(S, dtype=bool)
    term[S - n_terminal:] = True
    mu = np.zeros(S)
    mu[: S - n_terminal] = 1.0 / (S - n_terminal)
    return TabularMDP(initial=mu, transitions=P, rewards=R, horizon=9, gamma=0.9, terminal_states=term)


def stationary(mdp: TabularMDP, seed: int) -> TabularPolicy:
    return TabularPolicy(np.random.default_rng(seed).dirichlet(np.ones(mdp.n_actions), size=mdp.n_states))


def time_dependent(mdp: TabularMDP, seed: int) -> TabularPolicy:
    rng = np.random.default_rng(seed)
    return TabularPolicy(rng.dirichlet(np.ones(mdp.n_actions), size=(mdp.horizon, mdp.n_states)), name="time")


class RecordingPolicy(CategoricalPolicy):
    """Wraps a discrete policy and records every (observations, steps) it is asked about."""

    def __init__(self, base: CategoricalPolicy) -> None:
        super().__init__(base.n_actions, "recording")
        self.base = base
        self.calls: list[tuple[np.ndarray, np.ndarray | None]] = []

    def action_probs(self, observations, steps=None):
        self.calls.append((np.array(observations), None if steps is None else np.array(steps)))
        return self.base.action_probs(observations, steps)


class SampleOnlyPolicy:
    """A ``Policy`` without ``action_probs``/``n_actions``: collect must use ``sample``."""

    name = "sample-only"

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def sample(self, observations, rng, steps=None):
        p = self.probs[observations]
        cdf = p.cumsum(axis=-1)
        actions = (rng.random(len(observations))[:, None] >= cdf).sum(axis=-1)
        return actions, p[np.arange(len(actions)), actions]

    def pscore(self, observations, actions, steps=None):
        return self.probs[observations, actions]


# ---------------------------------------------------------------------------------------------- reproducibility
def test_same_seed_same_dataset_different_seed_different():
    mdp = random_mdp()
    policy = stationary(mdp, 1)
    a = collect(mdp, policy, 200, seed=5)
    b = collect(mdp, policy, 200, seed=5)
    c = collect(mdp, policy, 200, seed=6)
    assert a.equals(b)
    assert not a.equals(c)
    # the difference is in the data, not only in the recorded seed
    assert not np.array_equal(a.actions, c.actions)
    assert not np.array_equal(a.rewards, c.rewards)
    assert a.info.seed == 5 and c.info.seed == 6
    assert a.info.behavior_policy == policy.name and a.info.task == mdp.name and a.gamma == mdp.gamma


def test_shapes_and_dtypes():
    mdp = random_mdp()
    ds = collect(mdp, stationary(mdp, 1), 50, seed=0)
    assert ds.observations.shape == (50, mdp.horizon) and ds.observations.dtype.kind == "i"
    assert ds.actions.shape == (50, mdp.horizon) and ds.actions.dtype == np.int64
    assert ds.behavior_action_probs.shape == (50, mdp.horizon, mdp.n_actions)
    assert ds.action_space.is_discrete and ds.action_space.n_actions == mdp.n_actions


# ---------------------------------------------------------------------------------------------- propensities
@pytest.mark.parametrize("kind", ["stationary", "time-dependent", "softmax"])
def test_logged_pscores_and_action_probs_match_policy(kind):
    mdp = random_mdp(seed=3)
    if kind == "stationary":
        policy = stationary(mdp, 2)
    elif kind == "time-dependent":
        policy = time_dependent(mdp, 2)
    else:
        q = np.random.default_rng(2).normal(size=(mdp.horizon, mdp.n_states, mdp.n_actions))
        policy = SoftmaxPolicy(TabularQ(q), temperature=0.5)
    ds = collect(mdp, policy, 300, seed=4)
    i, t = np.nonzero(ds.mask)
    obs, acts = ds.observations[i, t], ds.actions[i, t]
    probs = policy.action_probs(obs, t)
    np.testing.assert_array_equal(ds.behavior_pscore[i, t], probs[np.arange(len(acts)), acts])
    np.testing.assert_array_equal(ds.behavior_action_probs[i, t], probs)
    assert (ds.behavior_pscore[i, t] > 0).all()
    # padding keeps the documented fill values
    pad = ~ds.mask
    assert pad.any()
    assert (ds.behavior_pscore[pad] == 1.0).all() and (ds.behavior_action_probs[pad] == 0.0).all()
    assert (ds.rewards[pad] == 0.0).all() and not ds.terminals[pad].any()


def test_time_dependent_policy_is_queried_with_the_step():
    # deterministic time-dependent policy: action t mod A at step t, whatever the state
    mdp = random_mdp(seed=4, n_terminal=1)
    H, S, A = mdp.horizon, mdp.n_states, mdp.n_actions
    table = np.zeros((H, S, A))
    table[np.arange(H), :, np.arange(H) % A] = 1.0
    policy = RecordingPolicy(TabularPolicy(table))
    ds = collect(mdp, policy, 100, seed=0)
    i, t = np.nonzero(ds.mask)
    np.testing.assert_array_equal(ds.actions[i, t], t % A)
    # one query per step, for the episodes still running, with steps == t
    assert len(policy.calls) == ds.lengths.max()
    for step, (obs, steps) in enumerate(policy.calls):
        alive = np.flatnonzero(ds.mask[:, step])
        np.testing.assert_array_equal(steps, np.full(len(alive), step))
        np.testing.assert_array_equal(obs, ds.observations[alive, step])


@pytest.mark.statistical
def test_first_action_frequencies_match_policy():
    mdp = random_mdp(seed=6)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]] * 3)[: mdp.n_states]
    policy = TabularPolicy(probs)
    N = 20_000
    ds = collect(mdp, policy, N, seed=9)
    s0, a0 = ds.observations[:, 0], ds.actions[:, 0]
    # initial states follow μ₀
    freq_s = np.bincount(s0, minlength=mdp.n_states) / N
    se_s = np.sqrt(mdp.initial * (1 - mdp.initial) / N)
    assert (np.abs(freq_s - mdp.initial) <= 4 * se_s + 1e-12).all()
    # marginal first action: p(a) = Σ_s μ₀(s) π(a|s)
    p = mdp.initial @ probs
    freq = np.bincount(a0, minlength=mdp.n_actions) / N
    assert (np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / N)).all()
    # conditional on the state, in every state that starts often enough
    powerful = False
    for s in np.flatnonzero(mdp.initial > 0.05):
        n_s = int((s0 == s).sum())
        f = np.bincount(a0[s0 == s], minlength=mdp.n_actions) / n_s
        se = np.sqrt(probs[s] * (1 - probs[s]) / n_s)
        assert (np.abs(f - probs[s]) < 4 * se).all(), (s, f, probs[s])
        powerful |= bool((np.abs(probs[s] - 1 / 3) > 10 * se).any())  # a uniform sampler would be rejected
    assert powerful


# ---------------------------------------------------------------------------------------------- episode boundaries
def _check_prefix_and_terminal_structure(ds, horizon):
    lengths = ds.lengths
    assert (lengths >= 1).all() and (lengths <= horizon).all()
    np.testing.assert_array_equal(ds.mask, np.arange(horizon)[None, :] < lengths[:, None])
    # a terminal flag only on the last step of a trajectory
    i, t = np.nonzero(ds.terminals)
    np.testing.assert_array_equal(t, lengths[i] - 1)
    # a trajectory shorter than the horizon ended in a terminal state
    assert ds.terminals[np.arange(len(lengths)), lengths - 1][lengths < horizon].all()


def test_episodes_stop_exactly_when_entering_a_terminal_state():
    mdp = next_state_reward_mdp()
    H = mdp.horizon
    ds = collect(mdp, stationary(mdp, 0), 2000, seed=1)
    _check_prefix_and_terminal_structure(ds, H)
    i, t = np.nonzero(ds.mask)
    nxt = ds.rewards[i, t].astype(np.int64)
    np.testing.assert_array_equal(ds.rewards[i, t], nxt)  # rewards are the next states, exactly
    # the terminal flag is exactly "the next state is terminal"
    np.testing.assert_array_equal(ds.terminals[i, t], mdp.terminal_states[nxt])
    # inside a trajectory the next observation is the next state, and it is not terminal
    inner = t < ds.lengths[i] - 1
    np.testing.assert_array_equal(ds.observations[i[inner], t[inner] + 1], nxt[inner])
    assert not mdp.terminal_states[nxt[inner]].any()
    # a trajectory ends before the horizon only by entering a terminal state, and never visits one
    assert not mdp.terminal_states[ds.observations[i, t]].any()
    last = ~inner
    assert (mdp.terminal_states[nxt[last]] | (t[last] == H - 1)).all()
    # both endings occur, so the checks above bite
    assert ds.terminals.any() and (ds.lengths == H).any() and (ds.lengths < H).any()


def test_variable_lengths_with_terminal_states():
    mdp = random_mdp(seed=8, n_terminal=2)
    ds = collect(mdp, stationary(mdp, 3), 1000, seed=2)
    _check_prefix_and_terminal_structure(ds, mdp.horizon)
    assert len(np.unique(ds.lengths)) > 3
    assert not mdp.terminal_states[ds.observations[ds.mask]].any()
    # a flagged last step must have had a positive probability of entering a terminal state
    i = np.flatnonzero(ds.terminals.any(axis=1))
    t = ds.lengths[i] - 1
    p_term = mdp.transitions[ds.observations[i, t], ds.actions[i, t]][:, mdp.terminal_states].sum(axis=-1)
    assert (p_term > 0).all()


def test_without_terminals_every_trajectory_has_full_horizon():
    mdp = random_mdp(seed=9, n_terminal=0)
    ds = collect(mdp, time_dependent(mdp, 1), 500, seed=3)
    assert (ds.lengths == mdp.horizon).all()
    assert ds.mask.all() and not ds.terminals.any()


# ---------------------------------------------------------------------------------------------- other policies
def test_sample_only_policy_uses_sample_and_logs_its_pscore():
    mdp = random_mdp(seed=10)
    probs = np.random.default_rng(0).dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)
    policy = SampleOnlyPolicy(probs)
    assert isinstance(policy, Policy) and not isinstance(policy, DiscretePolicy)
    ds = collect(mdp, policy, 300, seed=1)
    assert ds.behavior_action_probs is None
    i, t = np.nonzero(ds.mask)
    np.testing.assert_array_equal(ds.behavior_pscore[i, t], probs[ds.observations[i, t], ds.actions[i, t]])
    assert ds.info.behavior_policy == "sample-only"


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("n", [0, -1, 2.0])
def test_bad_n_trajectories(n):
    mdp = random_mdp()
    with pytest.raises(ValueError, match="n_trajectories"):
        collect(mdp, stationary(mdp, 0), n, seed=0)


def test_policy_with_wrong_n_actions():
    mdp = random_mdp()
    wrong = TabularPolicy(np.full((mdp.n_states, mdp.n_actions + 1), 1 / (mdp.n_actions + 1)))
    with pytest.raises(ValueError, match="n_actions"):
        collect(mdp, wrong, 10, seed=0)


def test_collect_to_parquet_is_collect_up_to_one_batch_then_appends_batches(tmp_path):
    from opelab.data import LoggedDataset
    from opelab.data.chunks import open_source, read_unit
    from opelab.envs.collect import collect_to_parquet
    from opelab.envs.tasks import gridworld

    task = gridworld()
    behavior = SoftmaxPolicy(TabularQ(task.optimal_q()), 1.0, name="behavior")
    one = tmp_path / "one.parquet"
    collect_to_parquet(task, behavior, 50, 3, one, batch_trajectories=50)
    assert LoggedDataset.read_parquet(one).equals(collect(task, behavior, 50, seed=3))

    many = tmp_path / "many.parquet"
    written = collect_to_parquet(task, behavior, 50, 3, many, batch_trajectories=20)  # batches of 20, 20, 10
    ds = LoggedDataset.read_parquet(many)
    assert (ds.n_trajectories, ds.horizon, ds.info.seed) == (50, task.horizon, 3)
    assert written == {"n_trajectories": 50, "n_transitions": ds.n_transitions, "horizon": task.horizon, "return_sum": pytest.approx(ds.returns.sum())}
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(3).spawn(3)]
    for k, (lo, size) in enumerate(((0, 20), (20, 20), (40, 10))):
        expected = collect(task, behavior, size, seed=seeds[k]).with_info(seed=3)
        assert ds.subset(np.arange(lo, lo + size)).equals(expected)
    assert not ds.subset(np.arange(20)).equals(ds.subset(np.arange(20, 40)))  # the batches are not repeats
    streamed = [c for u in open_source(many).units for _, c in read_unit(u, max_cells=64)]  # row-group digests verified
    assert sum(c.n_trajectories for c in streamed) == 50
