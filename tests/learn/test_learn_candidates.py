"""Candidate families: algorithms × network sizes × noise levels, names, sampling, pscores."""

from __future__ import annotations

import numpy as np
import pytest

from opelab.learn import apply_heads, candidate_policies, train_offline
from opelab.policies import DiscretePolicy, Policy

from conftest import needs_d3rlpy

pytestmark = needs_d3rlpy

TINY = {"batch_size": 16}


def test_discrete_family_names_and_pscores(cartpole_data):
    family = candidate_policies(
        cartpole_data,
        algorithms=("discrete_cql", "discrete_bcq"),
        hidden_sizes=((8,), (16, 16)),
        noise_levels=(0.0, 0.3),
        n_steps=10,
        options={"discrete_cql": TINY, "discrete_bcq": TINY},
    )
    names = [p.name for p in family]
    assert names == [
        "discrete_cql_8_eps0", "discrete_cql_8_eps0.3", "discrete_cql_16x16_eps0", "discrete_cql_16x16_eps0.3",
        "discrete_bcq_8_eps0", "discrete_bcq_8_eps0.3", "discrete_bcq_16x16_eps0", "discrete_bcq_16x16_eps0.3",
    ]  # fmt: skip
    obs = cartpole_data.observations[cartpole_data.mask][:30]
    for policy in family:
        assert isinstance(policy, DiscretePolicy)
        probs = policy.action_probs(obs)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0)
        assert probs.min() >= (0.15 if policy.name.endswith("0.3") else 0.0)


def test_sampled_family_is_seeded_and_trains_only_what_it_uses(cartpole_data):
    kwargs = dict(
        algorithms=("discrete_cql", "discrete_bcq"),
        hidden_sizes=((8,), (16,), (32,)),
        noise_levels=(0.0, 0.1, 0.3, 0.5),
        n_steps=5,
        options={"discrete_cql": TINY, "discrete_bcq": TINY},
    )
    first = candidate_policies(cartpole_data, n_candidates=5, seed=3, **kwargs)
    again = candidate_policies(cartpole_data, n_candidates=5, seed=3, **kwargs)
    other = candidate_policies(cartpole_data, n_candidates=5, seed=4, **kwargs)
    names = [p.name for p in first]
    assert len(names) == len(set(names)) == 5
    assert names == [p.name for p in again]
    assert names != [p.name for p in other]
    obs = cartpole_data.observations[0, :10]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.action_probs(obs), b.action_probs(obs))
    with pytest.raises(ValueError, match=r"n_candidates: expected an int in \[1, 24\]"):
        candidate_policies(cartpole_data, n_candidates=25, **kwargs)


def test_continuous_family_with_return_weighting(pendulum_data):
    family = candidate_policies(
        pendulum_data,
        algorithms=("td3_plus_bc",),
        hidden_sizes=((8,),),
        n_steps=5,
        trajectory_weighting="return",
        options={"td3_plus_bc": TINY},
    )
    assert [p.name for p in family] == [f"td3_plus_bc_8_rw_gauss{s:g}" for s in (0.2, 0.5, 1.0, 2.0)]
    obs = pendulum_data.observations[pendulum_data.mask][:20]
    rng = np.random.default_rng(0)
    for policy in family:
        assert isinstance(policy, Policy)
        actions, pscore = policy.sample(obs, rng)
        assert (np.abs(actions) <= 2.0).all() and (pscore > 0).all()
        np.testing.assert_allclose(policy.pscore(obs, actions), pscore)


def test_apply_heads_softmax_and_truncated(cartpole_data, pendulum_data):
    q = train_offline(cartpole_data, "discrete_cql", n_steps=5, hidden=(8,), options=TINY)
    softmax = apply_heads([q], head="softmax", noise_levels=(0.5, 2.0))
    assert [p.name for p in softmax] == ["discrete_cql_8_softmax0.5", "discrete_cql_8_softmax2"]
    mu = train_offline(pendulum_data, "iql", n_steps=5, hidden=(8,), options=TINY)
    truncated = apply_heads([mu], head="truncated_gaussian", noise_levels=(0.3,))
    assert [p.name for p in truncated] == ["iql_8_tgauss0.3"]
    with pytest.raises(ValueError, match="noise_levels: expected softmax temperatures"):
        apply_heads([q], head="softmax")
    with pytest.raises(ValueError, match="head: expected one of"):
        apply_heads([q], head="gaussian")
    with pytest.raises(ValueError, match="candidate names: expected unique names"):
        apply_heads([q, q], noise_levels=(0.1,))


def test_candidates_check_inputs(cartpole_data):
    with pytest.raises(ValueError, match="for discrete actions"):
        candidate_policies(cartpole_data, algorithms=("iql",), n_steps=5)
    with pytest.raises(ValueError, match="hidden_sizes: expected distinct"):
        candidate_policies(cartpole_data, hidden_sizes=((8,), (8,)), n_steps=5)
    with pytest.raises(ValueError, match="options: expected keys among the algorithms"):
        candidate_policies(cartpole_data, algorithms=("discrete_cql",), options={"cql": {}}, n_steps=5)
