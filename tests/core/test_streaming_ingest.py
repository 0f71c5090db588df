"""The streaming reader (core/ingestion/streaming.py) against the in-memory reference (validation.read_batch +
validate_batch + PartitionStore.write, the path ingestion used before): on the fixtures, every generated
corruption and every hostile content, the same rejection (reason and column), the same failure table, and for an
accepted file the same Parquet table (column names, types, values, row order). No Dagster here."""

from __future__ import annotations

import datetime as dt
import io

import duckdb
import pandas as pd
import pytest

from conftest import SPECS
from mlops_assets.core.config.spec import load_spec, spec_from_dict
from mlops_assets.core.ingestion.streaming import Progress, read_validated, scan_file, spool
from mlops_assets.core.ingestion.validation import BatchRejected, read_batch, validate_batch
from mlops_assets.core.io.storage import PartitionStore
from mlops_assets.demo import corruptions, synthetic

DAY = "2025-01-01"
FILE = f"features_{DAY}.csv"
SYNTHETIC = load_spec(SPECS / "synthetic.toml")
ELEC2 = load_spec(SPECS / "elec2.toml")
REGRESSION = spec_from_dict({
    "dataset": {"name": "reg", "timestamp": "ts", "entity_id": "id", "target": "y", "task": "regression",
                "start_date": "2025-01-01"},
    "features": {"a": {"type": "numeric", "min": 0.0}, "b": {"type": "categorical", "categories": ["x", "y"]}},
})
PANDERA_ORDER = ("coerce_dtype", "dtype(", "finite")  # examples pandera lists in an order of its own


def good_bytes(rows=40, seed=3) -> bytes:
    [batch] = synthetic.generate_days(SYNTHETIC, synthetic.ScenarioConfig("stable", dt.date(2025, 1, 1), 1,
                                                                          rows_per_day=rows, seed=seed))
    return corruptions.features_file_bytes(SYNTHETIC, batch)


def labels_bytes(rows=40) -> bytes:
    [batch] = synthetic.generate_days(SYNTHETIC, synthetic.ScenarioConfig("stable", dt.date(2025, 1, 1), 1,
                                                                          rows_per_day=rows, seed=3))
    return corruptions.csv_bytes(batch.labels)


def old_path(content: bytes, spec, kind, partition, tmp_path):
    """(rejection, failures, table) by the in-memory reference."""
    try:
        frame = read_batch(content, FILE, partition, spec, kind)
    except BatchRejected as exc:
        return (exc.reason, exc.column), None, None
    result = validate_batch(frame, spec, partition, kind)
    if not result.passed:
        return None, result, None
    store = PartitionStore(tmp_path / "old")
    return None, result, store.write("raw_batch", partition, frame)


def new_path(content: bytes, spec, kind, partition, tmp_path, messages=None):
    path = tmp_path / "landed.csv"
    path.write_bytes(content)
    staged = tmp_path / ".staged"
    progress = Progress(messages.append if messages is not None else None, every_seconds=0)
    try:
        loaded = read_validated(path, scan_file(path), FILE, partition, spec, kind, staged=staged,
                                work=tmp_path / "work", progress=progress)
    except BatchRejected as exc:
        assert not staged.exists()
        return (exc.reason, exc.column), None, None, None
    if not loaded.validation.passed:
        assert not staged.exists()
        return None, loaded.validation, None, loaded
    return None, loaded.validation, staged, loaded


def table(path) -> tuple[list, pd.DataFrame]:
    con = duckdb.connect()
    schema = [(name, kind) for name, kind, *_ in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()]
    return schema, con.execute(f"SELECT * FROM read_parquet('{path}')").df()


def assert_same(content: bytes, tmp_path, spec=SYNTHETIC, kind="features", partition=DAY):
    old_rejected, old_result, old_table = old_path(content, spec, kind, partition, tmp_path)
    new_rejected, new_result, new_table, loaded = new_path(content, spec, kind, partition, tmp_path)
    assert new_rejected == old_rejected
    if old_rejected:
        return old_rejected, loaded
    assert new_result.rows == old_result.rows
    assert [(f["column"], f["check"], f["count"]) for f in new_result.failures] == [
        (f["column"], f["check"], f["count"]) for f in old_result.failures]
    for new, old in zip(new_result.failures, old_result.failures):
        if new["check"].startswith(PANDERA_ORDER):  # ours are the first in file order
            assert len(new["examples"]) == len(old["examples"])
            if new["count"] <= len(new["examples"]):
                assert sorted(new["examples"]) == sorted(old["examples"])
            elif new["check"].startswith("finite"):
                assert set(new["examples"]) <= {"inf", "-inf"}
        else:
            assert new["examples"] == old["examples"], new["check"]
    assert (new_table is None) == (old_table is None)
    if old_table is not None:
        old_schema, old_frame = table(old_table)
        new_schema, new_frame = table(new_table)
        assert new_schema == old_schema
        pd.testing.assert_frame_equal(new_frame, old_frame)
    return new_result, loaded


# ------------------------------------------------------------------------------------------- same outcome


def test_a_good_file_gives_the_same_table_through_the_fast_path(tmp_path):
    result, loaded = assert_same(good_bytes(), tmp_path)
    assert result.passed and loaded.path == "fast"


def test_labels_and_elec2_days_give_the_same_tables(tmp_path, elec2_history):
    assert_same(labels_bytes(), tmp_path / "labels", kind="labels")
    for day in sorted(elec2_history)[:3]:
        frame = elec2_history[day]
        for kind, columns in (("features", ELEC2.batch_columns), ("labels", ELEC2.label_columns)):
            content = frame[columns].to_csv(index=False, lineterminator="\n").encode()
            result, loaded = assert_same(content, tmp_path / f"{day}-{kind}", spec=ELEC2, kind=kind,
                                         partition=day.isoformat())
            assert result.passed and loaded.path == "fast"


@pytest.mark.parametrize("corruption", corruptions.CORRUPTIONS)
def test_every_generated_corruption_gives_the_same_outcome(tmp_path, corruption):
    [batch] = synthetic.generate_days(SYNTHETIC, synthetic.ScenarioConfig("stable", dt.date(2025, 1, 1), 1,
                                                                          rows_per_day=40, seed=3))
    assert_same(corruptions.features_file_bytes(SYNTHETIC, batch, corruption), tmp_path)


def _lines(content: bytes) -> list[str]:
    return content.decode().rstrip("\n").split("\n")


def _edit(cells: dict[tuple[int, int], str]) -> bytes:
    rows = [line.split(",") for line in _lines(good_bytes(12))]
    for (i, j), value in cells.items():
        rows[i][j] = value
    return ("\n".join(",".join(r) for r in rows) + "\n").encode()


GOOD = good_bytes(12)
HEADER, *ROWS = _lines(GOOD)
HOSTILE = {
    "duplicated header": (HEADER + ",spend\n" + "\n".join(r + ",0.5" for r in ROWS) + "\n").encode(),
    "utf-16": GOOD.decode().encode("utf-16"),
    "utf-16-be with mark": b"\xfe\xff" + GOOD.decode().encode("utf-16-be"),
    "utf-32": GOOD.decode().encode("utf-32"),
    "utf-16 without mark": GOOD.decode().encode("utf-16-le"),
    "latin-1": GOOD.replace(b"south", "s\xfcd".encode("latin-1"), 1),
    "cut utf-8 at the end": GOOD + "é".encode()[:1],
    "utf-8 bom then latin-1": b"\xef\xbb\xbf" + GOOD.replace(b"north", b"n\xf6rth", 1),
    "nul byte": GOOD.replace(b"south", b"sou\x00th", 1),
    "timezone offset": _edit({(1, 0): ROWS[0].split(",")[0].replace(" ", "T") + "+01:00"}),
    "utc z": ("\n".join([HEADER] + [r.replace(",", "Z,", 1) for r in ROWS]) + "\n").encode(),
    "short row": ("\n".join([HEADER] + ROWS[:2] + [",".join(ROWS[2].split(",")[:-2])] + ROWS[3:]) + "\n").encode(),
    "long row": ("\n".join([HEADER] + ROWS[:2] + [ROWS[2] + ",7"] + ROWS[3:]) + "\n").encode(),
    "row with two fields more": ("\n".join([HEADER] + ROWS[:2] + [ROWS[2] + ",7,8"] + ROWS[3:]) + "\n").encode(),
    "trailing comma": ("\n".join([HEADER] + ROWS[:2] + [ROWS[2] + ","] + ROWS[3:]) + "\n").encode(),
    "blank header name": ("\n".join([HEADER + ","] + [r + ",x" for r in ROWS]) + "\n").encode(),
    "header only": (HEADER + "\n").encode(),
    "header only no newline": HEADER.encode(),
    "empty": b"",
    "blank lines only": b"\n\n",
    "last line cut after a comma": ("\n".join([HEADER] + ROWS[:-1] + [",".join(ROWS[-1].split(",")[:-1]) + ","])).encode(),
    "last line short without newline": ("\n".join([HEADER] + ROWS[:-1] + [",".join(ROWS[-1].split(",")[:5])])).encode(),
    "unclosed quote": ("\n".join([HEADER] + ROWS[:2] + ['"' + ROWS[2]] + ROWS[3:]) + "\n").encode(),
}
BENIGN = {
    "crlf": GOOD.replace(b"\n", b"\r\n"),
    "utf-8 bom": b"\xef\xbb\xbf" + GOOD,
    "utf-8 bom and crlf": b"\xef\xbb\xbf" + GOOD.replace(b"\n", b"\r\n"),
    "no final newline": GOOD.rstrip(b"\n"),
    "blank lines": GOOD.replace(b"\n", b"\n\n", 3),
    "whitespace-only line": GOOD.replace(b"\n", b"\n   \n", 2),
    "leading blank lines": b"\n\n" + GOOD,
    "mixed line ends": GOOD.replace(b"\n", b"\r\n", 3),
    "quoted values": _edit({(1, 8): '"north"', (2, 1): '"C,1"', (3, 1): '"C ""2"""', (4, 1): '"C\n3"'}),
    "spaces around numbers": _edit({(1, 2): " 1.5", (2, 3): "2.5 "}),
    "T timestamps and fractions": _edit({(1, 0): "2025-01-01T00:00:01", (2, 0): "2025-01-01 00:00:02.25",
                                         (3, 0): "2025-01-01", (4, 0): "2025-01-01 10:00"}),
    "nanosecond timestamps": _edit({(1, 0): "2025-01-01 00:00:01.123456789"}),
    "extra column": ("\n".join([HEADER + ",note"] + [r + f",n{i}" for i, r in enumerate(ROWS)] + [""])).encode(),
    "extra columns differing only in case": ("\n".join([HEADER + ",note,Note"] + [r + ",a,b" for r in ROWS] + [""])).encode(),
    "extra empty column": ("\n".join([HEADER + ",note"] + [r + "," for r in ROWS] + [""])).encode(),
    "large and small numbers": _edit({(1, 2): "1e-5", (2, 3): "-0", (3, 4): "+2", (4, 5): "1E1", (5, 6): ".5"}),
}
CONTENT_FAILURES = {
    "bad numbers": _edit({(1, 2): "abc", (2, 2): "", (3, 3): "NA", (4, 4): "nan", (5, 5): "inf"}),
    "every value of a column bad": _edit({(i, 7): f"{i};5" for i in range(1, 13)}),
    "quoted empty number": _edit({(1, 2): '""'}),
    "text after a closing quote": ("\n".join([HEADER] + ROWS[:2] + ['"ab"c' + ROWS[2][ROWS[2].index(","):]]
                                             + ROWS[3:]) + "\n").encode(),
    "categories": _edit({(1, 8): "mars", (2, 8): "", (3, 9): "1", (4, 9): "2.0", (5, 9): " pro"}),
    "timestamps outside the day": _edit({(1, 0): "2025-01-02 00:00:00", (2, 0): "2024-12-31 23:59:59",
                                         (3, 1): ""}),
    "unparseable and missing timestamps": _edit({(1, 0): "yesterday", (2, 0): ""}),
    "a missing timestamp": _edit({(2, 0): ""}),
    "duplicate entity": _edit({(2, 1): ROWS[0].split(",")[1], (2, 0): ROWS[0].split(",")[0]}),
    "duplicate keys with a missing entity": _edit({(2, 1): "", (3, 1): "", (3, 0): ROWS[1].split(",")[0]}),
    "duplicate keys with missing timestamps": _edit({(2, 0): "", (3, 0): "", (3, 1): ROWS[1].split(",")[1]}),
    "duplicate keys missing both": _edit({(2, 0): "", (3, 0): "", (3, 1): "", (2, 1): ""}),
    "key column missing": ("\n".join(",".join(line.split(",")[1:]) for line in _lines(_edit({(3, 1): ROWS[0].split(",")[1]}))) + "\n").encode(),
    "out of range and inf": _edit({(1, 2): "11", (2, 2): "-10.5", (3, 2): "-inf", (4, 3): "10.0"}),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_contents_are_refused_with_the_same_reason(tmp_path, name):
    rejected, _ = assert_same(HOSTILE[name], tmp_path)
    assert isinstance(rejected, tuple)


@pytest.mark.parametrize("name", list(BENIGN))
def test_harmless_variations_read_like_before(tmp_path, name):
    result, _ = assert_same(BENIGN[name], tmp_path)
    assert result.passed


@pytest.mark.parametrize("name", list(CONTENT_FAILURES))
def test_content_failures_give_the_same_failure_table(tmp_path, name):
    result, _ = assert_same(CONTENT_FAILURES[name], tmp_path)
    assert not result.passed


@pytest.mark.parametrize("values", [["1", "2", "3"], ["1.0", "2", "3"], ["01", "2", "3"], ["x", "1", "y"]])
def test_numeric_categories_are_typed_as_pandas_types_them(tmp_path, values):
    spec = spec_from_dict({
        "dataset": {"name": "cat", "timestamp": "ts", "target": "y", "task": "binary_classification",
                    "start_date": "2025-01-01"},
        "features": {"c": {"type": "categorical", "categories": ["1", "2", "3", "x", "y"]}},
    })
    content = "ts,c\n" + "".join(f"2025-01-01 0{i}:00:00,{v}\n" for i, v in enumerate(values))
    assert_same(content.encode(), tmp_path, spec=spec)


@pytest.mark.parametrize("target", [["1", "2", "3"], ["1.5", "2", "3"], ["1", "x", "3"], ["1", "", "inf"]])
def test_regression_labels(tmp_path, target):
    content = "ts,id,y\n" + "".join(f"2025-01-01 0{i}:00:00,e{i},{v}\n" for i, v in enumerate(target))
    assert_same(content.encode(), tmp_path, spec=REGRESSION, kind="labels")


@pytest.mark.parametrize("target", ["1", "1.0", "true", "", "2"])
def test_classification_labels(tmp_path, target):
    content = f"event_time,customer_id,churned\n2025-01-01 10:00:00,C1,0\n2025-01-01 10:00:00,C2,{target}\n"
    assert_same(content.encode(), tmp_path, kind="labels")


# ------------------------------------------------------------------------------------------- stricter on purpose


def test_non_iso_timestamps_pandas_guessed_are_now_refused_naming_the_column(tmp_path):
    content = _edit({(1, 0): "2025-01-01 10", (2, 0): "20250101"})
    assert read_batch(content, FILE, DAY, SYNTHETIC, "features") is not None  # pandas took them
    _, result, _, _ = new_path(content, SYNTHETIC, "features", DAY, tmp_path)
    [coerce, dtype] = [f for f in result.failures if f["column"] == "event_time"]
    assert coerce["check"] == "coerce_dtype('datetime64[ns]')" and coerce["count"] == 2
    assert coerce["examples"] == ["2025-01-01 10", "20250101"]


# ------------------------------------------------------------------------------------------- bytes and progress


def test_the_byte_pass_finds_what_decode_text_finds_across_block_boundaries(tmp_path):
    content = ("é" * 10).encode() + b"," + "ü".encode()
    for size in (1, 2, 3, 5, 7):  # blocks cutting multi-byte characters in every place
        chunks = [content[i:i + size] for i in range(0, len(content), size)]
        scan = spool(chunks)
        assert scan.bad_utf8 is None and scan.size == len(content)
    broken = content + b"\n\xff"
    scan = spool([broken[i:i + 3] for i in range(0, len(broken), 3)])
    assert scan.bad_utf8 == (len(content) + 1, 0xFF, 2)


def test_progress_is_reported_through_the_callback(tmp_path):
    messages: list[str] = []
    new_path(good_bytes(200), SYNTHETIC, "features", DAY, tmp_path, messages)
    text = "\n".join(messages)
    assert "200 rows read and typed" in text and "checks on 200 rows" in text and "passed" in text


# ------------------------------------------------------------------------------------------- through ingest()


class _FakeS3:
    """The calls S3Landing makes, in memory (get_object returns a stream read in blocks)."""

    def __init__(self):
        self.objects = {}

    def put_object(self, Bucket, Key, Body):
        self.objects[Key] = bytes(Body)

    def get_object(self, Bucket, Key):
        return {"Body": io.BytesIO(self.objects[Key])}

    def delete_object(self, Bucket, Key):
        self.objects.pop(Key, None)

    def list_objects_v2(self, Bucket, Prefix=""):
        return {"Contents": [{"Key": k, "Size": len(v), "ETag": '"x"'} for k, v in self.objects.items()
                             if k.startswith(Prefix)]}


def test_a_file_landed_in_s3_is_spooled_then_ingested_and_its_data_version_is_the_tables(tmp_path):
    from mlops_assets.core.ingestion.ingest import ingest
    from mlops_assets.core.ingestion.kept import Archive, Quarantine
    from mlops_assets.core.ingestion.landing import S3Landing, sha256_bytes

    content = good_bytes(50)
    landing = S3Landing(_FakeS3(), "bucket", "synthetic")
    landing.deliver(FILE, content)
    store = PartitionStore(tmp_path / "warehouse")
    messages = []
    outcome = ingest(landing, Archive(tmp_path / "archive"), Quarantine(tmp_path / "quarantine"), store, SYNTHETIC,
                     "features", DAY, progress=messages.append)
    assert outcome.accepted and outcome.rows == 50 and outcome.source.sha256 == sha256_bytes(content)
    assert (tmp_path / "archive" / outcome.archived.stored_as).read_bytes() == content
    assert not landing.exists(FILE)
    assert outcome.fingerprint == store.fingerprint("raw_batch", DAY)  # computed on the way, same as after
    assert list((tmp_path / ".ingest").iterdir()) == []  # the spooled copy and DuckDB's files are gone
    assert any("MiB" in m for m in messages) and any("50 rows read and typed" in m for m in messages)
    _, reference, _ = old_path(content, SYNTHETIC, "features", DAY, tmp_path)
    new_schema, new_frame = table(store.path("raw_batch", DAY))
    old_schema, old_frame = table(tmp_path / "old" / "raw_batch" / f"{DAY}.parquet")
    assert new_schema == old_schema
    pd.testing.assert_frame_equal(new_frame, old_frame)


def test_the_fingerprint_follows_the_content(tmp_path):
    store = PartitionStore(tmp_path)
    base = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})
    store.write("t", DAY, base)
    first = store.fingerprint("t", DAY)
    store.write("t", DAY, base.copy())
    assert store.fingerprint("t", DAY) == first
    for changed in (base.iloc[[2, 1, 0]].reset_index(drop=True), base.assign(a=[1.0, 2.0, 3.5]), base.iloc[:2],
                    base.rename(columns={"b": "c"})):
        store.write("t", DAY, changed)
        assert store.fingerprint("t", DAY) != first
