"""Do the learned nuisances of a benchmark config converge at its budgets, and at which budgets do they?

For every learned task of the config and its first ``--datasets`` datasets (the benchmark's own seeds, so
the fits at the configured budget are the cells' fits, bit for bit): the nuisances the cell fits
(``opelab.ope.minimax.record_fits`` around ``build_inputs``), then neural FQE and the DICE weights again at
other budgets, with their convergence signals (``FQEFit.changes`` / ``.residual`` / ``.converged``,
``MinimaxFit.change`` / ``.trend`` / ``.residual`` / ``.converged``; definitions in those modules).

    python benchmarks/nuisance_convergence.py configs/sharpe_ratio_paper_small.toml --datasets 1
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from opelab.bench import load_config
from opelab.bench.runner import COLLECT, INPUTS, Cell, cell_seed, nuisance_frame, task_rng
from opelab.bench.tasks import GroundTruth, find_family
from opelab.ope import FQEConfig, MinimaxConfig, fit_fqe, fit_state_weights, fit_weights
from opelab.ope.inputs import evaluation_action_probs
from opelab.ope.minimax import record_fits


def fqe_targets(dataset, candidates):  # type: ignore[no-untyped-def]
    """What ``fit_fqe`` needs for these candidates: π(·|s) (discrete) or the mean actions (continuous)."""
    if dataset.action_space.is_discrete:
        return {"eval_action_probs": evaluation_action_probs(dataset, candidates)}
    obs, mask = np.asarray(dataset.observations), dataset.mask
    steps = np.broadcast_to(np.arange(dataset.horizon), mask.shape).reshape(-1)
    flat = obs.reshape(-1, *obs.shape[2:])
    return {"eval_actions": np.stack([np.asarray(p.mean(flat, steps), dtype=np.float64).reshape(*mask.shape, -1) for p in candidates])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--datasets", type=int, default=1)
    parser.add_argument("--tasks", nargs="*", default=None, help="task ids (default: every learned task)")
    parser.add_argument("--fqe-steps", type=int, nargs="*", default=[30, 100], help="Adam steps per FQE iteration to try")
    parser.add_argument("--extra-iterations", type=int, nargs="*", default=[0, 10], help="FQE iterations beyond H to try")
    parser.add_argument("--lr-schedules", nargs="*", default=["constant"], help="FQE learning-rate schedules to try (constant, cosine)")
    parser.add_argument("--minimax-steps", type=int, nargs="*", default=[300, 1500], help="DICE steps to try")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as Markdown here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    lines = ["| task | dataset | nuisance | budget | last change | trend | residual (sample) | converged | s |", "|---|---|---|---|---|---|---|---|---|"]

    def row(task_id, d, name, budget, change, trend, residual, sample, converged, seconds):  # type: ignore[no-untyped-def]
        text = (
            f"| {task_id} | {d} | {name} | {budget} | {change:.2g} | {'' if np.isnan(trend) else f'{trend:.2g}'} | "
            f"{'' if np.isnan(residual) else f'{residual:.3f} ({sample})'} | {'yes' if converged else '**no**'} | {seconds:.0f} |"
        )
        lines.append(text)
        print(text, flush=True)

    for task_config in config.tasks:
        if args.tasks and task_config.id not in args.tasks:
            continue
        family = find_family(task_config.name)
        inputs_config = task_config.inputs or config.inputs
        task = family.create(task_config, inputs_config, config.ground_truth_rollouts, seed=config.seed)
        if not hasattr(task, "inputs"):  # tabular: exact nuisances, nothing to converge
            continue
        start = time.perf_counter()
        behavior = task.behavior_policy()
        candidates = task.candidates(task_rng(config.seed, task_config.id))
        print(f"# {task_config.id}: policies trained in {time.perf_counter() - start:.0f} s", flush=True)
        for d in range(args.datasets):
            cell = Cell(task_config.id, d)
            dataset = task.collect(behavior, task_config.n_trajectories, cell_seed(config.seed, cell, COLLECT))
            seed = cell_seed(config.seed, cell, INPUTS)
            truth = GroundTruth(values=np.zeros(len(candidates)), se=np.zeros(len(candidates)), behavior_value=0.0)
            clock = time.perf_counter()
            with record_fits() as fits:  # the cell's own fits, at the configured budgets
                task.build_inputs(dataset, candidates, truth, seed)
            seconds = time.perf_counter() - clock
            for r in nuisance_frame(fits).itertuples(index=False):
                budget = f"configured: {int(r.iterations)} it × {int(r.steps)}" if r.nuisance == "fqe" else f"configured: {int(r.steps)}"
                row(task_config.id, d, r.nuisance, budget, r.last_change, r.trend, r.residual, r.residual_sample, r.converged, seconds)
            H, targets = dataset.horizon, fqe_targets(dataset, candidates)
            for schedule in args.lr_schedules:
                for steps in args.fqe_steps:
                    for extra in args.extra_iterations:
                        for holdout in (0.0, 0.1) if steps == args.fqe_steps[0] and extra == 0 and schedule == "constant" else (0.0,):
                            clock = time.perf_counter()
                            cfg = FQEConfig(n_steps=steps, n_iterations=H + extra, seed=seed % 2**31, holdout=holdout, lr_schedule=schedule)
                            fit = fit_fqe(dataset, config=cfg, **targets)
                            sample = "held-out" if fit.residual_heldout else "in-sample"
                            label = f"{H + extra} it × {steps}" + ("" if schedule == "constant" else f", {schedule} lr")
                            row(task_config.id, d, "fqe", label, fit.last_change, np.nan, fit.residual, sample, fit.converged, time.perf_counter() - clock)
            if dataset.action_space.is_discrete and inputs_config.weights not in ("auto", "none"):
                probs = targets["eval_action_probs"]
                for steps in args.minimax_steps:
                    clock = time.perf_counter()
                    cfg = MinimaxConfig(n_steps=steps, n_features=inputs_config.minimax_features, seed=seed % 2**31)
                    pair = fit_weights(dataset, probs, inputs_config.weights, cfg)
                    state = fit_state_weights(pair, dataset, cfg)
                    took = time.perf_counter() - clock
                    row(task_config.id, d, "weights", str(steps), pair.change, pair.trend, pair.residual, "in-sample", pair.converged, took)
                    row(task_config.id, d, "state_weights", str(steps), state.change, state.trend, state.residual, "", state.converged, took)
    if args.out is not None:
        header = (
            f"Command: `python {' '.join(sys.argv)}` (Python {platform.python_version()}, torch {torch.__version__}, "
            f"{platform.machine()}).\n\n"
        )
        args.out.write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
