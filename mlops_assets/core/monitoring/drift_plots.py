"""Reference-vs-current distribution plots for drift reports, as Markdown images for asset metadata."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.core.monitoring.drift_profile import (MISSING, OTHER, CategoricalProfile, NumericProfile,
                                                        ReferenceProfile, category_counts, numeric_values)
from mlops_assets.core.io.plots import figure_to_markdown, new_figure

_LABELS = {OTHER: "(other)", MISSING: "(missing)"}


def drift_plots(
    profile: ReferenceProfile, current: pd.DataFrame, features: list[str] | None = None
) -> dict[str, str]:
    """One Markdown image per feature (default: all profiled features): reference vs current."""
    names = features if features is not None else [p.name for p in profile.features]
    return {name: feature_plot(profile.feature(name), current[name]) for name in names}


def prediction_drift_plot(profile: ReferenceProfile, scores) -> str:
    if profile.prediction is None:
        raise ValueError("the reference profile was built without scores")
    return feature_plot(profile.prediction, pd.Series(np.asarray(scores, dtype=np.float64)))


def feature_plot(prof: NumericProfile | CategoricalProfile, values: pd.Series) -> str:
    fig, ax = new_figure()
    if isinstance(prof, NumericProfile):
        counts = prof.to_bins(prof.scan(numeric_values(values)).cells)
        edges = prof.bin_edges()
        widths = np.diff(edges)
        # Densities, since quantile bins have unequal widths; the end bins stop at the reference's range.
        ax.stairs(np.asarray(prof.proportions) / widths, edges, label="reference", fill=True, alpha=0.4)
        if counts.sum():
            ax.stairs(counts / counts.sum() / widths, edges, label="current", linewidth=1.5)
        ax.set_ylabel("density")
    else:
        counts = category_counts(values, prof.categories)
        shown = [i for i, c in enumerate(prof.categories) if prof.proportions[i] > 0 or counts[i] > 0]
        x = np.arange(len(shown))
        current = counts / counts.sum() if counts.sum() else np.zeros(len(counts))
        ax.bar(x - 0.2, [prof.proportions[i] for i in shown], width=0.4, label="reference", alpha=0.6)
        ax.bar(x + 0.2, [current[i] for i in shown], width=0.4, label="current")
        ax.set_xticks(x, [_LABELS.get(prof.categories[i], prof.categories[i]) for i in shown], rotation=45)
        ax.set_ylabel("share of rows")
    ax.set_title(prof.name)
    ax.legend()
    return figure_to_markdown(fig, title=prof.name)
