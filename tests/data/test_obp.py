"""Conversion to and from the Open Bandit Pipeline's ``bandit_feedback`` dict, standard and slate.

The dicts are built the way OBP's ``SyntheticBanditDataset``, ``OpenBanditDataset`` and
``SyntheticSlateBanditDataset`` build theirs (same keys, shapes and propensity definitions)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from opelab.data import ActionSpace, DatasetError, DatasetInfo, LoggedDataset

A, D, L = 5, 3, 3


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def standard_feedback(n: int = 40, seed: int = 0, positions: bool = False) -> dict:
    """Like ``SyntheticBanditDataset.obtain_batch_bandit_feedback`` (with ``pi_b``), or with positions and a
    per-position ``pi_b`` (n, A, L) like an Open Bandit Dataset log with an attached behavior distribution."""
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, D))
    width = L if positions else 1
    pi_b = softmax(rng.normal(size=(n, width, A))).transpose(0, 2, 1)  # (n, A, width)
    position = rng.integers(0, L, size=n) if positions else None
    column = position if positions else np.zeros(n, dtype=int)
    action = np.array([rng.choice(A, p=pi_b[i, :, column[i]]) for i in range(n)])
    return dict(
        n_rounds=n,
        n_actions=A,
        context=context,
        action_context=np.eye(A, dtype=int),
        action=action,
        position=position,
        reward=rng.binomial(1, 0.4, size=n),
        expected_reward=rng.uniform(size=(n, A)),
        pi_b=pi_b,
        pscore=pi_b[np.arange(n), action, column],
    )


def slate_feedback(n: int = 12, seed: int = 0, item_position: bool = True) -> dict:
    """Like ``SyntheticSlateBanditDataset.obtain_batch_bandit_feedback``: a softmax behavior policy picks the
    slots top-down without replacement; pscore_cascade is the running product, pscore the joint (repeated),
    pscore_item_position the marginal of the item at its slot (by enumerating the slates)."""
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, D))
    logits = context @ rng.normal(size=(D, A))
    action, cascade, item = [], [], []
    for i in range(n):
        left, p = list(range(A)), 1.0
        for _ in range(L):
            probs = softmax(logits[i, left])
            k = rng.choice(len(left), p=probs)
            p *= probs[k]
            action.append(left.pop(k))
            cascade.append(p)
        for t in range(L):
            item.append(_marginal(logits[i], action[i * L + t], t))
    cascade = np.array(cascade)
    return dict(
        n_rounds=n,
        n_unique_action=A,
        slate_id=np.repeat(np.arange(n), L),
        context=context,
        action_context=np.eye(A, dtype=int),
        action=np.array(action),
        position=np.tile(np.arange(L), n),
        reward=rng.binomial(1, 0.5, size=n * L),
        expected_reward_factual=rng.uniform(size=n * L),
        pscore_cascade=cascade,
        pscore=np.repeat(cascade.reshape(n, L)[:, -1], L),
        pscore_item_position=np.array(item) if item_position else None,
    )


def _marginal(logits: np.ndarray, item: int, slot: int) -> float:
    total = 0.0
    for slate in itertools.permutations(range(A), L):
        if slate[slot] != item:
            continue
        left, p = list(range(A)), 1.0
        for a in slate:
            p *= softmax(logits[left])[left.index(a)]
            left.remove(a)
        total += p
    return total


# ------------------------------------------------------------------------------------------ standard
def test_standard_fields() -> None:
    bf = standard_feedback()
    ds = LoggedDataset.from_obp(bf)
    n = bf["n_rounds"]
    assert (ds.n_trajectories, ds.horizon, ds.obs_shape) == (n, 1, (D,))
    np.testing.assert_array_equal(ds.observations[:, 0], bf["context"])
    np.testing.assert_array_equal(ds.actions[:, 0], bf["action"])
    np.testing.assert_array_equal(ds.rewards[:, 0], bf["reward"])
    np.testing.assert_array_equal(ds.behavior_pscore[:, 0], bf["pscore"])
    np.testing.assert_array_equal(ds.behavior_action_probs[:, 0], bf["pi_b"][:, :, 0])
    assert ds.positions is None and ds.info.len_list is None and not ds.info.slate
    assert ds.info.action_context == tuple(tuple(float(x) for x in row) for row in np.eye(A))
    assert ds.gamma == 1.0 and ds.info.task == "obp" and ds.terminals.all()
    assert ds.action_space == ActionSpace.discrete(A)


def test_positions_and_len_list() -> None:
    bf = standard_feedback(positions=True)
    ds = LoggedDataset.from_obp(bf)
    np.testing.assert_array_equal(ds.positions[:, 0], bf["position"])
    assert ds.info.len_list == int(bf["position"].max()) + 1 == L
    # π_b is read at the position each action was shown in
    expected = bf["pi_b"][np.arange(bf["n_rounds"]), :, bf["position"]]
    np.testing.assert_array_equal(ds.behavior_action_probs[:, 0], expected)
    del bf["pi_b"]
    assert LoggedDataset.from_obp(bf, len_list=7).info.len_list == 7
    assert LoggedDataset.from_obp({**bf, "len_list": 4}).info.len_list == 4


@pytest.mark.parametrize("positions", [False, True])
def test_standard_round_trip(positions: bool) -> None:
    bf = standard_feedback(positions=positions)
    ds = LoggedDataset.from_obp(bf, task="synthetic", behavior_policy="softmax")
    d = ds.to_obp()
    back = LoggedDataset.from_obp(d)
    assert back.equals(ds)
    assert back.info.task == "synthetic" and back.info.behavior_policy == "softmax"
    for key in ("n_rounds", "n_actions"):
        assert d[key] == bf[key]
    for key in ("action", "reward", "pscore", "context", "action_context"):
        np.testing.assert_array_equal(d[key], bf[key])
    if positions:
        np.testing.assert_array_equal(d["position"], bf["position"])
        assert d["len_list"] == L and "pi_b" not in d and d["behavior_action_probs"].shape == (bf["n_rounds"], A)
    else:
        assert d["position"] is None
        np.testing.assert_array_equal(d["pi_b"], bf["pi_b"])


def test_minimal_standard_dict() -> None:
    """OBP's keys only, no pi_b/expected_reward, action_context None, integer pscore of 1."""
    bf = standard_feedback()
    for key in ("pi_b", "expected_reward"):
        del bf[key]
    bf["action_context"] = None
    ds = LoggedDataset.from_obp(bf)
    assert ds.behavior_action_probs is None and ds.info.action_context is None
    assert LoggedDataset.from_obp(ds.to_obp()).equals(ds)
    bf["pscore"] = np.ones(bf["n_rounds"], dtype=int)
    assert LoggedDataset.from_obp(bf).behavior_pscore.dtype == np.float64


def _opelab_bandit() -> LoggedDataset:
    """An opelab one-step log with what OBP has no key for: gamma, seed, scalar int observations, terminals,
    log-propensities that underflow, positions with a len_list larger than the largest position."""
    n = 6
    rng = np.random.default_rng(4)
    probs = softmax(rng.normal(size=(n, A)) * 30)
    actions = probs.argmin(axis=1)
    log_probs = np.log(probs)
    log_probs[0, 1] = -800.0  # exp underflows to 0
    actions[0] = 1
    with np.errstate(under="ignore"):
        pscore = np.exp(log_probs[np.arange(n), actions])
    assert pscore[0] == 0.0
    return LoggedDataset(
        observations=rng.integers(0, 9, size=(n, 1)),
        actions=actions[:, None],
        rewards=rng.normal(size=(n, 1)),
        terminals=np.array([[True], [False], [True], [False], [False], [False]]),
        mask=np.ones((n, 1), dtype=bool),
        behavior_pscore=pscore[:, None],
        positions=np.array([[0], [1], [0], [2], [1], [0]]),
        behavior_log_pscore=log_probs[np.arange(n), actions][:, None],
        info=DatasetInfo(task="toy", gamma=0.9, action_space=ActionSpace.discrete(A), seed=3, behavior_policy="b",
                         pscore_estimated=True, len_list=5, action_context=rng.normal(size=(A, 2))),  # fmt: skip
    )


def test_opelab_dataset_round_trips_through_obp() -> None:
    ds = _opelab_bandit()
    d = ds.to_obp()
    assert d["pscore"][0] == 0.0 and d["log_pscore"][0] < -700
    assert d["context"].shape == (6, 1) and d["opelab_obs_shape"] == []
    assert LoggedDataset.from_obp(d).equals(ds)
    assert LoggedDataset.from_obp(d, task="other").info.task == "other"


def test_to_obp_returns_writable_copies() -> None:
    ds = LoggedDataset.from_obp(standard_feedback())
    d = ds.to_obp()
    before = float(ds.rewards[0, 0])
    d["reward"][0] = before + 1
    assert ds.rewards[0, 0] == before


# ------------------------------------------------------------------------------------------ slate
def test_slate_fields() -> None:
    bf = slate_feedback()
    ds = LoggedDataset.from_obp(bf)
    n = bf["n_rounds"]
    assert (ds.n_trajectories, ds.horizon) == (n, L) and ds.mask.all()
    assert ds.info.slate and ds.info.len_list == L and ds.gamma == 1.0 and ds.action_space.n_actions == A
    cascade = bf["pscore_cascade"].reshape(n, L)
    np.testing.assert_allclose(np.cumprod(ds.behavior_pscore, axis=1), cascade, rtol=1e-12)
    np.testing.assert_array_equal(ds.behavior_pscore[:, 0], cascade[:, 0])
    np.testing.assert_array_equal(ds.behavior_pscore[:, 1], cascade[:, 1] / cascade[:, 0])
    np.testing.assert_array_equal(ds.behavior_marginal_pscore, bf["pscore_item_position"].reshape(n, L))
    np.testing.assert_array_equal(ds.actions, bf["action"].reshape(n, L))
    np.testing.assert_array_equal(ds.rewards, bf["reward"].reshape(n, L))
    for t in range(L):
        np.testing.assert_array_equal(ds.observations[:, t], bf["context"])
    assert ds.positions is None and ds.terminals.tolist() == [[False, False, True]] * n


@pytest.mark.parametrize("item_position", [True, False])
def test_slate_round_trip(item_position: bool) -> None:
    bf = slate_feedback(item_position=item_position)
    ds = LoggedDataset.from_obp(bf)
    d = ds.to_obp()
    assert LoggedDataset.from_obp(d).equals(ds)
    np.testing.assert_array_equal(d["slate_id"], bf["slate_id"])
    np.testing.assert_array_equal(d["position"], bf["position"])
    np.testing.assert_allclose(d["pscore_cascade"], bf["pscore_cascade"], rtol=1e-12)
    np.testing.assert_allclose(d["pscore"], bf["pscore"], rtol=1e-12)
    assert (d["pscore_item_position"] is None) == (not item_position)


def test_opelab_slate_with_log_pscores_round_trips() -> None:
    n = 3
    rng = np.random.default_rng(1)
    log_p = np.log(rng.uniform(0.1, 1.0, size=(n, L)))
    log_p[1, 2] = -800.0  # underflows: pscore 0
    context = rng.normal(size=(n, 1, 2))
    ds = LoggedDataset(
        observations=np.repeat(context, L, axis=1),
        actions=np.array([[0, 1, 2], [4, 3, 2], [1, 0, 3]]),
        rewards=rng.normal(size=(n, L)),
        terminals=np.zeros((n, L), dtype=bool),
        mask=np.ones((n, L), dtype=bool),
        behavior_pscore=np.exp(log_p, where=log_p > -700, out=np.zeros((n, L))),
        behavior_log_pscore=log_p,
        behavior_marginal_pscore=rng.uniform(0.1, 1.0, size=(n, L)),
        info=DatasetInfo(task="rank", gamma=1.0, action_space=ActionSpace.discrete(A), len_list=L, slate=True),
    )
    d = ds.to_obp()
    assert d["pscore"][3] == 0.0 and d["pscore_cascade"][5] == 0.0
    assert LoggedDataset.from_obp(d).equals(ds)
    del d["pscore_slot"]  # conditional propensities from the log-propensities alone
    back = LoggedDataset.from_obp(d)
    np.testing.assert_array_equal(back.behavior_log_pscore, ds.behavior_log_pscore)
    np.testing.assert_allclose(back.behavior_pscore, ds.behavior_pscore, rtol=1e-15)


def test_opelab_synthetic_bandits_and_slates_round_trip() -> None:
    """What opelab's own samplers log (positions, per-slot π_b of a ranking policy) survives the trip."""
    from opelab.envs.bandit import synthetic_bandit, synthetic_slate

    for task in (synthetic_bandit(len_list=3, n_embedding_categories=3), synthetic_bandit()):
        ds = task.collect(task.behavior_policy(), 30, seed=1)
        assert LoggedDataset.from_obp(ds.to_obp()).equals(ds)
    task = synthetic_slate()
    ds = task.collect(task.behavior_policy(), 20, seed=2)
    assert ds.behavior_action_probs is not None
    d = ds.to_obp()
    assert d["behavior_action_probs"].shape == (20 * task.len_list, ds.action_space.n_actions)
    assert LoggedDataset.from_obp(d).equals(ds)
    d["behavior_action_probs"] = d["behavior_action_probs"][:, ::-1].copy()
    with pytest.raises(DatasetError, match=r"\['pscore'\]: expected behavior_action_probs at the logged action"):
        LoggedDataset.from_obp(d)


def test_to_obp_refuses_what_obp_cannot_hold(grid_ds: LoggedDataset, continuous_ds: LoggedDataset) -> None:
    with pytest.raises(DatasetError, match=r"to_obp: expected a one-step log \(horizon 1\) or a ranking log.*found horizon"):
        grid_ds.to_obp()
    with pytest.raises(DatasetError, match="to_obp: expected discrete actions"):
        continuous_ds.to_obp()


# ------------------------------------------------------------------------------------------ malformed
def _one_line_error(d: dict, match: str) -> str:
    with pytest.raises(DatasetError, match=match) as info:
        LoggedDataset.from_obp(d)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("key", ["n_rounds", "n_actions", "action", "reward", "pscore", "context"])
def test_missing_standard_key(key: str) -> None:
    bf = standard_feedback()
    del bf[key]
    message = _one_line_error(bf, "missing")
    assert f"missing [{key!r}]" in message


def test_position_and_action_context_may_be_absent_and_n_samples_counts() -> None:
    """OBP's multiclass data: n_samples instead of n_rounds, no action_context."""
    bf = standard_feedback()
    ds = LoggedDataset.from_obp(bf)
    for key in ("position", "action_context", "pi_b"):
        del bf[key]
    bf["n_samples"] = bf.pop("n_rounds")
    back = LoggedDataset.from_obp(bf)
    assert back.positions is None and back.info.action_context is None
    np.testing.assert_array_equal(back.behavior_pscore, ds.behavior_pscore)
    bf["n_samples"] = 7
    _one_line_error(bf, r"\['action'\]: expected shape \(7,\), found \(40,\)")


@pytest.mark.parametrize("key", ["n_rounds", "n_unique_action", "context", "action", "reward", "position", "pscore", "pscore_cascade"])
def test_missing_slate_key(key: str) -> None:
    bf = slate_feedback()
    del bf[key]
    assert f"missing [{key!r}]" in _one_line_error(bf, "slate keys")


def _set(d: dict, key: str, value) -> dict:
    d[key] = value
    return d


def _edit(d: dict, key: str, index, value) -> dict:
    d[key] = np.array(d[key], dtype=np.result_type(d[key], type(value)))
    d[key][index] = value
    return d


STANDARD_CASES = {
    "n_rounds not an int": (lambda d: _set(d, "n_rounds", 40.0), r"\['n_rounds'\]: expected a positive int, found 40.0"),
    "n_rounds mismatch": (lambda d: _set(d, "n_rounds", 39), r"\['action'\]: expected shape \(39,\), found \(40,\)"),
    "n_actions zero": (lambda d: _set(d, "n_actions", 0), r"\['n_actions'\]: expected a positive int"),
    "action out of range": (lambda d: _edit(d, "action", 3, A), r"\['action'\]: expected integers in \[0, 4\], found 5 at index 3"),
    "action floats": (lambda d: _set(d, "action", d["action"].astype(float)), r"\['action'\]: expected integers, found dtype float64"),
    "reward short": (lambda d: _set(d, "reward", d["reward"][:-1]), r"\['reward'\]: expected shape \(40,\), found \(39,\)"),
    "reward NaN": (lambda d: _edit(d, "reward", 2, np.nan), r"\['reward'\]: expected finite values, found .*nan.* at index \(2\)"),
    "reward strings": (lambda d: _set(d, "reward", d["reward"].astype(str)), r"\['reward'\]: expected numbers, found dtype <U"),
    "pscore zero": (lambda d: _edit(d, "pscore", 1, 0.0), r"\['pscore'\]: expected probabilities in \(0, 1\], found 0.0 at index 1"),
    "pscore above one": (lambda d: _edit(d, "pscore", 5, 1.5), r"\['pscore'\]: expected probabilities in \(0, 1\], found 1.5 at index 5"),
    "context 1-D": (lambda d: _set(d, "context", d["context"][:, 0]), r"\['context'\]: expected shape \(40, \*\), found \(40,\)"),
    "context rows": (lambda d: _set(d, "context", d["context"][:-2]), r"\['context'\]: expected shape \(40, \*\), found \(38, 3\)"),
    "context ragged": (lambda d: _set(d, "context", [[1.0, 2.0], [3.0]]), r"\['context'\]: expected an array of shape \(40, \*\)"),
    "action_context rows": (lambda d: _set(d, "action_context", np.eye(A + 1)), r"\['action_context'\]: expected shape \(5, \*\), found \(6, 6\)"),
    "expected_reward shape": (lambda d: _set(d, "expected_reward", d["expected_reward"][:, :2]), r"\['expected_reward'\]: expected shape \(40, 5\)"),
    "pi_b shape": (lambda d: _set(d, "pi_b", d["pi_b"][:, :, 0]), r"\['pi_b'\]: expected shape \(40, 5, 1\), found \(40, 5\)"),
    "pi_b not summing to one": (lambda d: _set(d, "pi_b", d["pi_b"] * 0.5), r"\['pi_b'\]: expected each row's distribution over actions to sum to 1"),
    "pi_b disagrees with pscore": (lambda d: _edit(d, "pscore", 0, d["pscore"][0] * 0.5), r"\['pscore'\]: expected pi_b at the logged action"),
    "position negative": (lambda d: _set(d, "position", np.full(40, -1)), r"\['position'\]: expected integers >= 0, found -1 at index 0"),
    "position shape": (lambda d: _set(d, "position", np.zeros((40, 1), dtype=int)), r"\['position'\]: expected shape \(40,\), found \(40, 1\)"),
    "log_pscore positive": (lambda d: _set(d, "log_pscore", np.full(40, 0.5)), r"\['log_pscore'\]: expected log-probabilities <= 0"),
    "log_pscore disagrees": (lambda d: _set(d, "log_pscore", np.log(d["pscore"]) - 0.1), r"\['pscore'\]: expected exp\(log_pscore\)"),
    "opelab_info broken": (lambda d: _set(d, "opelab_info", "{"), r"info: expected a JSON object"),
    "not a dict": (lambda d: [1, 2], r"bandit_feedback: expected a dict, found list"),
}


@pytest.mark.parametrize("case", list(STANDARD_CASES))
def test_malformed_standard_dict(case: str) -> None:
    corrupt, match = STANDARD_CASES[case]
    _one_line_error(corrupt(standard_feedback()), match)


def test_position_beyond_len_list() -> None:
    bf = standard_feedback(positions=True)
    with pytest.raises(DatasetError, match=r"\['position'\]: expected integers in \[0, 1\], found 2"):
        LoggedDataset.from_obp(bf, len_list=2)
    with pytest.raises(DatasetError, match=r"len_list: expected a positive int, found 0"):
        LoggedDataset.from_obp(bf, len_list=0)
    bf["pi_b"] = bf["pi_b"][:, :, :1]  # positions need π_b at every position
    with pytest.raises(DatasetError, match=r"\['pi_b'\]: expected shape \(40, 5, 3\)"):
        LoggedDataset.from_obp(bf)


def _swap_rows(d: dict, i: int, j: int, keys=("slate_id", "action", "position", "reward", "pscore", "pscore_cascade", "pscore_item_position")) -> dict:
    for key in keys:
        d[key] = d[key].copy()
        d[key][[i, j]] = d[key][[j, i]]
    return d


def _regroup(d: dict) -> dict:
    """Slates 0 and 1 in the right order but slate 1's rows first: every id still in one group of rows."""
    order = np.r_[3:6, 0:3, 6:len(d["slate_id"])]
    for key in ("slate_id", "action", "position", "reward", "pscore", "pscore_cascade", "pscore_item_position"):
        d[key] = d[key][order]
    return d


SLATE_CASES = {
    "rows not grouped": (lambda d: _swap_rows(d, 2, 3), r"\['slate_id'\]: expected rows grouped by slate .* found slate_id 1 at row 2 inside the rows of slate_id 0"),
    "slots out of order": (lambda d: _swap_rows(d, 0, 1), r"\['position'\]: expected positions 0..2 in order within each slate, found 1 at row 0"),
    "slate in two groups": (lambda d: _set(d, "slate_id", np.r_[d["slate_id"][:-3], np.zeros(3, dtype=int)]), r"\['slate_id'\]: expected each slate's 3 rows together, found slate_id 0 in more than one"),
    "rows not n_rounds * L": (lambda d: _set(d, "n_rounds", 5), r"\['slate_id'\]: expected n_rounds \* len_list rows \(5 rounds\), found 36 rows"),
    "len_list disagrees": (lambda d: _set(d, "len_list", 4), r"len_list: expected 3 \(= 36 rows / 12 rounds\), found 4"),
    "n_unique_action too small": (lambda d: _set(d, "n_unique_action", 2), r"\['action'\]: expected integers in \[0, 1\]"),
    "context per row": (lambda d: _set(d, "context", np.repeat(d["context"], L, axis=0)), r"\['context'\]: expected shape \(12, \*\), found \(36, 3\)"),
    "joint disagrees": (lambda d: _edit(d, "pscore", 4, d["pscore"][4] * 0.9), r"\['pscore'\]: expected the slate's joint propensity .* at row 4"),
    "cascade increasing": (lambda d: _edit(d, "pscore_cascade", 1, min(1.0, d["pscore_cascade"][0] * 1.5)), r"\['pscore_cascade'\]: expected non-increasing values within a slate"),
    "cascade zero": (lambda d: _edit(d, "pscore_cascade", 2, 0.0), r"\['pscore_cascade'\]: expected probabilities in \(0, 1\], found 0.0 at index 2"),
    "item position above one": (lambda d: _edit(d, "pscore_item_position", 7, 1.2), r"\['pscore_item_position'\]: expected probabilities in \(0, 1\], found 1.2 at index 7"),
    "reward rows": (lambda d: _set(d, "reward", d["reward"][:-1]), r"\['reward'\]: expected shape \(36,\), found \(35,\)"),
    "slate_id floats": (lambda d: _set(d, "slate_id", d["slate_id"].astype(float)), r"\['slate_id'\]: expected integers, found dtype float64"),
    "pscore_slot disagrees": (lambda d: _set(d, "pscore_slot", np.full(36, 0.5)), r"\['pscore_cascade'\]: expected the running product of pscore_slot"),
    "gamma not one": (lambda d: _set(d, "opelab_info", DatasetInfo("x", 0.5, ActionSpace.discrete(A), len_list=L, slate=True).to_json()), r"opelab_info: expected gamma 1"),
}


@pytest.mark.parametrize("case", list(SLATE_CASES))
def test_malformed_slate_dict(case: str) -> None:
    corrupt, match = SLATE_CASES[case]
    _one_line_error(corrupt(slate_feedback()), match)


def test_slates_in_any_id_order_are_accepted() -> None:
    """Grouping is what is required, not sorted ids: the rounds come in the order of their rows."""
    bf = _regroup(slate_feedback())
    ds = LoggedDataset.from_obp(bf)
    np.testing.assert_array_equal(ds.actions[0], bf["action"][:3])
