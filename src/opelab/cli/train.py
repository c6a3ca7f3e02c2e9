"""``opelab train``: a base policy trained online or offline (d3rlpy), saved in opelab's safe format."""

from __future__ import annotations

from pathlib import Path

import typer

from opelab.cli.app import app
from opelab.cli.models import deterministic, hidden_sizes, learned_task, read_dataset
from opelab.cli.output import CLIError, Stages, console, guarded, line, writable

ONLINE_ALGORITHMS = {"discrete": "double_dqn", "continuous": "sac"}
OFFLINE_ALGORITHMS = {"discrete": "discrete_cql", "continuous": "iql"}


@app.command()
def train(
    task: str = typer.Argument(..., help="A registered task, e.g. cartpole, pendulum, hopper, rtb (gymnasium ids work too)."),
    algorithm: str | None = typer.Option(
        None,
        help="Online: double_dqn or sac (default by action type). Offline: discrete_cql (default), discrete_bcq, "
        "iql (default), cql, td3_plus_bc, bcq.",
    ),
    steps: int | None = typer.Option(
        None, min=1, max=10**8, help="Environment steps online (default 20000), gradient steps offline (10000)."
    ),
    seed: int = typer.Option(0, min=0, help="Seed of the training."),
    hidden: str = typer.Option("64,64", help="Hidden layer sizes of every network."),
    horizon: int | None = typer.Option(None, min=1, max=10**6, help="Online: episode horizon (default: the task's)."),
    offline: Path | None = typer.Option(None, help="Train offline on this logged dataset (Parquet) instead of online."),
    return_weighting: bool = typer.Option(False, help="Offline: return-weighted trajectory resampling (Hong et al., 2023)."),
    eval_episodes: int = typer.Option(
        20, min=0, max=10**5, help="Rollouts of the trained policy's own action rule to report its value (0: none)."
    ),
    out: Path = typer.Option(..., help="The model file to write (opelab's format: weights in safetensors + JSON), e.g. model.safetensors."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Train a base policy on a task, online (DoubleDQN / SAC) or offline from logged data, and save it."""
    guarded(debug, lambda: _train(task, algorithm, steps, seed, hidden, horizon, offline, return_weighting, eval_episodes, out, force))


def _train(
    task_name: str, algorithm: str | None, steps: int | None, seed: int, hidden: str, horizon: int | None,
    offline: Path | None, return_weighting: bool, eval_episodes: int, out: Path, force: bool,
) -> None:  # fmt: skip
    import time

    from opelab.learn import train_offline, train_online
    from opelab.learn.algorithms import ALGORITHMS

    sizes = hidden_sizes(hidden)
    writable(out, force)
    if eval_episodes == 1:
        raise CLIError("--eval-episodes: expected 0 or at least 2 (for a standard error), found 1")
    dataset = None
    if offline is not None:
        if horizon is not None:
            raise CLIError(f"--horizon: expected none with --offline (the dataset's horizon is used), found {horizon}")
        dataset = read_dataset(offline, "--offline")
        task = learned_task(task_name, dataset.horizon, dataset.gamma)
        if dataset.info.task != task.name:
            raise CLIError(f"--offline: expected a dataset logged on {task.name}, found one on {dataset.info.task!r} ({offline})")
    else:
        if return_weighting:
            raise CLIError("--return-weighting: expected --offline DATASET with it, found online training")
        task = learned_task(task_name, horizon)
    kind = task.action_space.type
    algorithm = algorithm or (OFFLINE_ALGORITHMS if dataset is not None else ONLINE_ALGORITHMS)[kind]
    if algorithm not in ALGORITHMS:
        raise CLIError(f"--algorithm: expected one of {list(ALGORITHMS)}, found {algorithm!r}")
    start = time.perf_counter()
    with Stages() as stage:
        if dataset is None:
            n = steps or 20_000
            stage(f"train {algorithm} online on {task.name} ({n} steps, horizon {task.horizon})")
            try:
                model = train_online(task, algorithm, n_steps=n, seed=seed, hidden=sizes, name=out.stem)
            except ValueError as exc:  # the library names its argument; here the buffer's size is --steps
                prefix = "n_steps (the buffer's size): "
                if not str(exc).startswith(prefix):
                    raise
                raise CLIError(f"--steps: {str(exc)[len(prefix):]} (online training learns from a buffer of its steps)") from None
        else:
            n = steps or 10_000
            stage(f"train {algorithm} offline on {offline} ({dataset.n_transitions} steps logged, {n} gradient steps)")
            weighting = "return" if return_weighting else None
            model = train_offline(dataset, algorithm, n_steps=n, hidden=sizes, seed=seed, trajectory_weighting=weighting, name=out.stem)
        stage(f"save {out}")
        model.save(out)
        value = None
        if eval_episodes >= 2:
            from opelab.envs.rollouts import rollout_values
            from opelab.learn import LearnedGreedyPolicy

            stage(f"evaluate its action rule ({eval_episodes} rollouts)")
            policy = LearnedGreedyPolicy(model) if model.is_discrete else deterministic(model)
            value = rollout_values(task, [policy], n_episodes=eval_episodes, seed=seed)
    text = f": {model.algorithm} {'x'.join(map(str, model.hidden))} on {task.name}, trained in {time.perf_counter() - start:.1f} s"
    if value is not None:
        text += f"; value of its action rule {value.values[0]:.3f} ± {value.standard_errors[0]:.3f} (SE, {eval_episodes} episodes)"
    console.print(line((str(out), "bold"), text))
