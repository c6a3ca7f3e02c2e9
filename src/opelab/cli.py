"""The ``opelab`` command line: a thin face over the library."""

from __future__ import annotations

import datetime as _dt
import math
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="opelab",
    help="Offline decision making: logged data → candidates → off-policy evaluation → selection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.callback()
def _root() -> None:
    """Offline decision making: logged data → candidates → off-policy evaluation → selection."""


class CLIError(Exception):
    """A user-facing error: printed as one line."""


def _guarded(debug: bool, body: Callable[[], None]) -> None:
    try:
        body()
    except typer.Exit:
        raise
    except Exception as exc:  # one clear line for people; the traceback with --debug
        if debug:
            traceback.print_exc()
        else:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _fresh_out_dir(out: Path | None, force: bool) -> Path:
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(f"opelab-demo-{stamp}")
        suffix = 1
        while out.exists():
            out = Path(f"opelab-demo-{stamp}-{suffix}")
            suffix += 1
    elif out.exists() and not out.is_dir():
        raise CLIError(f"--out: expected a folder, found a file at {out}")
    elif out.exists() and any(out.iterdir()) and not force:
        raise CLIError(f"--out: {out} exists and is not empty; pass --force to overwrite its files")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.{digits}f}"
    return str(value)


# The backbone estimators plus the marginal ones of the SharpeRatio@k paper's benchmark (SAM-SNIS, SAM-SNDR).
DEMO_ESTIMATORS = ("dm", "tis", "pdis", "dr", "sntis", "snpdis", "sndr", "sam_snis", "sam_sndr")


@app.command()
def demo(
    task: str = typer.Option(
        "gridworld", help="gridworld, chain or random (tabular, exact truth), or cartpole (learned policies, rollout truth)."
    ),
    n_trajectories: int | None = typer.Option(
        None, "--n-trajectories", "-n", min=1, help="Logged trajectories (default 1000; 300 on cartpole)."
    ),
    seed: int = typer.Option(0, help="Seed of the data collection (and, on cartpole, of the training)."),
    behavior_temperature: float = typer.Option(1.0, help="Softmax temperature of the behavior policy over Q* (or Q̂)."),
    out: Path | None = typer.Option(None, help="Output folder (default: a fresh opelab-demo-* folder here)."),
    force: bool = typer.Option(False, help="Write into --out even if it holds files."),
    html_report: bool = typer.Option(True, "--report/--no-report", help="Write report.html (the slowest step)."),
    horizon: int = typer.Option(100, min=1, hidden=True, help="Learned tasks: episode horizon."),
    train_steps: int = typer.Option(3000, min=1, hidden=True, help="Learned tasks: online steps of the behavior base."),
    candidate_steps: int = typer.Option(500, min=1, hidden=True, help="Learned tasks: offline steps per candidate base."),
    fqe_steps: int = typer.Option(30, min=1, hidden=True, help="Learned tasks: Adam steps per FQE iteration."),
    rollouts: int = typer.Option(100, min=2, hidden=True, help="Learned tasks: truth rollouts per policy."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Collect data, build candidates, run every estimator against the truth, assess the estimators.

    Tabular tasks: ~10 candidates around Q*, exact truth. cartpole: a DoubleDQN behavior base trained
    online, candidates learned offline (discrete CQL), neural FQE, truth from rollouts (a few minutes).
    """
    from opelab.envs import ALIASES, REGISTRY

    def body() -> None:
        spec = REGISTRY.get(ALIASES.get(task, task))
        if spec is not None and spec.kind != "tabular":
            budget = LearnedDemoBudget(horizon, train_steps, candidate_steps, fqe_steps, rollouts)
            _learned_demo(task, n_trajectories or 300, seed, behavior_temperature, out, force, html_report, budget)
        else:
            _demo(task, n_trajectories or 1000, seed, behavior_temperature, out, force, html_report)

    _guarded(debug, body)


def _demo(
    task_name: str, n: int, seed: int, temperature: float, out: Path | None, force: bool, html_report: bool = True
) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from opelab.envs import make
    from opelab.pipeline import run_tabular
    from opelab.policies import SoftmaxPolicy, TabularQ, candidate_family

    if not temperature > 0:
        raise CLIError(f"--behavior-temperature: expected a positive number, found {temperature}")
    task = make(task_name)
    out_dir = _fresh_out_dir(out, force)
    q_star = TabularQ(task.optimal_q())
    behavior = SoftmaxPolicy(q_star, temperature, name=f"behavior(softmax{temperature:g})")
    candidates = candidate_family(q_star, temperatures=(0.2, 0.5, 1.0))

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as progress:
        bar = progress.add_task("starting", total=None)
        result = run_tabular(
            task,
            behavior,
            candidates,
            n_trajectories=n,
            seed=seed,
            estimators=DEMO_ESTIMATORS,
            interval="bootstrap",
            distributions=True,
            on_stage=lambda stage: progress.update(bar, description=stage),
        )
        progress.update(bar, description="writing the report" if html_report else "writing the results")
        report_path = _write_demo(result, out_dir, html_report)

    ds = result.dataset
    console.print(
        f"[bold]{task.name}[/]: {ds.n_trajectories} trajectories, {ds.n_transitions} steps "
        f"(horizon {ds.horizon}, γ = {ds.gamma}), behavior {behavior.name}: "
        f"true value {result.behavior_true_value:.3f}, logged mean return {result.table.behavior_value:.3f}"
    )
    _print_estimates(result)
    _print_assessment(result)
    if report_path is None:
        console.print(f"Results written to [bold]{out_dir}[/] (`opelab report {out_dir}` makes the HTML report)")
    else:
        console.print(f"Results written to [bold]{out_dir}[/]; open the report: [bold]{report_path}[/]")


def _write_demo(result: Any, out_dir: Path, html_report: bool = True) -> Path | None:
    from opelab.report import write_report
    from opelab.report.results import save_task_report, task_report

    result.dataset.to_parquet(out_dir / "dataset.parquet")
    report = task_report(result)
    save_task_report(report, out_dir)
    if not html_report:
        return None
    return write_report([report], out_dir / "report.html", title=f"opelab demo: {result.task.name}")


@app.command()
def report(
    results: list[Path] = typer.Argument(..., help="Result folders (each written by `opelab demo`)."),
    out: Path = typer.Option(Path("report.html"), help="The HTML file to write."),
    title: str = typer.Option("opelab report", help="Page title."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Write one self-contained HTML report (figures inline, works offline) from result folders."""

    def body() -> None:
        from opelab.report import write_report
        from opelab.report.results import load_task_report

        if out.exists() and not force:
            raise CLIError(f"--out: {out} exists; pass --force to overwrite it")
        path = write_report([load_task_report(folder) for folder in results], out, title=title)
        console.print(f"Report written to [bold]{path}[/] ({path.stat().st_size / 1024:,.0f} KiB)")

    _guarded(debug, body)


@app.command()
def describe(
    dataset: Path = typer.Argument(..., help="A dataset written by LoggedDataset.to_parquet (e.g. a demo's dataset.parquet)."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Summarise a logged dataset: size, lengths, returns, action coverage, propensities."""

    def body() -> None:
        from opelab.data import LoggedDataset
        from opelab.data.describe import describe as describe_dataset

        table = Table(title=str(dataset), title_justify="left", box=box.SIMPLE_HEAD, show_header=False)
        table.add_column("field")
        table.add_column("value", justify="right")
        for label, value in describe_dataset(LoggedDataset.read_parquet(dataset)).to_table():
            table.add_row(label, value)
        console.print(table)

    _guarded(debug, body)


def _compact_table(title: str, first: str, columns: list[str], first_width: int = 18) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False)
    table.add_column(first, no_wrap=True, overflow="ellipsis", min_width=min(16, first_width), max_width=first_width)
    for column in columns:  # long headers fold onto a second line; numbers fit in 6 characters
        table.add_column(column, justify="right", overflow="fold", min_width=6, max_width=6)
    return table


def _column_chunks(columns: list[str], first_width: int) -> list[list[str]]:
    """Split value columns so that each printed table fits the console (7 characters a column)."""
    per_table = max(1, (console.width - first_width - 2) // 7)
    return [columns[i : i + per_table] for i in range(0, len(columns), per_table)] or [[]]


def _print_estimates(result: Any, title: str = "Estimates vs exact value", first_width: int = 18) -> None:
    frame = result.estimates_vs_truth()
    frame = frame.rename(columns={"true_value": "truth"})
    for i, chunk in enumerate(_column_chunks(list(frame.columns), first_width)):
        table = _compact_table(title if i == 0 else "(continued)", "policy", chunk, first_width)
        for policy, row in frame[chunk].iterrows():
            table.add_row(str(policy), *(_fmt(float(v), 2) for v in row))
        console.print(table)


METRIC_LABELS = {
    "nmse": "nMSE ↓",
    "rank_correlation": "rank corr ↑",
    "regret@1": "regret@1 ↓",
    "normalized_regret@1": "nregret@1 ↓",
    "type_i": "Type I ↓",
    "type_ii": "Type II ↓",
}


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("sharpe_ratio", "SharpeRatio") + " ↑")


def _print_assessment(result: Any) -> None:
    summary = result.assessment.summary
    picks = result.assessment.picks().set_index("metric")["estimator"]
    title = f"Assessment of each estimator (J(π_b) = {result.assessment.behavior_value:.3f}, the logged mean return)"
    for i, chunk in enumerate(_column_chunks([str(name) for name in summary.index], 18)):
        table = _compact_table(title if i == 0 else "(continued)", "metric", chunk)
        for metric in summary.columns:
            cells = []
            for name in chunk:
                text = _fmt(float(summary.loc[name, metric]), 2)
                cells.append(f"[bold green]{text}[/]" if picks[metric] == name else text)
            table.add_row(_metric_label(metric), *cells)
        console.print(table)

    console.print(f"Which estimator each metric picks (green above): {_picks_sentence(picks)}.")


def _picks_sentence(picks: Any) -> str:
    """'nMSE: dm · rank corr: sndr · ... · SharpeRatio@2..10: dm ×8, tis ×1' from metric → estimator."""
    parts = []
    for metric, name in picks.items():
        if not metric.startswith("sharpe_ratio@"):
            parts.append(f"{_metric_label(metric).rstrip(' ↑↓')}: {name if isinstance(name, str) else 'none'}")
    sharpe = picks[[m for m in picks.index if m.startswith("sharpe_ratio@")]].dropna()
    if len(sharpe):
        ks = [m.split("@")[1] for m in sharpe.index]
        counts = ", ".join(f"{name} ×{count}" for name, count in sharpe.value_counts().items())
        parts.append(f"SharpeRatio@{ks[0]}..{ks[-1]}: {counts}")
    return " · ".join(parts)


# --------------------------------------------------------------------------- #
# real tasks: opelab train / collect / evaluate and `opelab demo --task cartpole`
# --------------------------------------------------------------------------- #
DISCRETE_HEADS = ("softmax", "epsilon_greedy", "greedy", "uniform")
CONTINUOUS_HEADS = ("gaussian", "truncated_gaussian")
HEAD_LEVEL = {"softmax": "temperature", "epsilon_greedy": "epsilon", "gaussian": "sigma", "truncated_gaussian": "sigma"}


class _Stages:
    """A spinner with the elapsed time while a stage runs, then one line per finished stage."""

    def __init__(self) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True)
        self.current: tuple[str, float] | None = None
        self.bar: Any = None

    def __enter__(self) -> _Stages:
        self.progress.__enter__()
        self.bar = self.progress.add_task("starting", total=None)
        return self

    def __call__(self, name: str) -> None:
        """Start stage ``name`` (and report the one before it as done)."""
        import time

        self._finish()
        self.current = (name, time.perf_counter())
        self.progress.update(self.bar, description=name)

    def _finish(self) -> None:
        import time

        if self.current is not None:
            name, start = self.current
            self.progress.console.print(f"[green]✓[/] {name} ({time.perf_counter() - start:.1f} s)", highlight=False)
            self.current = None

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self._finish()
        self.progress.__exit__(*exc)


def _learned_task(name: str, horizon: int | None = None, gamma: float | None = None, option: str = "TASK") -> Any:
    """A registered non-tabular task (gymnasium, MuJoCo or synthetic), optionally with its horizon and γ."""
    from opelab.envs import ALIASES, REGISTRY, make

    spec = REGISTRY.get(ALIASES.get(name, name))
    learned = [n for n, s in REGISTRY.items() if s.kind != "tabular"]
    if spec is None or spec.kind == "tabular":
        hint = " (tabular tasks have exact models: `opelab demo --task NAME`)" if spec is not None else ""
        raise CLIError(f"{option}: expected one of {learned}{hint}, found {name!r}")
    options: dict[str, Any] = {}
    if horizon is not None:
        options["horizon"] = horizon
    if gamma is not None:
        options["gamma"] = gamma
    return make(spec.name, **options)


def _load_model(path: Path, option: str = "--policy") -> Any:
    from opelab.learn import LearnedPolicy

    if not path.is_file():
        raise CLIError(f"{option}: expected a model file written by `opelab train` (d3rlpy format), found nothing at {path}")
    try:
        return LearnedPolicy.load(path, name=path.stem)
    except Exception as exc:  # d3rlpy raises many kinds on a file that is not its own
        raise CLIError(f"{option}: expected a model file written by `opelab train` (d3rlpy format), found {path}, unreadable: {exc}") from exc


def _check_model(model: Any, space: Any, where: str, path: Path) -> None:
    expected = f"{space.n_actions} discrete actions" if space.is_discrete else f"{space.action_dim}-dimensional continuous actions"
    found = f"{model.n_actions} discrete actions" if model.is_discrete else f"{model.action_dim}-dimensional continuous actions"
    if expected != found:
        raise CLIError(f"--policy: expected a model with {expected} ({where}), found {found} in {path}")


def _head_name(head: str | None, uniform: bool, levels: dict[str, Any], space: Any) -> str:
    """The head from --head / --uniform, or from the one level option given (--temperature → softmax, ...)."""
    heads = DISCRETE_HEADS if space.is_discrete else CONTINUOUS_HEADS
    if uniform:
        if head not in (None, "uniform"):
            raise CLIError(f"--uniform: expected no other --head with it, found --head {head}")
        head = "uniform"
    if head is None:
        given = [name for name, value in levels.items() if value is not None]
        implied = {"temperature": "softmax", "epsilon": "epsilon_greedy", "sigma": CONTINUOUS_HEADS[0]}
        if len(given) != 1:
            raise CLIError(
                f"--head: expected one of {list(heads)} (or exactly one of --temperature, --epsilon, --sigma, --uniform), "
                f"found {'none' if not given else ', '.join('--' + g for g in given)}"
            )
        head = implied[given[0]]
    if head not in heads:
        raise CLIError(f"--head: expected one of {list(heads)} for {space.type} actions, found {head!r}")
    needed = HEAD_LEVEL.get(head)
    for name, value in levels.items():
        if value is not None and name != needed:
            raise CLIError(f"--{name}: expected no --{name} with --head {head}, found {value}")
    return head


def _behavior(model: Any, head: str, level: float | None, space: Any) -> Any:
    """A saved base policy under a head, named ``<model>_<head><level>`` like the candidates of opelab.learn."""
    from opelab.learn import LearnedGreedyPolicy
    from opelab.policies import EpsilonGreedyPolicy, GaussianPolicy, SoftmaxPolicy, UniformPolicy
    from opelab.policies.continuous import TruncatedGaussianPolicy

    if head == "uniform":
        return UniformPolicy(space.n_actions, name="uniform")
    if head == "greedy":
        return EpsilonGreedyPolicy(LearnedGreedyPolicy(model), 0.0, name=f"{model.name}_greedy")
    assert level is not None
    if head == "softmax":
        return SoftmaxPolicy(model, level, name=f"{model.name}_softmax{level:g}")
    if head == "epsilon_greedy":
        return EpsilonGreedyPolicy(LearnedGreedyPolicy(model), level, name=f"{model.name}_eps{level:g}")
    if head == "gaussian":
        return GaussianPolicy(model, level, space.low, space.high, name=f"{model.name}_gauss{level:g}")
    return TruncatedGaussianPolicy(model, level, space.low, space.high, name=f"{model.name}_tgauss{level:g}")


def _check_level(head: str, level: float | None) -> None:
    option = HEAD_LEVEL.get(head)
    if option is None:
        return
    if level is None:
        raise CLIError(f"--{option}: expected a value for --head {head}, found none")
    valid = 0 <= level <= 1 if option == "epsilon" else level > 0
    if not valid or not math.isfinite(level):
        raise CLIError(f"--{option}: expected {'a number in [0, 1]' if option == 'epsilon' else 'a positive number'}, found {level}")


def _writable(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise CLIError(f"--out: {path} exists; pass --force to overwrite it")
    if path.parent != Path("") and not path.parent.is_dir():
        raise CLIError(f"--out: expected an existing folder for {path}, found none at {path.parent}")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise CLIError(f"--hidden: expected positive layer sizes like 64,64, found {text!r}")
    return sizes


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
    steps: int | None = typer.Option(None, min=1, help="Environment steps online (default 20000), gradient steps offline (10000)."),
    seed: int = typer.Option(0, help="Seed of the training."),
    hidden: str = typer.Option("64,64", help="Hidden layer sizes of every network."),
    horizon: int | None = typer.Option(None, min=1, help="Online: episode horizon (default: the task's)."),
    offline: Path | None = typer.Option(None, help="Train offline on this logged dataset (Parquet) instead of online."),
    return_weighting: bool = typer.Option(False, help="Offline: return-weighted trajectory resampling (Hong et al., 2023)."),
    eval_episodes: int = typer.Option(20, min=0, help="Rollouts of the trained policy's own action rule to report its value (0: none)."),
    out: Path = typer.Option(..., help="The model file to write (d3rlpy format, e.g. model.d3)."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Train a base policy on a task, online (DoubleDQN / SAC) or offline from logged data, and save it."""
    _guarded(debug, lambda: _train(task, algorithm, steps, seed, hidden, horizon, offline, return_weighting, eval_episodes, out, force))


def _train(
    task_name: str, algorithm: str | None, steps: int | None, seed: int, hidden: str, horizon: int | None,
    offline: Path | None, return_weighting: bool, eval_episodes: int, out: Path, force: bool,
) -> None:  # fmt: skip
    import time

    from opelab.learn import train_offline, train_online

    sizes = _hidden(hidden)
    _writable(out, force)
    dataset = None
    if offline is not None:
        if horizon is not None:
            raise CLIError(f"--horizon: expected none with --offline (the dataset's horizon is used), found {horizon}")
        dataset = _read_dataset(offline, "--offline")
        task = _learned_task(task_name, dataset.horizon, dataset.gamma)
        if dataset.info.task != task.name:
            raise CLIError(f"--offline: expected a dataset logged on {task.name}, found one on {dataset.info.task!r} ({offline})")
    else:
        if return_weighting:
            raise CLIError("--return-weighting: expected --offline DATASET with it, found online training")
        task = _learned_task(task_name, horizon)
    kind = task.action_space.type
    algorithm = algorithm or (OFFLINE_ALGORITHMS if dataset is not None else ONLINE_ALGORITHMS)[kind]
    start = time.perf_counter()
    with _Stages() as stage:
        if dataset is None:
            n = steps or 20_000
            stage(f"train {algorithm} online on {task.name} ({n} steps, horizon {task.horizon})")
            model = train_online(task, algorithm, n_steps=n, seed=seed, hidden=sizes, name=out.stem)
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
            policy = LearnedGreedyPolicy(model) if model.is_discrete else _deterministic(model)
            value = rollout_values(task, [policy], n_episodes=eval_episodes, seed=seed)
    line = f"[bold]{out}[/]: {model.algorithm} {'x'.join(map(str, model.hidden))} on {task.name}, trained in {time.perf_counter() - start:.1f} s"
    if value is not None:
        line += f"; value of its action rule {value.values[0]:.3f} ± {value.standard_errors[0]:.3f} (SE, {eval_episodes} episodes)"
    console.print(line, highlight=False)


def _deterministic(model: Any) -> Any:
    from opelab.policies.continuous import DeterministicPolicy

    return DeterministicPolicy(model, name=model.name)


def _read_dataset(path: Path, option: str = "DATASET") -> Any:
    from opelab.data import LoggedDataset

    if not path.is_file():
        raise CLIError(f"{option}: expected a Parquet dataset (LoggedDataset.to_parquet, `opelab collect`), found nothing at {path}")
    return LoggedDataset.read_parquet(path)


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
    n_trajectories: int = typer.Option(1000, "--n-trajectories", "-n", min=1, help="Trajectories to log."),
    seed: int = typer.Option(0, help="Seed of the collection."),
    horizon: int | None = typer.Option(None, min=1, help="Episode horizon (default: the task's)."),
    out: Path = typer.Option(Path("dataset.parquet"), help="The Parquet file to write."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Log trajectories of a saved base policy under a head (with the behavior pscores) to Parquet."""

    def body() -> None:
        from opelab.envs import collect as collect_data

        task_obj = _learned_task(task, horizon)
        space = task_obj.action_space
        levels = {"temperature": temperature, "epsilon": epsilon, "sigma": sigma}
        head_name = _head_name(head, uniform, levels, space)
        level = levels.get(HEAD_LEVEL.get(head_name, ""))
        _check_level(head_name, level)
        _writable(out, force)
        if head_name == "uniform":
            if policy is not None:
                raise CLIError(f"--policy: expected none with --uniform, found {policy}")
            model = None
        else:
            if policy is None:
                raise CLIError(f"--policy: expected a model file for --head {head_name}, found none")
            model = _load_model(policy)
            _check_model(model, space, f"task {task_obj.name}", policy)
        behavior = _behavior(model, head_name, level, space)
        with _Stages() as stage:
            stage(f"collect {n_trajectories} trajectories on {task_obj.name} with {behavior.name}")
            dataset = collect_data(task_obj, behavior, n_trajectories, seed)
            stage(f"write {out}")
            dataset.to_parquet(out)
        console.print(
            f"[bold]{out}[/]: {dataset.n_trajectories} trajectories, {dataset.n_transitions} steps (horizon {dataset.horizon}, "
            f"γ = {dataset.gamma}), behavior {behavior.name}, mean discounted return {dataset.mean_return():.3f}",
            highlight=False,
        )

    _guarded(debug, body)


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


@app.command()
def evaluate(
    dataset: Path = typer.Argument(..., help="A logged dataset (Parquet), e.g. from `opelab collect`."),
    policy: list[Path] = typer.Option(..., help="A candidate's base policy (model file); repeat for several."),
    head: str | None = typer.Option(
        None, help="Head of every candidate: epsilon_greedy (default, discrete), softmax, greedy; gaussian (default, continuous), truncated_gaussian."
    ),
    epsilon: list[float] | None = typer.Option(None, help="ε levels (repeat); default 0, 0.1, 0.3, 0.5."),
    temperature: list[float] | None = typer.Option(None, help="Softmax temperatures (repeat; required for softmax)."),
    sigma: list[float] | None = typer.Option(None, help="Gaussian σ levels in action units (repeat); default 0.1..1 × half the box."),
    estimators: str | None = typer.Option(None, help="Comma-separated estimators, e.g. dm,snpdis,sndr (default: every one the inputs feed)."),
    interval: str | None = typer.Option(None, help="Confidence intervals: bootstrap, t, hoeffding or bernstein."),
    alpha: float = typer.Option(0.05, help="1 − level of the intervals."),
    q_function: str = typer.Option("neural_fqe", help="Q̂: neural_fqe, mql (discrete) or none (no DM / DR)."),
    fqe_steps: int = typer.Option(100, min=1, help="Neural FQE: Adam steps per iteration."),
    fqe_iterations: int | None = typer.Option(None, min=1, help="Neural FQE: iterations (default: the horizon)."),
    kernel: str = typer.Option("gaussian", help="Continuous actions: kernel of the smoothed importance ratios."),
    bandwidth: float = typer.Option(0.1, help="Continuous actions: bandwidth in standard deviations of the logged actions."),
    truth_rollouts: int = typer.Option(0, min=0, help="On-policy rollouts per candidate for the true values and the assessment (0: none)."),
    task: str | None = typer.Option(None, help="The task for --truth-rollouts (default: the dataset's)."),
    seed: int = typer.Option(0, help="Seed of FQE, the bootstrap and the rollouts."),
    out: Path | None = typer.Option(None, help="Write the estimates (and truth) as CSV."),
    force: bool = typer.Option(False, help="Overwrite --out if it exists."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Estimate the value of saved policies under heads on a logged dataset; with rollout truth, assess the estimators."""

    def body() -> None:
        from opelab.learn import apply_heads
        from opelab.ope import FQEConfig, evaluate as evaluate_table
        from opelab.pipeline import learned_inputs

        if out is not None:
            _writable(out, force)
        if truth_rollouts == 1:
            raise CLIError("--truth-rollouts: expected 0 or at least 2 (for a standard error), found 1")
        data = _read_dataset(dataset)
        space = data.action_space
        models = [_load_model(path) for path in policy]
        for model, path in zip(models, policy):
            _check_model(model, space, f"the dataset's, {data.info.task}", path)
        stems = [m.name for m in models]
        if len(set(stems)) != len(stems):
            raise CLIError(f"--policy: expected files with distinct names (they name the candidates), found {stems}")
        levels = {"temperature": temperature or None, "epsilon": epsilon or None, "sigma": sigma or None}
        default_head = "epsilon_greedy" if space.is_discrete else "gaussian"
        chosen = head if head is not None or any(v is not None for v in levels.values()) else default_head
        head_name = _head_name(chosen, False, levels, space)
        if head_name == "uniform":
            raise CLIError("--head: expected a head around the models, found 'uniform' (it ignores them)")
        if head_name == "greedy":
            candidates = [_behavior(m, "greedy", None, space) for m in models]
        else:
            given = levels[HEAD_LEVEL[head_name]]
            for level in given or []:
                _check_level(head_name, level)
            if head_name == "softmax" and given is None:
                raise CLIError("--temperature: expected at least one temperature for --head softmax, found none")
            candidates = apply_heads(models, head_name, given)
        named = _split(estimators)
        if interval is not None and interval not in ("bootstrap", "t", "hoeffding", "bernstein"):
            raise CLIError(f"--interval: expected bootstrap, t, hoeffding or bernstein, found {interval!r}")
        truth = None
        with _Stages() as stage:
            if truth_rollouts:
                from opelab.envs.rollouts import rollout_values

                task_obj = _learned_task(task or data.info.task, data.horizon, data.gamma, option="--task")
                stage(f"ground truth ({truth_rollouts} rollouts of each of {len(candidates)} candidates on {task_obj.name})")
                truth = rollout_values(task_obj, candidates, n_episodes=truth_rollouts, seed=seed)
            stage(f"inputs ({q_function.replace('_', ' ')}{', ' + kernel + ' kernel' if not space.is_discrete else ''})")
            fqe = FQEConfig(n_steps=fqe_steps, n_iterations=fqe_iterations, seed=seed % 2**31)
            inputs = learned_inputs(
                data, candidates, q_function=q_function, fqe=fqe, kernel=kernel, bandwidth=bandwidth, seed=seed,
                ground_truth=None if truth is None else truth.values, ground_truth_se=None if truth is None else truth.standard_errors,
            )  # fmt: skip
            stage("estimate" + (f" ({interval} intervals)" if interval else ""))
            table = evaluate_table(data, inputs, named, interval=interval, alpha=alpha, seed=seed)
        _print_estimate_table(table, truth, f"{dataset}: {data.n_trajectories} trajectories on {data.info.task}, behavior {data.info.behavior_policy}")
        if truth is not None and len(candidates) >= 2:
            from opelab.select import assess

            result = _Assessed(assess(table, truth.values))
            _print_assessment(result)
        if out is not None:
            frame = table.to_pandas()
            if truth is not None:
                frame["true_value"] = np.tile(truth.values, len(table.estimator_names))
                frame["true_se"] = np.tile(truth.standard_errors, len(table.estimator_names))
            frame.to_csv(out, index=False)
            console.print(f"Estimates written to [bold]{out}[/]", highlight=False)

    _guarded(debug, body)


@dataclass(frozen=True)
class _Assessed:
    """What ``_print_assessment`` reads of a pipeline result."""

    assessment: Any


def _print_estimate_table(table: Any, truth: Any, title: str) -> None:
    """Rows: candidates; columns: the truth (± SE) when known, then each estimator (with its interval)."""
    frame = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    frame.add_column("policy", no_wrap=True)
    if truth is not None:
        frame.add_column("truth ± SE", justify="right")
    for name in table.estimator_names:
        frame.add_column(name, justify="right", overflow="fold")
    for p, policy in enumerate(table.policy_names):
        cells = [] if truth is None else [f"{_fmt(float(truth.values[p]), 2)} ± {_fmt(float(truth.standard_errors[p]), 2)}"]
        for e, _ in enumerate(table.estimator_names):
            text = _fmt(float(table.estimates[e, p]), 2)
            if table.lower is not None:
                text += f"\n[{_fmt(float(table.lower[e, p]), 1)}, {_fmt(float(table.upper[e, p]), 1)}]"
            cells.append(text)
        frame.add_row(str(policy), *cells)
    console.print(frame)
    if table.interval is not None:
        console.print(f"Intervals: {table.interval}, level {1 - (table.alpha or 0):.0%}. J(π_b) (logged mean return) = {table.behavior_value:.3f}", highlight=False)


@dataclass(frozen=True)
class LearnedDemoBudget:
    """Sizes of `opelab demo --task cartpole` (defaults: a few minutes on two cores)."""

    horizon: int = 100
    train_steps: int = 3000
    candidate_steps: int = 500
    fqe_steps: int = 30
    rollouts: int = 100


LEARNED_DEMO_ESTIMATORS = ("dm", "tis", "pdis", "dr", "sntis", "snpdis", "sndr")


def _learned_demo(
    task_name: str, n: int, seed: int, temperature: float, out: Path | None, force: bool, html_report: bool,
    budget: LearnedDemoBudget,
) -> None:  # fmt: skip
    from opelab.envs import collect as collect_data
    from opelab.learn import LearnedGreedyPolicy, candidate_policies, train_online
    from opelab.ope import FQEConfig
    from opelab.pipeline import run_learned
    from opelab.policies import EpsilonGreedyPolicy, SoftmaxPolicy, UniformPolicy

    if not temperature > 0:
        raise CLIError(f"--behavior-temperature: expected a positive number, found {temperature}")
    task = _learned_task(task_name, budget.horizon, option="--task")
    if not task.action_space.is_discrete:
        raise CLIError(f"--task: expected gridworld, chain, random or a discrete-action task such as cartpole, found {task_name!r} (continuous actions)")
    from opelab.learn.algorithms import import_d3rlpy

    import_d3rlpy()  # says which extra to install when torch or d3rlpy is missing
    out_dir = _fresh_out_dir(out, force)
    import torch

    torch.set_num_threads(1)  # small networks: one thread is as fast, and several collapse on a busy machine
    train_seed, data_seed, candidate_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(3))
    hidden = (32, 32)
    with _Stages() as stage:
        stage(f"train the behavior base online (double_dqn {'x'.join(map(str, hidden))}, {budget.train_steps} steps, horizon {task.horizon})")
        base = train_online(task, "double_dqn", n_steps=budget.train_steps, seed=train_seed, hidden=hidden, name="behavior_double_dqn")
        base.save(out_dir / "behavior.d3")
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

    ds = result.dataset
    console.print(
        f"[bold]{task.name}[/]: {ds.n_trajectories} trajectories, {ds.n_transitions} steps (horizon {ds.horizon}, γ = {ds.gamma}), "
        f"behavior {behavior.name}: rollout value {result.behavior_true_value:.3f} ± {result.behavior_true_se:.3f} (SE), "
        f"logged mean return {result.table.behavior_value:.3f}",
        highlight=False,
    )
    width = max(18, *(len(name) + 1 for name in result.table.policy_names))
    _print_estimates(result, f"Estimates vs rollout value ({budget.rollouts} episodes per policy; SE in candidates.csv)", width)
    _print_assessment(result)
    where = f"open the report: [bold]{report_path}[/]" if report_path is not None else f"`opelab report {out_dir}` makes the HTML report"
    console.print(f"Results and the behavior model (behavior.d3) written to [bold]{out_dir}[/]; {where}")


# --------------------------------------------------------------------------- #
# benchmarks: opelab benchmark / opelab results
# --------------------------------------------------------------------------- #
@app.command()
def benchmark(
    config: Path = typer.Argument(..., help="A benchmark config (TOML), e.g. configs/quick.toml."),
    resume: bool = typer.Option(False, help="Continue the latest run of this config in --db, skipping finished cells."),
    executor: str | None = typer.Option(None, help="local or ray (default: the config's executor.kind)."),
    workers: int | None = typer.Option(None, min=1, help="Worker processes / Ray CPUs (default: the config's)."),
    db: Path | None = typer.Option(None, help="The DuckDB results file (default: <config name>.duckdb here)."),
    address: str | None = typer.Option(None, help="Address of an existing Ray cluster (with --executor ray)."),
    progress_file: Path | None = typer.Option(None, help="Append one JSON line per recorded cell (for scripts)."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Run a benchmark grid (tasks × datasets) and store every estimate and metric in a DuckDB file."""

    def body() -> None:
        from opelab.bench import load_config, run_benchmark

        cfg = load_config(config)
        changes: dict[str, Any] = {}
        if executor is not None:
            if executor not in ("local", "ray"):
                raise CLIError(f"--executor: expected local or ray, found {executor!r}")
            changes["kind"] = executor
        if workers is not None:
            changes["workers"] = workers
        if address is not None:
            if (executor or cfg.executor.kind) != "ray":
                raise CLIError("--address: expected --executor ray with it, found the local executor")
            changes["address"] = address
        cfg = cfg.with_executor(**changes)
        path = db if db is not None else Path(f"{cfg.name}.duckdb")
        ex = cfg.executor
        console.print(
            f"[bold]{cfg.name}[/]: {len(cfg.tasks)} task(s) × {cfg.n_datasets} dataset(s) on {ex.kind} "
            f"({ex.workers} worker{'s' if ex.workers != 1 else ''}) → {path}",
            highlight=False,
        )
        summary = run_benchmark(cfg, path, resume=resume, progress=True, console=console, progress_file=progress_file)
        console.print(
            f"run {summary.run_id}: {summary.n_cells} cells, {summary.n_skipped} already done, {summary.n_done} done now, "
            f"{summary.n_failed} failed, in {summary.wall_s:.1f} s. Summary: `opelab results {path}`",
            highlight=False,
        )
        if summary.n_failed:
            from opelab.bench import ResultStore

            with ResultStore(path, read_only=True) as store:
                failed = store.query(
                    f"SELECT task, dataset, attempts, error FROM cells WHERE run_id = {summary.run_id} AND status = 'failed' "
                    "ORDER BY task, dataset"
                )
            for row in failed.itertuples(index=False):
                console.print(f"  failed: {row.task} dataset {row.dataset} after {row.attempts} attempt(s): {row.error}", highlight=False)
            raise CLIError(f"{summary.n_failed} cell(s) failed; fix the cause and rerun with --resume to run them again")

    _guarded(debug, body)


RESULT_METRICS = ("nmse", "rank_correlation", "regret@", "sharpe_ratio@")


def _shown_metric(metric: str) -> bool:
    return metric in RESULT_METRICS[:2] or metric.startswith(RESULT_METRICS[2:])


def _metric_order(metric: str) -> tuple[int, int]:
    """nMSE, rank correlation, regret@k by k, SharpeRatio@k by k."""
    for i, prefix in enumerate(RESULT_METRICS):
        if metric == prefix or metric.startswith(prefix) and prefix.endswith("@"):
            return i, int(metric.split("@")[1]) if "@" in metric else 0
    return len(RESULT_METRICS), 0


def _result_label(metric: str) -> str:
    from opelab.select.uncertainty import metric_direction

    name = METRIC_LABELS.get(metric, metric.replace("sharpe_ratio", "SharpeRatio")).rstrip(" ↑↓")
    return f"{name} {'↓' if metric_direction(metric) == 'lower' else '↑'}"


@app.command()
def results(
    db: Path = typer.Argument(..., help="A DuckDB results file written by `opelab benchmark`."),
    sql: str | None = typer.Option(None, help="Run this SQL query on the results and print its rows."),
    run: int | None = typer.Option(None, help="Which run to summarise (default: the latest)."),
    export: Path | None = typer.Option(None, help="Write every table as Parquet into this folder."),
    alpha: float = typer.Option(0.05, help="1 − level of the bootstrap intervals across datasets."),
    n_bootstrap: int = typer.Option(2000, min=1, help="Bootstrap resamples of the datasets."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Summaries per task and estimator (mean and bootstrap CI across datasets), SQL queries, Parquet export."""

    def body() -> None:
        from opelab.bench import ResultStore

        if not db.exists():
            raise CLIError(f"DB: expected a results file, found nothing at {db}")
        with ResultStore(db, read_only=True) as store:
            if export is not None:
                for path in store.export_parquet(export):
                    console.print(f"wrote {path}", highlight=False)
            if sql is not None:
                _print_frame(store.query(sql), sql)
            if export is None and sql is None:
                _print_results(store, run, alpha, n_bootstrap)

    _guarded(debug, body)


def _print_frame(frame: Any, title: str) -> None:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in frame.columns:
        table.add_column(str(column), justify="right" if frame[column].dtype.kind in "fiu" else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(_fmt(v.item() if hasattr(v, "item") else v, 4) for v in row))
    console.print(table)
    console.print(f"{len(frame)} row(s)")


def _print_results(store: Any, run: int | None, alpha: float, n_bootstrap: int) -> None:
    from opelab.select.uncertainty import best_estimator_table, summarize_across_datasets

    run_id = store.latest_run() if run is None else run
    runs = store.query(f"SELECT run_id, name, created_at FROM runs WHERE run_id = {int(run_id or 0)}")
    if run_id is None or runs.empty:
        raise CLIError(f"--run: expected a run in {store.path}, found {'none' if run_id is None else run_id}")
    cells = store.query(f"SELECT task, status, count(*) AS n FROM cells WHERE run_id = {run_id} GROUP BY task, status")
    console.print(f"[bold]run {run_id}[/] ({runs.name[0]}, {runs.created_at[0]:%Y-%m-%d %H:%M} UTC)", highlight=False)
    metrics = store.query(f"SELECT task, dataset, estimator, metric, value FROM metrics WHERE run_id = {run_id} ORDER BY task, dataset")
    level = f"{100 * (1 - alpha):g}%"
    for task in dict.fromkeys(metrics.task):
        frame = metrics[(metrics.task == task) & metrics.metric.map(_shown_metric)].drop(columns="task")
        done = cells[(cells.task == task) & (cells.status == "done")].n.sum()
        failed = cells[(cells.task == task) & (cells.status == "failed")].n.sum()
        summary = summarize_across_datasets(frame, alpha=alpha, n_bootstrap=n_bootstrap, seed=0)
        picks = best_estimator_table(frame, alpha=alpha, n_bootstrap=n_bootstrap, seed=0)
        title = f"{task}: mean and {level} bootstrap CI across {done} dataset(s)" + (f" ({failed} failed)" if failed else "")
        columns = sorted(dict.fromkeys(summary.metric), key=_metric_order)
        best = dict(zip(picks.metric, picks.best))
        per_table = max(1, (console.width - 18) // 16)  # 14-character value columns and their padding
        for i, chunk in enumerate([columns[j : j + per_table] for j in range(0, len(columns), per_table)]):
            table = Table(title=title if i == 0 else "(continued)", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
            table.add_column("estimator", no_wrap=True)
            for metric in chunk:
                table.add_column(_result_label(metric), justify="right", min_width=14)
            for estimator in dict.fromkeys(summary.estimator):
                cells_text = []
                for metric in chunk:
                    row = summary[(summary.estimator == estimator) & (summary.metric == metric)].iloc[0]
                    text = f"{_fmt(float(row['mean']))}\n[{_fmt(float(row['lower']), 2)}, {_fmt(float(row['upper']), 2)}]"
                    cells_text.append(f"[bold green]{text}[/]" if best.get(metric) == estimator else text)
                table.add_row(str(estimator), *cells_text)
            console.print(table)
        parts = [
            f"{_result_label(r.metric).rstrip(' ↑↓')}: {r.best if isinstance(r.best, str) else 'none'}{' (separated)' if r.separated else ''}"
            for r in sorted(picks.itertuples(index=False), key=lambda r: _metric_order(r.metric))
        ]
        console.print(f"Picks (best mean; 'separated' = beats the runner-up beyond noise): {' · '.join(parts)}", highlight=False)


def main() -> None:
    app(prog_name="opelab")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
