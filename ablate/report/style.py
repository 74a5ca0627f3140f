"""What every chart of a report shares: colours, sizes, the figure factory and small layout helpers.

The Agg backend is used through `matplotlib.figure.Figure` directly, so no global pyplot state and no
display is involved.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from .analysis import STATE_LABEL

MEASURED, PAPER, MISSING = "#3b6ea8", "#e08a2c", "#b8b8b8"
PALETTE = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd", "#937860", "#da8bc3", "#8c8c8c",
           "#dd8452"]
ROW_IN = 0.34  # inches per bar row: 20 rows of 9 pt labels never touch
CHAR_IN = 0.068  # approximate width of one 9 pt character


def figure(width: float, height: float) -> Figure:
    """A Figure of width x height inches on its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=110)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return fig


def group_colors(groups: list[str]) -> dict[str, str]:
    """group -> colour, in order of first appearance."""
    out: dict[str, str] = {}
    for g in groups:
        if g not in out:
            out[g] = PALETTE[len(out) % len(PALETTE)]
    return out


def runs(values: list[str]) -> list[tuple[str, int, int]]:
    """Consecutive runs of equal values: (value, first row, last row)."""
    out: list[tuple[str, int, int]] = []
    for i, v in enumerate(values):
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1], i)
        else:
            out.append((v, i, i))
    return out


def state_label(state: Any) -> str:
    """The word a chart shows for a variant's state (failed, not run, ...)."""
    return STATE_LABEL.get(str(state), str(state))


def plain_axes(ax: Any) -> None:
    """Open axes (no top and right spines), a light grid and 8 pt tick labels."""
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(color="#e4e4e4", lw=0.6)
    ax.tick_params(labelsize=8)


def put_title(fig: Figure, text: str, y: float = 0.985) -> None:
    """The chart's bold title at the top left."""
    fig.text(0.01, y, text, fontsize=11, fontweight="bold", va="top")
