"""Report figures render on small tidy tables, edge cases included, and export self-contained.

Warnings are errors (pytest ``filterwarnings = error``), and every figure is actually drawn
with the Agg canvas, so layout/legend/NaN warnings raised at draw time would fail these tests.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from math import erf, sqrt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.text import Text

from opelab.report.plots import (
    DEFAULT_MAX_PANELS,
    LINESTYLES,
    MARKERS,
    OKABE_ITO,
    estimator_styles,
    figure_to_png_base64,
    figure_to_svg,
    plot_agreement_matrix,
    plot_cvar_curves,
    plot_estimate_bars,
    plot_estimates_vs_truth,
    plot_interquartile_ranges,
    plot_return_cdfs,
    plot_sharpe_ratio,
    plot_topk_statistics,
)

ESTIMATORS = ("DR", "FQE", "IS", "WIS")
POLICIES = ("pi_a", "pi_b", "pi_c")

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _pixels(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3]


def _hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _packed(rgb: np.ndarray) -> np.ndarray:
    """One integer per pixel (fast distinct-colour counting)."""
    flat = rgb.reshape(-1, 3).astype(np.uint32)
    return (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]


def _palette_colours_present(rgb: np.ndarray, min_pixels: int = 5) -> int:
    """How many Okabe–Ito colours (black excluded: text is black) cover ≥ ``min_pixels`` pixels."""
    values, counts = np.unique(_packed(rgb), return_counts=True)
    present = dict(zip(values.tolist(), counts.tolist()))
    wanted = [(r << 16) | (g << 8) | b for r, g, b in (_hex_rgb(c) for c in OKABE_ITO[:-1])]
    return sum(present.get(w, 0) >= min_pixels for w in wanted)


def _assert_rendered(fig: Figure, *, n_estimators: int = 0) -> np.ndarray:
    """Drawn without warnings, not blank, and one palette colour per estimator (up to 7)."""
    assert isinstance(fig, Figure)
    rgb = _pixels(fig)
    non_white = (rgb < 245).any(axis=-1).mean()
    assert non_white > 0.01, f"only {non_white:.2%} of the pixels are not white"
    if n_estimators >= 2:
        distinct = len(np.unique(_packed(rgb)))
        assert distinct > 3
        assert _palette_colours_present(rgb) >= min(n_estimators, 7)
    return rgb


def _texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def _legend_labels(fig: Figure) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def _visible_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.axison]


def _edge_triangles(fig: Figure) -> int:
    return sum(
        len(line.get_xdata())
        for ax in fig.axes
        for line in ax.lines
        if line.get_marker() in ("^", "v", ">", "<")
    )


# ---------------------------------------------------------------------------------------------
# synthetic tables
# ---------------------------------------------------------------------------------------------


def _topk(n_datasets: int = 4, estimators: tuple[str, ...] = ESTIMATORS, ks: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for d in range(n_datasets):
        for e in estimators:
            for k in range(1, ks + 1):
                best = 2.0 + rng.normal(0.0, 0.3)
                std = np.nan if k == 1 else rng.uniform(0.1, 0.5)
                rows.append(
                    {
                        "dataset": f"d{d}",
                        "estimator": e,
                        "k": k,
                        "best": best,
                        "worst": best - 0.2 * k,
                        "mean": best - 0.1 * k,
                        "std": std,
                        "sharpe_ratio": np.nan if k == 1 else max(best - 1.0, 0.0) / std,
                    }
                )
    return pd.DataFrame(rows)


def _truth(policies: tuple[str, ...] = POLICIES) -> pd.Series:
    return pd.Series(np.linspace(-1.0, 1.5, len(policies)), index=list(policies))


def _estimates(policies: tuple[str, ...] = POLICIES, intervals: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    truth = _truth(policies)
    rows = []
    for p in policies:
        for e in ESTIMATORS:
            v = truth[p] + rng.normal(0.0, 0.4)
            row = {"policy": p, "estimator": e, "estimate": v}
            if intervals:
                row.update(lower=v - 0.3, upper=v + 0.4)
            rows.append(row)
    return pd.DataFrame(rows)


def _cdfs(policies: tuple[str, ...] = POLICIES) -> tuple[pd.DataFrame, pd.DataFrame]:
    ys = np.linspace(-3.0, 3.0, 25)
    est, true = [], []
    for i, p in enumerate(policies):
        mu = 0.3 * i
        true += [{"policy": p, "y": y, "cdf": 0.5 * (1 + erf((y - mu) / sqrt(2)))} for y in ys]
        for j, e in enumerate(ESTIMATORS):
            shift = 0.2 * (j - 1.5)
            est += [
                {"estimator": e, "policy": p, "y": y, "cdf": 0.5 * (1 + erf((y - mu - shift) / sqrt(2)))} for y in ys
            ]
    return pd.DataFrame(est), pd.DataFrame(true)


def _cvar(policies: tuple[str, ...] = POLICIES) -> tuple[pd.DataFrame, pd.DataFrame]:
    alphas = np.linspace(0.05, 1.0, 12)
    est = [
        {"estimator": e, "policy": p, "alpha": a, "cvar": i - 1.5 * (1 - a) + 0.2 * j}
        for i, p in enumerate(policies)
        for j, e in enumerate(ESTIMATORS)
        for a in alphas
    ]
    true = [{"policy": p, "alpha": a, "cvar": i - 1.5 * (1 - a)} for i, p in enumerate(policies) for a in alphas]
    return pd.DataFrame(est), pd.DataFrame(true)


def _quartiles(policies: tuple[str, ...] = POLICIES) -> tuple[pd.DataFrame, pd.DataFrame]:
    est = [
        {"estimator": e, "policy": p, "q25": i - 0.6 + 0.1 * j, "q50": i + 0.1 * j, "q75": i + 0.7 + 0.1 * j}
        for i, p in enumerate(policies)
        for j, e in enumerate(ESTIMATORS)
    ]
    true = [{"policy": p, "q25": i - 0.6, "q50": float(i), "q75": i + 0.6} for i, p in enumerate(policies)]
    return pd.DataFrame(est), pd.DataFrame(true)


def _picks() -> pd.DataFrame:
    rows = []
    for t, task in enumerate(("hopper", "walker")):
        for d, dataset in enumerate(("medium", "expert")):
            for m, metric in enumerate(("nMSE", "rank correlation", "regret@1", "SharpeRatio@3")):
                pick = ESTIMATORS[(t + d + m) % 4]
                rows.append({"task": task, "dataset": dataset, "metric": metric, "estimator": pick})
    rows[5]["estimator"] = None
    rows[6]["estimator"] = np.nan
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# styles
# ---------------------------------------------------------------------------------------------


def test_styles_are_stable_distinct_and_grayscale_safe() -> None:
    names = [f"est{i}" for i in range(8)]
    styles = estimator_styles(names)
    assert styles == estimator_styles(names)
    assert list(styles) == names
    assert [s.color for s in styles.values()] == list(OKABE_ITO)
    # Grayscale: the first 8 also differ in marker, and consecutive ones in line style.
    assert len({s.marker for s in styles.values()}) == 8
    assert all(styles[a].linestyle != styles[b].linestyle for a, b in zip(names, names[1:]))
    assert all(s.marker not in ("^", "v", "<", ">") for s in styles.values())  # reserved for ±inf
    color, marker, linestyle = styles["est0"]  # a plain 3-tuple
    assert (color, marker, linestyle) == (OKABE_ITO[0], MARKERS[0], LINESTYLES[0])


def test_styles_deduplicate_and_depend_only_on_order() -> None:
    assert list(estimator_styles(["b", "a", "b", 3])) == ["b", "a", "3"]
    assert estimator_styles(["a", "b"])["a"] == estimator_styles(["a", "c", "b"])["a"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=64, unique=True))
def test_styles_distinct_for_up_to_64_names(names: list[str]) -> None:
    styles = estimator_styles(names)
    assert list(styles) == names
    assert len(set(styles.values())) == len(names)
    assert all(s.color in OKABE_ITO and s.marker in MARKERS and s.linestyle in LINESTYLES for s in styles.values())


def test_figures_share_the_style_of_an_estimator() -> None:
    """The same estimator set gets the same colours whatever the row order."""
    topk = _topk(n_datasets=1)
    shuffled = topk.sample(frac=1.0, random_state=3)
    colors = [[line.get_color() for line in plot_sharpe_ratio(t).axes[0].lines] for t in (topk, shuffled)]
    assert colors[0] == colors[1]
    styles = estimator_styles(["WIS", "IS"])
    fig = plot_sharpe_ratio(topk[topk["estimator"].isin(["IS", "WIS"])], styles=styles)
    assert {line.get_color() for line in fig.axes[0].lines} == {styles["IS"].color, styles["WIS"].color}
    with pytest.raises(ValueError, match="'DR'"):
        plot_sharpe_ratio(topk, styles=styles)


# ---------------------------------------------------------------------------------------------
# 1. SharpeRatio@k
# ---------------------------------------------------------------------------------------------


def test_sharpe_ratio_several_datasets_has_deterministic_bootstrap_band() -> None:
    topk = _topk(n_datasets=4)
    fig = plot_sharpe_ratio(topk)
    _assert_rendered(fig, n_estimators=4)
    assert "mean over 4 datasets" in _texts(fig)
    assert "bootstrap" in _texts(fig)
    assert set(_legend_labels(fig)) == set(ESTIMATORS)
    bands = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(bands) == 4
    again = [c for c in plot_sharpe_ratio(topk).axes[0].collections if isinstance(c, PolyCollection)]
    for a, b in zip(bands, again):
        assert all(np.array_equal(p.vertices, q.vertices) for p, q in zip(a.get_paths(), b.get_paths()))


def test_sharpe_ratio_single_dataset_with_nan_and_infinite_values() -> None:
    topk = _topk(n_datasets=1)
    assert topk.loc[topk["k"] == 1, "sharpe_ratio"].isna().all()  # SharpeRatio@1 is NaN
    topk.loc[(topk["estimator"] == "DR") & (topk["k"] == 3), "sharpe_ratio"] = np.inf
    topk.loc[(topk["estimator"] == "IS") & (topk["k"] == 4), "sharpe_ratio"] = -np.inf
    fig = plot_sharpe_ratio(topk)
    _assert_rendered(fig, n_estimators=4)
    assert _edge_triangles(fig) == 2
    text = _texts(fig)
    assert "2 infinite value(s)" in text and "4 missing (NaN)" in text
    assert "SharpeRatio@k" in text and "k (number of deployed candidates)" in text
    assert not any(np.isinf(line.get_ydata()).any() for line in fig.axes[0].lines)


def test_sharpe_ratio_two_datasets_min_max_band_and_infinity_left_out() -> None:
    topk = _topk(n_datasets=2)
    topk.loc[(topk["dataset"] == "d0") & (topk["k"] == 2) & (topk["estimator"] == "FQE"), "sharpe_ratio"] = np.inf
    fig = plot_sharpe_ratio(topk)
    _assert_rendered(fig, n_estimators=4)
    assert "1 infinite value(s) left out of the means" in _texts(fig).replace("\n", " ")


def test_sharpe_ratio_one_estimator_without_dataset_column_and_all_nan() -> None:
    one = pd.DataFrame({"estimator": ["IS"], "k": [1], "sharpe_ratio": [np.nan]})
    fig = plot_sharpe_ratio(one)
    _assert_rendered(fig)
    assert "no finite SharpeRatio@k values" in _texts(fig)
    fig = plot_sharpe_ratio(pd.DataFrame({"estimator": ["IS", "IS"], "k": [1, 2], "sharpe_ratio": [np.nan, 0.7]}))
    assert "1 missing (NaN)" in _texts(fig)


def test_sharpe_ratio_empty_table_says_so() -> None:
    fig = plot_sharpe_ratio(pd.DataFrame(columns=["estimator", "k", "sharpe_ratio"]))
    _assert_rendered(fig)
    assert "no SharpeRatio@k values" in _texts(fig)


# ---------------------------------------------------------------------------------------------
# 2. top-k statistics
# ---------------------------------------------------------------------------------------------


def test_topk_statistics_with_behavior_and_safety_lines() -> None:
    fig = plot_topk_statistics(_topk(n_datasets=1), behavior_value=1.5, safety_threshold=0.5)
    _assert_rendered(fig, n_estimators=4)
    assert len(_visible_axes(fig)) == 4
    labels = _legend_labels(fig)
    assert "behavior policy value" in labels and "safety threshold" in labels
    for ax in fig.axes[:3]:
        assert {line.get_linestyle() for line in ax.lines if line.get_ydata()[0] in (1.5, 0.5)} >= {"--", ":"}
    text = _texts(fig)
    for name in ("best@k", "worst@k", "mean@k", "std@k"):
        assert name in text


def test_topk_statistics_single_estimator_several_datasets_no_threshold() -> None:
    fig = plot_topk_statistics(_topk(n_datasets=3, estimators=("IS",)), behavior_value=1.0)
    assert len(_visible_axes(fig)) == 4  # drawn in the test above; building must not warn either
    assert "safety threshold" not in _legend_labels(fig)
    assert "mean over datasets" in _texts(fig)


# ---------------------------------------------------------------------------------------------
# 3./4. estimates against truth
# ---------------------------------------------------------------------------------------------


def test_estimates_vs_truth_with_intervals_and_infinite_estimate() -> None:
    est = _estimates()
    est.loc[0, "estimate"] = np.inf
    est.loc[1, "upper"] = np.inf
    fig = plot_estimates_vs_truth(est, _truth())
    _assert_rendered(fig, n_estimators=4)
    axes = _visible_axes(fig)
    assert len(axes) == 4
    assert len({ax.get_xlim() for ax in axes}) == 1 and len({ax.get_ylim() for ax in axes}) == 1
    assert axes[0].get_xlim() == axes[0].get_ylim()
    assert _edge_triangles(fig) == 1
    assert "interval (lower–upper)" in _legend_labels(fig)


def test_estimates_vs_truth_one_policy_without_intervals_and_unknown_truth() -> None:
    est = _estimates(policies=("only",), intervals=False)
    est = est[est["estimator"].isin(["DR", "IS"])]
    fig = plot_estimates_vs_truth(pd.concat([est, est.assign(policy="no_truth")]), _truth(("only",)))
    _assert_rendered(fig, n_estimators=2)
    assert "without a finite true value" in _texts(fig)
    assert "interval (lower–upper)" not in _legend_labels(fig)
    fig = plot_estimates_vs_truth(est, pd.Series(dtype=float))
    _assert_rendered(fig)
    assert "no estimates with a true value" in _texts(fig)


def test_estimate_bars_with_and_without_intervals() -> None:
    est = _estimates()
    est.loc[2, "estimate"] = -np.inf
    est.loc[3, "estimate"] = np.nan
    fig = plot_estimate_bars(est, _truth())
    _assert_rendered(fig, n_estimators=4)
    labels = _legend_labels(fig)
    assert "true value" in labels and "interval (lower–upper)" in labels
    assert _edge_triangles(fig) == 1
    fig = plot_estimate_bars(_estimates(intervals=False), None)
    _assert_rendered(fig, n_estimators=4)
    assert "true value" not in _legend_labels(fig)


def test_estimate_bars_one_policy_one_estimator_and_empty() -> None:
    one = pd.DataFrame({"policy": [7], "estimator": ["IS"], "estimate": [0.4]})
    fig = plot_estimate_bars(one, pd.Series({7: 0.5}))
    _assert_rendered(fig)
    assert "true value" in _legend_labels(fig)
    fig = plot_estimate_bars(pd.DataFrame(), _truth())
    _assert_rendered(fig)
    assert "no estimates" in _texts(fig)


def test_half_an_interval_is_an_error() -> None:
    with pytest.raises(ValueError, match="'upper'"):
        plot_estimate_bars(_estimates().drop(columns="upper"), _truth())


# ---------------------------------------------------------------------------------------------
# 5./6. CDFs and CVaR
# ---------------------------------------------------------------------------------------------


def test_return_cdfs_with_truth() -> None:
    est, true = _cdfs(POLICIES[:2])
    fig = plot_return_cdfs(est, true)
    _assert_rendered(fig, n_estimators=4)
    assert len(_visible_axes(fig)) == 2
    assert "true CDF" in _legend_labels(fig)


def test_return_cdfs_without_estimates() -> None:
    _, true = _cdfs(POLICIES[:1])
    fig = plot_return_cdfs(pd.DataFrame(), true)
    _assert_rendered(fig)
    assert "no CDF estimates" in _texts(fig)
    assert len(_visible_axes(fig)) == 1
    fig = plot_return_cdfs(None)
    _assert_rendered(fig)
    assert "no CDF estimates" in _texts(fig)


def test_return_cdfs_panel_cap_and_policy_choice() -> None:
    assert DEFAULT_MAX_PANELS == 12
    est, true = _cdfs()
    fig = plot_return_cdfs(est, true, max_panels=2)
    assert [ax.get_title() for ax in _visible_axes(fig)] == ["pi_a", "pi_b"]
    assert "showing the first 2 of 3 policies" in _texts(fig)
    fig = plot_return_cdfs(est, policies=["pi_c"])
    _assert_rendered(fig, n_estimators=4)
    assert [ax.get_title() for ax in _visible_axes(fig)] == ["pi_c"]
    with pytest.raises(ValueError, match="'nope'"):
        plot_return_cdfs(est, policies=["nope"])


def test_cvar_curves_with_and_without_truth() -> None:
    est, true = _cvar(POLICIES[:2])
    fig = plot_cvar_curves(est, true)
    _assert_rendered(fig, n_estimators=4)
    assert "true CVaR" in _legend_labels(fig)
    one = est[est["policy"] == "pi_a"].copy()
    one.loc[one.index[0], "cvar"] = -np.inf
    fig = plot_cvar_curves(one)
    assert len(_visible_axes(fig)) == 1 and _edge_triangles(fig) == 1
    assert "true CVaR" not in _legend_labels(fig)
    fig = plot_cvar_curves(pd.DataFrame(), None)
    _assert_rendered(fig)
    assert "no CVaR estimates" in _texts(fig)


# ---------------------------------------------------------------------------------------------
# 7. interquartile ranges
# ---------------------------------------------------------------------------------------------


def test_interquartile_ranges_with_truth_and_infinite_quartile() -> None:
    est, true = _quartiles()
    est.loc[0, "q75"] = np.inf
    est.loc[1, "q25"] = np.nan
    fig = plot_interquartile_ranges(est, true)
    _assert_rendered(fig, n_estimators=4)
    assert "true quartiles" in _legend_labels(fig)
    assert _edge_triangles(fig) == 1
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(POLICIES)


def test_interquartile_ranges_one_policy_no_truth_and_empty() -> None:
    est, _ = _quartiles(("solo",))
    _assert_rendered(plot_interquartile_ranges(est), n_estimators=4)
    fig = plot_interquartile_ranges(pd.DataFrame())
    _assert_rendered(fig)
    assert "no interquartile-range estimates" in _texts(fig)


# ---------------------------------------------------------------------------------------------
# 8. agreement matrix
# ---------------------------------------------------------------------------------------------


def test_agreement_matrix_colours_cells_and_marks_no_pick() -> None:
    picks = _picks()
    fig = plot_agreement_matrix(picks)
    _assert_rendered(fig, n_estimators=4)
    ax = fig.axes[0]
    image = ax.images[0].get_array()
    assert image.shape[:2] == (4, 4)
    styles = estimator_styles(sorted(ESTIMATORS))
    first = picks.iloc[0]
    assert tuple(np.round(np.asarray(image[0, 0]) * 255).astype(int)) == _hex_rgb(styles[first["estimator"]].color)
    cell_texts = [t.get_text() for t in ax.texts]
    assert cell_texts.count("none") == 2
    assert set(_legend_labels(fig)) == {*ESTIMATORS, "no pick"}
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "hopper / medium"


def test_agreement_matrix_single_row_missing_cell_and_duplicates() -> None:
    one = pd.DataFrame({"task": ["t"], "dataset": ["d"], "metric": ["nMSE"], "estimator": ["IS"]})
    _assert_rendered(plot_agreement_matrix(one))
    sparse = pd.concat([one, one.assign(dataset="e", metric="regret@1", estimator="DR")])
    fig = plot_agreement_matrix(sparse)
    _assert_rendered(fig, n_estimators=2)
    assert "2 blank cell(s)" in _texts(fig)
    with pytest.raises(ValueError, match="several rows"):
        plot_agreement_matrix(pd.concat([one, one.assign(estimator="DR")]))
    fig = plot_agreement_matrix(pd.DataFrame(columns=["task", "dataset", "metric", "estimator"]))
    assert "no picks" in _texts(fig)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

CASES: list[tuple[Callable[[pd.DataFrame], Figure], pd.DataFrame, tuple[str, ...]]] = [
    (plot_sharpe_ratio, _topk(1).drop(columns=["sharpe_ratio", "k"]), ("k", "sharpe_ratio")),
    (lambda df: plot_topk_statistics(df, 1.0), _topk(1).drop(columns=["worst", "std"]), ("worst", "std")),
    (lambda df: plot_estimates_vs_truth(df, _truth()), _estimates().drop(columns="estimate"), ("estimate",)),
    (lambda df: plot_estimate_bars(df, _truth()), _estimates().drop(columns="policy"), ("policy",)),
    (plot_return_cdfs, _cdfs()[0].drop(columns="cdf"), ("cdf",)),
    (lambda df: plot_return_cdfs(_cdfs()[0], df), _cdfs()[1].drop(columns="y"), ("y",)),
    (plot_cvar_curves, _cvar()[0].rename(columns={"alpha": "a"}), ("alpha",)),
    (plot_interquartile_ranges, _quartiles()[0].drop(columns=["q25", "q75"]), ("q25", "q75")),
    (plot_agreement_matrix, _picks().drop(columns="task"), ("task",)),
]


@pytest.mark.parametrize(("plot", "frame", "missing"), CASES)
def test_missing_columns_are_named(
    plot: Callable[[pd.DataFrame], Figure], frame: pd.DataFrame, missing: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError) as info:
        plot(frame)
    for column in missing:
        assert repr(column) in str(info.value)


def test_non_frames_and_non_numeric_values_are_rejected() -> None:
    with pytest.raises(TypeError):
        plot_sharpe_ratio([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'sharpe_ratio'"):
        plot_sharpe_ratio(pd.DataFrame({"estimator": ["a"], "k": [1], "sharpe_ratio": ["high"]}))


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------

_NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def test_svg_is_self_contained() -> None:
    est = _estimates(POLICIES[:1])
    svg = figure_to_svg(plot_estimate_bars(est, _truth()))
    assert svg.startswith(("<?xml", "<svg"))
    ET.fromstring(svg)  # well-formed
    # Every link points inside the document.
    hrefs = re.findall(r'\bhref\s*=\s*"([^"]*)"', svg)
    assert hrefs and all(h.startswith("#") for h in hrefs)
    assert all(u.startswith("#") for u in re.findall(r"url\(\s*([^)]*)\)", svg))
    # "http" occurs only in the namespace declarations.
    namespaces = re.findall(r'\bxmlns(?::\w+)?\s*=\s*"([^"]*)"', svg)
    assert set(namespaces) <= _NAMESPACES
    rest = re.sub(r'\bxmlns(?::\w+)?\s*=\s*"[^"]*"', "", svg)
    assert "http" not in rest and "<!DOCTYPE" not in rest and "<image" not in rest


def test_png_base64_decodes_to_png_of_requested_size() -> None:
    fig = plot_sharpe_ratio(pd.DataFrame())
    small, large = (base64.b64decode(figure_to_png_base64(fig, dpi=dpi), validate=True) for dpi in (40, 80))
    assert small.startswith(b"\x89PNG\r\n\x1a\n")
    width = int.from_bytes(small[16:20], "big"), int.from_bytes(large[16:20], "big")
    assert width == (round(fig.get_figwidth() * 40), round(fig.get_figwidth() * 80))
