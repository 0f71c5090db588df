"""Small plots for asset metadata: PNGs embedded as data URIs in Markdown, which the Dagster UI renders."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402


def figure_to_markdown(fig, title: str = "") -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buf.getvalue()).decode()
    heading = f"**{title}**\n\n" if title else ""
    return f"{heading}![{title or 'plot'}](data:image/png;base64,{encoded})"


def new_figure(width: float = 4.5, height: float = 3.2):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.grid(alpha=0.3)
    return fig, ax
