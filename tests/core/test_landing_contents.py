"""Hostile file contents: each is refused with an error naming file, partition, column (when one is to blame)
and reason, instead of being silently reinterpreted; harmless variations (CRLF, a UTF-8 byte-order mark) are
read like the plain file. No Dagster here."""

import datetime as dt

import pandas as pd
import pytest

from conftest import SPECS
from mlops_assets.core.config.spec import load_spec
from mlops_assets.core.ingestion.validation import BatchRejected, read_batch, validate_batch
from mlops_assets.demo import corruptions, synthetic

DAY = "2025-01-01"
FILE = f"features_{DAY}.csv"


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPECS / "synthetic.toml")


@pytest.fixture(scope="module")
def good(spec) -> bytes:
    [batch] = synthetic.generate_days(spec, synthetic.ScenarioConfig("stable", dt.date(2025, 1, 1), 1,
                                                                      rows_per_day=20, seed=3))
    return corruptions.features_file_bytes(spec, batch)


def rejected(content: bytes, spec) -> BatchRejected:
    with pytest.raises(BatchRejected) as info:
        read_batch(content, FILE, DAY, spec, "features")
    exc = info.value
    assert FILE in str(exc) and DAY in str(exc) and exc.reason in str(exc)
    return exc


def line_of(content: bytes, part: bytes) -> int:
    return content[:content.index(part)].count(b"\n") + 1


def test_good_file_reads_and_validates(good, spec):
    frame = read_batch(good, FILE, DAY, spec, "features")
    assert len(frame) == 20 and validate_batch(frame, spec, DAY).passed


def test_duplicated_header_column_is_refused_not_renamed(good, spec):
    header, rest = good.split(b"\n", 1)
    lines = [ln + b",0.5" for ln in rest.rstrip(b"\n").split(b"\n")]
    content = header + b",spend\n" + b"\n".join(lines) + b"\n"  # `spend` twice; pandas would call one spend.1
    exc = rejected(content, spec)
    assert exc.column == "spend" and "duplicate" in exc.reason


@pytest.mark.parametrize("encoding,named", [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32")])
def test_utf16_or_utf32_file_is_named_as_such(good, spec, encoding, named):
    content = good.decode().encode(encoding)
    if encoding == "utf-16-be":
        content = b"\xfe\xff" + content  # with its byte-order mark
    exc = rejected(content, spec)
    assert "not UTF-8" in exc.reason and named in exc.reason


def test_utf16_without_byte_order_mark_is_caught_by_its_nul_bytes(good, spec):
    exc = rejected(good.decode().encode("utf-16-le"), spec)
    assert "NUL" in exc.reason


def test_latin1_bytes_are_not_utf8(good, spec):
    content = good.replace(b"south", "s\xfcd".encode("latin-1"), 1)
    exc = rejected(content, spec)
    assert "not UTF-8" in exc.reason and f"line {line_of(good, b'south')}" in exc.reason


def test_nul_byte_is_refused(good, spec):
    content = good.replace(b"south", b"sou\x00th", 1)
    exc = rejected(content, spec)
    assert "NUL" in exc.reason and f"line {line_of(good, b'south')}" in exc.reason


def test_timezone_offsets_are_refused_with_the_column_named(good, spec):
    lines = good.decode().split("\n")
    lines[1] = lines[1].replace(lines[1].split(",")[0], lines[1].split(",")[0].replace(" ", "T") + "+01:00")
    exc = rejected("\n".join(lines).encode(), spec)
    assert exc.column == spec.timestamp and "offset" in exc.reason and "+01:00" in exc.reason


def test_utc_z_suffix_is_an_offset_too(good, spec):
    lines = good.decode().split("\n")
    lines = [lines[0]] + [ln.replace(",", "Z,", 1) if ln else ln for ln in lines[1:]]
    exc = rejected("\n".join(lines).encode(), spec)
    assert exc.column == spec.timestamp and "offset" in exc.reason


def test_short_row_is_refused_instead_of_padded_with_nulls(good, spec):
    lines = good.decode().split("\n")
    lines[3] = ",".join(lines[3].split(",")[:-2])  # a row missing its last two fields
    exc = rejected("\n".join(lines).encode(), spec)
    assert "line 4" in exc.reason and "8 of 10 fields" in exc.reason


def test_blank_header_name_is_refused(good, spec):
    lines = good.decode().rstrip("\n").split("\n")
    content = "\n".join([lines[0] + ","] + [ln + ",x" for ln in lines[1:]]) + "\n"
    exc = rejected(content.encode(), spec)
    assert "blank column name" in exc.reason and "column 11" in exc.reason


def test_header_only_and_empty_files_are_refused(good, spec):
    assert "header only" in rejected(good.split(b"\n", 1)[0] + b"\n", spec).reason
    assert "empty" in rejected(b"", spec).reason
    assert "empty" in rejected(b"\n\n", spec).reason


def test_crlf_line_endings_and_utf8_bom_read_like_the_plain_file(good, spec):
    plain = read_batch(good, FILE, DAY, spec, "features")
    for content in (good.replace(b"\n", b"\r\n"), b"\xef\xbb\xbf" + good,
                    b"\xef\xbb\xbf" + good.replace(b"\n", b"\r\n")):
        frame = read_batch(content, FILE, DAY, spec, "features")
        pd.testing.assert_frame_equal(frame, plain)
        assert validate_batch(frame, spec, DAY).passed
