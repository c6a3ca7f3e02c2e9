"""Streaming evaluation equals the in-memory one, whatever the chunks, units, row groups and files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ope_cases import policies_for, small_task

from opelab.data import DatasetError, LoggedDataset
from opelab.data.chunks import chunk_bounds, dataset_chunks, open_source, read_unit
from opelab.envs import collect
from opelab.ope import evaluate
from opelab.ope.intervals import PoissonCounts
from opelab.policies import TabularPolicy
from opelab.ope.streaming import StreamError, chunk_inputs, evaluate_stream, tabular_action_values

INTERVALS = (None, "t", "hoeffding", "bernstein", "bootstrap")
TOL = 1e-10


@pytest.fixture(scope="module")
def case():
    task = small_task()
    behavior, evals = policies_for(task)
    ds = collect(task, behavior, 400, seed=11)
    assert len(np.unique(ds.lengths)) > 3
    q_model = tabular_action_values([task.q_values(p) for p in evals])
    return ds, evals, q_model


def reference(ds, evals, q_model, interval, **kw):
    return evaluate(ds, chunk_inputs(ds, evals, q_model), interval=interval, resampling="poisson", n_bootstrap=200, **kw)


def assert_same(got, ref, tol=TOL):
    assert got.estimator_names == ref.estimator_names
    assert got.policy_names == ref.policy_names
    np.testing.assert_allclose(got.estimates, ref.estimates, rtol=0, atol=tol)
    assert got.behavior_value == pytest.approx(ref.behavior_value, abs=tol)
    assert (got.lower is None) == (ref.lower is None)
    if ref.lower is not None:
        np.testing.assert_allclose(got.lower, ref.lower, rtol=0, atol=tol)
        np.testing.assert_allclose(got.upper, ref.upper, rtol=0, atol=tol)


def test_inputs_equal_build_inputs_with_tables(case):
    from opelab.ope import build_inputs

    ds, evals, _ = case
    task = small_task()
    tables = [task.q_values(p) for p in evals]
    built = build_inputs(ds, evals, q_tables=tables, weights=None)
    mine = chunk_inputs(ds, evals, tabular_action_values(tables))
    for name in ("eval_pscore", "eval_action_probs", "q_hat", "v_hat", "initial_v_hat"):
        np.testing.assert_array_equal(getattr(mine, name), getattr(built, name))


def test_default_estimators_are_the_seven_standard_ones(case):
    ds, evals, q_model = case
    assert set(evaluate_stream(ds, evals, q_model).estimator_names) == {"dm", "tis", "sntis", "pdis", "dr", "snpdis", "sndr"}
    assert set(evaluate_stream(ds, evals).estimator_names) == {"tis", "sntis", "pdis", "snpdis"}


@pytest.mark.parametrize("interval", INTERVALS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(max_cells=st.integers(1, 3000), unit=st.integers(5, 500))
def test_stream_equals_in_memory(case, interval, max_cells, unit):
    ds, evals, q_model = case
    got = evaluate_stream(ds, evals, q_model, interval=interval, n_bootstrap=200, max_cells=max_cells, unit_trajectories=unit)
    assert_same(got, reference(ds, evals, q_model, interval))


def test_known_value_range_is_checked_while_streaming(case):
    ds, evals, q_model = case
    ref = reference(ds, evals, q_model, "hoeffding", value_range=(-1e3, 1e3))
    assert_same(evaluate_stream(ds, evals, q_model, interval="hoeffding", value_range=(-1e3, 1e3), max_cells=100), ref)
    with pytest.raises(ValueError, match="value_range"):
        evaluate_stream(ds, evals, q_model, interval="bernstein", value_range=(0.0, 1e-3), max_cells=100)


def _write_parts(ds: LoggedDataset, folder, cuts, row_group_size):
    bounds = [0, *sorted(cuts), ds.n_trajectories]
    for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        if hi <= lo:
            continue
        path = folder / f"part{k:03d}.parquet"
        ds.subset(np.arange(lo, hi)).to_parquet(path, row_group_rows=row_group_size)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.integers(1, 399), max_size=3, unique=True),
    row_group_size=st.integers(1, 900),
    max_cells=st.integers(1, 2000),
    interval=st.sampled_from(INTERVALS),
)
def test_parquet_folder_equals_in_memory(case, tmp_path_factory, cuts, row_group_size, max_cells, interval):
    ds, evals, q_model = case
    folder = tmp_path_factory.mktemp("parts")
    _write_parts(ds, folder, cuts, row_group_size)
    source = open_source(folder)
    assert source.n_trajectories == ds.n_trajectories
    got = evaluate_stream(source, evals, q_model, interval=interval, n_bootstrap=200, max_cells=max_cells)
    assert_same(got, reference(ds, evals, q_model, interval))


def test_row_groups_split_into_units_at_trajectory_boundaries(case, tmp_path):
    ds, _, _ = case
    _write_parts(ds, tmp_path, [], 37)
    source = open_source(tmp_path)
    assert len(source.units) > 1  # 37-row groups: some boundaries fall between trajectories
    seen = []
    for unit in source.units:
        for first, chunk in read_unit(unit, max_cells=64):
            seen.append((first, chunk.n_trajectories))
            assert chunk.n_trajectories * chunk.horizon <= max(64, chunk.lengths.max())
    starts = [first for first, _ in seen]
    assert starts == sorted(starts) and starts[0] == 0
    assert sum(k for _, k in seen) == ds.n_trajectories
    rebuilt = [c for u in source.units for _, c in read_unit(u, max_cells=10**6)]
    assert np.array_equal(np.concatenate([c.returns for c in rebuilt]), ds.returns)


def test_chunk_bounds_cover_in_order_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, size=500)
    lengths[[17, 300]] = 5000  # two long trajectories among short ones
    for max_cells in (1, 50, 999, 10**6):
        bounds = chunk_bounds(lengths, max_cells, horizon=5000, extra_steps=1)
        assert bounds[0][0] == 0 and bounds[-1][1] == 500
        assert all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:]))
        for lo, hi, h in bounds:
            assert h == min(5000, lengths[lo:hi].max() + 1)
            assert (hi - lo) * h <= max_cells or hi - lo == 1


def test_one_long_trajectory_costs_its_own_length(case):
    """Padded cells per chunk stay near max_cells although the longest trajectory is 100× the others."""
    task = small_task(n_terminal=0)
    behavior, _ = policies_for(task)
    short = collect(task, behavior, 300, seed=1)
    rng = np.random.default_rng(4)  # stationary policies: they apply at every step of the long trajectory
    evals = [TabularPolicy(rng.dirichlet(np.ones(task.n_actions), size=task.n_states), name=f"p{k}") for k in range(2)]
    rng = np.random.default_rng(2)
    L = 600
    long = {
        "observations": rng.integers(0, task.n_states, L),
        "actions": rng.integers(0, task.n_actions, L),
        "rewards": rng.normal(size=L) * 0.1,
        "behavior_pscore": np.full(L, 1 / task.n_actions),
    }
    trajectories = [
        {k: getattr(short, f)[i, : short.lengths[i]] for k, f in (("observations", "observations"), ("actions", "actions"), ("rewards", "rewards"), ("behavior_pscore", "behavior_pscore"))}
        for i in range(150)
    ]
    trajectories = trajectories + [long] + trajectories[:100]
    ds = LoggedDataset.from_trajectories(trajectories, short.info)
    sizes = [c.n_trajectories * c.horizon for _, c in dataset_chunks(ds, max_cells=700, extra_steps=1)]
    assert max(sizes) <= 700 and ds.n_trajectories * ds.horizon > 100 * 700
    q_model = tabular_action_values([np.zeros((task.n_states, task.n_actions)) + 0.5 for _ in evals])
    for interval in INTERVALS:
        got = evaluate_stream(ds, evals, q_model, interval=interval, n_bootstrap=200, max_cells=700, unit_trajectories=64)
        assert_same(got, reference(ds, evals, q_model, interval))


def test_poisson_counts_do_not_depend_on_the_split():
    counts = PoissonCounts(300, seed=5)
    whole = np.concatenate([c for _, _, c in PoissonCounts(300, seed=5).slices(100, 10_000)], axis=1)
    assert whole.shape == (300, 10_000)
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.choice(np.arange(1, 10_000), 5, replace=False))
    parts = []
    for lo, hi in zip([0, *cuts], [*cuts, 10_000]):
        parts.extend(c for _, _, c in counts.slices(100 + int(lo), int(hi - lo)))
    assert np.array_equal(np.concatenate(parts, axis=1), whole)
    # Poisson(1): mean 1 and variance 1, within 5 standard errors of the 3·10^6 draws
    se = 1 / np.sqrt(whole.size)
    assert abs(whole.mean() - 1) < 5 * se
    assert abs(whole.var() - 1) < 5 * np.sqrt(2) * se  # var of a Poisson(1) sample variance ≈ (μ4 − σ⁴)/N = 3/N − …


def test_poisson_bootstrap_spread_matches_the_standard_error():
    """For a plain mean, the Poisson bootstrap's standard deviation estimates s/√n (relative SE ≈ 1/√(2B))."""
    from opelab.ope.intervals import poisson_sums

    rng = np.random.default_rng(3)
    n, B = 5000, 2000
    values = rng.exponential(size=n)
    blocks = [(values[:, None], [("v", 0, 0)])]
    sums, totals = poisson_sums(blocks, 1, 0, PoissonCounts(B, seed=0))
    means = sums["v"][0] / totals
    ratio = means.std(ddof=1) / (values.std(ddof=1) / np.sqrt(n))
    assert abs(ratio - 1) < 5 / np.sqrt(2 * B) + 5 / np.sqrt(n)


def test_estimators_a_stream_cannot_compute_are_refused(case):
    ds, evals, q_model = case
    with pytest.raises(StreamError, match="sam_is: needs"):
        evaluate_stream(ds, evals, q_model, ["sam_is"])
    with pytest.raises(StreamError, match="dr: needs q_hat.*q_model"):
        evaluate_stream(ds, evals, None, ["dr"])
    with pytest.raises(StreamError, match="max_cells"):
        evaluate_stream(ds, evals, q_model, max_cells=0)


def _as_format_2(table):
    """The table re-stamped as a format 2 file (no row-group digests), as an older opelab wrote it."""
    meta = json.loads(table.schema.metadata[b"opelab"])
    meta["format_version"] = 2
    del meta["row_group_digests"]
    return table.replace_schema_metadata({b"opelab": json.dumps(meta).encode()})


def test_rows_out_of_order_are_refused(case, tmp_path):
    ds, evals, _ = case
    path = tmp_path / "data.parquet"
    ds.to_parquet(path)
    table = pq.read_table(path)
    order = np.arange(table.num_rows)
    order[[3, 40]] = order[[40, 3]]
    pq.write_table(table.take(order), path, write_page_checksum=True)
    with pytest.raises(DatasetError, match=r"data.parquet: row_group_digests\[0\]: expected"):
        evaluate_stream(path, evals)  # format 3: the row group's digest sees the change first
    pq.write_table(_as_format_2(table.take(order)), path, write_page_checksum=True)
    LoggedDataset.read_parquet(path)  # the in-memory reader accepts any order...
    with pytest.raises(DatasetError, match=r"data.parquet: .*(trajectory order|steps 0, 1)"):
        evaluate_stream(path, evals)  # ...a stream needs write_parquet's


def test_missing_trajectory_is_refused(case, tmp_path):
    ds, evals, _ = case
    path = tmp_path / "data.parquet"
    ds.to_parquet(path)
    table = pq.read_table(path)
    keep = np.flatnonzero(table["trajectory"].to_numpy() != ds.n_trajectories - 1)
    pq.write_table(table.take(keep), path, write_page_checksum=True)  # the metadata still says n_rows / n
    with pytest.raises(DatasetError, match="data.parquet: rows: expected n_rows"):
        evaluate_stream(path, evals)


def test_incompatible_files_in_a_folder_are_refused(case, tmp_path):
    ds, evals, _ = case
    ds.subset(np.arange(10)).to_parquet(tmp_path / "a.parquet")
    ds.subset(np.arange(10)).with_info(gamma=0.5).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(DatasetError, match=r"b.parquet: info.gamma: expected 0.9 like .*a.parquet, found 0.5"):
        open_source(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="found none"):
        open_source(empty)


def test_ray_gives_the_local_numbers(case, tmp_path):
    pytest.importorskip("ray")
    ds, evals, q_model = case
    _write_parts(ds, tmp_path, [150, 260], 97)
    for interval in ("bootstrap", "bernstein"):
        local = evaluate_stream(tmp_path, evals, q_model, interval=interval, n_bootstrap=200, max_cells=300)
        remote = evaluate_stream(tmp_path, evals, q_model, interval=interval, n_bootstrap=200, max_cells=300, executor="ray")
        assert np.array_equal(local.estimates, remote.estimates)
        assert np.array_equal(local.lower, remote.lower) and np.array_equal(local.upper, remote.upper)


@pytest.mark.parametrize("batch_rows", [1, 7, 250, 10**6])
def test_a_trajectory_spanning_many_batches_reads_back_whole(tmp_path, batch_rows):
    from opelab.data.chunks import concatenate

    task = small_task(n_terminal=0)
    behavior, _ = policies_for(task)
    short = collect(task, behavior, 40, seed=1)
    rng = np.random.default_rng(2)
    L = 1000
    long = {"observations": rng.integers(0, 6, L), "actions": rng.integers(0, 3, L), "rewards": rng.normal(size=L), "behavior_pscore": np.full(L, 1 / 3)}
    parts = [{k: getattr(short, k)[i, : short.lengths[i]] for k in ("observations", "actions", "rewards", "behavior_pscore")} for i in range(40)]
    ds = LoggedDataset.from_trajectories(parts[:10] + [long] + parts[10:], short.info)
    path = tmp_path / "long.parquet"
    ds.to_parquet(path, row_group_rows=300)
    chunks = [c for u in open_source(path).units for _, c in read_unit(u, max_cells=500, batch_rows=batch_rows)]
    assert concatenate(chunks, ds.horizon).equals(ds)


def test_a_stream_too_large_for_memory_is_refused_before_work(case):
    from opelab.resources import ResourceError

    ds, evals, q_model = case
    with pytest.raises(ResourceError, match=r"memory: expected streaming 7 estimators for 3 policies over horizon 6 with 1000 resamples to fit in 1\.0 MiB"):
        evaluate_stream(ds, evals, q_model, interval="bootstrap", memory_limit="1M")
    evaluate_stream(ds, evals, q_model, interval="bootstrap", n_bootstrap=10, max_cells=100, memory_limit="1G")


def test_files_of_different_horizons_stream_as_one_dataset(case, tmp_path):
    """A file of short trajectories (horizon 3) and one of full ones (horizon 6): the short file's chunks
    must absorb their trajectories up to the source's horizon, not their file's, or per-step sums misalign."""
    from opelab.data.chunks import concatenate

    ds, evals, q_model = case
    short = ds.subset(np.flatnonzero(ds.lengths <= 3))
    short = LoggedDataset(info=ds.info, **{k: None if getattr(short, k) is None else getattr(short, k)[:, :3] for k in (
        "observations", "actions", "rewards", "terminals", "mask", "behavior_pscore", "behavior_action_probs")})  # fmt: skip
    full = ds.subset(np.flatnonzero(ds.lengths == ds.horizon))
    assert short.horizon == 3 and full.horizon == 6 and short.n_trajectories > 20 and full.n_trajectories > 20
    short.to_parquet(tmp_path / "a.parquet")
    full.to_parquet(tmp_path / "b.parquet")
    whole = concatenate([short, full], 6)
    for interval in INTERVALS:
        got = evaluate_stream(tmp_path, evals, q_model, interval=interval, n_bootstrap=200, max_cells=50)
        assert_same(got, reference(whole, evals, q_model, interval))


def test_intervals_stay_finite_when_the_weights_underflow():
    """W_t = 0.5^(t+1) over 1,100 steps: the means of W_t become subnormal, where 1 / mean overflows. The
    linearised values divide (as ``self_normalize`` does), so the bounds stay finite and close to the in-memory
    ones (they differ in the last digits the subnormal means keep: sums / n against a mean of ratios)."""
    from opelab.data import ActionSpace, DatasetInfo

    rng = np.random.default_rng(0)
    n, H = 20, 1100
    info = DatasetInfo(task="chain", gamma=1.0, action_space=ActionSpace.discrete(3))
    ds = LoggedDataset(
        info=info, observations=np.zeros((n, H), dtype=np.int64), actions=rng.integers(0, 2, (n, H)),
        rewards=rng.uniform(0, 1, (n, H)), terminals=np.zeros((n, H), bool), mask=np.ones((n, H), bool),
        behavior_pscore=np.full((n, H), 1 / 3), behavior_action_probs=np.full((n, H, 3), 1 / 3),
    )  # fmt: skip
    pi = TabularPolicy(np.array([[1 / 6, 1 / 6, 2 / 3]]), name="pi")  # w_t = 1/2 on every logged step
    for interval in ("t", "bernstein"):
        ref = evaluate(ds, chunk_inputs(ds, [pi]), ["snpdis", "sntis"], interval=interval)
        got = evaluate_stream(ds, [pi], estimators=["snpdis", "sntis"], interval=interval, max_cells=2000)
        assert np.isfinite(got.lower).all() and np.isfinite(got.upper).all()
        np.testing.assert_allclose(got.lower, ref.lower, rtol=1e-3)
        np.testing.assert_allclose(got.upper, ref.upper, rtol=1e-3)
