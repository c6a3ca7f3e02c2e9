"""Neural FQE at scale: memory follows a minibatch, work follows the gradient steps, prediction runs in
chunks, and torch's thread setting is the caller's again afterwards."""

from __future__ import annotations

import dataclasses

import tracemalloc

import numpy as np
import pytest

from opelab.data import ActionSpace, DatasetInfo, LoggedDataset
from opelab.ope import FQEConfig, fit_fqe, predict_fqe
from opelab.ope import fqe as fqe_module

torch = pytest.importorskip("torch")


def _cartpole_like(n: int, horizon: int, seed: int) -> tuple[LoggedDataset, np.ndarray]:
    """4-dim observations, 2 actions, r = 1, trajectories of random length; and π for 2 policies (2, n, H, 2)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(horizon // 2, horizon + 1, size=n)
    mask = np.arange(horizon)[None] < lengths[:, None]
    obs = rng.normal(size=(n, horizon, 4)) * mask[..., None]
    actions = rng.integers(0, 2, size=(n, horizon)) * mask
    p1 = 1 / (1 + np.exp(-obs[..., 2] * 5))
    probs = np.stack([np.stack([1 - p1, p1], -1), np.full((n, horizon, 2), 0.5)])
    ds = LoggedDataset(
        observations=obs,
        actions=actions,
        rewards=mask.astype(np.float64),
        terminals=np.zeros((n, horizon), dtype=bool),
        mask=mask,
        behavior_pscore=np.where(mask, 0.5, 1.0),
        info=DatasetInfo(task="cartpole-like", gamma=0.99, action_space=ActionSpace.discrete(2)),
    )
    return ds, probs


def _quadratic(n: int, seed: int) -> tuple[LoggedDataset, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, size=(n, 2, 1))
    a = s + rng.normal(0, 0.5, size=(n, 2, 1))
    ds = LoggedDataset(
        observations=s,
        actions=a,
        rewards=-((a - s)[..., 0] ** 2),
        terminals=np.zeros((n, 2), dtype=bool),
        mask=np.ones((n, 2), dtype=bool),
        behavior_pscore=np.ones((n, 2)),
        info=DatasetInfo(task="quadratic", gamma=0.9, action_space=ActionSpace.continuous(1)),
    )
    return ds, np.stack([s + 0.5, s - 0.1])


SMALL = FQEConfig(hidden=(16,), n_iterations=3, n_steps=4, batch_size=128)


def test_fit_memory_does_not_grow_with_the_number_of_steps(monkeypatch):
    """tracemalloc peak of fit_fqe (numpy's allocations) for N and 4N logged steps at a fixed budget: the
    4N fit needs less than 1.5× the N fit (a whole-dataset featurisation would need 4×)."""
    monkeypatch.setattr(fqe_module, "PREDICT_CHUNK", 4096)
    peaks = []
    for n in (250, 1000):
        ds, probs = _cartpole_like(n, 40, seed=0)
        fit_fqe(ds, probs, config=SMALL)  # torch's one-time set-up, outside the measurement
        tracemalloc.start()
        fit_fqe(ds, probs, config=SMALL)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0], peaks


def test_fit_work_follows_the_gradient_steps_not_the_data(monkeypatch):
    """Rows through the network (counted by a forward hook, the frozen target network included) are
    n_iterations × n_steps × 2 batch_size for N and 4N logged steps alike, plus the convergence signals'
    fixed-size passes: the probe before the first and after every iteration ((n_iterations + 1) × probe_size)
    and the final Bellman residual (its targets and predictions, 2 × residual_steps)."""
    rows: list[int] = []
    make = fqe_module._network

    def counted(*args, **kwargs):
        net = make(*args, **kwargs)
        net.register_forward_pre_hook(lambda module, inputs: rows.append(inputs[0].shape[0]))
        return net

    monkeypatch.setattr(fqe_module, "_network", counted)
    totals = []
    config = dataclasses.replace(SMALL, probe_size=64, residual_steps=256)  # both below the N = 2,000 logged steps
    for n in (100, 400):
        ds, probs = _cartpole_like(n, 20, seed=1)
        rows.clear()
        fit_fqe(ds, probs, config=config)
        totals.append(sum(rows))
    assert totals == [3 * 4 * 2 * 128 + (3 + 1) * 64 + 2 * 256] * 2, totals


def test_chunked_prediction_equals_one_pass(monkeypatch):
    ds, probs = _cartpole_like(60, 20, seed=2)
    fit = fit_fqe(ds, probs, config=SMALL)
    cds, acts = _quadratic(300, seed=3)
    cfit = fit_fqe(cds, eval_actions=acts, config=SMALL)
    whole = predict_fqe(fit, ds), predict_fqe(cfit, cds, acts)
    q = fqe_module.fqe_q_function(cfit, 1)
    q_whole = q(cds.observations.reshape(-1, 1), cds.actions.reshape(-1, 1), np.tile([0, 1], 300))
    monkeypatch.setattr(fqe_module, "PREDICT_CHUNK", 37)
    chunked = predict_fqe(fit, ds), predict_fqe(cfit, cds, acts)
    for one, many in zip(whole, chunked):
        for a, b in zip(one, many):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    np.testing.assert_allclose(q(cds.observations.reshape(-1, 1), cds.actions.reshape(-1, 1), np.tile([0, 1], 300)), q_whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(q_whole.reshape(300, 2), chunked[1][1][1], rtol=0, atol=1e-6)  # the callable agrees
    assert (whole[0][0][:, ~ds.mask] == 0).all()  # padded steps are 0


def test_torch_threads_are_set_for_the_fit_and_restored(monkeypatch):
    seen: list[int] = []
    make = fqe_module._network

    def watched(*args, **kwargs):
        net = make(*args, **kwargs)
        net.register_forward_pre_hook(lambda module, inputs: seen.append(torch.get_num_threads()))
        return net

    monkeypatch.setattr(fqe_module, "_network", watched)
    ds, probs = _cartpole_like(20, 10, seed=4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fit = fit_fqe(ds, probs, config=SMALL)
        predict_fqe(fit, ds)
        assert set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        fit_fqe(ds, probs, config=FQEConfig(hidden=(8,), n_iterations=1, n_steps=1, torch_threads=None))
        assert set(seen) == {2}
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="torch_threads: expected a positive int, found 0"):
        FQEConfig(torch_threads=0)
