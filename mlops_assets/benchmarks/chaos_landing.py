"""Hostile names and contents delivered next to a good file, through the landing sensor and the ingestion job.

Every hostile file must be rejected with a reason (quarantined, or skipped with a warning naming it) and leave
no partition; the good day must be ingested with its exact row count; a bad re-delivery of a day already
accepted must keep the accepted partition."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pandas as pd

from mlops_assets.benchmarks.chaos_common import SPECS, Location, Result, Wedged
from mlops_assets.core.ingestion.names import features_file_name
from mlops_assets.demo import corruptions, synthetic

START = dt.date(2025, 1, 1)
TODAY = dt.datetime.now(dt.timezone.utc).date()


def _lines(content: bytes) -> list[str]:
    return content.decode().rstrip("\n").split("\n")


def _join(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _tz_offset(good: bytes) -> bytes:
    lines = _lines(good)
    first = lines[1].split(",")[0]
    lines[1] = lines[1].replace(first, first.replace(" ", "T") + "+01:00", 1)
    return _join(lines)


def _duplicated_header(good: bytes) -> bytes:
    lines = _lines(good)
    first = lines[0].split(",")[-1]
    return _join([lines[0] + "," + first] + [ln + "," + ln.split(",")[-1] for ln in lines[1:]])


def _short_row(good: bytes) -> bytes:
    lines = _lines(good)
    lines[3] = ",".join(lines[3].split(",")[:-2])
    return _join(lines)


# Contents, each delivered under the right name for its own day: (label, how to break the good bytes).
CONTENTS = {
    "utf16": lambda spec, b, good: good.decode().encode("utf-16"),
    "nul_byte": lambda spec, b, good: good.replace(b"\n", b"\n\x00", 2),
    "latin1": lambda spec, b, good: good.replace(b"\n", "\n\xfc".encode("latin-1"), 1),
    "duplicated_header": lambda spec, b, good: _duplicated_header(good),
    "short_row": lambda spec, b, good: _short_row(good),
    "timezone_offset": lambda spec, b, good: _tz_offset(good),
    **{kind: (lambda spec, b, good, _k=kind: corruptions.features_file_bytes(spec, b, _k))
       for kind in ("truncated_csv", "empty_file", "header_only", "wrong_dtype", "nan_flood", "inf_flood",
                    "out_of_range", "missing_column", "duplicated_rows")},
}
# Names, each holding a good file's bytes: (label, name for day d or None for a special entry made by hand).
NAMES = {
    "not_a_date": lambda d: "features_2025-02-30.csv",
    "before_start": lambda d: "features_2024-12-31.csv",
    "future_day": lambda d: features_file_name(TODAY + dt.timedelta(days=7)),
    "pattern_mismatch": lambda d: f"features_{d:%Y%m%d}.csv",
    "trailing_newline": lambda d: features_file_name(d) + "\n",
    "hidden_dotfile": lambda d: "." + features_file_name(d),
    "dotdot_in_name": lambda d: features_file_name(d) + "..",
    "control_char": lambda d: features_file_name(d).replace(".csv", "\x07.csv"),
    "symlink_out": None,
    "fifo": None,
}
FAST = ("trailing_newline", "utf16", "nan_flood")


def hostile_landing(work: Path, only: tuple[str, ...] | None = None) -> list[Result]:
    loc = Location(work / "data", SPECS / "synthetic.toml")
    spec, project = loc.project.spec, loc.project
    chosen = [k for k in (*CONTENTS, *NAMES) if only is None or k in only]
    batches = list(synthetic.generate_days(spec, synthetic.ScenarioConfig(
        "stable", START, 2 + len(chosen), rows_per_day=40, seed=3)))
    accepted, good, hostile = batches[0], batches[1], dict(zip(chosen, batches[2:]))
    root = project.landing.root
    results: list[Result] = []

    # an accepted day first
    project.landing.deliver(features_file_name(accepted.day), corruptions.features_file_bytes(spec, accepted))
    loc.tick_landing()
    kept = project.store.read("raw_batch", accepted.day.isoformat())

    # then the good day, each hostile file, and a bad re-delivery of the accepted day, all in one landing zone
    delivered: dict[str, tuple[str, str, bytes]] = {}  # label -> (name, day it would be, bytes)
    project.landing.deliver(features_file_name(good.day), corruptions.features_file_bytes(spec, good))
    redelivery = corruptions.features_file_bytes(spec, accepted, "out_of_range")
    project.landing.deliver(features_file_name(accepted.day), redelivery)
    outside = work / "outside.csv"
    for label, batch in hostile.items():
        good_bytes = corruptions.features_file_bytes(spec, batch)
        if label in CONTENTS:
            name, content = features_file_name(batch.day), CONTENTS[label](spec, batch, good_bytes)
            (root / name).write_bytes(content)
        elif label == "symlink_out":
            name, content = features_file_name(batch.day), good_bytes
            outside.write_bytes(content)
            os.symlink(outside, root / name)
        elif label == "fifo":
            name, content = features_file_name(batch.day), b""
            os.mkfifo(root / name)
        else:
            name, content = NAMES[label](batch.day), good_bytes
            (root / name).write_bytes(content)
        delivered[label] = (name, batch.day.isoformat(), content)

    warned = ""
    try:
        for _ in range(3):  # until quiet
            runs, logged = loc.tick_landing()
            warned += logged + "\n"
            if runs == 0:
                break
    except Wedged as exc:
        return [Result(f"landing/{label}", "wedged", str(exc)) for label in ["good_day", *delivered]]

    records = project.quarantine.records()
    # the good day: exact rows
    day = good.day.isoformat()
    rows = len(project.store.read("raw_batch", day)) if project.store.exists("raw_batch", day) else 0
    if rows == len(good.features) and project.store.exists("feature_table", day):
        results.append(Result("landing/good_day_beside_them", "recovered", f"{rows} rows ingested"))
    else:
        results.append(Result("landing/good_day_beside_them", "lost", f"{rows} of {len(good.features)} rows"))
    # the accepted day re-delivered broken
    now = project.store.read("raw_batch", accepted.day.isoformat())
    sha = hashlib.sha256(redelivery).hexdigest()
    why = [r.reason for r in records if r.sha256 == sha]
    try:
        pd.testing.assert_frame_equal(now, kept)
        same = True
    except AssertionError:
        same = False
    if not same:
        results.append(Result("landing/bad_redelivery_of_accepted_day", "lost", "the accepted partition changed"))
    else:
        results.append(Result("landing/bad_redelivery_of_accepted_day", "rejected" if why else "inconsistent",
                              (why[0] if why else "kept, but the bad version is not quarantined")[:90]))
    # each hostile file
    for label, (name, partition, content) in delivered.items():
        sha = hashlib.sha256(content).hexdigest()
        reasons = [r.reason for r in records if r.file == name and (r.sha256 == sha or label == "symlink_out")]
        written = project.store.exists("raw_batch", partition) if _is_day(partition) else False
        named = name in warned or repr(name) in warned or name.strip() in warned
        left = os.path.lexists(root / name)
        if written:
            results.append(Result(f"landing/{label}", "inconsistent", f"partition {partition} was written"))
        elif reasons:
            results.append(Result(f"landing/{label}", "rejected", "quarantined: " + reasons[0][:80]))
        elif named and left:
            line = next((ln for ln in warned.splitlines() if name.strip() in ln or repr(name) in ln), "")
            results.append(Result(f"landing/{label}", "rejected", "left in landing: " + line[:80]))
        elif name.startswith(".") and left:  # by design: a dot file is an upload still in progress
            results.append(Result(f"landing/{label}", "rejected", "left untouched: dot files are in-progress uploads"))
        elif not left:
            results.append(Result(f"landing/{label}", "lost", "gone from landing, neither quarantined nor archived"))
        else:
            results.append(Result(f"landing/{label}", "inconsistent", "neither quarantined nor reported"))
    return results


def _is_day(key: str) -> bool:
    try:
        return dt.date.fromisoformat(key).isoformat() == key
    except ValueError:
        return False
