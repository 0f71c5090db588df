"""The names of the promotion gates a person sees: each blocking asset check in the UI groups the gate results
(criteria) whose names start with its prefixes. One table, so the UI, the CLI and the registry's refusals
name a gate the same way. No imports: the registry uses it too."""

from __future__ import annotations

GATE_CHECKS = {
    "gate_beats_champion": ("key_metric_vs_champion",),
    "gate_slices": ("slice_regression",),
    "gate_first_model_floors": ("floor",),
    "gate_latency": ("latency",),
    "gate_artifact_size": ("artifact_size",),
    "gate_calibration": ("calibration",),
    "gate_no_row_overlap": ("row_overlap",),
    "gate_no_target_leakage": ("target_leakage",),
}


def check_of(criterion: str) -> str | None:
    """The UI check that shows a gate result named `criterion` (None for a name no check groups)."""
    return next((check for check, prefixes in GATE_CHECKS.items() if criterion.startswith(prefixes)), None)


def labelled(criterion: str) -> str:
    """`gate_slices: slice_regression`: the check's name as the UI shows it, then the criterion."""
    check = check_of(criterion)
    return f"{check}: {criterion}" if check else criterion
