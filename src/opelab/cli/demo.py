"""``opelab demo``: the whole loop on a tabular task or a synthetic bandit / slate (exact truth), or on CartPole
(learned policies)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer

from opelab.cli.app import app
from opelab.cli.models import learned_task
from opelab.cli.output import CLIError, Stages, console, fresh_out_dir, guarded, line
from opelab.cli.tables import print_assessment, print_estimates

# The backbone estimators plus the marginal ones of the SharpeRatio@k paper's benchmark (SAM-SNIS, SAM-SNDR).
DEMO_ESTIMATORS = ("dm", "tis", "pdis", "dr", "sntis", "snpdis", "sndr", "sam_snis", "sam_sndr")
LEARNED_DEMO_ESTIMATORS = ("dm", "tis", "pdis", "dr", "sntis", "snpdis", "sndr")
# Bandits and slates run the defaults for their kind of data (``default_estimators``: dm, dr, sndr, ipw, snipw
# on one-step logs; dm, sips, iips, rips, cascade_dr on ranking logs). Until those IS estimators are
# registered, their trajectory forms stand in: on a one-step log tis = ipw and sntis = snipw; on a ranking log
# tis = sips, pdis = rips, sam_is (with slot-marginal weights) = iips, dr (with the reward-to-go Q) = cascade_dr.
BANDIT_FALLBACK = ("dm", "tis", "sntis", "dr", "sndr")
SLATE_FALLBACK = ("dm", "tis", "pdis", "sam_is", "dr", "sntis", "snpdis", "sndr")


@dataclass(frozen=True)
class LearnedDemoBudget:
    """Sizes of `opelab demo --task cartpole` (defaults: a few minutes on two cores)."""

    horizon: int = 100
    train_steps: int = 3000
    candidate_steps: int = 500
    fqe_steps: int = 30
    rollouts: int = 100


@app.command()
def demo(
    task: str = typer.Option(
        "gridworld",
        help="gridworld, chain or random (tabular), bandit, bandit_continuous, bandit_embeddings, bandit_positions, slate or "
        "slate_cascade (synthetic bandits; all exact truth), or cartpole (learned policies, rollout truth).",
    ),
    n_trajectories: int | None = typer.Option(
        None, "--n-trajectories", "-n", min=1, max=10**6, help="Logged trajectories (default 1000; 300 on cartpole)."
    ),
    seed: int = typer.Option(0, min=0, help="Seed of the data collection (and, on cartpole, of the training)."),
    behavior_temperature: float = typer.Option(1.0, help="Softmax temperature of the behavior policy over Q* (or Q̂)."),
    out: Path | None = typer.Option(None, help="Output folder (default: a fresh opelab-demo-* folder here)."),
    force: bool = typer.Option(False, help="Write into --out even if it holds files."),
    html_report: bool = typer.Option(True, "--report/--no-report", help="Write report.html (the slowest step)."),
    horizon: int = typer.Option(100, min=1, max=10**4, hidden=True, help="Learned tasks: episode horizon."),
    train_steps: int = typer.Option(3000, min=1, max=10**7, hidden=True, help="Learned tasks: online steps of the behavior base."),
    candidate_steps: int = typer.Option(500, min=1, max=10**7, hidden=True, help="Learned tasks: offline steps per candidate base."),
    fqe_steps: int = typer.Option(30, min=1, max=10**5, hidden=True, help="Learned tasks: Adam steps per FQE iteration."),
    rollouts: int = typer.Option(100, min=2, max=10**5, hidden=True, help="Learned tasks: truth rollouts per policy."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Collect data, build candidates, run every estimator against the truth, assess the estimators.

    Tabular tasks: ~10 candidates around Q*, exact truth. Bandits and slates: heads over the true reward
    scores, exact truth, a ridge-regression reward model (slates: the true one). cartpole: a DoubleDQN behavior
    base trained online, candidates learned offline (discrete CQL), neural FQE, truth from rollouts (a few minutes).
    """
    from opelab.envs import ALIASES, BANDIT_TASKS, REGISTRY, SLATE_TASKS

    def body() -> None:
        spec = REGISTRY.get(ALIASES.get(task, task))
        if spec is not None and (spec.name in BANDIT_TASKS or spec.name in SLATE_TASKS):
            _bandit_demo(spec.name, n_trajectories or 1000, seed, behavior_temperature, out, force, html_report)
        elif spec is not None and spec.kind != "tabular":
            budget = LearnedDemoBudget(horizon, train_steps, candidate_steps, fqe_steps, rollouts)
            _learned_demo(task, n_trajectories or 300, seed, behavior_temperature, out, force, html_report, budget)
        else:
            _demo(task, n_trajectories or 1000, seed, behavior_temperature, out, force, html_report)

    guarded(debug, body)


def _check_temperature(temperature: float) -> None:
    if not (temperature > 0 and np.isfinite(temperature)):
        raise CLIError(f"--behavior-temperature: expected a positive number, found {temperature}")


def _demo(
    task_name: str, n: int, seed: int, temperature: float, out: Path | None, force: bool, html_report: bool = True
) -> None:
    from opelab.envs import make
    from opelab.pipeline import run_tabular
    from opelab.policies import SoftmaxPolicy, TabularQ, candidate_family

    _check_temperature(temperature)
    task = make(task_name)
    out_dir = fresh_out_dir(out, force)
    q_star = TabularQ(task.optimal_q())
    behavior = SoftmaxPolicy(q_star, temperature, name=f"behavior(softmax{temperature:g})")
    candidates = candidate_family(q_star, temperatures=(0.2, 0.5, 1.0))

    with Stages() as stage:
        result = run_tabular(
            task,
            behavior,
            candidates,
            n_trajectories=n,
            seed=seed,
            estimators=DEMO_ESTIMATORS,
            interval="bootstrap",
            distributions=True,
            on_stage=stage,
        )
        stage("write the report" if html_report else "write the results")
        report_path = _write_demo(result, out_dir, html_report)

    _print_exact(task.name, result, behavior.name, out_dir, report_path)


def _bandit_demo(
    task_name: str, n: int, seed: int, temperature: float, out: Path | None, force: bool, html_report: bool = True
) -> None:
    """The loop on a synthetic bandit or slate of ``opelab.envs.bandit``: behavior softmax(f / τ) over the true
    reward scores f (Plackett–Luce for slates), the task's candidates, exact truth (finite sums), and as reward
    model a per-action ridge regression on the logged data (fast; misspecified for binary rewards, so DM is
    biased and DR corrects). Slates use the true reward-to-go instead (there is no fitted slate model here), so
    their DM is nearly exact. Bandits also estimate the reward's distribution against its exact law."""
    from opelab.envs import SLATE_TASKS, bandit_inputs, make, slate_inputs
    from opelab.ope import ESTIMATORS, evaluate, evaluate_cdf
    from opelab.pipeline import PipelineResult
    from opelab.select import assess

    _check_temperature(temperature)
    task = make(task_name)
    out_dir = fresh_out_dir(out, force)
    slate = task_name in SLATE_TASKS
    behavior = task.behavior_policy(beta=1.0 / temperature, name=f"behavior({'plackett_luce' if slate else 'softmax'}{temperature:g})")
    candidates = task.candidates() if slate else task.candidates(temperatures=(0.2, 0.5, 1.0))
    if slate:
        estimators = None if "sips" in ESTIMATORS else SLATE_FALLBACK
    else:
        estimators = None if "ipw" in ESTIMATORS else BANDIT_FALLBACK
    with Stages() as stage:
        stage("collect")
        dataset = task.collect(behavior, n, seed)
        stage("ground truth (exact)")
        truth = task.policy_values(candidates)
        stage("inputs (true reward-to-go)" if slate else "inputs (ridge-regression reward model)")
        if slate:
            inputs = slate_inputs(task, dataset, candidates, q_model="true", ground_truth=truth)
        else:
            inputs = bandit_inputs(task, dataset, candidates, q_model="regression", ground_truth=truth)
        stage("estimate")
        table = evaluate(dataset, inputs, estimators, interval="bootstrap", n_bootstrap=200, seed=seed)
        cdf_table = true_distributions = None
        if not slate:
            stage("return distributions")
            cdf_table = evaluate_cdf(dataset, inputs)
            true_distributions = [task.return_distribution(p) for p in candidates]
        stage("assess")
        result = PipelineResult(
            task=task, dataset=dataset, inputs=inputs, table=table, true_values=truth,
            behavior_true_value=task.policy_value(behavior), assessment=assess(table, truth), cdf_table=cdf_table,
            true_distributions=true_distributions,
        )  # fmt: skip
        stage("write the report" if html_report else "write the results")
        report_path = _write_demo(result, out_dir, html_report)

    _print_exact(task.name, result, behavior.name, out_dir, report_path)


def _print_exact(task: str, result: Any, behavior: str, out_dir: Path, report_path: Path | None) -> None:
    """What a demo with exact truth prints: the summary line, estimates vs truth, the assessment, the files."""
    _print_summary(task, result, behavior, f"true value {result.behavior_true_value:.3f}")
    print_estimates(result)
    print_assessment(result.assessment)
    _print_written(out_dir, report_path)


def _print_summary(task: str, result: Any, behavior: str, truth: str) -> None:
    """One line: the task, the dataset's sizes, the behavior policy, its true value and its logged mean return."""
    ds = result.dataset
    console.print(
        line(
            (task, "bold"),
            f": {ds.n_trajectories} trajectories, {ds.n_transitions} steps (horizon {ds.horizon}, γ = {ds.gamma}), "
            f"behavior {behavior}: {truth}, logged mean return {result.table.behavior_value:.3f}",
        )
    )


def _print_written(out_dir: Path, report_path: Path | None, what: str = "Results") -> None:
    if report_path is None:
        console.print(line(f"{what} written to ", (str(out_dir), "bold"), f" (`opelab report {out_dir}` makes the HTML report)"))
    else:
        console.print(line(f"{what} written to ", (str(out_dir), "bold"), "; open the report: ", (str(report_path), "bold")))


def _write_demo(result: Any, out_dir: Path, html_report: bool = True) -> Path | None:
    from opelab.report import write_report
    from opelab.report.results import save_task_report, task_report

    result.dataset.to_parquet(out_dir / "dataset.parquet")
    report = task_report(result, estimated=_estimated_assessment(result))
    save_task_report(report, out_dir)
    if not html_report:
        return None
    return write_report([report], out_dir / "report.html", title=f"opelab demo: {result.task.name}")


def _learned_demo(
    task_name: str, n: int, seed: int, temperature: float, out: Path | None, force: bool, html_report: bool,
    budget: LearnedDemoBudget,
) -> None:  # fmt: skip
    from opelab.envs import collect as collect_data
    from opelab.learn import LearnedGreedyPolicy, candidate_policies, train_online
    from opelab.ope import FQEConfig
    from opelab.pipeline import run_learned
    from opelab.policies import EpsilonGreedyPolicy, SoftmaxPolicy, UniformPolicy

    _check_temperature(temperature)
    task = learned_task(task_name, budget.horizon, option="--task")
    if not task.action_space.is_discrete:
        raise CLIError(f"--task: expected gridworld, chain, random or a discrete-action task such as cartpole, found {task_name!r} (continuous actions)")
    from opelab.learn.algorithms import import_d3rlpy

    import_d3rlpy()  # says which extra to install when torch or d3rlpy is missing
    out_dir = fresh_out_dir(out, force)
    import torch

    torch.set_num_threads(1)  # small networks: one thread is as fast, and several collapse on a busy machine
    train_seed, data_seed, candidate_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
    hidden = (32, 32)
    with Stages() as stage:
        stage(f"train the behavior base online (double_dqn {'x'.join(map(str, hidden))}, {budget.train_steps} steps, horizon {task.horizon})")
        base = train_online(task, "double_dqn", n_steps=budget.train_steps, seed=train_seed, hidden=hidden, name="behavior_double_dqn")
        base.save(out_dir / "behavior.safetensors")
        behavior = SoftmaxPolicy(base, temperature, name=f"behavior(softmax{temperature:g})")
        stage(f"learn candidates offline (discrete_cql 32x32 and 64x64, {budget.candidate_steps} steps each, on {n} trajectories of their own)")
        train_data = collect_data(task, behavior, n, data_seed)
        learned = candidate_policies(
            train_data, algorithms=["discrete_cql"], hidden_sizes=[(32, 32), (64, 64)], noise_levels=[0.0, 0.2, 0.5],
            n_steps=budget.candidate_steps, seed=candidate_seed,
        )  # fmt: skip
        candidates = [*learned, EpsilonGreedyPolicy(LearnedGreedyPolicy(base), 0.0, name="online_double_dqn_greedy"), UniformPolicy(task.action_space.n_actions)]
        result = run_learned(
            task, behavior, candidates, n_trajectories=n, seed=seed, estimators=LEARNED_DEMO_ESTIMATORS, interval="bootstrap",
            n_rollouts=budget.rollouts, fqe=FQEConfig(n_steps=budget.fqe_steps, seed=seed % 2**31), on_stage=stage,
        )  # fmt: skip
        stage("write the report" if html_report else "write the results")
        report_path = _write_demo(result, out_dir, html_report)

    truth = f"rollout value {result.behavior_true_value:.3f} ± {result.behavior_true_se:.3f} (SE)"
    _print_summary(task.name, result, behavior.name, truth)
    width = max(18, *(len(name) + 1 for name in result.table.policy_names))
    print_estimates(result, f"Estimates vs rollout value ({budget.rollouts} episodes per policy; SE in candidates.csv)", width)
    print_assessment(result.assessment)
    _print_written(out_dir, report_path, "Results and the behavior model (behavior.safetensors)")


def _estimated_assessment(result: Any) -> Any:
    """What a user without the truth would see: the estimators' assessment estimated from the logs by
    cross-validation (``opelab.select.recommend_estimator``), for the report to show beside the true one; None
    where it cannot run (e.g. fewer than 2 candidates)."""
    from opelab.select import recommend_estimator

    inputs = getattr(result, "inputs", None)
    if inputs is None:
        return None
    try:
        return recommend_estimator(result.dataset, inputs, list(result.table.estimator_names), method="cv", seed=0)
    except ValueError:
        return None
