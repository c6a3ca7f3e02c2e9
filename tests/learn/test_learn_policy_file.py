"""opelab's policy file: exact round trips for every algorithm, pickles refused, one-line errors on bad files."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np
import pytest

from opelab.learn import ALGORITHMS, LearnedPolicy, ModelFileError, UnsafeModelError, train_offline
from opelab.learn.policy_file import FORMAT_VERSION, METADATA_KEY

from conftest import needs_d3rlpy

pytestmark = needs_d3rlpy

HIDDEN = (8,)
FAST = {"batch_size": 16}
SLOW_SAMPLERS = {"cql": {"n_action_samples": 2}, "bcq": {"n_action_samples": 2}}
WITH_REWARD_SCALER = ("discrete_cql", "iql")  # a fitted StandardRewardScaler must survive the round trip


def _options(name: str) -> dict:
    from opelab.learn.algorithms import import_d3rlpy

    options = {**FAST, **SLOW_SAMPLERS.get(name, {})}
    if name in WITH_REWARD_SCALER:
        options["reward_scaler"] = import_d3rlpy().preprocessing.StandardRewardScaler()
    return options


@pytest.fixture(scope="module")
def policies(cartpole_data, pendulum_data):
    """Every algorithm after a few gradient steps (seed 3: the loader builds fresh networks under seed 0, so an
    unloaded network would not match by chance)."""
    return {
        name: train_offline(
            cartpole_data if spec.action_type == "discrete" else pendulum_data,
            name, n_steps=5, hidden=HIDDEN, seed=3, options=_options(name),
        )  # fmt: skip
        for name, spec in ALGORITHMS.items()
    }


@pytest.fixture(scope="module")
def saved(policies, tmp_path_factory):
    folder = tmp_path_factory.mktemp("policies")
    return {name: lp.save(folder / f"{name}.safetensors") for name, lp in policies.items()}


def _inputs(lp, cartpole_data, pendulum_data):
    data = cartpole_data if lp.is_discrete else pendulum_data
    return data.observations[data.mask][:40], data.actions[data.mask][:40]


def _assert_same_policy(loaded: LearnedPolicy, lp: LearnedPolicy, obs: np.ndarray, actions: np.ndarray) -> None:
    assert (loaded.algorithm, loaded.hidden, loaded.action_space) == (lp.algorithm, lp.hidden, lp.action_space)
    np.testing.assert_array_equal(loaded(obs), lp(obs))
    np.testing.assert_array_equal(loaded.q_values(obs, actions), lp.q_values(obs, actions))
    if lp.is_discrete:
        np.testing.assert_array_equal(loaded.action_values(obs), lp.action_values(obs))


def _parts(path):
    """The opelab document and the tensors of a policy file, read with safetensors itself."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    return json.loads(metadata[METADATA_KEY]), tensors


def _write(path, document, tensors, metadata=None):
    import safetensors.torch

    metadata = {METADATA_KEY: json.dumps(document)} if metadata is None else metadata
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))
    return path


# --------------------------------------------------------------------------- #
# round trips
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_round_trip_is_exact(name, policies, saved, cartpole_data, pendulum_data):
    lp = policies[name]
    loaded = LearnedPolicy.load(saved[name])
    assert loaded.name == lp.name == f"{name}_8"
    obs, actions = _inputs(lp, cartpole_data, pendulum_data)
    _assert_same_policy(loaded, lp, obs, actions)
    assert json.loads(loaded.algo.config.serialize()) == json.loads(lp.algo.config.serialize())  # 0 == 0.0
    assert tuple(loaded.algo.impl.observation_shape) == tuple(lp.algo.impl.observation_shape)


@pytest.mark.parametrize("name", ["double_dqn", "discrete_cql", "sac", "iql", "bcq"])
def test_scaler_parameters_survive(name, policies, saved):
    original, loaded = policies[name].algo.config, LearnedPolicy.load(saved[name]).algo.config
    obs_scaler = loaded.observation_scaler  # train_offline standardises observations
    assert type(obs_scaler).__name__ == "StandardObservationScaler" and obs_scaler.built
    np.testing.assert_array_equal(obs_scaler.mean, original.observation_scaler.mean)
    np.testing.assert_array_equal(obs_scaler.std, original.observation_scaler.std)
    if ALGORITHMS[name].action_type == "continuous":
        action_scaler = loaded.action_scaler
        assert type(action_scaler).__name__ == "MinMaxActionScaler"
        np.testing.assert_array_equal(action_scaler.minimum, original.action_scaler.minimum)
        np.testing.assert_array_equal(action_scaler.maximum, original.action_scaler.maximum)
    else:
        assert loaded.action_scaler is None
    if name in WITH_REWARD_SCALER:
        reward_scaler = loaded.reward_scaler
        assert type(reward_scaler).__name__ == "StandardRewardScaler" and reward_scaler.built
        assert (reward_scaler.mean, reward_scaler.std) == (original.reward_scaler.mean, original.reward_scaler.std)
    else:
        assert loaded.reward_scaler is None


def test_file_is_plain_safetensors_with_the_documented_header(policies, saved):
    path = saved["sac"]
    raw = path.read_bytes()
    assert raw[0] != 0x80 and raw[8:9] == b"{"
    document, tensors = _parts(path)
    assert document["format"] == "opelab.policy" and document["version"] == FORMAT_VERSION
    assert document["algorithm"] == "sac" and document["name"] == "sac_8" and document["hidden"] == [8]
    assert document["action_space"] == {"type": "continuous", "n_actions": None, "action_dim": 1, "low": [-2.0],
                                        "high": [2.0]}  # fmt: skip
    assert document["observation_shape"] == [3] and document["action_size"] == 1
    assert document["config"]["observation_scaler"]["type"] == "standard"
    modules = {name.split(".")[0] for name in tensors}
    assert modules == {"policy", "q_funcs", "targ_q_funcs", "log_temp"}  # networks only: no optimizer state
    state = policies["sac"].algo.impl.modules.policy.state_dict()
    for key, value in state.items():
        np.testing.assert_array_equal(tensors[f"policy.{key}"].numpy(), value.numpy())


def test_name_is_kept_and_can_be_overridden(pendulum_data, tmp_path):
    lp = train_offline(pendulum_data, "td3_plus_bc", n_steps=2, hidden=HIDDEN, seed=0, options=FAST, name="mine")
    path = lp.save(tmp_path / "m.safetensors")
    assert LearnedPolicy.load(path).name == "mine"
    assert LearnedPolicy.load(path, name="other").name == "other"


def test_other_suffixes_are_written_in_the_safe_format(policies, tmp_path, cartpole_data, pendulum_data):
    lp = policies["discrete_bcq"]
    path = lp.save(tmp_path / "model.d3")  # the content, not the name, tells the format
    assert path.read_bytes()[8:9] == b"{"
    _assert_same_policy(LearnedPolicy.load(path), lp, *_inputs(lp, cartpole_data, pendulum_data))


def test_loading_leaves_global_random_state_alone(saved):
    import torch

    np.random.seed(5)
    torch.manual_seed(5)
    expected = np.random.random(3), torch.rand(3)
    np.random.seed(5)
    torch.manual_seed(5)
    LearnedPolicy.load(saved["iql"])
    np.testing.assert_array_equal(np.random.random(3), expected[0])
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected[1].numpy())


# --------------------------------------------------------------------------- #
# pickles
# --------------------------------------------------------------------------- #
class _CreatesMarker:
    """Unpickling this opens (creates) a marker file: a stand-in for any code a pickle can run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("suffix", [".d3", ".safetensors"])
def test_crafted_pickle_is_refused_without_running_it(protocol, suffix, tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(pickle.dumps({"torch": _CreatesMarker(str(marker))}, protocol=protocol))
    with pytest.raises(UnsafeModelError) as caught:
        LearnedPolicy.load(path)
    assert not marker.exists()
    message = str(caught.value)
    assert isinstance(caught.value, ValueError) and "\n" not in message
    assert message.startswith(f"{path}: ") and "pickle" in message and "can run code" in message
    assert "trust_pickle=True" in message and "--trust-pickle" in message and "LearnedPolicy.save" in message


def test_trusted_d3_file_loads_and_converts(policies, tmp_path, cartpole_data, pendulum_data):
    for name in ("discrete_cql", "bcq"):
        lp = policies[name]
        d3 = tmp_path / f"{name}.d3"
        lp.algo.save(str(d3))  # d3rlpy's own pickle format
        with pytest.raises(UnsafeModelError):
            LearnedPolicy.load(d3)
        trusted = LearnedPolicy.load(d3, trust_pickle=True)
        inputs = _inputs(lp, cartpole_data, pendulum_data)
        _assert_same_policy(trusted, lp, *inputs)
        assert trusted.name == f"{name}_8"  # .d3 files carry no opelab name: the default one
        converted = LearnedPolicy.load(trusted.save(tmp_path / f"{name}.safetensors"))
        _assert_same_policy(converted, lp, *inputs)


def test_trusted_pickle_that_is_not_a_d3rlpy_model_is_a_one_line_error(tmp_path):
    path = tmp_path / "other.d3"
    path.write_bytes(pickle.dumps({"something": "else"}, protocol=4))
    with pytest.raises(ModelFileError, match="expected a d3rlpy .d3 file, found a pickle") as caught:
        LearnedPolicy.load(path, trust_pickle=True)
    assert "\n" not in str(caught.value) and not isinstance(caught.value, UnsafeModelError)


# --------------------------------------------------------------------------- #
# unreadable files: one line naming the file, the expectation and what was found
# --------------------------------------------------------------------------- #
def _edit_document(edit):
    def make(source, path):
        document, tensors = _parts(source)
        edit(document)
        return _write(path, document, tensors)

    return make


def _edit_tensors(edit):
    def make(source, path):
        document, tensors = _parts(source)
        edit(tensors)
        return _write(path, document, tensors)

    return make


def _bytes(data):
    def make(source, path):
        path.write_bytes(data(source.read_bytes()) if callable(data) else data)
        return path

    return make


def _directory(source, path):
    path.mkdir()
    return path


def _zip(source, path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.pkl", b"x")
    path.write_bytes(buffer.getvalue())
    return path


def _no_metadata(source, path):
    _, tensors = _parts(source)
    return _write(path, None, tensors, metadata={})


def _metadata(text):
    def make(source, path):
        _, tensors = _parts(source)
        return _write(path, None, tensors, metadata={METADATA_KEY: text})

    return make


def _set(key, value):
    return _edit_document(lambda d: d.__setitem__(key, value))


def _first_tensor(change):
    def edit(tensors):
        key = sorted(tensors)[0]
        tensors[key] = change(tensors[key])

    return _edit_tensors(edit)


def _drop_scaler_entry(d):
    d["config"]["observation_scaler"]["params"]["mean"] = d["config"]["observation_scaler"]["params"]["mean"][:-1]


def _unknown_encoder(d):
    d["config"]["encoder_factory"] = {"type": "no_such_encoder", "params": {}}


BAD_FILES = {
    "empty": ("double_dqn", _bytes(b""), "found an empty file"),
    "too short": ("double_dqn", _bytes(b"\x01\x02\x03"), "found a file of 3 bytes"),
    "random bytes": ("double_dqn", _bytes(np.random.default_rng(0).bytes(4096)), "found a header length of"),
    "truncated data": ("double_dqn", _bytes(lambda raw: raw[:-10]), "found unreadable tensor data"),
    "truncated header": ("double_dqn", _bytes(lambda raw: raw[:60]), "(truncated, or not safetensors)"),
    "header not json": ("double_dqn", _bytes(len(b"{nope").to_bytes(8, "little") + b"{nope"), "not JSON"),
    "header not an object": (
        "double_dqn", _bytes((8).to_bytes(8, "little") + b"[1, 2]  "), "a header starting with b'[1, 2]  '"
    ),
    "zip archive": ("double_dqn", _zip, "found a zip archive"),
    "directory": ("double_dqn", _directory, "found a directory"),
    "nothing there": ("double_dqn", lambda source, path: path, "found nothing at this path"),
    "plain safetensors": ("double_dqn", _no_metadata, "__metadata__: expected opelab's key 'opelab'"),
    "metadata not json": ("double_dqn", _metadata("{oops"), "opelab: expected a JSON document, found invalid JSON"),
    "metadata not object": ("double_dqn", _metadata("[1]"), "opelab: expected a JSON object, found list"),
    "nan in metadata": ("double_dqn", _set("note", float("nan")), "ValueError: NaN is not valid JSON"),
    "wrong format": ("double_dqn", _set("format", "other"), "opelab.format: expected 'opelab.policy', found 'other'"),
    "future version": ("double_dqn", _set("version", FORMAT_VERSION + 1), "opelab.version: expected format version 1"),
    "version as text": ("double_dqn", _set("version", "1"), "opelab.version: expected a format version"),
    "missing keys": (
        "double_dqn", _edit_document(lambda d: [d.pop("config"), d.pop("hidden")]), "found ['hidden', 'config'] missing"
    ),
    "unknown algorithm": ("double_dqn", _set("algorithm", "ppo"), "opelab.algorithm: expected one of"),
    "bad hidden": ("double_dqn", _set("hidden", [0]), "opelab.hidden: expected a non-empty list of positive ints"),
    "bad observation shape": ("double_dqn", _set("observation_shape", []), "opelab.observation_shape: expected"),
    "empty name": ("double_dqn", _set("name", ""), "opelab.name: expected a non-empty str"),
    "action size": ("double_dqn", _set("action_size", 3), "action_size: expected 2 (from action_space), found 3"),
    "action type": (
        "double_dqn", _set("action_space", {"type": "continuous", "action_dim": 2}), "opelab.action_space.type"
    ),
    "action space keys": ("double_dqn", _set("action_space", {"type": "discrete", "arms": 2}), "opelab.action_space:"),
    "action space values": ("double_dqn", _set("action_space", {"type": "discrete", "n_actions": 0}), "n_actions"),
    "config not an object": ("double_dqn", _set("config", [1]), "opelab.config: expected a JSON object, found list"),
    "config unreadable": ("double_dqn", _edit_document(_unknown_encoder), "opelab.config: expected a DoubleDQNConfig"),
    "scaler shape": ("double_dqn", _edit_document(_drop_scaler_entry), "observation_scaler.mean: expected shape [4]"),
    "observation shape": ("double_dqn", _set("observation_shape", [5]), "expected shape [5], found [4]"),
    "action box": (
        "sac",
        _edit_document(lambda d: d["action_space"].__setitem__("low", [-3.0])),
        "opelab.config.action_scaler.minimum: expected the box of action_space ((-3.0,)), found [-2.0]",
    ),
    "tensor shape": ("double_dqn", _first_tensor(lambda t: t.new_zeros(3, 3)), "found [3, 3] (torch.float32)"),
    "tensor dtype": ("double_dqn", _first_tensor(lambda t: t.double()), "(torch.float64)"),
    "missing tensor": (
        "sac", _edit_tensors(lambda t: t.pop("policy._mu.weight")), "found 1 missing, e.g. 'policy._mu.weight'"
    ),
    "extra tensor": (
        "sac", _edit_tensors(lambda t: t.__setitem__("zz.weight", t["policy._mu.weight"].clone())), "found 1 more"
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_unreadable_file_is_a_one_line_error(case, saved, tmp_path):
    algorithm, make, expected = BAD_FILES[case]
    path = make(saved[algorithm], tmp_path / "bad.safetensors")
    with pytest.raises(ModelFileError) as caught:
        LearnedPolicy.load(path, trust_pickle=True)  # trusting pickles changes nothing for these files
    error = caught.value
    message = str(error)
    assert isinstance(error, ValueError) and not isinstance(error, UnsafeModelError)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert "expected" in message and "found" in message
    assert expected in message, message
