"""Figures described once and drawn twice: as interactive plotly for the report's page and as
matplotlib PNGs, with the same data, colours and axes.

Colours are colour-blind safe: Okabe and Ito's palette for groups, cividis for values. Log
axes are labelled with plain numbers at round values (16, 32, 64; 1e-3, 2e-3) rather than
with every minor tick.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchlr.files import write_bytes_atomically

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
GREY = "#999999"
COLORSCALE = "cividis"
MAX_TICKS = 8
_MATPLOTLIB_MARKERS = {"circle": "o", "x": "x", "diamond": "D", "dash": "_"}
_PLOTLY_MARKERS = {"circle": "circle", "x": "x", "diamond": "diamond", "dash": "line-ew-open"}


@dataclasses.dataclass(frozen=True)
class Series:
    """What one figure draws once: ``points`` (coloured by ``values`` on a colour scale, or
    ``color``), a ``line`` (``dash``ed or not), or a ``band`` from ``y`` to ``y_high``."""

    kind: str
    x: Sequence[Any]
    y: Sequence[float]
    name: str = ""
    color: str = OKABE_ITO[0]
    values: Sequence[float] | None = None
    value_label: str = ""
    value_ticks: Sequence[tuple[float, str]] = ()
    """Where the colour bar is labelled, and with what (default: its own numbers)."""
    marker: str = "circle"
    size: float = 7
    dash: bool = False
    y_high: Sequence[float] | None = None
    hover: Sequence[str] | None = None


@dataclasses.dataclass(frozen=True)
class Figure:
    """A titled plot: its series, axis labels, which axes are logarithmic and, for a categorical
    x axis, its ``categories`` in order."""

    title: str
    x_label: str
    y_label: str
    series: list[Series]
    x_log: bool = False
    y_log: bool = False
    categories: Sequence[str] | None = None
    caption: str = ""
    x_whole: bool = False
    """The x axis counts things (batch sizes): log ticks at powers of two."""


def tick_label(value: float) -> str:
    """16, 0.5 and 0.05 as they are; 0.001 as 1e-3."""
    if value >= 0.01:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def log_ticks(values: Sequence[float], whole: bool = False) -> list[float]:
    """Round values for a log axis over ``values``: powers of two for ``whole`` numbers, else
    1, 2 and 5 times powers of ten (just the powers of ten over a wide range); at most
    :data:`MAX_TICKS`, thinned evenly."""
    finite = [value for value in values if value > 0 and math.isfinite(value)]
    if not finite:
        return []
    low, high = min(finite), max(finite)
    if whole:
        ticks = [
            2.0**power
            for power in range(math.floor(math.log2(low)), math.ceil(math.log2(high)) + 1)
        ]
    else:
        steps = (1, 2, 5) if math.log10(high / low) < 3 else (1,)
        ticks = [
            step * 10.0**power
            for power in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
            for step in steps
        ]
    ticks = [tick for tick in ticks if low / 2 <= tick <= high * 2] or [low]
    stride = math.ceil(len(ticks) / MAX_TICKS)
    return ticks[::stride]


def _all(figure: Figure, axis: str) -> list[float]:
    return [
        value
        for series in figure.series
        for value in (series.x if axis == "x" else [*series.y, *(series.y_high or [])])
    ]


def to_plotly(figure: Figure) -> Any:
    """The figure as a plotly Figure."""
    import plotly.graph_objects as go

    traces = []
    for series in figure.series:
        common: dict[str, Any] = {
            "x": list(series.x),
            "name": series.name,
            "showlegend": bool(series.name),
            "hovertext": series.hover,
        }
        if series.kind == "points":
            marker: dict[str, Any] = {
                "size": series.size,
                "symbol": _PLOTLY_MARKERS[series.marker],
                "color": series.color,
                "line": {
                    "width": 2 if series.marker == "dash" else 0.5,
                    "color": series.color if series.marker == "dash" else "white",
                },
            }
            if series.values is not None:
                colorbar: dict[str, Any] = {"title": series.value_label}
                if series.value_ticks:
                    colorbar.update(
                        tickvals=[tick for tick, _ in series.value_ticks],
                        ticktext=[text for _, text in series.value_ticks],
                    )
                marker.update(
                    color=list(series.values),
                    colorscale=COLORSCALE,
                    showscale=True,
                    colorbar=colorbar,
                )
            traces.append(go.Scatter(**common, y=list(series.y), mode="markers", marker=marker))
        elif series.kind == "line":
            traces.append(
                go.Scatter(
                    **common,
                    y=list(series.y),
                    mode="lines+markers",
                    line={"color": series.color, "dash": "dash" if series.dash else "solid"},
                    marker={"size": 4},
                )
            )
        else:
            traces.append(
                go.Scatter(
                    x=list(series.x),
                    y=list(series.y_high or []),
                    mode="lines",
                    line={"width": 0},
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
            traces.append(
                go.Scatter(
                    x=list(series.x),
                    y=list(series.y),
                    mode="lines",
                    line={"width": 0},
                    fill="tonexty",
                    fillcolor=_transparent(series.color),
                    name=series.name,
                    showlegend=bool(series.name),
                )
            )
    plot = go.Figure(traces)
    plot.update_layout(
        title=figure.title,
        xaxis_title=figure.x_label,
        yaxis_title=figure.y_label,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    for axis, log in (("x", figure.x_log), ("y", figure.y_log)):
        if log:
            ticks = log_ticks(_all(figure, axis), whole=axis == "x" and figure.x_whole)
            plot.update_layout(
                {
                    f"{axis}axis": {
                        "type": "log",
                        "tickvals": ticks,
                        "ticktext": [tick_label(tick) for tick in ticks],
                    }
                }
            )
    if figure.categories is not None:
        plot.update_xaxes(
            type="category", categoryorder="array", categoryarray=list(figure.categories)
        )
    return plot


def to_matplotlib(figure: Figure) -> Any:
    """The figure as a matplotlib Figure, 8 x 5 inches."""
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator, NullFormatter

    canvas, axes = pyplot.subplots(figsize=(8, 5))
    position = {name: index for index, name in enumerate(figure.categories or [])}

    def xs(series: Series) -> list[Any]:
        return (
            [position[value] for value in series.x]
            if figure.categories is not None
            else list(series.x)
        )

    for series in figure.series:
        label = series.name or None
        if series.kind == "points":
            colours: dict[str, Any] = (
                {"c": list(series.values), "cmap": COLORSCALE}
                if series.values is not None
                else {"color": series.color}
            )
            marker = _MATPLOTLIB_MARKERS[series.marker]
            outline = (
                {"linewidths": 2} if marker in "x_" else {"edgecolors": "white", "linewidths": 0.5}
            )
            drawn = axes.scatter(
                xs(series),
                list(series.y),
                s=series.size**2,
                marker=marker,
                label=label,
                zorder=3,
                **colours,
                **outline,
            )
            if series.values is not None:
                bar = canvas.colorbar(drawn, ax=axes, label=series.value_label)
                if series.value_ticks:
                    bar.set_ticks(
                        [tick for tick, _ in series.value_ticks],
                        labels=[text for _, text in series.value_ticks],
                    )
        elif series.kind == "line":
            axes.plot(
                xs(series),
                list(series.y),
                color=series.color,
                linestyle="--" if series.dash else "-",
                marker="." if not series.dash else None,
                label=label,
                zorder=2,
            )
        else:
            axes.fill_between(
                xs(series),
                list(series.y),
                list(series.y_high or []),
                color=series.color,
                alpha=0.2,
                label=label,
                linewidth=0,
            )
    for axis, log, ticks_of in (("x", figure.x_log, axes.xaxis), ("y", figure.y_log, axes.yaxis)):
        if log:
            getattr(axes, f"set_{axis}scale")("log")
            ticks = log_ticks(_all(figure, axis), whole=axis == "x" and figure.x_whole)
            getattr(axes, f"set_{axis}ticks")(ticks, [tick_label(tick) for tick in ticks])
            ticks_of.set_minor_formatter(NullFormatter())
    if figure.categories is not None:
        axes.set_xticks(
            range(len(figure.categories)),
            list(figure.categories),
            rotation=20 if len(figure.categories) > 5 else 0,
        )
    elif not figure.x_log and all(isinstance(value, int) for value in _all(figure, "x")):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials and epochs: no 2.5
    axes.set(title=figure.title, xlabel=figure.x_label, ylabel=figure.y_label)
    axes.grid(alpha=0.3)
    if any(series.name for series in figure.series):
        axes.legend(fontsize="small", framealpha=0.8)
    if figure.caption:
        canvas.text(0.01, 0.01, figure.caption, fontsize="small", color="#555555")
    canvas.tight_layout(rect=(0, 0.04 if figure.caption else 0, 1, 1))
    return canvas


def png(figure: Figure) -> bytes:
    """``figure`` drawn with matplotlib as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or assumed
    from matplotlib import pyplot

    canvas = to_matplotlib(figure)
    try:
        drawn = io.BytesIO()
        canvas.savefig(drawn, dpi=110, format="png")
        return drawn.getvalue()
    finally:
        pyplot.close(canvas)


def save_png(figure: Figure, path: Path) -> None:
    """Draw ``figure`` into the PNG ``path``, replacing a previous file only once the new one is whole."""
    write_bytes_atomically(path, png(figure))


def _transparent(color: str, alpha: float = 0.2) -> str:
    red, green, blue = (int(color[index : index + 2], 16) for index in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"
