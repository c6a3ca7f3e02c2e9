"""The HTML report: built from a small run, self-contained, and checked in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from opelab.envs import gridworld
from opelab.pipeline import run_tabular
from opelab.policies import SoftmaxPolicy, TabularQ, candidate_family
from opelab.report import recommendation, render_report, write_report
from opelab.report.results import load_task_report, save_task_report, task_report


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory) -> Path:
    task = gridworld(horizon=10)
    q = TabularQ(task.optimal_q())
    result = run_tabular(
        task,
        SoftmaxPolicy(q, 1.0, name="behavior"),
        candidate_family(q, epsilons=(0.0, 0.3), temperatures=(1.0,), adversarial_epsilons=(0.3,)),
        n_trajectories=150,
        seed=1,
        estimators=["dm", "pdis", "sndr", "sam_snis"],
        interval="t",
        distributions=True,
    )
    folder = tmp_path_factory.mktemp("run")
    report = task_report(result, safety_threshold=-0.5)
    save_task_report(report, folder)
    write_report([report], folder / "report.html", title="test report")
    return folder


def test_report_round_trips_through_its_folder(report_folder):
    loaded = load_task_report(report_folder)
    assert loaded.task == "gridworld" and loaded.safety_threshold == -0.5
    assert list(loaded.assessment.index) == ["dm", "pdis", "sndr", "sam_snis"]
    assert loaded.cdfs is not None and loaded.true_cdfs is not None and loaded.true_risk is not None
    best, sentence = recommendation(loaded)
    assert best in loaded.assessment.index and sentence.startswith(f"On gridworld, trust {best}")
    assert "Deploying its top-3 gives true values from" in sentence
    assert render_report([loaded]).count("<figure") == 8  # 7 per task + the agreement matrix


def test_report_is_self_contained(report_folder):
    page = (report_folder / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # No network fetches: no external src/href, no CSS imports or url() pointing outside the file.
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page)
    assert "@import" not in page and not re.search(r"url\(\s*['\"]?https?:", page)
    assert page.count("<svg") == 8 and "<script src" not in page


def test_missing_results_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="report.json"):
        load_task_report(tmp_path)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _headless(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    try:
        return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def dom_attributes(page: Path) -> dict[str, str]:
    """The ``<body data-*>`` attributes of ``page`` after headless Chromium ran its script (figures laid out,
    script errors; ``opelab.report.html``); skips the test when no Chromium is installed."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium found: install Debian's `chromium` package (.ci/run does) to run this check")
    dom = _headless(browser, "--virtual-time-budget=10000", "--dump-dom", page.resolve().as_uri())
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, f"no <body> in the dumped DOM; stderr: {dom.stderr[-500:]}"
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))


def test_report_renders_in_headless_chromium(report_folder, tmp_path):
    attributes = dom_attributes(report_folder / "report.html")
    browser = _chromium()
    url = (report_folder / "report.html").resolve().as_uri()
    assert attributes.get("errors") == "", f"script errors: {attributes.get('errors')}"
    assert int(attributes["figures"]) == 8
    assert attributes["sized-figures"] == attributes["figures"], "a figure was laid out with zero size"

    shot = tmp_path / "report.png"
    _headless(browser, "--window-size=1280,2400", f"--screenshot={shot}", url)
    assert shot.is_file(), "Chromium wrote no screenshot"
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    non_white = (pixels < 0.95).any(axis=-1).mean()
    assert non_white > 0.05, f"the screenshot is nearly blank ({non_white:.1%} non-white pixels)"
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
