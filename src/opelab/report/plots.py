"""Figures for off-policy evaluation and selection reports.

Every plotting function takes tidy (long) pandas DataFrames and returns a
:class:`matplotlib.figure.Figure` built directly (no pyplot, no backend switch), so the
module is safe to import anywhere. Save figures with :func:`figure_to_svg` or
:func:`figure_to_png_base64` to embed them in a self-contained HTML report.

Conventions shared by all figures
---------------------------------
* Colours: the Okabe–Ito palette (colour-blind safe). Each estimator also gets its own marker
  and line style, and bars/boxes get a hatch pattern derived from the marker, so lines stay
  distinguishable in grayscale. :func:`estimator_styles` gives the mapping; by default each
  figure builds it from the *sorted* estimator names, so the same set of estimators always
  gets the same styles. Pass ``styles=estimator_styles(all_names)`` to keep styles consistent
  across figures that show different subsets.
* Non-finite values: ``NaN`` is not drawn (a gap in a line, no bar). ``±inf`` is drawn
  *clipped at the axis edge* as a triangle (▲ at the top for ``+inf``, ▼ at the bottom for
  ``-inf``) in the estimator's colour; bars and intervals reaching ``±inf`` extend to the axis
  edge. The figure title gets a short note counting NaN and infinite values. Exception: points
  whose *true* value is not finite cannot be placed and are dropped (with a note).
* Empty input: an empty table (zero rows) renders a placeholder panel that says what is missing
  (e.g. "no CDF estimates"); it never raises. Missing *required* columns in a non-empty table
  raise ``ValueError`` naming them.
* Text is literal: policy names, estimator labels, task names and titles are user strings, so no text
  of these figures is parsed as mathtext or sent to LaTeX (``$x^$`` is drawn as the five characters
  ``$x^$``, not an error). Each figure is built under ``text.parse_math = False`` and
  ``text.usetex = False`` and every text it holds is marked so; :func:`figure_to_svg` and
  :func:`figure_to_png_base64` draw under the same settings (tick labels may be created when drawn).
"""

from __future__ import annotations

import base64
import functools
import io
import math
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, ParamSpec

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

__all__ = [
    "DEFAULT_MAX_PANELS",
    "LINESTYLES",
    "MARKERS",
    "OKABE_ITO",
    "EstimatorStyle",
    "estimator_styles",
    "figure_to_png_base64",
    "figure_to_svg",
    "plot_agreement_matrix",
    "plot_cvar_curves",
    "plot_estimate_bars",
    "plot_estimates_vs_truth",
    "plot_interquartile_ranges",
    "plot_return_cdfs",
    "plot_sharpe_ratio",
    "plot_topk_statistics",
]

#: Okabe–Ito colour-blind safe palette (orange, sky blue, bluish green, yellow, blue,
#: vermillion, reddish purple, black).
OKABE_ITO: tuple[str, ...] = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#000000",
)
#: Estimator markers. Triangles are left out on purpose: ▲/▼ mark values clipped at ±inf.
MARKERS: tuple[str, ...] = ("o", "s", "D", "P", "X", "*", "p", "h")
LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":")
_HATCHES: dict[str, str] = {"o": "", "s": "//", "D": "\\\\", "P": "xx", "X": "..", "*": "++", "p": "--", "h": "oo"}

_TRUTH_COLOR = "#000000"
_REFERENCE_COLOR = "0.35"
_NO_PICK_COLOR = "#DDDDDD"
_PLACEHOLDER_COLOR = "#EEEEEE"
_K_LABEL = "k (number of deployed candidates)"
DEFAULT_MAX_PANELS = 12


class EstimatorStyle(NamedTuple):
    """Colour, marker and line style of one estimator (a plain 3-tuple)."""

    color: str
    marker: str
    linestyle: str


StyleMap = Mapping[str, tuple[str, str, str]]


def estimator_styles(names: Iterable[object]) -> dict[str, EstimatorStyle]:
    """Map each distinct name (as ``str``, first occurrence order) to a style.

    The i-th distinct name gets colour ``OKABE_ITO[i % 8]``, marker
    ``MARKERS[(i + i // 8) % 8]`` and line style ``LINESTYLES[i % 4]``: the first 8 names
    differ in colour *and* marker, and all (colour, marker, line style) triples are distinct
    for up to 64 names. The result depends only on the order of ``names``.
    """
    styles: dict[str, EstimatorStyle] = {}
    for name in names:
        key = str(name)
        if key in styles:
            continue
        i = len(styles)
        styles[key] = EstimatorStyle(OKABE_ITO[i % 8], MARKERS[(i + i // 8) % 8], LINESTYLES[i % 4])
    return styles


# --------------------------------------------------------------------------------------------
# Input checking and cleaning
# --------------------------------------------------------------------------------------------


class _Notes:
    """Counts of what could not be drawn as-is, turned into a short title note."""

    def __init__(self) -> None:
        self.nan = 0
        self.inf = 0
        self.extra: list[str] = []

    def add_values(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=float)
        self.nan += int(np.isnan(v).sum())
        self.inf += int(np.isinf(v).sum())

    def text(self) -> str:
        parts: list[str] = []
        if self.inf:
            parts.append(f"{self.inf} infinite value(s) shown as triangles at the axis edge")
        if self.nan:
            parts.append(f"{self.nan} missing (NaN) value(s) not drawn")
        parts.extend(self.extra)
        return "; ".join(parts)


def _require(
    df: pd.DataFrame | None, required: Sequence[str], what: str, *, allow_none: bool = False
) -> pd.DataFrame:
    """Return ``df`` (a copy) after checking it has ``required`` columns.

    A frame with zero rows (or ``None`` when ``allow_none``) counts as "no data" and is returned
    as an empty frame with the required columns, whatever its columns.
    """
    if df is None:
        if allow_none:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in required})
        raise TypeError(f"{what} must be a pandas DataFrame, not None")
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, not {type(df).__name__}")
    if len(df) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in required})
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing required column(s): {', '.join(repr(c) for c in missing)}")
    return df.copy()


def _interval_columns(df: pd.DataFrame, what: str) -> bool:
    """Whether ``df`` has both ``lower`` and ``upper``; one without the other is an error."""
    has_lower, has_upper = "lower" in df.columns, "upper" in df.columns
    if has_lower != has_upper:
        missing = "upper" if has_lower else "lower"
        raise ValueError(f"{what} has intervals but is missing required column(s): {missing!r}")
    return has_lower and has_upper


def _floats(df: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """Column as a float array (None/NA → NaN); a non-numeric column raises ValueError."""
    try:
        return df[column].to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} column {column!r} must be numeric") from exc


def _keys(df: pd.DataFrame, columns: Sequence[str], notes: _Notes) -> pd.DataFrame:
    """Drop rows with a missing key and turn key columns into strings."""
    if len(df) == 0:
        return df
    bad = df[list(columns)].isna().any(axis=1)
    if bad.any():
        notes.extra.append(f"{int(bad.sum())} row(s) without {'/'.join(columns)} left out")
        df = df.loc[~bad].copy()
    for c in columns:
        df[c] = df[c].astype(str)
    return df


def _ordered_unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _resolve_styles(names: Sequence[str], styles: StyleMap | None) -> dict[str, EstimatorStyle]:
    if styles is None:
        return estimator_styles(sorted(names))
    missing = [n for n in names if n not in styles]
    if missing:
        raise ValueError(f"styles has no entry for estimator(s): {', '.join(repr(n) for n in missing)}")
    return {n: EstimatorStyle(*styles[n]) for n in names}


def _as_series(true_values: pd.Series | Mapping[object, float] | None, what: str) -> pd.Series:
    if true_values is None:
        return pd.Series(dtype=float)
    if isinstance(true_values, Mapping):
        true_values = pd.Series(dict(true_values), dtype=float)
    if not isinstance(true_values, pd.Series):
        raise TypeError(f"{what} must be a pandas Series indexed by policy")
    s = pd.Series(true_values.to_numpy(dtype=float, na_value=np.nan), index=[str(i) for i in true_values.index])
    return s[~s.index.duplicated(keep="last")]


# --------------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------------


LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False}
"""rcParams under which figures are built and drawn: user strings are never mathtext or LaTeX."""

_P = ParamSpec("_P")


def _literal_text(build: Callable[_P, Figure]) -> Callable[_P, Figure]:
    """Build the figure under ``LITERAL_TEXT`` and mark every text in it literal (module docstring)."""

    @functools.wraps(build)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Figure:
        with rc_context(LITERAL_TEXT):
            fig = build(*args, **kwargs)
        for text in fig.findobj(Text):
            text.set_parse_math(False)
            text.set_usetex(False)
        return fig

    return wrapper


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(min(max(width, 4.0), 30.0), min(max(height, 2.5), 30.0)), layout="constrained")


def _finish(fig: Figure, title: str, notes: _Notes | str | None = None) -> Figure:
    note = notes.text() if isinstance(notes, _Notes) else (notes or "")
    if note:
        width = max(40, int(fig.get_figwidth() * 12))
        fig.suptitle(f"{title}\n" + textwrap.fill(f"({note})", width), fontsize="medium")
    else:
        fig.suptitle(title, fontsize="large")
    return fig


def _placeholder(ax: Axes, message: str) -> None:
    """Turn ``ax`` into a grey panel that says ``message``."""
    ax.set_facecolor(_PLACEHOLDER_COLOR)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize="large", color="0.2")


def _message_figure(title: str, message: str) -> Figure:
    fig = _new_figure(6.0, 3.0)
    _placeholder(fig.add_subplot(), message)
    return _finish(fig, title)


def _legend(fig: Figure, handles: Sequence[Line2D | Patch]) -> None:
    """One figure legend below the panels, as many columns as fit the figure width."""
    if not handles:
        return
    longest = max(len(str(h.get_label())) for h in handles)
    column_width = 0.8 + 0.075 * longest  # inches at "small" font size
    ncols = max(1, min(len(handles), int(fig.get_figwidth() // column_width)))
    fig.set_figheight(fig.get_figheight() + 0.2 * math.ceil(len(handles) / ncols) + 0.1)
    fig.legend(handles=list(handles), loc="outside lower center", ncols=ncols, fontsize="small", frameon=False)


def _line_handle(label: str, style: EstimatorStyle) -> Line2D:
    return Line2D([], [], color=style.color, marker=style.marker, linestyle=style.linestyle, label=_short(label, 40))


def _patch_handle(label: str, style: EstimatorStyle) -> Patch:
    return Patch(
        facecolor=style.color,
        edgecolor="black",
        hatch=_HATCHES.get(style.marker, ""),
        linewidth=0.6,
        label=_short(label, 40),
    )


def _edge_markers(ax: Axes, x: np.ndarray, sign: int, color: str) -> None:
    """Triangles at the top (``sign > 0``) or bottom edge of ``ax`` at data positions ``x``."""
    if len(x) == 0:
        return
    y = np.full(len(x), 0.97 if sign > 0 else 0.03)
    ax.plot(
        x,
        y,
        transform=ax.get_xaxis_transform(),
        linestyle="none",
        marker="^" if sign > 0 else "v",
        markersize=9,
        markerfacecolor=color,
        markeredgecolor="black",
        markeredgewidth=0.8,
        clip_on=False,
        zorder=5,
    )


def _draw_curve(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    style: EstimatorStyle,
    *,
    step: bool = False,
    linewidth: float = 1.6,
    with_marker: bool = True,
) -> bool:
    """Line through the finite points (NaN → gap, ±inf → edge triangles); True if anything drawn."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    shown = np.where(np.isfinite(y), y, np.nan)
    drawn = False
    if np.isfinite(shown).any():
        n_finite = int(np.isfinite(shown).sum())
        kwargs: dict[str, object] = {
            "color": style.color,
            "linestyle": style.linestyle,
            "linewidth": linewidth,
        }
        if with_marker:
            kwargs.update(marker=style.marker, markersize=5, markevery=max(1, n_finite // 8))
        if step:
            ax.step(x, shown, where="post", **kwargs)
        else:
            ax.plot(x, shown, **kwargs)
        drawn = True
    _edge_markers(ax, x[np.isposinf(y)], +1, style.color)
    _edge_markers(ax, x[np.isneginf(y)], -1, style.color)
    return drawn or bool(np.isinf(y).any())


def _limits(*arrays: np.ndarray, pad: float = 0.06) -> tuple[float, float] | None:
    """Padded (low, high) covering the finite entries of ``arrays``; None if there are none."""
    finite = [np.asarray(a, dtype=float).ravel() for a in arrays]
    values = np.concatenate(finite) if finite else np.empty(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    if span == 0.0:
        span = abs(lo) if lo != 0.0 else 1.0
    return lo - pad * span, hi + pad * span


def _clip(values: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    """Replace ±inf by the axis limits (NaN stays NaN)."""
    v = np.asarray(values, dtype=float).copy()
    v[np.isposinf(v)] = limits[1]
    v[np.isneginf(v)] = limits[0]
    return v


def _grid(fig: Figure, n: int, *, max_cols: int = 4, sharex: bool = False, sharey: bool = False) -> list[Axes]:
    """``n`` subplots in a grid of at most ``max_cols`` columns; unused cells are hidden."""
    nrows, ncols = _panel_shape(n, max_cols)
    grid = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False)
    flat = list(grid.ravel())
    for ax in flat[n:]:
        ax.set_axis_off()
    if sharex and nrows > 1:
        # An axes whose lower neighbour is hidden must show its own x tick labels.
        for idx in range(n):
            if idx + ncols >= n:
                flat[idx].xaxis.set_tick_params(labelbottom=True)
    return flat[:n]


def _label_bottom_row(axes: Sequence[Axes], label: str, max_cols: int = 4) -> None:
    """x label on each panel of the grid's lowest filled row(s) (a figure-level x label would
    collide with the legend below the panels)."""
    _, ncols = _panel_shape(len(axes), max_cols)
    for idx, ax in enumerate(axes):
        if idx + ncols >= len(axes):
            ax.set_xlabel(label)


def _panel_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    """(rows, columns) of a near-square grid for ``n`` panels, at most ``max_cols`` wide."""
    ncols = max(1, min(math.ceil(math.sqrt(n)), max_cols))
    return max(1, math.ceil(n / ncols)), ncols


def _aggregate(
    values: np.ndarray, *, band: bool, n_boot: int, seed: int
) -> tuple[float, float, float, int]:
    """Mean of the finite ``values`` with a band and the number of infinite values left out.

    Band: 2.5–97.5 percentiles of ``n_boot`` bootstrap means (fixed ``seed``) with ≥ 3 finite
    values, the min–max with 2, none with 1. With no finite value the result is ±inf when all
    infinite values share a sign, else NaN.
    """
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    n_inf = int(np.isinf(v).sum())
    if finite.size == 0:
        if n_inf and (np.isposinf(v) | np.isnan(v)).all():
            return math.inf, math.nan, math.nan, 0
        if n_inf and (np.isneginf(v) | np.isnan(v)).all():
            return -math.inf, math.nan, math.nan, 0
        return math.nan, math.nan, math.nan, 0
    centre = float(finite.mean())
    lo = hi = math.nan
    if band and finite.size >= 3:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, finite.size, size=(n_boot, finite.size))
        lo, hi = (float(q) for q in np.percentile(finite[idx].mean(axis=1), [2.5, 97.5]))
    elif band and finite.size == 2:
        lo, hi = float(finite.min()), float(finite.max())
    return centre, lo, hi, n_inf


def _relative_luminance(color: str) -> float:
    rgb = [int(color[i : i + 2], 16) / 255.0 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _text_color(background: str) -> str:
    """Black or white, whichever contrasts more with ``background`` (WCAG contrast ratio)."""
    lum = _relative_luminance(background)
    return "black" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "white"


def _short(text: str, width: int = 12) -> str:
    """``text`` cut to ``width`` characters with an ellipsis in the middle (keeps suffixes)."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + text[len(text) - tail :]


# --------------------------------------------------------------------------------------------
# 1. SharpeRatio@k
# --------------------------------------------------------------------------------------------


@_literal_text
def plot_sharpe_ratio(
    topk: pd.DataFrame, *, styles: StyleMap | None = None, n_boot: int = 1000, seed: int = 0
) -> Figure:
    """SharpeRatio@k against k, one line per estimator.

    ``topk`` columns: ``estimator, k, sharpe_ratio`` and optionally ``dataset``. With one row per
    (estimator, k) the values are drawn as they are. With several rows (several datasets) the
    line is the mean of the finite values and the band is the 2.5–97.5 percentiles of
    ``n_boot`` bootstrap means (``seed`` fixed) when ≥ 3 finite values exist, the min–max with
    2. Infinite values are left out of the means (counted in the title); a point whose values
    are all +inf (or all -inf) is drawn as an edge triangle. NaN SharpeRatio@1 is a gap.
    """
    notes = _Notes()
    df = _keys(_require(topk, ("estimator", "k", "sharpe_ratio"), "topk"), ("estimator",), notes)
    title = "SharpeRatio@k by estimator"
    if len(df) == 0:
        return _message_figure(title, "no SharpeRatio@k values")
    df["k"] = _floats(df, "k", "topk")
    bad_k = ~np.isfinite(df["k"].to_numpy())
    if bad_k.any():
        notes.extra.append(f"{int(bad_k.sum())} row(s) with missing k left out")
        df = df.loc[~bad_k]
    df["sharpe_ratio"] = _floats(df, "sharpe_ratio", "topk")
    names = sorted(_ordered_unique(df["estimator"]))
    style_map = _resolve_styles(names, styles)
    n_datasets = int(df["dataset"].nunique()) if "dataset" in df.columns else 1
    replicated = bool(df.groupby(["estimator", "k"]).size().max() > 1) if len(df) else False

    fig = _new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    handles: list[Line2D | Patch] = []
    n_inf_left_out = 0
    any_drawn = False
    for name in names:
        style = style_map[name]
        sub = df[df["estimator"] == name]
        ks: list[float] = []
        centre: list[float] = []
        lo: list[float] = []
        hi: list[float] = []
        for k, group in sub.groupby("k", sort=True):
            values = group["sharpe_ratio"].to_numpy()
            if replicated:
                c, low, high, n_inf = _aggregate(values, band=True, n_boot=n_boot, seed=seed)
                n_inf_left_out += n_inf
                notes.add_values(np.array([c]))
            else:
                c, low, high = float(values[0]), math.nan, math.nan
                notes.add_values(values[:1])
            ks.append(float(k))
            centre.append(c)
            lo.append(low)
            hi.append(high)
        x = np.asarray(ks)
        low_a, high_a = np.asarray(lo), np.asarray(hi)
        has_band = np.isfinite(low_a) & np.isfinite(high_a)
        if has_band.any():
            ax.fill_between(
                x,
                np.where(has_band, low_a, 0.0),
                np.where(has_band, high_a, 0.0),
                where=has_band,
                color=style.color,
                alpha=0.18,
                linewidth=0,
                interpolate=False,
            )
        any_drawn |= _draw_curve(ax, x, np.asarray(centre), style)
        handles.append(_line_handle(name, style))
    if not any_drawn:
        ax.text(0.5, 0.5, "no finite SharpeRatio@k values", transform=ax.transAxes, ha="center", va="center")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(_K_LABEL)
    ax.set_ylabel("SharpeRatio@k")
    ax.grid(True, color="0.9", linewidth=0.8)
    _legend(fig, handles)
    if replicated:
        what = f"{n_datasets} datasets" if n_datasets > 1 else "replicate rows"
        title += f": mean over {what}"
        notes.extra.insert(0, "band: 95% bootstrap interval of the mean (min–max with 2 values)")
        if n_inf_left_out:
            notes.extra.append(f"{n_inf_left_out} infinite value(s) left out of the means")
    return _finish(fig, title, notes)


# --------------------------------------------------------------------------------------------
# 2. best/worst/mean/std@k
# --------------------------------------------------------------------------------------------


@_literal_text
def plot_topk_statistics(
    topk: pd.DataFrame,
    behavior_value: float | None,
    safety_threshold: float | None = None,
    *,
    styles: StyleMap | None = None,
) -> Figure:
    """2×2 panels of best@k, worst@k, mean@k and std@k against k, one line per estimator.

    ``topk`` columns: ``estimator, k, best, worst, mean, std``. Several rows per (estimator, k)
    (e.g. several datasets) are averaged over their finite values. ``behavior_value`` is drawn
    dashed and ``safety_threshold`` (when given) dotted on the best/worst/mean panels.
    """
    stats = ("best", "worst", "mean", "std")
    notes = _Notes()
    df = _keys(_require(topk, ("estimator", "k", *stats), "topk"), ("estimator",), notes)
    title = "True value of the top-k policies chosen by each estimator"
    if len(df) == 0:
        return _message_figure(title, "no top-k statistics")
    df["k"] = _floats(df, "k", "topk")
    bad_k = ~np.isfinite(df["k"].to_numpy())
    if bad_k.any():
        notes.extra.append(f"{int(bad_k.sum())} row(s) with missing k left out")
        df = df.loc[~bad_k]
    for s in stats:
        df[s] = _floats(df, s, "topk")
    names = sorted(_ordered_unique(df["estimator"]))
    style_map = _resolve_styles(names, styles)
    replicated = bool(df.groupby(["estimator", "k"]).size().max() > 1) if len(df) else False

    fig = _new_figure(9.0, 6.5)
    axes = _grid(fig, 4, max_cols=2, sharex=True)
    panel_titles = {
        "best": "best@k (best true value in the top k)",
        "worst": "worst@k (worst true value in the top k)",
        "mean": "mean@k (mean true value in the top k)",
        "std": "std@k (spread of true values in the top k)",
    }
    references: list[tuple[float, str, str]] = []
    for value, label, ls in (
        (behavior_value, "behavior policy value", "--"),
        (safety_threshold, "safety threshold", ":"),
    ):
        if value is None:
            continue
        v = float(value)
        if np.isfinite(v):
            references.append((v, label, ls))
        else:
            notes.extra.append(f"{label} is not finite and is not drawn")
    n_inf_left_out = 0
    for ax, stat in zip(axes, stats):
        drawn = False
        for name in names:
            sub = df[df["estimator"] == name]
            ks: list[float] = []
            ys: list[float] = []
            for k, group in sub.groupby("k", sort=True):
                values = group[stat].to_numpy()
                if replicated:
                    c, _, _, n_inf = _aggregate(values, band=False, n_boot=0, seed=0)
                    n_inf_left_out += n_inf
                    notes.add_values(np.array([c]))
                else:
                    c = float(values[0])
                    notes.add_values(values[:1])
                ks.append(float(k))
                ys.append(c)
            drawn |= _draw_curve(ax, np.asarray(ks), np.asarray(ys), style_map[name])
        if stat != "std":
            for v, _, ls in references:
                ax.axhline(v, color=_REFERENCE_COLOR, linestyle=ls, linewidth=1.4, zorder=1)
        if not drawn:
            ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center")
        ax.set_title(panel_titles[stat], fontsize="medium")
        ax.set_ylabel("standard deviation" if stat == "std" else "true policy value")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, color="0.9", linewidth=0.8)
    _label_bottom_row(axes, _K_LABEL, max_cols=2)
    handles: list[Line2D | Patch] = [_line_handle(n, style_map[n]) for n in names]
    handles += [
        Line2D([], [], color=_REFERENCE_COLOR, linestyle=ls, linewidth=1.4, label=label)
        for _, label, ls in references
    ]
    _legend(fig, handles)
    if replicated:
        title += " (mean over datasets)"
        if n_inf_left_out:
            notes.extra.append(f"{n_inf_left_out} infinite value(s) left out of the means")
    return _finish(fig, title, notes)


# --------------------------------------------------------------------------------------------
# 3. estimates against true values
# --------------------------------------------------------------------------------------------


def _joined_estimates(
    estimates: pd.DataFrame, true_values: pd.Series | Mapping[object, float], notes: _Notes
) -> tuple[pd.DataFrame, pd.Series, bool]:
    df = _keys(_require(estimates, ("policy", "estimator", "estimate"), "estimates"), ("policy", "estimator"), notes)
    intervals = len(df) > 0 and _interval_columns(df, "estimates")
    df["estimate"] = _floats(df, "estimate", "estimates") if len(df) else pd.Series(dtype=float)
    if intervals:
        df["lower"] = _floats(df, "lower", "estimates")
        df["upper"] = _floats(df, "upper", "estimates")
    truth = _as_series(true_values, "true_values")
    return df, truth, intervals


@_literal_text
def plot_estimates_vs_truth(
    estimates: pd.DataFrame,
    true_values: pd.Series | Mapping[object, float],
    *,
    styles: StyleMap | None = None,
) -> Figure:
    """One scatter panel per estimator (shared axes): estimate against true value, with y = x.

    ``estimates`` columns: ``policy, estimator, estimate`` and optionally ``lower, upper``
    (vertical interval bars). ``true_values``: Series indexed by policy. Policies without a
    finite true value are left out (noted in the title); ±inf estimates are edge triangles.
    """
    notes = _Notes()
    df, truth, intervals = _joined_estimates(estimates, true_values, notes)
    title = "Estimated against true policy value"
    if len(df) == 0:
        return _message_figure(title, "no estimates")
    df["truth"] = df["policy"].map(truth).to_numpy(dtype=float, na_value=np.nan)
    no_truth = ~np.isfinite(df["truth"].to_numpy())
    if no_truth.any():
        n_pol = df.loc[no_truth, "policy"].nunique()
        notes.extra.append(f"{n_pol} policy(ies) without a finite true value left out")
        df = df.loc[~no_truth]
    names = sorted(_ordered_unique(df["estimator"])) if len(df) else []
    if not names:
        fig = _message_figure(title, "no estimates with a true value")
        return _finish(fig, title, notes)
    style_map = _resolve_styles(names, styles)
    notes.add_values(df["estimate"].to_numpy())
    bounds = (df["lower"].to_numpy(), df["upper"].to_numpy()) if intervals else ()
    limits = _limits(df["truth"].to_numpy(), df["estimate"].to_numpy(), *bounds)

    nrows, ncols = _panel_shape(len(names))
    fig = _new_figure(2.9 * ncols + 0.8, 2.7 * nrows + 1.0)
    axes = _grid(fig, len(names), sharex=True, sharey=True)
    if limits is not None:
        axes[0].set_xlim(limits)
        axes[0].set_ylim(limits)
    for ax, name in zip(axes, names):
        style = style_map[name]
        sub = df[df["estimator"] == name]
        x = sub["truth"].to_numpy()
        y = sub["estimate"].to_numpy()
        if limits is not None:
            ax.plot(limits, limits, color="0.55", linewidth=1.0, zorder=1)
            if intervals:
                low = _clip(sub["lower"].to_numpy(), limits)
                high = _clip(sub["upper"].to_numpy(), limits)
                ok = np.isfinite(low) & np.isfinite(high)
                if ok.any():
                    ax.vlines(x[ok], low[ok], high[ok], color=style.color, linewidth=1.2, alpha=0.8, zorder=2)
        finite = np.isfinite(y)
        if finite.any():
            ax.plot(
                x[finite],
                y[finite],
                linestyle="none",
                marker=style.marker,
                markersize=6,
                color=style.color,
                markeredgecolor="black",
                markeredgewidth=0.5,
                zorder=3,
            )
        _edge_markers(ax, x[np.isposinf(y)], +1, style.color)
        _edge_markers(ax, x[np.isneginf(y)], -1, style.color)
        if not (finite.any() or np.isinf(y).any()):
            ax.text(0.5, 0.5, "no finite estimates", transform=ax.transAxes, ha="center", va="center")
        ax.set_title(_short(name, 28), fontsize="medium")
        ax.grid(True, color="0.92", linewidth=0.8)
    _label_bottom_row(axes, "true policy value")
    fig.supylabel("estimated policy value")
    handles: list[Line2D | Patch] = [Line2D([], [], color="0.55", linewidth=1.0, label="y = x (exact estimate)")]
    if intervals:
        handles.append(Line2D([], [], color="0.3", linewidth=1.2, label="interval (lower–upper)"))
    _legend(fig, handles)
    return _finish(fig, title, notes)


# --------------------------------------------------------------------------------------------
# 4. grouped bars per policy
# --------------------------------------------------------------------------------------------


@_literal_text
def plot_estimate_bars(
    estimates: pd.DataFrame,
    true_values: pd.Series | Mapping[object, float] | None,
    *,
    styles: StyleMap | None = None,
) -> Figure:
    """Grouped bars: one group per policy, one bar per estimator, true value as a black marker.

    ``estimates`` columns: ``policy, estimator, estimate`` and optionally ``lower, upper``
    (interval bars). ``true_values``: Series indexed by policy (may be ``None`` or miss
    policies). Bars reaching ±inf are drawn to the axis edge and capped with a triangle.
    """
    notes = _Notes()
    df, truth, intervals = _joined_estimates(estimates, true_values, notes)
    title = "Policy value estimates"
    if len(df) == 0:
        return _message_figure(title, "no estimates")
    policies = _ordered_unique(df["policy"])
    names = sorted(_ordered_unique(df["estimator"]))
    style_map = _resolve_styles(names, styles)
    notes.add_values(df["estimate"].to_numpy())
    true_here = np.array([truth.get(p, math.nan) for p in policies], dtype=float)
    bounds = (df["lower"].to_numpy(), df["upper"].to_numpy()) if intervals else ()
    limits = _limits(np.zeros(1), df["estimate"].to_numpy(), true_here, *bounds, pad=0.08)
    assert limits is not None  # 0 is always finite

    n_pol, n_est = len(policies), len(names)
    # rows of at most ~12 inches of groups, so the figure stays readable when shown page-wide (1280 px)
    per_row = max(1, min(n_pol, int(12.0 // (0.22 * n_est + 0.4))))
    chunks = [policies[i : i + per_row] for i in range(0, n_pol, per_row)]
    fig = _new_figure(1.5 + per_row * (0.22 * n_est + 0.4), 0.6 + 3.4 * len(chunks))
    axes = fig.subplots(len(chunks), 1, sharey=True, squeeze=False)[:, 0]
    width = 0.8 / n_est
    has_truth = np.isfinite(true_here)
    for ax, chunk in zip(axes, chunks):
        _estimate_bar_row(ax, df, chunk, names, style_map, truth, intervals, limits, width, per_row)
    axes[len(axes) // 2].set_ylabel("policy value")
    axes[-1].set_xlabel("policy")
    if (~has_truth).any():
        notes.extra.append(f"{int((~has_truth).sum())} policy(ies) without a true value")
    handles: list[Line2D | Patch] = [_patch_handle(n, style_map[n]) for n in names]
    if has_truth.any():
        handles.append(
            Line2D([], [], color=_TRUTH_COLOR, marker="D", markeredgecolor="white", linewidth=2.0, label="true value")
        )
    if intervals:
        handles.append(Line2D([], [], color="black", linewidth=1.1, label="interval (lower–upper)"))
    _legend(fig, handles)
    return _finish(fig, title, notes)


def _estimate_bar_row(ax: Axes, df: pd.DataFrame, policies: list, names: list, style_map: dict, truth: Mapping,
                      intervals: bool, limits: tuple[float, float], width: float, slots: int) -> None:  # fmt: skip
    """One row of ``plot_estimate_bars``: the groups of ``policies``, ``slots`` groups wide."""
    ax.set_ylim(limits)
    centres = np.arange(len(policies), dtype=float)
    position = {p: i for i, p in enumerate(policies)}
    rows = df[df["policy"].isin(position)]
    for j, name in enumerate(names):
        style = style_map[name]
        sub = rows[rows["estimator"] == name].drop_duplicates("policy", keep="last")
        x = np.array([position[p] for p in sub["policy"]], dtype=float) - 0.4 + width * (j + 0.5)
        y = sub["estimate"].to_numpy()
        heights = _clip(y, limits)
        ok = np.isfinite(heights)
        if ok.any():
            ax.bar(
                x[ok],
                heights[ok],
                width=width * 0.92,
                color=style.color,
                edgecolor="black",
                linewidth=0.6,
                hatch=_HATCHES.get(style.marker, ""),
                zorder=2,
            )
        _edge_markers(ax, x[np.isposinf(y)], +1, style.color)
        _edge_markers(ax, x[np.isneginf(y)], -1, style.color)
        if intervals:
            low = _clip(sub["lower"].to_numpy(), limits)
            high = _clip(sub["upper"].to_numpy(), limits)
            ok = np.isfinite(low) & np.isfinite(high)
            if ok.any():
                ax.vlines(x[ok], low[ok], high[ok], color="black", linewidth=1.1, zorder=4)
                cap = width * 0.25
                for bound in (low, high):
                    ax.hlines(bound[ok], x[ok] - cap, x[ok] + cap, color="black", linewidth=1.1, zorder=4)
    true_here = np.array([truth.get(p, math.nan) for p in policies], dtype=float)
    known = np.isfinite(true_here)
    if known.any():
        ax.hlines(true_here[known], centres[known] - 0.45, centres[known] + 0.45, color=_TRUTH_COLOR, linewidth=2.0, zorder=5)
        ax.plot(
            centres[known],
            true_here[known],
            linestyle="none",
            marker="D",
            markersize=7,
            color=_TRUTH_COLOR,
            markeredgecolor="white",
            markeredgewidth=1.0,
            zorder=6,
        )
    ax.axhline(0.0, color="0.4", linewidth=0.8, zorder=1)
    ax.set_xticks(centres, [_short(p, 24) for p in policies])
    ax.set_xlim(-0.6, slots - 0.4)
    ax.grid(True, axis="y", color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)


# --------------------------------------------------------------------------------------------
# 5./6. per-policy curves (CDFs, CVaR)
# --------------------------------------------------------------------------------------------


def _policy_curves(
    estimated: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    x: str,
    y: str,
    step: bool,
    title: str,
    empty_text: str,
    xlabel: str,
    ylabel: str,
    truth_label: str,
    styles: StyleMap | None,
    policies: Sequence[object] | None,
    max_panels: int,
    notes: _Notes,
) -> Figure:
    all_policies = _ordered_unique([*estimated["policy"], *truth["policy"]])
    if not all_policies:
        return _message_figure(title, empty_text)
    if policies is not None:
        wanted = [str(p) for p in policies]
        unknown = [p for p in wanted if p not in all_policies]
        if unknown:
            raise ValueError(f"unknown policy(ies): {', '.join(repr(p) for p in unknown)}")
        shown = _ordered_unique(wanted)
    else:
        shown = all_policies
    if len(shown) > max_panels:
        notes.extra.append(f"showing the first {max_panels} of {len(shown)} policies")
        shown = shown[:max_panels]
    if len(estimated) == 0:
        notes.extra.insert(0, empty_text)
    names = sorted(_ordered_unique(estimated["estimator"]))
    style_map = _resolve_styles(names, styles)
    notes.add_values(estimated.loc[estimated["policy"].isin(shown), y].to_numpy(dtype=float))

    nrows, ncols = _panel_shape(len(shown))
    fig = _new_figure(3.1 * ncols + 0.8, 2.6 * nrows + 1.0)
    axes = _grid(fig, len(shown), sharey=True)
    truth_drawn = False
    truth_style = EstimatorStyle(_TRUTH_COLOR, "", "-")
    for ax, policy in zip(axes, shown):
        drawn = False
        tp = truth[truth["policy"] == policy]
        if len(tp):
            tx, ty = tp[x].to_numpy(float), tp[y].to_numpy(float)
            if _draw_curve(ax, tx, ty, truth_style, step=step, linewidth=3.0, with_marker=False):
                drawn = truth_drawn = True
        for name in names:
            sub = estimated[(estimated["policy"] == policy) & (estimated["estimator"] == name)]
            if len(sub):
                drawn |= _draw_curve(ax, sub[x].to_numpy(float), sub[y].to_numpy(float), style_map[name], step=step)
        if not drawn:
            message = empty_text if len(estimated) == 0 else "no finite values"
            ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize="small")
        elif len(estimated) == 0:
            ax.text(
                0.97,
                0.05,
                empty_text,
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize="small",
                color="0.3",
                bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round"},
            )
        ax.set_title(_short(policy, 28), fontsize="medium")
        ax.grid(True, color="0.92", linewidth=0.8)
    _label_bottom_row(axes, xlabel)
    fig.supylabel(ylabel)
    handles: list[Line2D | Patch] = [_line_handle(n, style_map[n]) for n in names]
    if truth_drawn:
        handles.append(Line2D([], [], color=_TRUTH_COLOR, linewidth=3.0, label=truth_label))
    _legend(fig, handles)
    return _finish(fig, title, notes)


def _curve_tables(
    est: pd.DataFrame | None, true: pd.DataFrame | None, x: str, y: str, what: str, notes: _Notes
) -> tuple[pd.DataFrame, pd.DataFrame]:
    e = _keys(_require(est, ("estimator", "policy", x, y), what, allow_none=True), ("estimator", "policy"), notes)
    t = _keys(_require(true, ("policy", x, y), f"true_{what}", allow_none=True), ("policy",), notes)
    for frame, name in ((e, what), (t, f"true_{what}")):
        for c in (x, y):
            frame[c] = _floats(frame, c, name) if len(frame) else pd.Series(dtype=float)
        bad_x = ~np.isfinite(frame[x].to_numpy(dtype=float))
        if bad_x.any():
            notes.extra.append(f"{int(bad_x.sum())} {name} row(s) with non-finite {x} left out")
    e = e.loc[np.isfinite(e[x].to_numpy(dtype=float))]
    t = t.loc[np.isfinite(t[x].to_numpy(dtype=float))]
    return e, t


@_literal_text
def plot_return_cdfs(
    cdfs: pd.DataFrame | None,
    true_cdfs: pd.DataFrame | None = None,
    *,
    styles: StyleMap | None = None,
    policies: Sequence[object] | None = None,
    max_panels: int = DEFAULT_MAX_PANELS,
) -> Figure:
    """Estimated return CDFs as step lines per estimator, one panel per policy.

    ``cdfs`` columns: ``estimator, policy, y, cdf``; ``true_cdfs``: ``policy, y, cdf`` or None
    (thick black steps). At most ``max_panels`` (12) panels: the first policies in order of
    appearance (estimates, then truth), or ``policies`` in the given order; the title says how
    many were left out. Empty/None ``cdfs`` renders a panel saying "no CDF estimates".
    """
    notes = _Notes()
    est, true = _curve_tables(cdfs, true_cdfs, "y", "cdf", "cdfs", notes)
    return _policy_curves(
        est,
        true,
        x="y",
        y="cdf",
        step=True,
        title="Distribution of returns: estimated CDFs",
        empty_text="no CDF estimates",
        xlabel="return y",
        ylabel="P(return ≤ y)",
        truth_label="true CDF",
        styles=styles,
        policies=policies,
        max_panels=max_panels,
        notes=notes,
    )


@_literal_text
def plot_cvar_curves(
    risk: pd.DataFrame | None,
    true_risk: pd.DataFrame | None = None,
    *,
    styles: StyleMap | None = None,
    policies: Sequence[object] | None = None,
    max_panels: int = DEFAULT_MAX_PANELS,
) -> Figure:
    """CVaR(α) against α per estimator, one panel per policy (true curve thick black).

    ``risk`` columns: ``estimator, policy, alpha, cvar``; ``true_risk``: ``policy, alpha, cvar``
    or None. Panels are chosen as in :func:`plot_return_cdfs` (at most ``max_panels``).
    """
    notes = _Notes()
    est, true = _curve_tables(risk, true_risk, "alpha", "cvar", "risk", notes)
    return _policy_curves(
        est,
        true,
        x="alpha",
        y="cvar",
        step=False,
        title="Conditional value at risk CVaR(α): mean of the worst α share of returns",
        empty_text="no CVaR estimates",
        xlabel="α (share of worst returns)",
        ylabel="CVaR(α)",
        truth_label="true CVaR",
        styles=styles,
        policies=policies,
        max_panels=max_panels,
        notes=notes,
    )


# --------------------------------------------------------------------------------------------
# 7. interquartile ranges
# --------------------------------------------------------------------------------------------


@_literal_text
def plot_interquartile_ranges(
    risk: pd.DataFrame | None,
    true_risk: pd.DataFrame | None = None,
    *,
    styles: StyleMap | None = None,
) -> Figure:
    """Horizontal q25–q75 bars with a median tick, grouped by policy, one bar per estimator.

    ``risk`` columns: ``estimator, policy, q25, q50, q75``; ``true_risk``: ``policy, q25, q50,
    q75`` or None (drawn as an open black bar above the estimators). Quartiles at ±inf extend
    the bar to the axis edge; rows with a NaN q25 or q75 get no bar.
    """
    quartiles = ("q25", "q50", "q75")
    notes = _Notes()
    est = _require(risk, ("estimator", "policy", *quartiles), "risk", allow_none=True)
    est = _keys(est, ("estimator", "policy"), notes)
    true = _keys(_require(true_risk, ("policy", *quartiles), "true_risk", allow_none=True), ("policy",), notes)
    for frame, what in ((est, "risk"), (true, "true_risk")):
        for q in quartiles:
            frame[q] = _floats(frame, q, what) if len(frame) else pd.Series(dtype=float)
    title = "Interquartile range of returns (bar: 25–75% quantiles, tick: median)"
    policies = _ordered_unique([*est["policy"], *true["policy"]])
    if not policies:
        return _message_figure(title, "no interquartile-range estimates")
    if len(est) == 0:
        notes.extra.insert(0, "no interquartile-range estimates")
    names = sorted(_ordered_unique(est["estimator"]))
    style_map = _resolve_styles(names, styles)
    has_truth = len(true) > 0
    notes.add_values(est[list(quartiles)].to_numpy(dtype=float))
    limits = _limits(est[list(quartiles)].to_numpy(float), true[list(quartiles)].to_numpy(float))
    slots = len(names) + (1 if has_truth else 0)

    # side-by-side panels of at most ~4 policies when there are many, so the figure stays about as tall as wide
    n_cols = 1 if len(policies) <= 4 else min(3, math.ceil(len(policies) / 4))
    per_col = math.ceil(len(policies) / n_cols)
    chunks = [policies[i : i + per_col] for i in range(0, len(policies), per_col)]
    fig = _new_figure(5.0 * len(chunks) + 1.0 if len(chunks) > 1 else 7.5, 1.2 + per_col * (0.16 * max(slots, 1) + 0.25))
    axes = fig.subplots(1, len(chunks), sharex=True, squeeze=False)[0]
    no_limits = limits is None
    if limits is None:
        limits = (0.0, 1.0)
    height = 0.8 / max(slots, 1)
    truth_style = EstimatorStyle("white", "", "-")
    rows: list[tuple[pd.DataFrame, EstimatorStyle, int, bool]] = []
    if has_truth:
        rows.append((true, truth_style, 0, True))
    offset = 1 if has_truth else 0
    for j, name in enumerate(names):
        rows.append((est[est["estimator"] == name], style_map[name], j + offset, False))
    for ax, chunk in zip(axes, chunks):
        _iqr_panel(ax, rows, chunk, per_col, height, limits, no_limits)
    axes[0].set_ylabel("policy")
    for ax in axes:
        ax.set_xlabel("return")
    handles: list[Line2D | Patch] = []
    if has_truth:
        handles.append(Patch(facecolor="white", edgecolor="black", linewidth=1.6, label="true quartiles"))
    handles += [_patch_handle(n, style_map[n]) for n in names]
    handles.append(Line2D([], [], color="black", linewidth=2.4, label="median"))
    _legend(fig, handles)
    note = notes.text().replace("triangles at the axis edge", "sideways triangles at the axis edge")
    return _finish(fig, title, note)


def _iqr_panel(ax: Axes, rows: list, policies: list, slots: int, height: float, limits: tuple[float, float], no_limits: bool) -> None:
    """One panel of ``plot_interquartile_ranges``: ``policies`` top to bottom, ``slots`` rows tall."""
    quartiles = ("q25", "q50", "q75")
    ax.set_xlim(limits)
    if no_limits:
        ax.text(0.5, 0.5, "no finite quantiles", transform=ax.transAxes, ha="center", va="center")
    position = {p: i for i, p in enumerate(policies)}
    for frame, style, slot, is_truth in rows:
        sub = frame[frame["policy"].isin(position)].drop_duplicates("policy", keep="last")
        y = np.array([position[p] for p in sub["policy"]], dtype=float) - 0.4 + height * (slot + 0.5)
        q25, q50, q75 = (sub[q].to_numpy(float) for q in quartiles)
        low, mid, high = _clip(q25, limits), _clip(q50, limits), _clip(q75, limits)
        ok = np.isfinite(low) & np.isfinite(high)
        if ok.any():
            ax.barh(
                y[ok],
                high[ok] - low[ok],
                left=low[ok],
                height=height * 0.85,
                color=style.color,
                edgecolor="black",
                linewidth=1.6 if is_truth else 0.6,
                hatch="" if is_truth else _HATCHES.get(style.marker, ""),
                zorder=2,
            )
        ok_mid = np.isfinite(mid)
        if ok_mid.any():
            half = height * 0.48
            ax.vlines(mid[ok_mid], y[ok_mid] - half, y[ok_mid] + half, color="black", linewidth=2.4, zorder=3)
        yy = np.concatenate([y, y, y])
        qq = np.concatenate([q25, q50, q75])
        for sign, sel in ((+1, np.isposinf(qq)), (-1, np.isneginf(qq))):
            if sel.any():
                ax.plot(
                    np.full(int(sel.sum()), 0.98 if sign > 0 else 0.02),
                    yy[sel],
                    transform=ax.get_yaxis_transform(),
                    linestyle="none",
                    marker=">" if sign > 0 else "<",
                    markersize=8,
                    markerfacecolor=style.color,
                    markeredgecolor="black",
                    clip_on=False,
                    zorder=5,
                )
    for i in range(1, len(policies)):
        ax.axhline(i - 0.5, color="0.85", linewidth=0.8, zorder=0)
    ax.set_yticks(np.arange(len(policies), dtype=float), [_short(p, 20) for p in policies])
    ax.set_ylim(slots - 0.5, -0.5)
    ax.grid(True, axis="x", color="0.92", linewidth=0.8)
    ax.set_axisbelow(True)


# --------------------------------------------------------------------------------------------
# 8. which estimator each metric picks
# --------------------------------------------------------------------------------------------


@_literal_text
def plot_agreement_matrix(picks: pd.DataFrame, *, styles: StyleMap | None = None) -> Figure:
    """Matrix of the estimator each metric picks: rows (task, dataset), columns metric.

    ``picks`` columns: ``task, dataset, metric, estimator``; ``estimator`` None/NaN means the
    metric picked nothing (grey cell "none"); a (task, dataset, metric) absent from the table is
    a white cell. Cells are coloured by estimator (same palette) and labelled with its name.
    Duplicate (task, dataset, metric) rows raise ValueError.
    """
    notes = _Notes()
    df = _require(picks, ("task", "dataset", "metric", "estimator"), "picks")
    title = "Estimator picked by each metric"
    if len(df) == 0:
        return _message_figure(title, "no picks")
    for c in ("task", "dataset", "metric"):
        df[c] = df[c].astype(object).where(df[c].notna(), "–").astype(str)
    no_pick = df["estimator"].isna().to_numpy()
    picked: list[str | None] = [None if missing else str(e) for e, missing in zip(df["estimator"], no_pick)]
    duplicated = df.duplicated(["task", "dataset", "metric"], keep=False)
    if duplicated.any():
        keys = df.loc[duplicated, ["task", "dataset", "metric"]].drop_duplicates().itertuples(index=False)
        shown = ", ".join(f"({t}, {d}, {m})" for t, d, m in list(keys)[:5])
        raise ValueError(f"picks has several rows for (task, dataset, metric): {shown}")
    rows = _ordered_unique(zip(df["task"], df["dataset"]))
    metrics = _ordered_unique(df["metric"])
    names = sorted(_ordered_unique(e for e in picked if e is not None))
    style_map = _resolve_styles(names, styles)
    row_index = {r: i for i, r in enumerate(rows)}
    col_index = {m: j for j, m in enumerate(metrics)}

    rgb = np.ones((len(rows), len(metrics), 3))
    labels: dict[tuple[int, int], tuple[str, str]] = {}
    for task, dataset, metric, estimator in zip(df["task"], df["dataset"], df["metric"], picked):
        i, j = row_index[(task, dataset)], col_index[metric]
        color = _NO_PICK_COLOR if estimator is None else style_map[estimator].color
        rgb[i, j] = [int(color[k : k + 2], 16) / 255.0 for k in (1, 3, 5)]
        labels[(i, j)] = ("none" if estimator is None else _short(estimator, 10), _text_color(color))
    absent = len(rows) * len(metrics) - len(labels)
    if absent:
        notes.extra.append(f"{absent} blank cell(s): no row in the table")
    if no_pick.any():
        notes.extra.append(f"{int(no_pick.sum())} cell(s) where the metric picked no estimator")

    row_labels = [f"{_short(t, 18)} / {_short(d, 18)}" for t, d in rows]
    fig = _new_figure(3.0 + 1.15 * len(metrics), 1.6 + 0.42 * len(rows))
    ax = fig.add_subplot()
    ax.imshow(rgb, aspect="auto", interpolation="nearest")
    fontsize = "small" if len(metrics) <= 8 else "x-small"
    for (i, j), (text, color) in labels.items():
        ax.text(j, i, text, ha="center", va="center", color=color, fontsize=fontsize)
    ax.set_xticks(np.arange(len(metrics)), [_short(m, 18) for m in metrics])
    ax.set_yticks(np.arange(len(rows)), row_labels)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("left")
        label.set_rotation_mode("anchor")
    ax.set_xticks(np.arange(len(metrics) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(rows) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=2.0)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("metric")
    ax.set_ylabel("task / dataset")
    handles: list[Line2D | Patch] = [
        Patch(facecolor=style_map[n].color, edgecolor="0.3", label=_short(n, 40)) for n in names
    ]
    if no_pick.any():
        handles.append(Patch(facecolor=_NO_PICK_COLOR, edgecolor="0.3", label="no pick"))
    _legend(fig, handles)
    return _finish(fig, title, notes)


# --------------------------------------------------------------------------------------------
# 9. export
# --------------------------------------------------------------------------------------------


def figure_to_svg(fig: Figure) -> str:
    """The figure as an inline-ready SVG string starting with ``<svg``.

    Text is converted to paths and no metadata is written, so the SVG references nothing
    outside itself (only the SVG/XLink namespace URIs appear); the XML declaration and DOCTYPE
    are dropped so the string can be pasted into HTML as is.
    """
    buffer = io.StringIO()
    with rc_context(LITERAL_TEXT):
        fig.savefig(
            buffer,
            format="svg",
            metadata={"Creator": None, "Date": None, "Format": None, "Type": None},
        )
    text = buffer.getvalue()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


def figure_to_png_base64(fig: Figure, dpi: int = 100) -> str:
    """The figure as a base64-encoded PNG (for ``<img src="data:image/png;base64,...">``)."""
    buffer = io.BytesIO()
    with rc_context(LITERAL_TEXT):
        fig.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
