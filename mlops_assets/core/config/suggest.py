"""Did-you-mean for a mistyped name: the closest known one, if it is close enough to be the likely intent."""

from __future__ import annotations

import difflib


def did_you_mean(word: str, known) -> str | None:
    # 0.6 is difflib's own default: `windows_days` finds `window_days`, `colour` finds nothing.
    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1, cutoff=0.6)
    return close[0] if close else None
