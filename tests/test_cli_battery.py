"""Every command, fed malformed input the way a careless or hostile user would (the way scikit-learn's
``check_estimator`` runs every estimator through the same checks).

Each case runs ``python -m opelab.cli ...`` in a subprocess, in a fresh empty working folder, and must:
exit non-zero; print no traceback (stdout or stderr); print exactly one non-empty line on stdout, starting
with ``error:`` and naming the problem (each case lists the words the line must contain); and write nothing:
its working folder stays empty and the shared input files are byte-identical afterwards. Strings holding
rich markup (``[/]``, ``[bold]``) must come back literally.

Extend ``CASES`` whenever a command or an option lands.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from opelab.cli import app


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # "{in}" is the shared inputs folder
    expect: tuple[str, ...]  # words the error line must contain ("{in}" expanded too)


def case(id: str, args: str | list[str], *expect: str) -> Case:
    return Case(id, tuple(args.split() if isinstance(args, str) else args), expect)


MARKUP = "[bold]x[/bold] [link=https://example.com]click[/link]"
DATA = "{in}/data.parquet"
RUN = "{in}/run"
DB = "{in}/results.duckdb"
NO_MODEL = "{in}/absent.safetensors"

_DATASET_FILES = {
    "missing": ("{in}/absent.parquet", "absent.parquet"),
    "folder": ("{in}/folder", "folder"),
    "empty": ("{in}/empty.parquet", "empty.parquet"),
    "random_bytes": ("{in}/random.parquet", "random.parquet"),
    "csv_text": ("{in}/table.csv", "table.csv"),
    "json_text": ("{in}/json.parquet", "json.parquet"),
    "truncated": ("{in}/truncated.parquet", "truncated.parquet"),
    "foreign_parquet": ("{in}/foreign.parquet", "foreign.parquet"),
    "meta_not_json": ("{in}/meta_not_json.parquet", "meta_not_json.parquet"),
    "meta_not_object": ("{in}/meta_list.parquet", "meta_list.parquet"),
    "meta_no_info": ("{in}/meta_no_info.parquet", "info"),
    "meta_no_task": ("{in}/meta_no_task.parquet", "task"),
    "meta_future_version": ("{in}/meta_v99.parquet", "format_version"),
    "meta_negative_horizon": ("{in}/meta_neg_h.parquet", "horizon"),
    "meta_zero_trajectories": ("{in}/meta_zero_n.parquet", "n_trajectories"),
    "meta_obs_shape": ("{in}/meta_obs_shape.parquet", "obs_shape"),
    "meta_huge_horizon": ("{in}/meta_huge_h.parquet", "memory"),
    "meta_gamma": ("{in}/meta_gamma.parquet", "gamma"),
    "bitflip_early": ("{in}/flip_early.parquet", "flip_early.parquet"),
    "bitflip_middle": ("{in}/flip_middle.parquet", "flip_middle.parquet"),
    "bitflip_late_data": ("{in}/flip_late.parquet", "flip_late.parquet"),
    "duckdb_file": ("{in}/foreign.duckdb", "foreign.duckdb"),
    "markup_path": ("{in}/[/]x.parquet", "[/]x.parquet"),
}

_MODEL_FILES = {
    "missing": (NO_MODEL, "absent.safetensors"),
    "folder": ("{in}/folder", "folder"),
    "empty": ("{in}/empty.safetensors", "empty.safetensors"),
    "random_bytes": ("{in}/random.safetensors", "random.safetensors"),
    "pickle": ("{in}/evil.d3", "pickle"),
    "json_text": ("{in}/json.parquet", "json.parquet"),
    "dataset_file": (DATA, "data.parquet"),
    "bad_header": ("{in}/bad_header.safetensors", "bad_header.safetensors"),
    "markup_path": ("{in}/[/]m.safetensors", "[/]m.safetensors"),
}

CASES: list[Case] = []

# ---- usage errors the argument parser finds (every command) ----
for command in ("demo", "report", "describe", "collect", "train", "evaluate", "benchmark", "results"):
    CASES.append(case(f"{command}-unknown-option", [command, "--no-such-option"], "--no-such-option", f"opelab {command} --help"))
for command, missing in (("report", "results"), ("describe", "dataset"), ("collect", "task"), ("train", "task"),
                         ("evaluate", "dataset"), ("benchmark", "config"), ("results", "db")):  # fmt: skip
    CASES.append(case(f"{command}-missing-argument", [command], missing))
CASES.append(case("unknown-command", "frobnicate", "frobnicate"))

# ---- demo ----
CASES += [
    case("demo-task-unknown", "demo --task nope", "task", "nope"),
    case("demo-task-markup-close", ["demo", "--task", "[/]"], "[/]"),
    case("demo-task-markup-tags", ["demo", "--task", MARKUP], MARKUP),
    case("demo-task-mathtext", ["demo", "--task", "$x^$"], "$x^$"),
    case("demo-task-continuous", "demo --task pendulum", "--task", "continuous"),
    case("demo-n-zero", "demo -n 0", "--n-trajectories"),
    case("demo-n-negative", "demo -n -5", "--n-trajectories"),
    case("demo-n-text", "demo -n abc", "--n-trajectories"),
    case("demo-n-float", "demo -n 1.5", "--n-trajectories"),
    case("demo-n-huge", "demo -n 1000000000000", "--n-trajectories"),
    case("demo-seed-negative", "demo --seed -1", "--seed"),
    case("demo-seed-text", "demo --seed x", "--seed"),
    case("demo-temperature-zero", "demo --behavior-temperature 0", "--behavior-temperature"),
    case("demo-temperature-negative", "demo --behavior-temperature -1", "--behavior-temperature"),
    case("demo-temperature-nan", "demo --behavior-temperature nan", "--behavior-temperature"),
    case("demo-temperature-inf", "demo --behavior-temperature inf", "--behavior-temperature"),
    case("demo-temperature-text", "demo --behavior-temperature warm", "--behavior-temperature"),
    case("demo-out-is-a-file", ["demo", "-n", "5", "--out", DATA], "--out", "data.parquet"),
    case("demo-out-not-empty", ["demo", "-n", "5", "--out", RUN], "--out", "--force"),
    case("demo-out-parent-missing", ["demo", "-n", "5", "--out", "missing/child"], "--out", "missing"),
    case("demo-out-markup-not-empty", ["demo", "-n", "5", "--out", "{in}/[/]dir"], "[/]dir"),
    case("demo-horizon-zero", "demo --horizon 0", "--horizon"),
    case("demo-rollouts-one", "demo --rollouts 1", "--rollouts"),
    case("demo-extra-argument", "demo extra", "extra"),
]

# ---- report ----
CASES += [
    case("report-folder-missing", ["report", "{in}/absent_run", "--out", "r.html"], "absent_run"),
    case("report-folder-is-a-file", ["report", DATA, "--out", "r.html"], "data.parquet"),
    case("report-folder-empty", ["report", "{in}/folder", "--out", "r.html"], "report.json"),
    case("report-json-invalid", ["report", "{in}/run_bad_json", "--out", "r.html"], "report.json"),
    case("report-json-not-object", ["report", "{in}/run_json_list", "--out", "r.html"], "report.json"),
    case("report-json-missing-key", ["report", "{in}/run_no_task", "--out", "r.html"], "task"),
    case("report-estimates-missing", ["report", "{in}/run_no_estimates", "--out", "r.html"], "estimates.csv"),
    case("report-estimates-columns", ["report", "{in}/run_bad_columns", "--out", "r.html"], "estimates.csv"),
    case("report-picks-ghost", ["report", "{in}/run_ghost", "--out", "r.html"], "ghost"),
    case("report-truth-all-nan", ["report", "{in}/run_nan_truth", "--out", "r.html"], "true_value"),
    case("report-out-exists", ["report", RUN, "--out", "{in}/existing.html"], "--out", "--force"),
    case("report-out-is-folder", ["report", RUN, "--out", "{in}/folder"], "--out", "folder"),
    case("report-out-parent-missing", ["report", RUN, "--out", "missing/r.html"], "--out", "missing"),
    case("report-folder-markup", ["report", "{in}/[/]run", "--out", "r.html"], "[/]run"),
    case("report-folder-markup-tags", ["report", "{in}/" + MARKUP, "--out", "r.html"], "[bold]x[/bold] [link="),
    # a benchmark store: the paper's views (its run holds SharpeRatio@2 only)
    case("report-store-k-absent", ["report", DB, "--out", "r.html"], "--k", "[2]", "found 4"),
    case("report-store-run-absent", ["report", DB, "--out", "r.html", "--k", "2", "--run", "99"], "--run", "99"),
    case("report-store-foreign", ["report", "{in}/foreign.duckdb", "--out", "r.html"], "RESULTS", "not a store", "foreign.duckdb"),
    case("report-k-with-folders", ["report", RUN, "--out", "r.html", "--k", "3"], "--k", "result folders"),
]

# what a stream (describe, evaluate --stream) says instead: it verifies each row group's digest, which binds the
# metadata, before anything would be allocated for a claimed horizon
_STREAM_WORDS = {"meta_huge_horizon": "row_group_digests"}

# ---- describe (every malformed dataset file; describe streams) ----
for name, (path, word) in _DATASET_FILES.items():
    CASES.append(case(f"describe-{name}", ["describe", path], _STREAM_WORDS.get(name, word)))

# ---- collect ----
CASES += [
    case("collect-task-unknown", "collect nope --uniform", "TASK", "nope"),
    case("collect-task-tabular", "collect gridworld --uniform", "TASK", "gridworld"),
    case("collect-task-markup", ["collect", MARKUP, "--uniform"], MARKUP),
    case("collect-no-head", "collect cartpole", "--head"),
    case("collect-head-unknown", "collect cartpole --head nope", "--head", "nope"),
    case("collect-head-continuous-on-discrete", "collect cartpole --head gaussian --sigma 0.1", "--head", "discrete"),
    case("collect-softmax-without-temperature", "collect cartpole --head softmax", "--temperature"),
    case("collect-epsilon-above-one", "collect cartpole --epsilon 1.5", "--epsilon", "1.5"),
    case("collect-epsilon-negative", "collect cartpole --epsilon -0.1", "--epsilon"),
    case("collect-temperature-zero", "collect cartpole --temperature 0", "--temperature"),
    case("collect-temperature-nan", "collect cartpole --temperature nan", "--temperature"),
    case("collect-two-levels", "collect cartpole --epsilon 0.1 --temperature 1", "--head"),
    case("collect-sigma-on-epsilon-head", "collect cartpole --head epsilon_greedy --epsilon 0.1 --sigma 1", "--sigma"),
    case("collect-uniform-with-policy", ["collect", "cartpole", "--uniform", "--policy", NO_MODEL], "--policy"),
    case("collect-uniform-with-head", "collect cartpole --uniform --head softmax", "--uniform"),
    case("collect-head-without-policy", "collect cartpole --epsilon 0.1", "--policy"),
    case("collect-n-zero", "collect cartpole --uniform -n 0", "--n-trajectories"),
    case("collect-n-huge", "collect cartpole --uniform -n 100000000000", "--n-trajectories"),
    case("collect-horizon-zero", "collect cartpole --uniform --horizon 0", "--horizon"),
    case("collect-horizon-negative", "collect cartpole --uniform --horizon -6", "--horizon"),
    case("collect-out-exists", ["collect", "cartpole", "--uniform", "--out", DATA], "--out", "--force"),
    case("collect-out-folder", ["collect", "cartpole", "--uniform", "--out", "{in}/folder"], "--out", "folder"),
    case("collect-out-parent-missing", ["collect", "cartpole", "--uniform", "--out", "missing/d.parquet"], "--out", "missing"),
    case("collect-seed-negative", "collect cartpole --uniform --seed -3", "--seed"),
    case("collect-memory", "collect cartpole --uniform -n 9000000 --horizon 1000000", "memory"),
]
for name, (path, word) in _MODEL_FILES.items():
    CASES.append(case(f"collect-policy-{name}", ["collect", "cartpole", "--epsilon", "0.1", "--policy", path, "--out", "d.parquet"], "--policy", word))

# ---- train ----
CASES += [
    case("train-task-unknown", "train nope --out m.safetensors", "TASK", "nope"),
    case("train-task-tabular", "train chain --out m.safetensors", "TASK", "chain"),
    case("train-task-markup", ["train", "[/]", "--out", "m.safetensors"], "[/]"),
    case("train-out-missing", "train cartpole", "--out"),
    case("train-out-exists", ["train", "cartpole", "--out", DATA], "--out", "--force"),
    case("train-out-folder", ["train", "cartpole", "--out", "{in}/folder"], "--out", "folder"),
    case("train-out-parent-missing", "train cartpole --out missing/m.safetensors", "--out", "missing"),
    case("train-hidden-text", "train cartpole --hidden abc --out m.safetensors", "--hidden", "abc"),
    case("train-hidden-zero", "train cartpole --hidden 64,0 --out m.safetensors", "--hidden"),
    case("train-hidden-negative", "train cartpole --hidden 64,-1 --out m.safetensors", "--hidden"),
    case("train-hidden-huge", "train cartpole --hidden 100000 --out m.safetensors", "--hidden"),
    case("train-steps-zero", "train cartpole --steps 0 --out m.safetensors", "--steps"),
    case("train-steps-huge", "train cartpole --steps 1000000000000 --out m.safetensors", "--steps"),
    case("train-horizon-zero", "train cartpole --horizon 0 --out m.safetensors", "--horizon"),
    case("train-algorithm-unknown", "train cartpole --algorithm nope --out m.safetensors", "--algorithm", "nope"),
    case("train-eval-episodes-one", "train cartpole --eval-episodes 1 --out m.safetensors", "--eval-episodes"),
    case("train-eval-episodes-negative", "train cartpole --eval-episodes -1 --out m.safetensors", "--eval-episodes"),
    case("train-return-weighting-online", "train cartpole --return-weighting --out m.safetensors", "--return-weighting"),
    case("train-offline-missing", "train cartpole --offline {in}/absent.parquet --out m.safetensors", "--offline", "absent.parquet"),
    case("train-offline-folder", "train cartpole --offline {in}/folder --out m.safetensors", "--offline", "folder"),
    case("train-offline-corrupt", "train cartpole --offline {in}/flip_middle.parquet --out m.safetensors", "flip_middle.parquet"),
    case("train-offline-with-horizon", ["train", "cartpole", "--offline", DATA, "--horizon", "5", "--out", "m.safetensors"], "--horizon"),
    case("train-offline-other-task", ["train", "cartpole", "--offline", DATA, "--out", "m.safetensors"], "--offline", "chain"),
]

# ---- evaluate ----
_EVAL = ["evaluate", DATA, "--policy", NO_MODEL]
CASES += [
    case("evaluate-policy-required", ["evaluate", DATA], "--policy"),
    case("evaluate-report-dir-is-file", [*_EVAL, "--report-dir", "{in}/existing.html"], "--report-dir", "existing.html"),
    case("evaluate-report-dir-not-empty", [*_EVAL, "--report-dir", RUN], "--report-dir", "--force"),
    case("evaluate-report-dir-stream", [*_EVAL, "--stream", "--report-dir", "out"], "--report-dir", "--stream"),
    case("evaluate-interval-unknown", [*_EVAL, "--interval", "nope"], "--interval", "nope"),
    case("evaluate-q-function-unknown", [*_EVAL, "--q-function", "nope"], "--q-function", "nope"),
    case("evaluate-kernel-unknown", [*_EVAL, "--kernel", "nope"], "--kernel", "nope"),
    case("evaluate-bandwidth-zero", [*_EVAL, "--bandwidth", "0"], "--bandwidth"),
    case("evaluate-bandwidth-nan", [*_EVAL, "--bandwidth", "nan"], "--bandwidth"),
    case("evaluate-alpha-zero", [*_EVAL, "--alpha", "0"], "--alpha"),
    case("evaluate-alpha-one", [*_EVAL, "--alpha", "1"], "--alpha"),
    case("evaluate-alpha-text", [*_EVAL, "--alpha", "x"], "--alpha"),
    case("evaluate-estimators-unknown", [*_EVAL, "--estimators", "dm,nope"], "--estimators", "nope"),
    case("evaluate-estimators-empty", [*_EVAL, "--estimators", ","], "--estimators"),
    case("evaluate-estimators-markup", [*_EVAL, "--estimators", "[/]"], "[/]"),
    case("evaluate-truth-rollouts-one", [*_EVAL, "--truth-rollouts", "1"], "--truth-rollouts"),
    case("evaluate-truth-rollouts-negative", [*_EVAL, "--truth-rollouts", "-1"], "--truth-rollouts"),
    case("evaluate-truth-rollouts-huge", [*_EVAL, "--truth-rollouts", "1000000000"], "--truth-rollouts"),
    case("evaluate-fqe-steps-zero", [*_EVAL, "--fqe-steps", "0"], "--fqe-steps"),
    case("evaluate-fqe-iterations-zero", [*_EVAL, "--fqe-iterations", "0"], "--fqe-iterations"),
    case("evaluate-seed-negative", [*_EVAL, "--seed", "-1"], "--seed"),
    case("evaluate-memory-limit-zero", [*_EVAL, "--memory-limit", "0"], "--memory-limit"),
    case("evaluate-out-exists", [*_EVAL, "--out", DATA], "--out", "--force"),
    case("evaluate-out-folder", [*_EVAL, "--out", "{in}/folder"], "--out", "folder"),
    case("evaluate-out-parent-missing", [*_EVAL, "--out", "missing/e.csv"], "--out", "missing"),
]
_GIVEN = ["evaluate", DATA, "--action-dist"]
CASES += [  # candidates given as probabilities
    case("evaluate-action-dist-missing", [*_GIVEN, "{in}/absent.parquet"], "--action-dist", "absent.parquet", "nothing"),
    case("evaluate-action-dist-folder", [*_GIVEN, "{in}/folder"], "--action-dist", "folder"),
    case("evaluate-action-dist-not-parquet", [*_GIVEN, "{in}/table.csv"], "--action-dist", "table.csv"),
    case("evaluate-action-dist-rows", [*_GIVEN, "{in}/foreign.parquet"], "--action-dist", "rows"),
    case("evaluate-action-dist-ints", [*_GIVEN, "{in}/ints_dist.parquet"], "--action-dist", "'p'", "floats"),
    case("evaluate-action-dist-sums", [*_GIVEN, "{in}/half_dist.parquet"], "--action-dist", "summing to 1"),
    case("evaluate-action-dist-with-policy", [*_GIVEN, "{in}/half_dist.parquet", "--policy", NO_MODEL], "--policy", "--action-dist"),
    case("evaluate-action-dist-truth", [*_GIVEN, "{in}/half_dist.parquet", "--truth-rollouts", "5"], "--truth-rollouts"),
]
_IMPORT = ["--out", "{in}/imported.parquet", "--action", "action", "--reward", "reward"]
CASES += [  # flat tables in (the library's malformed tables: tests/data/test_import_table.py)
    case("import-missing", ["import", "{in}/absent.csv", *_IMPORT, "--pscore", "p", "--context", "step"], "absent.csv"),
    case("import-no-pscore", ["import", "{in}/table.csv", *_IMPORT, "--context", "step"], "--pscore", "neither"),
    case("import-both-pscores", ["import", "{in}/table.csv", *_IMPORT, "--pscore", "reward", "--log-pscore", "reward", "--context", "step"], "both"),
    case("import-unknown-prefix", ["import", "{in}/table.csv", *_IMPORT, "--pscore", "reward", "--context-prefix", "obs"], "obs", "columns"),
    case("import-out-exists", ["import", "{in}/table.csv", "--out", DATA, "--action", "action", "--reward", "reward", "--pscore", "reward",
                               "--context", "step"], "--out", "--force"),  # fmt: skip
    case("import-not-a-table", ["import", "{in}/random.parquet", *_IMPORT, "--pscore", "p", "--context", "step"], "random.parquet"),
]
for name, (path, word) in _DATASET_FILES.items():
    CASES.append(case(f"evaluate-dataset-{name}", ["evaluate", path, "--policy", NO_MODEL], word))
# --stream opens the files (metadata, trajectory column) before the models, but meets the other columns' pages
# only while streaming, after the models loaded: there the missing model is the first error (describe streams
# these files to the end and names them)
_FOUND_WHILE_STREAMING = {"meta_huge_horizon", "bitflip_middle", "bitflip_late_data"}
for name, (path, word) in _DATASET_FILES.items():
    if name != "folder":  # --stream reads folders
        expect = "--policy" if name in _FOUND_WHILE_STREAMING else _STREAM_WORDS.get(name, word)
        CASES.append(case(f"evaluate-stream-{name}", ["evaluate", path, "--policy", NO_MODEL, "--stream"], expect))
CASES.append(case("evaluate-stream-empty-folder", ["evaluate", "{in}/folder", "--policy", NO_MODEL, "--stream"], "folder", "none"))
for name, (path, word) in _MODEL_FILES.items():
    CASES.append(case(f"evaluate-policy-{name}", ["evaluate", DATA, "--policy", path], "--policy", word))

# ---- benchmark (config files are written by the fixture from CONFIGS) ----
TINY = """name = "tiny"
n_datasets = 1
n_trajectories = 20
ks = [2]
estimators = ["dm", "sndr"]
"""
TASK = """
[[tasks]]
name = "chain"
candidates = { epsilons = [0.0, 0.3], temperatures = [], adversarial_epsilons = [0.5] }
"""
CONFIGS = {
    "ok": TINY + TASK,
    "big": TINY.replace("n_trajectories = 20", "n_trajectories = 1000000") + TASK,
    "no_tasks": TINY,
    "not_toml": "this is [not toml",
    "empty": "",
    "n_datasets_huge": TINY.replace("n_datasets = 1", "n_datasets = 1000000000") + TASK,
    "n_datasets_negative": TINY.replace("n_datasets = 1", "n_datasets = -2") + TASK,
    "n_datasets_text": TINY.replace("n_datasets = 1", 'n_datasets = "many"') + TASK,
    "n_trajectories_huge": TINY.replace("n_trajectories = 20", "n_trajectories = 1000000000000") + TASK,
    "n_bootstrap_huge": TINY + '[intervals]\nmethod = "bootstrap"\nn_bootstrap = 1000000000000\n' + TASK,
    "rollouts_huge": TINY + "ground_truth_rollouts = 1000000000000\n" + TASK,
    "workers_huge": TINY + "[executor]\nworkers = 1000000\n" + TASK,
    "retries_negative": TINY + "[executor]\nretries = -1\n" + TASK,
    "executor_unknown": TINY + '[executor]\nkind = "mainframe"\n' + TASK,
    "task_unknown": TINY + '\n[[tasks]]\nname = "nope"\n',
    "task_markup_close": TINY + '\n[[tasks]]\nname = "[/]"\n',
    "task_markup_tags": TINY + f'\n[[tasks]]\nname = "{MARKUP}"\n',
    "task_mathtext": TINY + '\n[[tasks]]\nname = "$x^$"\n',
    "estimator_unknown": TINY.replace('["dm", "sndr"]', '["dm", "nope"]') + TASK,
    "ks_zero": TINY.replace("ks = [2]", "ks = [0]") + TASK,
    "ks_text": TINY.replace("ks = [2]", 'ks = "two"') + TASK,
    "seed_text": TINY + 'seed = "x"\n' + TASK,
    "unknown_key": TINY + "colour = 3\n" + TASK,
    "alpha_out_of_range": TINY + '[intervals]\nmethod = "t"\nalpha = 1.5\n' + TASK,
    "imports_missing": TINY + 'imports = ["opelab_no_such_module"]\n' + TASK,
    "candidates_empty": TINY + '\n[[tasks]]\nname = "chain"\ncandidates = { epsilons = [], temperatures = [], adversarial_epsilons = [] }\n',
}
_BENCH_WORDS = {
    "no_tasks": ("[[tasks]]",),
    "not_toml": ("not_toml.toml",),
    "empty": ("empty.toml",),
    "n_datasets_huge": ("n_datasets", "1000000000"),
    "n_datasets_negative": ("n_datasets", "-2"),
    "n_datasets_text": ("n_datasets",),
    "n_trajectories_huge": ("n_trajectories",),
    "n_bootstrap_huge": ("n_bootstrap",),
    "rollouts_huge": ("ground_truth_rollouts",),
    "workers_huge": ("workers",),
    "retries_negative": ("retries",),
    "executor_unknown": ("kind", "mainframe"),
    "task_unknown": ("nope",),
    "task_markup_close": ("[/]",),
    "task_markup_tags": (MARKUP,),
    "task_mathtext": ("$x^$",),
    "estimator_unknown": ("nope",),
    "ks_zero": ("ks",),
    "ks_text": ("ks",),
    "seed_text": ("seed",),
    "unknown_key": ("colour",),
    "alpha_out_of_range": ("alpha",),
    "imports_missing": ("opelab_no_such_module",),
    "candidates_empty": ("candidates",),
}
for name, words in _BENCH_WORDS.items():
    CASES.append(case(f"benchmark-config-{name}", ["benchmark", f"{{in}}/{name}.toml", "--db", "b.duckdb"], *words))
_OK = "{in}/ok.toml"
CASES += [
    case("benchmark-config-missing", ["benchmark", "{in}/absent.toml"], "CONFIG", "absent.toml"),
    case("benchmark-config-folder", ["benchmark", "{in}/folder"], "CONFIG", "folder"),
    case("benchmark-config-binary", ["benchmark", "{in}/random.parquet"], "random.parquet"),
    case("benchmark-config-markup-path", ["benchmark", "{in}/[/]c.toml"], "[/]c.toml"),
    case("benchmark-executor-unknown", ["benchmark", _OK, "--executor", "nope", "--db", "b.duckdb"], "--executor", "nope"),
    case("benchmark-workers-zero", ["benchmark", _OK, "--workers", "0", "--db", "b.duckdb"], "--workers"),
    case("benchmark-address-local", ["benchmark", _OK, "--address", "127.0.0.1:1", "--db", "b.duckdb"], "--address"),
    case("benchmark-db-folder", ["benchmark", _OK, "--db", "{in}/folder"], "--db", "folder"),
    case("benchmark-db-parent-missing", ["benchmark", _OK, "--db", "missing/b.duckdb"], "--db", "missing"),
    case("benchmark-db-foreign-duckdb", ["benchmark", _OK, "--db", "{in}/foreign.duckdb"], "foreign.duckdb", "--db"),
    case("benchmark-db-parquet", ["benchmark", _OK, "--db", DATA], "data.parquet", "--db"),
    case("benchmark-db-random-bytes", ["benchmark", _OK, "--db", "{in}/random.parquet"], "random.parquet", "--db"),
    case("benchmark-resume-without-run", ["benchmark", _OK, "--db", "b.duckdb", "--resume"], "--resume"),
    case("benchmark-progress-file-folder", ["benchmark", _OK, "--db", "b.duckdb", "--progress-file", "{in}/folder"], "--progress-file"),
    case("benchmark-memory-limit-zero", ["benchmark", _OK, "--memory-limit", "0"], "--memory-limit"),
    case("benchmark-memory-too-small", ["benchmark", "{in}/big.toml", "--db", "b.duckdb", "--memory-limit", "0.01"], "memory", "n_trajectories"),
    case("evaluate-n-bootstrap-one", [*_EVAL, "--n-bootstrap", "1"], "--n-bootstrap"),
]

# ---- results ----
CASES += [
    case("results-db-missing", ["results", "{in}/absent.duckdb"], "DB", "absent.duckdb"),
    case("results-db-folder", ["results", "{in}/folder"], "DB", "folder"),
    case("results-db-empty", ["results", "{in}/empty.parquet"], "empty.parquet", "DB"),
    case("results-db-random-bytes", ["results", "{in}/random.parquet"], "random.parquet", "DB"),
    case("results-db-parquet", ["results", DATA], "data.parquet", "DB"),
    case("results-db-foreign-duckdb", ["results", "{in}/foreign.duckdb"], "foreign.duckdb", "DB"),
    case("results-db-markup-path", ["results", "{in}/[/]r.duckdb"], "[/]r.duckdb"),
    case("results-sql-copy", ["results", DB, "--sql", "COPY estimates TO 'copied.csv'"], "--sql"),
    case("results-sql-attach", ["results", DB, "--sql", "ATTACH 'other.duckdb' AS other"], "--sql"),
    case("results-sql-read-csv", ["results", DB, "--sql", "SELECT * FROM read_csv('{in}/table.csv')"], "--sql"),
    case("results-sql-install", ["results", DB, "--sql", "INSTALL httpfs"], "--sql"),
    case("results-sql-create", ["results", DB, "--sql", "CREATE TABLE t (x INTEGER)"], "--sql"),
    case("results-sql-syntax", ["results", DB, "--sql", "SELEC nothing"], "--sql"),
    case("results-sql-unknown-table", ["results", DB, "--sql", "SELECT * FROM nope"], "--sql", "nope"),
    case("results-run-absent", ["results", DB, "--run", "99"], "--run", "99"),
    case("results-run-zero", ["results", DB, "--run", "0"], "--run"),
    case("results-run-text", ["results", DB, "--run", "x"], "--run"),
    case("results-alpha-zero", ["results", DB, "--alpha", "0"], "--alpha"),
    case("results-n-bootstrap-zero", ["results", DB, "--n-bootstrap", "0"], "--n-bootstrap"),
    case("results-n-bootstrap-huge", ["results", DB, "--n-bootstrap", "1000000000"], "--n-bootstrap"),
    case("results-export-exists", ["results", DB, "--export", "{in}/exported"], "--export", "--force", "runs.parquet"),
    case("results-export-is-file", ["results", DB, "--export", DATA], "--export", "data.parquet"),
]

IDS = [c.id for c in CASES]
assert len(IDS) == len(set(IDS)), "case ids must be unique"


def _write_inputs(folder: Path) -> None:
    """Every file the cases read: valid ones (a dataset, a result folder, a store) and malformed ones."""
    from opelab.envs import collect, make
    from opelab.policies import UniformPolicy

    runner = CliRunner()
    task = make("chain")
    dataset = collect(task, UniformPolicy(task.n_actions), 30, seed=0)
    dataset.to_parquet(folder / "data.parquet")
    (folder / "folder").mkdir()
    (folder / "[/]dir").mkdir(parents=True)  # "[" / "]dir": the slash is a path separator
    (folder / "[/]dir" / "keep.txt").write_text("mine")
    (folder / "empty.parquet").write_bytes(b"")
    (folder / "empty.safetensors").write_bytes(b"")
    rng = __import__("numpy").random.default_rng(0)
    (folder / "random.parquet").write_bytes(rng.bytes(4096))
    (folder / "random.safetensors").write_bytes(rng.bytes(4096))
    (folder / "bad_header.safetensors").write_bytes((40).to_bytes(8, "little") + b'{"w": {"dtype": "F32", "shape": [1]}}   ')
    (folder / "table.csv").write_text("trajectory,step,action,reward\n0,0,1,1.0\n")
    (folder / "json.parquet").write_text(json.dumps({"not": "parquet"}))
    raw = (folder / "data.parquet").read_bytes()
    (folder / "truncated.parquet").write_bytes(raw[: len(raw) // 2])
    for name, position in (("flip_early", 64), ("flip_middle", len(raw) // 3), ("flip_late", len(raw) // 2)):
        flipped = bytearray(raw)
        flipped[position] ^= 0x10
        (folder / f"{name}.parquet").write_bytes(bytes(flipped))
    pd.DataFrame({"a": [1, 2, 3]}).to_parquet(folder / "foreign.parquet")
    rows, n_actions = dataset.n_transitions, dataset.action_space.n_actions
    for name, values in (("ints_dist", pa.array([1] * (rows * n_actions))), ("half_dist", pa.array([0.5 / n_actions] * (rows * n_actions)))):
        pq.write_table(pa.table({"p": pa.FixedSizeListArray.from_arrays(values, n_actions)}), folder / f"{name}.parquet")

    table = pq.read_table(folder / "data.parquet")
    meta = json.loads(table.schema.metadata[b"opelab"])

    def with_meta(name: str, value: bytes) -> None:
        pq.write_table(table.replace_schema_metadata({b"opelab": value}), folder / f"{name}.parquet")

    def edited(**changes: object) -> bytes:
        return json.dumps({**meta, **changes}).encode()

    with_meta("meta_not_json", b"{not json")
    with_meta("meta_list", b"[1, 2]")
    with_meta("meta_no_info", json.dumps({k: v for k, v in meta.items() if k != "info"}).encode())
    with_meta("meta_no_task", edited(info={k: v for k, v in meta["info"].items() if k != "task"}))
    with_meta("meta_v99", edited(format_version=99))
    with_meta("meta_neg_h", edited(horizon=-6))
    with_meta("meta_zero_n", edited(n_trajectories=0))
    with_meta("meta_obs_shape", edited(obs_shape=[3, 2]))
    with_meta("meta_huge_h", edited(horizon=10**9))
    with_meta("meta_gamma", edited(info={**meta["info"], "gamma": 7.5}))

    class Exploit:  # unpickling it would create a marker file
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return exec, (f"open({str(folder / 'PWNED')!r}, 'w').write('code ran')",)

    (folder / "evil.d3").write_bytes(pickle.dumps(Exploit()))

    import duckdb

    with duckdb.connect(str(folder / "foreign.duckdb")) as connection:
        connection.execute("CREATE TABLE users (id INTEGER, name VARCHAR); INSERT INTO users VALUES (1, 'ada')")

    for name, text in CONFIGS.items():
        (folder / f"{name}.toml").write_text(text)
    db = folder / "results.duckdb"
    assert runner.invoke(app, ["benchmark", str(folder / "ok.toml"), "--db", str(db)]).exit_code == 0
    (folder / "exported").mkdir()
    pd.DataFrame({"run_id": [1]}).to_parquet(folder / "exported" / "runs.parquet")  # an earlier export

    run = folder / "run"
    result = runner.invoke(app, ["demo", "--task", "chain", "-n", "40", "--no-report", "--out", str(run)])
    assert result.exit_code == 0, result.output
    (folder / "existing.html").write_text("<p>mine</p>")
    _broken_runs(folder, run)


def _broken_runs(folder: Path, run: Path) -> None:
    import shutil

    def copy(name: str) -> Path:
        target = folder / name
        shutil.copytree(run, target)
        return target

    (copy("run_bad_json") / "report.json").write_text("{not json")
    (copy("run_json_list") / "report.json").write_text("[1, 2]")
    target = copy("run_no_task")
    report = json.loads((target / "report.json").read_text())
    report.pop("task")
    (target / "report.json").write_text(json.dumps(report))
    (copy("run_no_estimates") / "estimates.csv").unlink()
    target = copy("run_bad_columns")
    pd.read_csv(target / "estimates.csv").drop(columns="estimate").to_csv(target / "estimates.csv", index=False)
    target = copy("run_ghost")
    picks = pd.read_csv(target / "picks.csv")
    picks["estimator"] = "ghost"
    picks.to_csv(target / "picks.csv", index=False)
    target = copy("run_nan_truth")
    for name in ("estimates.csv", "candidates.csv"):
        frame = pd.read_csv(target / name)
        if "true_value" in frame:
            frame["true_value"] = float("nan")
        frame.to_csv(target / name, index=False)


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
        if ".wal" not in p.name
    }


def _run(case_: Case, inputs: Path, work: Path) -> subprocess.CompletedProcess[str]:
    cwd = work / case_.id
    cwd.mkdir()
    args = [a.replace("{in}", str(inputs)) for a in case_.args]
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "opelab.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str], dict[str, subprocess.CompletedProcess[str]]]:
    """All cases, two at a time (this machine has two cores), against one set of input files."""
    inputs = tmp_path_factory.mktemp("battery_inputs")
    work = tmp_path_factory.mktemp("battery_work")
    _write_inputs(inputs)
    before = _fingerprint(inputs)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(zip(IDS, pool.map(lambda c: _run(c, inputs, work), CASES)))
    return inputs, work, before, outcomes


def test_the_battery_is_large_enough():
    assert len(CASES) >= 150


@pytest.mark.parametrize("case_", CASES, ids=IDS)
def test_malformed_input_gives_one_clear_line(battery, case_: Case):
    inputs, work, _, outcomes = battery
    outcome = outcomes[case_.id]
    shown = f"stdout:\n{outcome.stdout}\nstderr:\n{outcome.stderr}"
    assert outcome.returncode != 0, shown
    assert "Traceback" not in outcome.stdout and "Traceback" not in outcome.stderr, shown
    lines = [text for text in outcome.stdout.splitlines() if text.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    for word in case_.expect:
        assert word.replace("{in}", str(inputs)) in lines[0], f"expected {word!r} in the error line: {lines[0]}"
    assert not any((work / case_.id).iterdir()), f"files written: {sorted(p.name for p in (work / case_.id).iterdir())}"


def test_the_battery_changed_no_input_and_ran_no_code_from_files(battery):
    inputs, _, before, _ = battery
    assert not (inputs / "PWNED").exists(), "a pickle in a model file was executed"
    assert _fingerprint(inputs) == before
