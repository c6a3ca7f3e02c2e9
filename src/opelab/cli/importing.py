"""Logged data from elsewhere: ``opelab import`` turns a flat CSV or Parquet table into a dataset file."""

from __future__ import annotations

from pathlib import Path

import typer

from opelab.cli.app import app
from opelab.cli.output import CLIError, console, guarded, line, writable


def _names(option: str, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",")]
    if not all(names):
        raise CLIError(f"{option}: expected comma-separated column names, found {value!r}")
    return names


@app.command("import")
def import_table(
    table: Path = typer.Argument(..., help="A CSV (.csv) or Parquet (.parquet) table with one row per logged step."),
    out: Path = typer.Option(Path("dataset.parquet"), help="The Parquet dataset to write (LoggedDataset.to_parquet)."),
    action: str = typer.Option(..., help="Column of the logged actions: integers 0..n_actions-1."),
    reward: str = typer.Option(..., help="Column of the rewards."),
    pscore: str | None = typer.Option(None, help="Column of the behavior propensities π_b(a|x) in (0, 1]."),
    log_pscore: str | None = typer.Option(None, "--log-pscore", help="Column of log π_b(a|x) instead of --pscore."),
    context: str | None = typer.Option(None, help="Comma-separated context columns: the observation of each step."),
    context_prefix: str | None = typer.Option(None, "--context-prefix", help="Every column whose name starts with this is a context column."),
    trajectory: str | None = typer.Option(None, help="Column of trajectory ids (with --step; without both, every row is a one-step round)."),
    step: str | None = typer.Option(None, help="Column of the step within its trajectory: 0..T-1."),
    position: str | None = typer.Option(None, help="Column of the slot each action was shown in (0-based)."),
    done: str | None = typer.Option(None, help="Column of 0/1 terminal flags (on a trajectory's last step)."),
    n_actions: int | None = typer.Option(None, "--n-actions", min=1, help="Number of actions (default: the largest action + 1)."),
    gamma: float = typer.Option(1.0, min=0.0, max=1.0, help="Discount factor of the task."),
    task: str | None = typer.Option(None, help="Task name recorded in the dataset (default: the table's file name)."),
    behavior_policy: str = typer.Option("unknown", "--behavior-policy", help="Name of the policy that logged the data."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Import a flat CSV or Parquet table of logged steps (one row per step) and write it as a Parquet dataset.

    The columns are named by the options (``opelab.data.dataset_from_table``); every malformed table is one
    ``error:`` line naming the column and the first row at fault."""

    def body() -> None:
        from opelab.data.tables import dataset_from_table

        if not table.exists():
            raise CLIError(f"TABLE: expected a CSV or Parquet file, found nothing at {table}")
        if (pscore is None) == (log_pscore is None):
            found = "both" if pscore is not None else "neither"
            raise CLIError(f"--pscore, --log-pscore: expected exactly one propensity column, found {found}")
        if (context is None) == (context_prefix is None):
            found = "both" if context is not None else "neither"
            raise CLIError(f"--context, --context-prefix: expected the context columns or a prefix (one of the two), found {found}")
        writable(out, force)
        dataset = dataset_from_table(
            table, action=action, reward=reward, pscore=pscore, log_pscore=log_pscore, context=_names("--context", context),
            context_prefix=context_prefix, trajectory=trajectory, step=step, position=position, done=done,
            n_actions=n_actions, gamma=gamma, task=task, behavior_policy=behavior_policy,
        )  # fmt: skip
        dataset.to_parquet(out)
        extra = f", {dataset.info.len_list} positions" if dataset.positions is not None else ""
        console.print(
            line(
                (str(out), "bold"),
                f": {dataset.n_trajectories} trajectories, {dataset.n_transitions} steps (horizon {dataset.horizon}, "
                f"γ = {dataset.gamma}), {dataset.action_space.n_actions} actions{extra}, {dataset.obs_shape[0]} context columns, "
                f"mean return {dataset.mean_return():.3f}, from {table}",
            ),
            soft_wrap=True,
        )

    guarded(debug, body)
