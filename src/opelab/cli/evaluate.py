"""``opelab evaluate``: saved policies under heads, estimated on a logged dataset (and assessed with truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from opelab.cli.app import app
from opelab.cli.models import (
    HEAD_LEVEL,
    TRUST_PICKLE_HELP,
    behavior_policy,
    check_level,
    check_model,
    head_name,
    learned_task,
    load_model,
    read_dataset,
)
from opelab.cli.output import CLIError, Stages, check_out_dir, console, guarded, line, writable
from opelab.cli.tables import print_assessment, print_estimate_table, print_overlap, print_recommendation
from opelab.resources import DEFAULT_MAX_CELLS

INTERVALS = ("bootstrap", "t", "hoeffding", "bernstein")
Q_FUNCTIONS = ("neural_fqe", "mql", "regression", "none")


def split_names(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _check_estimators(names: list[str] | None) -> None:
    from opelab.ope.estimators import ESTIMATORS

    if names is None:
        return
    if not names:
        raise CLIError("--estimators: expected comma-separated estimator names like dm,snpdis,sndr, found none")
    unknown = [name for name in names if name not in ESTIMATORS]
    if unknown:
        raise CLIError(f"--estimators: expected names from {sorted(ESTIMATORS)}, found {unknown}")


@app.command()
def evaluate(
    dataset: Path = typer.Argument(..., help="A logged dataset (Parquet), e.g. from `opelab collect`; with --stream also a folder of them."),
    policy: list[Path] = typer.Option([], help="A candidate's base policy (model file); repeat for several."),
    action_dist: Path | None = typer.Option(
        None, help="Candidates given as probabilities: a Parquet table with one list column of action probabilities per policy, one row per logged step (no model files)."
    ),
    head: str | None = typer.Option(
        None, help="Head of every candidate: epsilon_greedy (default, discrete), softmax, greedy; gaussian (default, continuous), truncated_gaussian."
    ),
    epsilon: list[float] | None = typer.Option(None, help="ε levels (repeat); default 0, 0.1, 0.3, 0.5."),
    temperature: list[float] | None = typer.Option(None, help="Softmax temperatures (repeat; required for softmax)."),
    sigma: list[float] | None = typer.Option(None, help="Gaussian σ levels in action units (repeat); default 0.1..1 × half the box."),
    estimators: str | None = typer.Option(None, help="Comma-separated estimators, e.g. dm,snpdis,sndr (default: every one the inputs feed)."),
    interval: str | None = typer.Option(None, help="Confidence intervals: bootstrap, t, hoeffding or bernstein."),
    alpha: float = typer.Option(0.05, min=1e-6, max=0.5, help="1 − level of the intervals."),
    n_bootstrap: int = typer.Option(1000, min=2, max=10**5, help="Bootstrap resamples (with --interval bootstrap)."),
    q_function: str | None = typer.Option(
        None, help="Q̂: neural_fqe (default on trajectories), mql (discrete), regression (scikit-learn reward model; default on one-step logs) or none (no DM / DR)."
    ),
    fqe_steps: int = typer.Option(100, min=1, max=10**6, help="Neural FQE: Adam steps per iteration."),
    fqe_iterations: int | None = typer.Option(None, min=1, max=10**5, help="Neural FQE: iterations (default: the horizon)."),
    kernel: str = typer.Option("gaussian", help="Continuous actions: kernel of the smoothed importance ratios."),
    bandwidth: float = typer.Option(0.1, help="Continuous actions: bandwidth in standard deviations of the logged actions."),
    truth_rollouts: int = typer.Option(
        0, min=0, max=10**5, help="On-policy rollouts per candidate for the true values and the assessment (0: none)."
    ),
    task: str | None = typer.Option(None, help="The task for --truth-rollouts (default: the dataset's)."),
    seed: int = typer.Option(0, min=0, help="Seed of FQE, the bootstrap and the rollouts."),
    out: Path | None = typer.Option(None, help="Write the estimates (and truth) as CSV."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists, and write into a --report-dir that holds files."),
    trust_pickle: bool = typer.Option(False, help=TRUST_PICKLE_HELP),
    memory_limit: float | None = typer.Option(
        None, min=0.01, help="GiB this command may use (default: the memory available); work estimated above it is refused."
    ),
    stream: bool = typer.Option(
        False, help="Read the data a chunk of trajectories at a time (memory bounded by the chunk; DATASET may be a folder of Parquet files)."
    ),
    chunk_steps: int = typer.Option(
        DEFAULT_MAX_CELLS, min=1, max=10**9, help="With --stream: padded steps per chunk (trajectories × their longest length)."
    ),
    fit_trajectories: int = typer.Option(
        10_000, min=1, max=10**7, help="With --stream: neural FQE is fit on the first this many trajectories, then applied chunk by chunk."
    ),
    executor: str = typer.Option("local", help="With --stream: local, or ray (one Ray Data task per group of row groups)."),
    address: str | None = typer.Option(None, help="With --executor ray: the cluster's address (default: a local Ray)."),
    recommend: str | None = typer.Option(
        None, help="Which estimator to trust, estimated from the logs: cv (cross-validation), pasif (pseudo candidates; discrete actions) or all."
    ),
    report_dir: Path | None = typer.Option(
        None, "--report-dir",
        help="Write a results folder (report.html, report.json, CSV tables; `opelab report` reads it). Without "
        "--truth-rollouts it opens with the assessment estimated from the logs (--recommend, default cv).",
    ),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Estimate the value of saved policies under heads on a logged dataset; with rollout truth, assess the estimators."""

    def body() -> None:
        from opelab.learn import apply_heads
        from opelab.ope import FQEConfig, evaluate as evaluate_table
        from opelab.ope.kernels import KERNELS
        from opelab.pipeline import learned_inputs

        if out is not None:
            writable(out, force)
        if truth_rollouts == 1:
            raise CLIError("--truth-rollouts: expected 0 or at least 2 (for a standard error), found 1")
        if interval is not None and interval not in INTERVALS:
            raise CLIError(f"--interval: expected one of {list(INTERVALS)}, found {interval!r}")
        if q_function is not None and q_function not in Q_FUNCTIONS:
            raise CLIError(f"--q-function: expected one of {list(Q_FUNCTIONS)}, found {q_function!r}")
        if kernel not in KERNELS:
            raise CLIError(f"--kernel: expected one of {sorted(KERNELS)}, found {kernel!r}")
        if not (bandwidth > 0 and np.isfinite(bandwidth)):
            raise CLIError(f"--bandwidth: expected a positive number, found {bandwidth}")
        if len(policy) > 100:
            raise CLIError(f"--policy: expected at most 100 model files, found {len(policy)}")
        named = split_names(estimators)
        _check_estimators(named)
        if recommend is not None and recommend not in ("cv", "pasif", "all"):
            raise CLIError(f"--recommend: expected one of ['cv', 'pasif', 'all'], found {recommend!r}")
        if recommend is not None and stream:
            raise CLIError("--recommend: expected without --stream (its splits need the whole dataset in memory), found both")
        if report_dir is not None:
            if stream:
                raise CLIError("--report-dir: expected without --stream (the report's assessment needs the whole dataset in memory), found both")
            check_out_dir(report_dir, force, "--report-dir")
        if executor not in ("local", "ray"):
            raise CLIError(f"--executor: expected 'local' or 'ray', found {executor!r}")
        if not stream:
            for flag, used in (("--executor ray", executor != "local"), ("--address", address is not None)):
                if used:
                    raise CLIError(f"{flag}: expected together with --stream, found it without")
        if stream or dataset.is_dir():
            if not stream:
                raise CLIError(f"DATASET: expected a Parquet file, found a folder at {dataset} (pass --stream to read a folder of files)")
            from opelab.data.chunks import open_source

            data = open_source(dataset)
        else:
            data = read_dataset(dataset)
        space = data.info.action_space
        q_kind = q_function or ("regression" if not stream and data.horizon == 1 and space.is_discrete else "neural_fqe")
        if q_kind == "regression" and (data.horizon != 1 or not space.is_discrete):
            raise CLIError(f"--q-function: expected regression only on one-step logs with discrete actions, found horizon {data.horizon}")
        if action_dist is not None:
            _evaluate_given(data, q_kind, named)
            return
        if not policy:
            raise CLIError("--policy: expected at least one model file, or --action-dist with the candidates' probabilities, found neither")
        models = [load_model(path, trust_pickle=trust_pickle) for path in policy]
        for model, path in zip(models, policy):
            check_model(model, space, f"the dataset's, {data.info.task}", path)
        stems = [m.name for m in models]
        if len(set(stems)) != len(stems):
            raise CLIError(f"--policy: expected files with distinct names (they name the candidates), found {stems}")
        levels = {"temperature": temperature or None, "epsilon": epsilon or None, "sigma": sigma or None}
        default_head = "epsilon_greedy" if space.is_discrete else "gaussian"
        chosen = head if head is not None or any(v is not None for v in levels.values()) else default_head
        head_kind = head_name(chosen, False, levels, space)
        if head_kind == "uniform":
            raise CLIError("--head: expected a head around the models, found 'uniform' (it ignores them)")
        if head_kind == "greedy":
            candidates = [behavior_policy(m, "greedy", None, space) for m in models]
        else:
            given = levels[HEAD_LEVEL[head_kind]]
            for level in given or []:
                check_level(head_kind, level)
            if head_kind == "softmax" and given is None:
                raise CLIError("--temperature: expected at least one temperature for --head softmax, found none")
            candidates = apply_heads(models, head_kind, given)
        if stream:
            if not space.is_discrete:
                raise CLIError("--stream: expected a dataset with discrete actions, found continuous ones (kernel ratios need the whole data)")
            if q_kind in ("mql", "regression"):
                raise CLIError(f"--q-function: expected neural_fqe or none with --stream, found {q_kind!r}")
            _evaluate_stream(data, candidates, named, q_kind)
            return
        _check_memory(data, len(candidates), n_bootstrap if interval == "bootstrap" else 0, memory_limit)
        with Stages() as stage:
            truth = _truth(stage, data.info, data.horizon, candidates)
            stage(f"inputs ({q_kind.replace('_', ' ')}{', ' + kernel + ' kernel' if not space.is_discrete else ''})")
            fqe = FQEConfig(n_steps=fqe_steps, n_iterations=fqe_iterations, seed=seed % 2**31)
            inputs = learned_inputs(
                data, candidates, q_function=q_kind, fqe=fqe, kernel=kernel, bandwidth=bandwidth, seed=seed,
                ground_truth=None if truth is None else truth.values, ground_truth_se=None if truth is None else truth.standard_errors,
            )  # fmt: skip
            stage("estimate" + (f" ({interval} intervals)" if interval else ""))
            table = evaluate_table(data, inputs, named, interval=interval, alpha=alpha, n_bootstrap=n_bootstrap, seed=seed)
        print_estimate_table(
            table, truth, f"{dataset}: {data.n_trajectories} trajectories on {data.info.task}, behavior {data.info.behavior_policy}"
        )
        found = _recommend(data, inputs, table, truth)
        _finish(table, truth)
        _report(data, table, truth, found)

    def _evaluate_given(data: Any, q_kind: str, named: list[str] | None) -> None:
        """--action-dist: candidates read as probabilities on the logged steps."""
        from opelab.ope import FQEConfig, evaluate as evaluate_table
        from opelab.pipeline import learned_inputs
        from opelab.ope.diagnostics import overlap_diagnostics
        from opelab.policies.given import ActionDistributionError, read_action_dist

        for flag, used in (
            ("--policy", bool(policy)), ("--stream", stream), ("--truth-rollouts", truth_rollouts > 0),
            ("--head", head is not None), ("--epsilon", bool(epsilon)), ("--temperature", bool(temperature)), ("--sigma", bool(sigma)),
        ):  # fmt: skip
            if used:
                raise CLIError(f"{flag}: expected without --action-dist (the candidates are the table's columns), found both")
        if not data.info.action_space.is_discrete:
            raise CLIError("--action-dist: expected a dataset with discrete actions, found continuous ones")
        try:
            candidates = read_action_dist(action_dist, data)
        except ActionDistributionError as error:
            raise CLIError(f"--action-dist: {error}") from None
        _check_memory(data, len(candidates), n_bootstrap if interval == "bootstrap" else 0, memory_limit)
        with Stages() as stage:
            stage(f"inputs ({q_kind.replace('_', ' ')})")
            fqe = FQEConfig(n_steps=fqe_steps, n_iterations=fqe_iterations, seed=seed % 2**31)
            inputs = learned_inputs(data, candidates, q_function=q_kind, fqe=fqe, seed=seed)
            stage("estimate" + (f" ({interval} intervals)" if interval else ""))
            table = evaluate_table(data, inputs, named, interval=interval, alpha=alpha, n_bootstrap=n_bootstrap, seed=seed)
        print_estimate_table(
            table, None, f"{dataset}: {data.n_trajectories} trajectories on {data.info.task}, behavior {data.info.behavior_policy}, {action_dist.name}"
        )
        print_overlap(overlap_diagnostics(data, inputs))
        found = _recommend(data, inputs, table)
        _finish(table, None)
        _report(data, table, None, found)

    def _recommend(data: Any, inputs: Any, table: Any, truth: Any = None) -> Any:
        """With --recommend (or --report-dir without truth, by cross-validation): the recommendation, printed."""
        method = recommend or ("cv" if report_dir is not None and truth is None else None)
        if method is None:
            return None
        from opelab.select import recommend_estimator

        with Stages() as stage:
            stage(f"recommendation ({method}, estimated from the logs)")
            try:
                found = recommend_estimator(data, inputs, list(table.estimator_names), method=method, seed=seed)
            except ValueError as error:  # RecommendError, and the methods' own checks (PasifError, ...)
                flag = "--recommend" if recommend else "--report-dir (its estimated assessment, by cross-validation)"
                raise CLIError(f"{flag}: {error}") from None
        print_recommendation(found)
        return found

    def _report(data: Any, table: Any, truth: Any, found: Any) -> None:
        """With --report-dir: the results folder and its report.html."""
        if report_dir is None:
            return
        from opelab.report import write_report
        from opelab.report.results import evaluation_report, save_task_report

        try:
            report = evaluation_report(
                data, table, estimated=found,
                true_values=None if truth is None else truth.values, true_se=None if truth is None else truth.standard_errors,
            )  # fmt: skip
        except ValueError as error:
            raise CLIError(f"--report-dir: {error}") from None
        report_dir.mkdir(exist_ok=True)
        save_task_report(report, report_dir)
        path = write_report([report], report_dir / "report.html", title=f"opelab evaluate: {dataset.name}")
        console.print(line("Results and report written to ", (str(report_dir), "bold"), f" ({path.name}, {path.stat().st_size / 1024:,.0f} KiB)"))

    def _evaluate_stream(source: Any, candidates: list[Any], named: list[str] | None, q_kind: str) -> None:
        from opelab.data.chunks import head
        from opelab.ope import FQEConfig, fit_fqe
        from opelab.ope.fqe import fqe_action_values
        from opelab.ope.inputs import evaluation_action_probs
        from opelab.ope.streaming import evaluate_stream
        from opelab.resources import DataSize, check_memory, dataset_bytes, inputs_bytes

        limit = None if memory_limit is None else int(memory_limit * 2**30)
        space = source.info.action_space
        size = DataSize(1, 1, int(np.prod(source.obs_shape, dtype=np.int64)), space.n_actions, 1)
        chunk = DataSize(chunk_steps, 1, size.obs_size, space.n_actions, 1)  # a chunk's padded steps, as one-step rows
        check_memory(inputs_bytes(chunk, len(candidates)), f"a chunk of {chunk_steps} steps for {len(candidates)} policies", limit=limit)
        with Stages() as stage:
            truth = _truth(stage, source.info, source.horizon, candidates)
            q_model = None
            if q_kind == "neural_fqe":
                n_fit = min(fit_trajectories, source.n_trajectories)
                sample_size = DataSize(n_fit, source.horizon, size.obs_size, space.n_actions, 1)
                check_memory(
                    inputs_bytes(sample_size, len(candidates)),
                    f"fitting FQE on {n_fit} trajectories padded to horizon {source.horizon} (lower --fit-trajectories or use --q-function none)",
                    limit=limit,
                )  # fmt: skip
                stage(f"neural FQE on the first {n_fit} trajectories")
                sample = head(source, n_fit, horizon=source.horizon)
                fqe = FQEConfig(n_steps=fqe_steps, n_iterations=fqe_iterations, seed=seed % 2**31)
                q_model = fqe_action_values(fit_fqe(sample, evaluation_action_probs(sample, candidates), config=fqe))
                del sample
            where = "on Ray" if executor == "ray" else "locally"
            stage(f"estimate, streamed {where} in chunks of ≤ {chunk_steps} steps" + (f" ({interval} intervals)" if interval else ""))
            table = evaluate_stream(
                source, candidates, q_model, named, interval=interval, alpha=alpha, n_bootstrap=n_bootstrap, seed=seed,
                max_cells=chunk_steps, executor=executor, address=address, memory_limit=limit,
            )  # fmt: skip
        resampling = " (Poisson bootstrap)" if interval == "bootstrap" else ""
        print_estimate_table(
            table, truth,
            f"{dataset}: {source.n_trajectories} trajectories on {source.info.task}, behavior {source.info.behavior_policy}, streamed{resampling}",
        )  # fmt: skip
        _finish(table, truth)

    def _truth(stage: Any, info: Any, horizon: int, candidates: list[Any]) -> Any:
        """With --truth-rollouts: each candidate's on-policy value ± its standard error; else None."""
        if not truth_rollouts:
            return None
        from opelab.envs.rollouts import rollout_values

        task_obj = learned_task(task or info.task, horizon, info.gamma, option="--task")
        stage(f"ground truth ({truth_rollouts} rollouts of each of {len(candidates)} candidates on {task_obj.name})")
        return rollout_values(task_obj, candidates, n_episodes=truth_rollouts, seed=seed)

    def _finish(table: Any, truth: Any) -> None:
        if truth is not None and len(table.policy_names) >= 2:
            from opelab.select import assess

            print_assessment(assess(table, truth.values))
        if out is not None:
            frame = table.to_pandas()
            if truth is not None:
                frame["true_value"] = np.tile(truth.values, len(table.estimator_names))
                frame["true_se"] = np.tile(truth.standard_errors, len(table.estimator_names))
            frame.to_csv(out, index=False)
            console.print(line("Estimates written to ", (str(out), "bold")))

    guarded(debug, body)


def _check_memory(data: object, n_policies: int, n_bootstrap: int, limit_gib: float | None) -> None:
    """Refuse, before any work, an evaluation whose estimated memory exceeds what is available (or --memory-limit)."""
    from opelab.resources import check_memory, evaluate_bytes

    limit = None if limit_gib is None else int(limit_gib * 2**30)
    required = evaluate_bytes(data, n_policies, n_bootstrap=n_bootstrap)
    check_memory(required, f"evaluating {n_policies} policies (--stream evaluates a chunk at a time)", limit=limit)
