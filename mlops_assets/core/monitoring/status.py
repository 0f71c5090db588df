"""The one rule that turns a monitored figure into a status: OK, WARN or ERROR."""

from __future__ import annotations

STATUSES = ("OK", "WARN", "ERROR")


def status_for(value: float, warn_at: float, error_at: float, higher_is_worse: bool = True) -> str:
    """ERROR once `value` reaches `error_at`, else WARN once it reaches `warn_at`, else OK.

    "Reaches" means >= when higher is worse (a drop, a cost ratio, a drift share) and <= when lower is worse.
    The limits are inclusive; a NaN value compares false with both and is OK (nothing measured, nothing to say).
    """
    def reached(limit: float) -> bool:
        return value >= limit if higher_is_worse else value <= limit

    if reached(error_at):
        return "ERROR"
    if reached(warn_at):
        return "WARN"
    return "OK"
