"""Logged data: ``opelab describe`` and ``opelab collect``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

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
)
from opelab.cli.output import CLIError, Stages, console, guarded, line, writable


@app.command()
def describe(
    dataset: Path = typer.Argument(
        ..., help="A dataset written by LoggedDataset.to_parquet (e.g. a demo's dataset.parquet), or a folder of such files."
    ),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Summarise a logged dataset: size, lengths, returns, action coverage, propensities.

    Read a chunk of whole trajectories at a time (``opelab.data.describe.describe_source``), so one very long
    trajectory or many files need no padded copy of the whole dataset in memory."""

    def body() -> None:
        from opelab.data.describe import describe_source

        if not dataset.exists():
            raise CLIError(f"DATASET: expected a Parquet dataset (LoggedDataset.to_parquet, `opelab collect`), found nothing at {dataset}")
        summary = describe_source(dataset)
        table = Table(title=str(dataset), title_justify="left", box=box.SIMPLE_HEAD, show_header=False)
        table.add_column("field")
        table.add_column("value", justify="right")
        for label, value in summary.to_table():
            table.add_row(label, value)
        console.print(table)

    guarded(debug, body)


@app.command()
def collect(
    task: str = typer.Argument(..., help="A registered task, e.g. cartpole, pendulum, rtb (gymnasium ids work too)."),
    policy: Path | None = typer.Option(None, help="The base policy: a model file written by `opelab train`."),
    head: str | None = typer.Option(
        None, help="softmax, epsilon_greedy, greedy or uniform (discrete); gaussian or truncated_gaussian (continuous)."
    ),
    temperature: float | None = typer.Option(None, help="Softmax temperature over the model's Q-values."),
    epsilon: float | None = typer.Option(None, help="ε of the ε-greedy head."),
    sigma: float | None = typer.Option(None, help="Standard deviation of the Gaussian heads, in action units."),
    uniform: bool = typer.Option(False, help="Log uniformly random actions (no --policy needed)."),
    n_trajectories: int = typer.Option(1000, "--n-trajectories", "-n", min=1, max=10**7, help="Trajectories to log."),
    seed: int = typer.Option(0, min=0, help="Seed of the collection."),
    horizon: int | None = typer.Option(None, min=1, max=10**6, help="Episode horizon (default: the task's)."),
    out: Path = typer.Option(Path("dataset.parquet"), help="The Parquet file to write."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
    trust_pickle: bool = typer.Option(False, help=TRUST_PICKLE_HELP),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Log trajectories of a saved base policy under a head (with the behavior pscores) to Parquet."""

    def body() -> None:
        from opelab.envs.collect import COLLECT_BATCH, collect_to_parquet

        task_obj = learned_task(task, horizon)
        space = task_obj.action_space
        levels = {"temperature": temperature, "epsilon": epsilon, "sigma": sigma}
        chosen = head_name(head, uniform, levels, space)
        level = levels.get(HEAD_LEVEL.get(chosen, ""))
        check_level(chosen, level)
        writable(out, force)
        if chosen == "uniform":
            if policy is not None:
                raise CLIError(f"--policy: expected none with --uniform, found {policy}")
            model = None
        else:
            if policy is None:
                raise CLIError(f"--policy: expected a model file for --head {chosen}, found none")
            model = load_model(policy, trust_pickle=trust_pickle)
            check_model(model, space, f"task {task_obj.name}", policy)
        behavior = behavior_policy(model, chosen, level, space)
        _check_size(min(n_trajectories, COLLECT_BATCH), task_obj)
        with Stages() as stage:
            batches = "" if n_trajectories <= COLLECT_BATCH else f" in batches of {COLLECT_BATCH}"
            stage(f"collect {n_trajectories} trajectories on {task_obj.name} with {behavior.name}{batches}, write {out}")
            written = collect_to_parquet(task_obj, behavior, n_trajectories, seed, out)
        console.print(
            line(
                (str(out), "bold"),
                f": {written['n_trajectories']} trajectories, {written['n_transitions']} steps (horizon {written['horizon']}, "
                f"γ = {task_obj.gamma}), behavior {behavior.name}, mean discounted return {written['return_sum'] / written['n_trajectories']:.3f}",
            )
        )

    guarded(debug, body)


def _check_size(n_trajectories: int, task: object) -> None:
    """Refuse a collection whose padded arrays (of one batch) would not fit in memory (before collecting anything)."""
    from opelab.resources import check_memory, dataset_bytes

    check_memory(dataset_bytes(n_trajectories, task), f"collecting {n_trajectories} trajectories")
