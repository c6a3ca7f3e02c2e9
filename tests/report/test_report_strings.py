"""User strings (policy names, estimator labels, task names, titles) are shown literally: never parsed as
matplotlib mathtext or LaTeX in figures, always escaped in the HTML page."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from report_cases import small_report

from opelab.report import plots, render_report

MATH = ("$x^$", r"a\b$c$", r"$\frac{1}{0}$")  # invalid mathtext, a backslash, valid mathtext


def test_mathtext_in_a_plain_matplotlib_figure_is_an_error() -> None:
    """What the figures guard against: the default rcParams parse "$x^$" and fail when drawing."""
    fig = Figure()
    with matplotlib.rc_context({"text.parse_math": True}):
        fig.text(0.5, 0.5, MATH[0])
        with pytest.raises(ValueError):
            fig.savefig(io.BytesIO(), format="png")


def _texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if "$" in t.get_text() or "\\" in t.get_text()]


def _check_literal(fig: Figure, expected: set[str]) -> None:
    texts = _texts(fig)
    assert expected <= {t.get_text() for t in texts}, {t.get_text() for t in texts}
    for text in fig.findobj(Text):
        assert not text.get_parse_math() and not text.get_usetex()
        assert text._preprocess_math(text.get_text()) == (text.get_text(), False)  # drawn as the characters given
    assert plots.figure_to_svg(fig).startswith("<svg")  # draws without a mathtext error
    assert plots.figure_to_png_base64(fig)


def test_policy_and_estimator_names_are_literal_in_every_figure() -> None:
    estimates = pd.DataFrame(
        {"policy": list(MATH) * 2, "estimator": ["$e^$"] * 3 + ["a\\b"] * 3, "estimate": np.arange(6.0)}
    )
    truth = pd.Series([0.0, 1.0, 2.0], index=list(MATH))
    _check_literal(plots.plot_estimate_bars(estimates, truth), set(MATH) | {"$e^$"})
    _check_literal(plots.plot_estimates_vs_truth(estimates, truth), {"$e^$"})
    topk = pd.DataFrame(
        [(e, k, 1.0, 0.0, 0.5, 0.3, 1.0 + k) for e in ("$e^$", "a\\b") for k in (2, 3)],
        columns=["estimator", "k", "best", "worst", "mean", "std", "sharpe_ratio"],
    )
    _check_literal(plots.plot_sharpe_ratio(topk, n_boot=10), {"$e^$"})
    _check_literal(plots.plot_topk_statistics(topk, 0.1, None), {"$e^$"})
    picks = pd.DataFrame({"task": "$t^$", "dataset": "0", "metric": ["nmse", "$m^$"], "estimator": ["$e^$", "a\\b"]})
    _check_literal(plots.plot_agreement_matrix(picks), {"$e^$"})
    cdfs = pd.DataFrame({"estimator": "$e^$", "policy": np.repeat(MATH, 3), "y": np.tile([0.0, 1.0, 2.0], 3), "cdf": np.tile([0.2, 0.6, 1.0], 3)})
    _check_literal(plots.plot_return_cdfs(cdfs, None), {"$e^$"})


def test_a_whole_report_with_mathtext_names_renders() -> None:
    page = render_report([small_report(policies=MATH, estimators=("$e^$", "a\\b"), task="$t^$")], title="$T^$ report")
    assert page.count("<svg") == 5  # 4 figures + the agreement matrix
    assert "$T^$ report" in page and "trust $e^$" in page


def test_user_strings_are_escaped_in_the_page() -> None:
    script = "<script>alert('{}')</script>"
    report = small_report(
        policies=(script.format("policy"), "b&b", '"quoted"'),
        estimators=(script.format("estimator"), "dm"),
        task=script.format("task"),
    )
    page = render_report([report], title=script.format("title"))
    assert page.count("<script") == 1 and page.count("</script") == 1  # the page's own sortable-table script
    assert "<script>alert" not in page
    for what in ("policy", "estimator", "task", "title"):
        assert f"&lt;script&gt;alert(&#x27;{what}&#x27;)&lt;/script&gt;" in page
    assert "b&amp;b" in page and "&quot;quoted&quot;" in page
