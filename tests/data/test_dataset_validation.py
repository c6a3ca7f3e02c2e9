"""The ``LoggedDataset`` contract: every bad input raises ``DatasetError`` naming the field (and where)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from opelab.data import ActionSpace, DatasetError, DatasetInfo, LoggedDataset

NAN, INF = float("nan"), float("inf")


def test_dataset_error_is_a_value_error() -> None:
    assert issubclass(DatasetError, ValueError)


# ---------------------------------------------------------------------------------------------- mutators
def replace(field: str, fn: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(kw: dict[str, Any]) -> None:
        kw[field] = fn(kw[field])

    return mutate


def put(field: str, index: tuple[int, ...], value: Any, dtype: Any = None) -> Callable[[dict[str, Any]], None]:
    """Set one entry (after an optional cast, e.g. to float so that NaN fits)."""

    def mutate(kw: dict[str, Any]) -> None:
        array = np.array(kw[field], dtype=dtype)
        array[index] = value
        kw[field] = array

    return mutate


def chain(*mutators: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(kw: dict[str, Any]) -> None:
        for m in mutators:
            m(kw)

    return mutate


no_probs = replace("behavior_action_probs", lambda _: None)

# (id, base "d"iscrete / "c"ontinuous, mutation, substrings the message must contain)
CASES: list[tuple[str, str, Callable[[dict[str, Any]], None], tuple[str, ...]]] = [
    # ---- shapes
    ("obs-short-horizon", "d", replace("observations", lambda a: a[:, :2]), ("observations", "(2, 2)")),
    ("obs-extra-trajectory", "d", replace("observations", lambda a: np.zeros((3, 3), a.dtype)), ("observations",)),
    ("obs-1d", "d", replace("observations", lambda a: a[0]), ("observations",)),
    ("obs-0d", "d", replace("observations", lambda a: np.int64(0)), ("observations",)),
    ("cont-obs-wrong-n", "c", replace("observations", lambda a: a[:1]), ("observations",)),
    ("actions-discrete-3d", "d", replace("actions", lambda a: a[..., None]), ("actions", "(2, 3, 1)")),
    ("actions-discrete-short", "d", replace("actions", lambda a: a[:, :2]), ("actions",)),
    ("actions-cont-2d", "c", replace("actions", lambda a: a[..., 0]), ("actions", "(2, 3, 2)")),
    ("actions-cont-wrong-dim", "c", replace("actions", lambda a: np.zeros((2, 3, 3))), ("actions",)),
    ("rewards-shape", "d", replace("rewards", lambda a: np.zeros((2, 4))), ("rewards",)),
    ("rewards-1d", "d", replace("rewards", lambda a: a.ravel()), ("rewards",)),
    ("terminals-shape", "d", replace("terminals", lambda a: np.zeros((3, 3), bool)), ("terminals",)),
    ("terminals-3d", "d", replace("terminals", lambda a: a[..., None]), ("terminals",)),
    ("mask-1d", "d", replace("mask", lambda a: a[0]), ("mask",)),
    ("mask-3d", "d", replace("mask", lambda a: a[..., None]), ("mask",)),
    ("mask-no-trajectory", "d", replace("mask", lambda a: np.zeros((0, 3), bool)), ("mask",)),
    ("mask-no-step", "d", replace("mask", lambda a: np.zeros((2, 0), bool)), ("mask",)),
    ("pscore-1d", "d", replace("behavior_pscore", lambda a: a[0]), ("behavior_pscore",)),
    ("pscore-3d", "c", replace("behavior_pscore", lambda a: np.ones((2, 3, 2))), ("behavior_pscore",)),
    ("probs-wrong-n-actions", "d", replace("behavior_action_probs", lambda a: np.concatenate([a, 0 * a[..., :1]], -1)),
     ("behavior_action_probs", "(2, 3, 3)")),
    ("probs-2d", "d", replace("behavior_action_probs", lambda a: a[..., 0]), ("behavior_action_probs",)),
    ("probs-for-continuous", "c", replace("behavior_action_probs", lambda a: np.full((2, 3, 2), 0.5)),
     ("behavior_action_probs",)),
    # ---- dtypes
    ("actions-float-for-discrete", "d", replace("actions", lambda a: a.astype(float)), ("actions", "integer")),
    ("actions-bool-for-discrete", "d", replace("actions", lambda a: a.astype(bool)), ("actions",)),
    ("actions-int-for-continuous", "c", replace("actions", lambda a: a.astype(np.int64)), ("actions", "float")),
    ("mask-int", "d", replace("mask", lambda a: a.astype(np.int64)), ("mask", "bool")),
    ("mask-float", "d", replace("mask", lambda a: a.astype(float)), ("mask", "bool")),
    ("terminals-int", "d", replace("terminals", lambda a: a.astype(np.int64)), ("terminals", "bool")),
    ("terminals-float", "d", replace("terminals", lambda a: a.astype(float)), ("terminals", "bool")),
    ("obs-bool", "d", replace("observations", lambda a: a.astype(bool)), ("observations",)),
    ("obs-str", "d", replace("observations", lambda a: a.astype(str)), ("observations",)),
    ("actions-str", "d", replace("actions", lambda a: a.astype(str)), ("actions",)),
    ("rewards-str", "d", replace("rewards", lambda a: a.astype(str)), ("rewards",)),
    ("terminals-str", "d", replace("terminals", lambda a: a.astype(str)), ("terminals",)),
    ("mask-str", "d", replace("mask", lambda a: a.astype(str)), ("mask",)),
    ("pscore-str", "d", replace("behavior_pscore", lambda a: a.astype(str)), ("behavior_pscore",)),
    ("probs-str", "d", replace("behavior_action_probs", lambda a: a.astype(str)), ("behavior_action_probs",)),
    ("obs-object", "d", replace("observations", lambda a: a.astype(object)), ("observations",)),
    # ---- NaN / inf
    ("obs-nan", "d", put("observations", (1, 1), NAN, float), ("observations", "(1, 1)")),
    ("obs-inf", "c", put("observations", (0, 1, 2), INF), ("observations", "(0, 1, 2)")),
    ("obs-neg-inf-float32", "c", put("observations", (1, 0, 0), -INF, np.float32), ("observations", "(1, 0, 0)")),
    ("actions-nan", "c", put("actions", (1, 1, 1), NAN), ("actions", "(1, 1, 1)")),
    ("actions-inf", "c", put("actions", (0, 2, 0), INF), ("actions", "(0, 2, 0)")),
    ("rewards-nan", "d", put("rewards", (1, 1), NAN), ("rewards", "(1, 1)")),
    ("rewards-inf", "d", put("rewards", (0, 2), INF), ("rewards", "(0, 2)")),
    ("rewards-neg-inf-float16", "d", put("rewards", (0, 0), -INF, np.float16), ("rewards", "(0, 0)")),
    ("pscore-nan", "d", chain(no_probs, put("behavior_pscore", (0, 2), NAN)), ("behavior_pscore", "(0, 2)")),
    ("pscore-inf-continuous", "c", put("behavior_pscore", (1, 0), INF), ("behavior_pscore", "(1, 0)")),
    ("probs-nan", "d", put("behavior_action_probs", (1, 0, 2), NAN), ("behavior_action_probs", "(1, 0, 2)")),
    ("probs-inf", "d", put("behavior_action_probs", (0, 1, 0), INF), ("behavior_action_probs", "(0, 1, 0)")),
    # ---- pscore values
    ("pscore-zero", "d", chain(no_probs, put("behavior_pscore", (1, 0), 0.0)), ("behavior_pscore", "(1, 0)")),
    ("pscore-negative", "d", chain(no_probs, put("behavior_pscore", (0, 1), -0.3)), ("behavior_pscore", "(0, 1)")),
    ("pscore-above-one", "d", chain(no_probs, put("behavior_pscore", (1, 1), 1.5)), ("behavior_pscore", "(1, 1)")),
    ("pscore-int-dtype", "d", chain(no_probs, replace("behavior_pscore", lambda a: np.ones(a.shape, np.int64))),
     ("behavior_pscore",)),
    ("density-zero", "c", put("behavior_pscore", (0, 0), 0.0), ("behavior_pscore", "(0, 0)")),
    ("density-negative", "c", put("behavior_pscore", (1, 1), -2.0), ("behavior_pscore", "(1, 1)")),
    # ---- actions out of range
    ("action-too-large", "d", chain(no_probs, put("actions", (0, 1), 3)), ("actions", "(0, 1)")),
    ("action-negative", "d", chain(no_probs, put("actions", (1, 0), -1)), ("actions", "(1, 0)")),
    ("action-too-large-uint8", "d", chain(no_probs, replace("actions", lambda a: a.astype(np.uint8)),
                                           put("actions", (1, 1), 200)), ("actions", "(1, 1)")),
    # ---- behavior_action_probs
    ("probs-row-sum", "d", put("behavior_action_probs", (1, 1), [0.2, 0.3, 0.4]), ("behavior_action_probs", "(1, 1)")),
    ("probs-negative", "d", put("behavior_action_probs", (0, 0), [-0.2, 0.7, 0.5]),
     ("behavior_action_probs", "(0, 0, 0)")),
    ("probs-disagree-pscore", "d", put("behavior_pscore", (0, 1), 0.31), ("behavior_pscore", "(0, 1)")),
    ("probs-disagree-row", "d", put("behavior_action_probs", (1, 0), [0.5, 0.3, 0.2]),
     ("behavior_pscore", "behavior_action_probs", "(1, 0)")),
    # ---- mask structure
    ("mask-hole", "d", put("mask", (1,), [True, False, True]), ("mask", "(1, 2)")),
    ("mask-hole-first-row", "d", put("mask", (0,), [True, False, True]), ("mask", "(0, 2)")),
    ("mask-empty-trajectory", "d", put("mask", (1,), [False, False, False]), ("mask", "index 1")),
    ("mask-late-start", "d", put("mask", (1,), [False, True, True]), ("mask", "holes", "(1, 1)")),
    # ---- terminals
    ("terminal-not-last", "d", put("terminals", (0, 1), True), ("terminals", "(0, 1)")),
    ("terminal-on-padding", "d", chain(put("terminals", (1, 1), False), put("terminals", (1, 2), True)),
     ("terminals", "(1, 2)")),
    ("terminal-continuous", "c", put("terminals", (1, 0), True), ("terminals", "(1, 0)")),
    # ---- padding must hold fill values
    ("pad-observations", "d", put("observations", (1, 2), 5), ("observations", "(1, 2)")),
    ("pad-actions", "d", put("actions", (1, 2), 1), ("actions", "(1, 2)")),
    ("pad-rewards", "d", put("rewards", (1, 2), 0.5), ("rewards", "(1, 2)")),
    ("pad-pscore", "d", put("behavior_pscore", (1, 2), 0.5), ("behavior_pscore", "(1, 2)")),
    ("pad-probs", "d", put("behavior_action_probs", (1, 2), [1.0, 0.0, 0.0]), ("behavior_action_probs", "(1, 2)")),
    ("pad-cont-observations", "c", put("observations", (1, 2, 1), 0.25), ("observations", "(1, 2)")),
    ("pad-cont-actions", "c", put("actions", (1, 2, 0), -0.5), ("actions", "(1, 2)")),
    ("pad-cont-density", "c", put("behavior_pscore", (1, 2), 2.0), ("behavior_pscore", "(1, 2)")),
    # ---- info
    ("info-not-datasetinfo", "d", replace("info", lambda i: dataclasses.asdict(i)), ("info",)),
]


@pytest.mark.parametrize(("base", "mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_dataset_error_naming_the_field(
    base: str, mutate: Callable[[dict[str, Any]], None], expected: tuple[str, ...], make_discrete, make_continuous
) -> None:
    kw = make_discrete() if base == "d" else make_continuous()
    LoggedDataset(**kw)  # the base is valid: the error below comes from the mutation alone
    mutate(kw)
    with pytest.raises(DatasetError) as excinfo:
        LoggedDataset(**kw)
    message = str(excinfo.value)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# ---------------------------------------------------------------------------------------------- valid inputs
def test_valid_inputs_are_accepted_and_read_only(make_discrete, make_continuous) -> None:
    for kw in (make_discrete(), make_continuous()):
        ds = LoggedDataset(**kw)
        for name in ("observations", "actions", "rewards", "terminals", "mask", "behavior_pscore"):
            array = getattr(ds, name)
            assert not array.flags.writeable, name
            with pytest.raises(ValueError):
                array[(0,) * array.ndim] = array[(0,) * array.ndim]
        assert ds.lengths.tolist() == [3, 2]
        assert ds.n_transitions == 5


def test_continuous_densities_above_one_are_accepted(make_continuous) -> None:
    kw = make_continuous()
    kw["behavior_pscore"] = np.where(kw["mask"], np.array([[50.0, 1.0 + 1e-12, 3.0], [1e6, 2.0, 1.0]]), 1.0)
    ds = LoggedDataset(**kw)
    assert ds.behavior_pscore.max() == 1e6


def test_discrete_pscore_of_exactly_one_is_accepted(make_discrete) -> None:
    kw = make_discrete()
    kw["behavior_action_probs"] = None
    kw["behavior_pscore"] = np.ones((2, 3))
    LoggedDataset(**kw)


def test_narrow_dtypes_are_widened_to_float64(make_discrete) -> None:
    kw = make_discrete()
    kw["rewards"] = np.array([[1, 0, -1], [0, 2, 0]], dtype=np.int32)
    kw["behavior_pscore"] = kw["behavior_pscore"].astype(np.float32)
    kw["behavior_action_probs"] = None
    ds = LoggedDataset(**kw)
    assert ds.rewards.dtype == np.float64 and ds.behavior_pscore.dtype == np.float64
    kw = make_discrete()
    kw["observations"] = kw["observations"].astype(np.int32)
    kw["actions"] = kw["actions"].astype(np.uint8)
    ds = LoggedDataset(**kw)
    assert ds.observations.dtype == np.int32 and ds.actions.dtype == np.uint8  # kept as given


def test_probs_tolerate_rounding(make_discrete) -> None:
    kw = make_discrete()
    kw["behavior_action_probs"] = kw["behavior_action_probs"] * (1 + 1e-8)  # rows sum to 1 ± 1e-8 < 1e-6
    kw["behavior_pscore"] = np.where(
        kw["mask"], np.take_along_axis(kw["behavior_action_probs"], kw["actions"][..., None], -1)[..., 0], 1.0
    )
    LoggedDataset(**kw)


# ---------------------------------------------------------------------------------------------- gamma & spaces
@pytest.mark.parametrize("gamma", [-0.1, 1.5, NAN, INF, -INF, 1.0000001, -1])
def test_gamma_outside_unit_interval(gamma: float) -> None:
    with pytest.raises(DatasetError, match="gamma"):
        DatasetInfo(task="t", gamma=gamma, action_space=ActionSpace.discrete(2))


@pytest.mark.parametrize("gamma", ["0.9", None, True, False, [0.9], complex(0.5, 0)], ids=repr)
def test_gamma_not_a_number(gamma: Any) -> None:
    with pytest.raises(DatasetError, match="gamma"):
        DatasetInfo(task="t", gamma=gamma, action_space=ActionSpace.discrete(2))


@pytest.mark.parametrize("gamma", [0, 0.0, 1, 1.0, 0.5, np.float64(0.95), np.int64(1)], ids=repr)
def test_gamma_accepted(gamma: Any) -> None:
    DatasetInfo(task="t", gamma=gamma, action_space=ActionSpace.discrete(2))


def test_other_info_fields() -> None:
    space = ActionSpace.discrete(2)
    with pytest.raises(DatasetError, match="task"):
        DatasetInfo(task=3, gamma=0.5, action_space=space)
    with pytest.raises(DatasetError, match="action_space"):
        DatasetInfo(task="t", gamma=0.5, action_space="discrete")
    with pytest.raises(DatasetError, match="seed"):
        DatasetInfo(task="t", gamma=0.5, action_space=space, seed=1.5)
    with pytest.raises(DatasetError, match="seed"):
        DatasetInfo(task="t", gamma=0.5, action_space=space, seed=True)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ActionSpace.discrete(0), "n_actions"),
        (lambda: ActionSpace.discrete(-3), "n_actions"),
        (lambda: ActionSpace("discrete"), "n_actions"),
        (lambda: ActionSpace("discrete", n_actions=2.0), "n_actions"),
        (lambda: ActionSpace("discrete", n_actions=2, action_dim=1), "action_space"),
        (lambda: ActionSpace("discrete", n_actions=2, low=(0.0,)), "action_space"),
        (lambda: ActionSpace("continuous"), "action_dim"),
        (lambda: ActionSpace("continuous", n_actions=3), "action_dim"),
        (lambda: ActionSpace.continuous(0), "action_dim"),
        (lambda: ActionSpace("continuous", action_dim=2, n_actions=3), "n_actions"),
        (lambda: ActionSpace.continuous(2, low=[0.0]), "low"),
        (lambda: ActionSpace.continuous(2, low=[0.0, 0.0], high=[1.0, 1.0, 1.0]), "high"),
        (lambda: ActionSpace("box", action_dim=2), "type"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_action_space(build: Callable[[], ActionSpace], field: str) -> None:
    with pytest.raises(DatasetError) as excinfo:
        build()
    assert field in str(excinfo.value)


# ---------------------------------------------------------------------------------------------- regressions
# (these three failed on the src first tested and were fixed in src while the tests were written)
@pytest.mark.parametrize("bound", [0.0, [0.0], "a"], ids=repr)
def test_bound_that_is_not_a_tuple_of_action_dim_floats(bound: Any) -> None:
    with pytest.raises(DatasetError, match="low"):
        ActionSpace("continuous", action_dim=1 if bound != [0.0] else 2, low=bound)


@pytest.mark.parametrize("value", [True, np.bool_(True)], ids=repr)
def test_bool_sizes_are_rejected(value: Any) -> None:
    with pytest.raises(DatasetError, match="n_actions"):
        ActionSpace("discrete", n_actions=value)
    with pytest.raises(DatasetError, match="action_dim"):
        ActionSpace("continuous", action_dim=value)


def test_huge_probabilities_raise_dataset_error_without_warning(make_discrete) -> None:
    """Used to overflow in probs.sum() and emit a RuntimeWarning (an error under filterwarnings=error)."""
    kw = make_discrete()
    kw["behavior_action_probs"] = np.where(kw["mask"][..., None], np.full((2, 3, 3), 1e308), 0.0)
    with pytest.raises(DatasetError, match="behavior_action_probs"):
        LoggedDataset(**kw)


def test_caller_edits_after_construction_do_not_reach_the_dataset(make_continuous) -> None:
    """Writable inputs are copied: validation cannot be bypassed by editing the caller's array afterwards."""
    kw = make_continuous()
    ds = LoggedDataset(**kw)
    kw["observations"][0, 0, 0] = NAN
    kw["behavior_pscore"][0, 0] = -1.0
    kw["mask"][1, 2] = True
    assert np.isfinite(ds.observations).all()
    assert (ds.behavior_pscore > 0).all()
    assert ds.lengths.tolist() == [3, 2]


def test_continuous_actions_outside_the_bounds_are_named(make_continuous) -> None:
    kw = make_continuous()
    dim = kw["actions"].shape[-1]
    space = ActionSpace.continuous(dim, low=[-1.0] * dim, high=[1.0] * dim)
    kw["info"] = dataclasses.replace(kw["info"], action_space=space)
    actions = np.clip(np.array(kw["actions"]), -1.0, 1.0)
    kw["actions"] = actions
    LoggedDataset(**kw)  # within the box: fine
    actions = actions.copy()
    actions[0, 1, dim - 1] = 1.5
    kw["actions"] = actions
    with pytest.raises(DatasetError, match=r"actions: expected values within the action space's bounds .* \(0, 1\)"):
        LoggedDataset(**kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_narrow_float_actions_on_a_bound_are_within_it(make_continuous, dtype: Any) -> None:
    """float32(0.4) > 0.4: actions clipped to a float bound in float32 sit exactly on it, not outside it."""
    kw = make_continuous()
    space = ActionSpace.continuous(2, low=[-0.4, -0.4], high=[0.4, 1e6])  # 1e6 overflows float16 to inf
    kw["info"] = dataclasses.replace(kw["info"], action_space=space)
    actions = np.clip(np.array(kw["actions"]), -0.4, 0.4).astype(dtype)
    assert (actions == dtype(-0.4)).any() and (actions == dtype(0.4)).any()
    assert float(dtype(0.4)) != 0.4
    kw["actions"] = actions
    assert LoggedDataset(**kw).actions.dtype == dtype
    outside = actions.copy()
    outside[0, 0, 0] = np.nextafter(dtype(0.4), dtype(1))  # the next float32 above the bound is outside
    kw["actions"] = outside
    with pytest.raises(DatasetError, match=r"actions: expected values within the action space's bounds"):
        LoggedDataset(**kw)


# ---------------------------------------------------------------------------------------------- info from JSON
def test_info_json_round_trip_and_strict_parsing() -> None:
    info = DatasetInfo(task="t", gamma=0.5, action_space=ActionSpace.continuous(2, low=[-1, -1], high=[1, 1]), seed=3)
    assert DatasetInfo.from_json(info.to_json()) == info
    with pytest.raises(DatasetError, match=r"^info: expected a JSON object, found text that does not parse \(Expecting value"):
        DatasetInfo.from_json("")
    with pytest.raises(DatasetError, match=r"^info: expected a JSON object, found a list$"):
        DatasetInfo.from_json("[]")
    with pytest.raises(DatasetError, match=r"^info: expected the key 'task', found keys \['action_space', 'gamma'\]$"):
        DatasetInfo.from_json('{"gamma": 0.5, "action_space": {"type": "discrete", "n_actions": 2}}')
    with pytest.raises(DatasetError, match=r"^info.action_space.n_actions: expected a positive int"):
        DatasetInfo.from_json('{"task": "t", "gamma": 0.5, "action_space": {"type": "discrete", "n_actions": "2"}}')
    with pytest.raises(DatasetError, match=r"^info: expected a JSON object, found text that does not parse \(NaN is not valid JSON\)$"):
        DatasetInfo.from_json('{"task": "t", "gamma": NaN, "action_space": {"type": "discrete", "n_actions": 2}}')
    with pytest.raises(DatasetError, match=r"^file.info.seed: expected an int or null, found '3'$"):
        DatasetInfo.from_dict({"task": "t", "gamma": 0.5, "seed": "3", "action_space": {"type": "discrete", "n_actions": 2}}, where="file.info")
    # the optional keys may be absent (their defaults apply), unknown ones may not be present
    assert DatasetInfo.from_dict({"task": "t", "gamma": 1, "action_space": {"type": "discrete", "n_actions": 2}}).seed is None
    with pytest.raises(DatasetError, match=r"found unexpected \['colour'\]"):
        DatasetInfo.from_dict({"task": "t", "gamma": 1, "colour": 1, "action_space": {"type": "discrete", "n_actions": 2}})
