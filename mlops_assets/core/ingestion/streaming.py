"""Reading, typing and validating a day's landed CSV as a stream, in bounded memory, with the same outcome as the
in-memory path of validation.py (`read_batch` + `validate_batch`, kept as the reference): the same rejections
with the same messages, the same failure table (column, check, count, examples), and for an accepted file the
same table (column names, dtypes, values, row order). No Dagster here.

Three passes, none holding the file:

1. the bytes (`spool`, `scan_file`): sha256, size, line ends, and the hostile-content checks of `decode_text`
   (UTF-16/32 byte-order mark, NUL byte, invalid UTF-8: the first one found, with its line and byte), read in
   8 MiB blocks, optionally copied to a local spool file (a file from S3, or one that a producer could rewrite
   while it is read);
2. DuckDB reads the CSV (`read_csv`, strict quoting, one column more than the header so that a row with too
   few or too many fields shows) and writes the typed table straight to Parquet (the fast path). Any surprise
   (a short or long row, a value that does not convert, a quoted line end, mixed line ends) sends the file to
   the general path: the exact structure check of validation.py over the stream of lines (same messages, same
   line numbers), a normalised copy when DuckDB cannot read the original, every column staged as text, and
   the typing decided per column as `type_batch` decides it;
3. the checks of the spec's schema as SQL over the typed table: counts and the first examples (in file
   order) per rule — dtypes, nulls, inf, ranges, categories, timestamps outside the day, duplicate keys.

Nothing is written to the warehouse here: the typed table is left at `staged` and ingest.py renames it into
place only if every check passed.

Where the streaming reader is stricter than pandas was (documented, tested): timestamps must be ISO 8601
`YYYY-MM-DD[( |T)hh:mm[:ss[.fraction]]]` (pandas' ISO8601 parser also took an hour alone, `2025-01-01 10`, and
the basic form `20250101`; such files are refused as `coerce_dtype` failures naming the column), and a
numeric column holding `1_000` is read as 1000.0 where pandas kept the column as text.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.io.storage import fingerprint_digest
from mlops_assets.core.ingestion.validation import (_BOMS, _OFFSET, MAX_EXAMPLES, SEND_UTF8, BatchRejected,
                                                    TextEnd, ValidationResult, _check_header, check_last_field,
                                                    check_rows)

CHUNK = 8 << 20  # bytes per read: the byte pass holds one block at a time
# DuckDB's buffer pool for one ingest; beyond it, hash tables spill to disk (the work folder). 256 MB: 5 M rows
# peak at ~410 MiB in all and ingest as fast as with 512 MB; 128 MB spills and is ~1.6x slower.
MEMORY_LIMIT = os.environ.get("MLOPS_INGEST_MEMORY_LIMIT", "256MB")


# ------------------------------------------------------------------------------------------------ progress


class Progress:
    """Progress of one ingest, for the run's logs: `callback(message)` at each stage's end, and while a long
    stage runs at most once every `every_seconds`."""

    def __init__(self, callback: Callable[[str], object] | None = None, every_seconds: float = 5.0):
        self.callback, self.every_seconds = callback, every_seconds
        self._last = time.monotonic()

    def __call__(self, message: str) -> None:
        if self.callback is not None:
            self.callback(message)
        self._last = time.monotonic()

    def due(self) -> bool:
        return self.callback is not None and time.monotonic() - self._last >= self.every_seconds

    @contextlib.contextmanager
    def watching(self, con: duckdb.DuckDBPyConnection, what: str, total_rows: int | None):
        """Report DuckDB's progress through the query that runs inside the block (polled from a thread)."""
        if self.callback is None:
            yield
            return
        stop, started = threading.Event(), time.monotonic()

        def poll():
            while not stop.wait(min(1.0, self.every_seconds)):
                if not self.due():
                    continue
                try:
                    share = con.query_progress()
                except duckdb.Error:
                    continue
                if share is None or share < 0:
                    continue
                rows = f" (~{int(total_rows * share / 100):,} of ~{total_rows:,} rows)" if total_rows else ""
                self(f"{what}: {share:.0f}%{rows}, {time.monotonic() - started:.1f} s")

        thread = threading.Thread(target=poll, name="ingest-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


# ------------------------------------------------------------------------------------------------ bytes


@dataclass(frozen=True)
class ByteScan:
    """What one pass over a file's bytes found."""

    sha256: str
    size: int
    newlines: int  # "\n" bytes in the file
    head: bytes  # the first 4 bytes
    nul: tuple[int, int] | None  # first NUL byte: (offset, line)
    bad_utf8: tuple[int, int, int] | None  # first byte that is not UTF-8: (offset, byte, line)

    @property
    def utf8_bom(self) -> bool:
        return self.head.startswith(codecs.BOM_UTF8)

    def check(self, file: str, partition: str) -> None:
        """Raise BatchRejected as `decode_text` would on the same bytes (offsets count from after a UTF-8
        byte-order mark, as there)."""
        for bom, encoding in _BOMS:
            if self.head.startswith(bom):
                raise BatchRejected(file, partition, f"not UTF-8: a {encoding} byte-order mark was found; {SEND_UTF8}")
        skip = len(codecs.BOM_UTF8) if self.utf8_bom else 0
        if self.nul is not None:
            offset, line = self.nul
            raise BatchRejected(file, partition, f"NUL byte at line {line} (byte {offset - skip}): binary data, or "
                                                 f"UTF-16 text without a byte-order mark; {SEND_UTF8}")
        if self.bad_utf8 is not None:
            offset, byte, line = self.bad_utf8
            raise BatchRejected(file, partition, f"not UTF-8: byte 0x{byte:02x} at line {line} (byte {offset - skip})"
                                                 f" is not valid UTF-8 (Latin-1 or Windows-1252 text?); {SEND_UTF8}")


class _Scanner:
    def __init__(self):
        self.sha, self.size, self.newlines, self.head = hashlib.sha256(), 0, 0, b""
        self.nul: tuple[int, int] | None = None
        self.bad: tuple[int, int, int] | None = None
        self._pending = b""  # an incomplete UTF-8 sequence at the end of the previous block

    def update(self, block: bytes) -> None:
        if len(self.head) < 4:
            self.head += block[: 4 - len(self.head)]
        self.sha.update(block)
        if self.nul is None:
            at = block.find(b"\x00")
            if at >= 0:
                self.nul = (self.size + at, self.newlines + block.count(b"\n", 0, at) + 1)
        if self.bad is None and (self._pending or not block.isascii()):
            self._check_utf8(block)
        self.newlines += block.count(b"\n")
        self.size += len(block)

    def _check_utf8(self, block: bytes) -> None:
        buf, start = self._pending + block, self.size - len(self._pending)
        try:
            buf.decode("utf-8")
            self._pending = b""
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data" and exc.end == len(buf):
                self._pending = buf[exc.start:]  # may be completed by the next block
            else:
                self.bad = (start + exc.start, buf[exc.start], self.newlines + buf.count(b"\n", 0, exc.start) + 1)
                self._pending = b""

    def finish(self) -> ByteScan:
        if self._pending and self.bad is None:  # the file ends inside a UTF-8 sequence
            self.bad = (self.size - len(self._pending), self._pending[0], self.newlines + 1)
        return ByteScan(self.sha.hexdigest(), self.size, self.newlines, self.head, self.nul, self.bad)


def spool(chunks: Iterable[bytes], dest: Path | None = None, progress: Progress | None = None,
          file: str = "") -> ByteScan:
    """One pass over `chunks`: hash and check them, and copy them to `dest` if given."""
    scanner, started = _Scanner(), time.monotonic()
    out = open(dest, "wb") if dest is not None else None
    try:
        for block in chunks:
            scanner.update(block)
            if out is not None:
                out.write(block)
            if progress is not None and progress.due():
                progress(f"{file}: read {_mib(scanner.size)} ({scanner.newlines:,} lines), "
                         f"{time.monotonic() - started:.1f} s")
    finally:
        if out is not None:
            out.close()
    scan = scanner.finish()
    if progress is not None:
        progress(f"{file}: read {_mib(scan.size)}, {scan.newlines:,} lines, in {time.monotonic() - started:.1f} s "
                 f"(sha256 {scan.sha256[:12]}…)")
    return scan


def file_chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(size):
            yield block


def scan_file(path: Path, progress: Progress | None = None, file: str = "") -> ByteScan:
    return spool(file_chunks(path), None, progress, file)


def text_end(path: Path, scan: ByteScan) -> TextEnd:
    """`TextEnd.of_text` of the file's text, from its last bytes."""
    skip = len(codecs.BOM_UTF8) if scan.utf8_bom else 0
    want = 4096
    with open(path, "rb") as handle:
        while True:
            start = max(skip, scan.size - want)
            handle.seek(start)
            tail = handle.read(scan.size - start)
            stripped = tail.rstrip(b"\r\n")
            if stripped or start == skip:
                break
            want *= 16
    last = stripped.rsplit(b"\n", 1)[-1].rstrip(b"\r")
    return TextEnd(ends_with_newline=tail.endswith(b"\n"),
                   last_line=scan.newlines - tail[len(stripped):].count(b"\n") + 1,
                   last_field_empty=last.split(b",")[-1] == b"")


def _text_lines(path: Path):
    """The file as text lines split as `newline=""` splits them (a UTF-8 byte-order mark dropped)."""
    return io.TextIOWrapper(open(path, "rb"), encoding="utf-8-sig", newline="")


def read_header(path: Path) -> tuple[list[str] | None, int]:
    """(header, the line it ends on): the first row that is not blank, as check_rows finds it; (None, 0) for a
    file without one; (None, -1) when the csv module cannot read it (the general path says why)."""
    with _text_lines(path) as lines:
        reader = csv.reader(lines)
        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                return row, reader.line_num
        except csv.Error:
            return None, -1
    return None, 0


def check_structure_stream(path: Path, end: TextEnd, file: str, partition: str,
                           normalised: Path | None = None) -> tuple[list[str], int]:
    """validation.check_structure over the file as a stream of lines (same checks, messages and line numbers);
    with `normalised`, the rows it keeps are also written there as plain CSV (blank lines dropped, quoting
    minimal, "\\n" line ends), which DuckDB reads whatever the original's quirks."""
    with _text_lines(path) as lines, contextlib.ExitStack() as stack:
        write_row = None
        if normalised is not None:
            out = stack.enter_context(open(normalised, "w", encoding="utf-8", newline=""))
            write_row = csv.writer(out, lineterminator="\n").writerow
        return check_rows(lines, end, file, partition, write_row)


# ------------------------------------------------------------------------------------------------ columns


_TIMESTAMP_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f",
                      "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"]
_NANO_RE = r"\d{4}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{2}:\d{2}\.\d{7,9}"
_INT_RE = r"\s*[+-]?\d+\s*"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _list(values) -> str:
    return "[" + ", ".join(_lit(str(v)) for v in values) + "]"


_FORMATS_SQL = _list(_TIMESTAMP_FORMATS)


@dataclass
class _Column:
    """One column of the file and what the spec makes of it (`type_batch`'s roles)."""

    index: int
    name: str
    role: str  # timestamp | entity | numeric | categorical | target_class | target_numeric | other
    nullable: bool = False
    lo: float | None = None
    hi: float | None = None
    categories: tuple[str, ...] = ()
    # decided by the general path's profile (the fast path assumes the common case)
    bad: int = 0  # non-null values that do not convert to the column's type
    nanos: bool = False  # timestamps with more than 6 decimals: datetime64[ns], as pandas types them
    numeric_text: bool = False  # categorical values that are all numbers: typed as pandas' to_numeric does
    whole: bool = False  # ... and all whole numbers ("1.0" -> "1")
    integer: bool = False  # numeric target of integer literals only, no nulls: int64

    @property
    def raw(self) -> str:
        return f"NULLIF(c{self.index}, '')"


def _columns(header: list[str], spec: DatasetSpec, kind: str) -> tuple[list[_Column], list[str]]:
    """The file's columns with their roles, and the schema columns the file lacks."""
    typed = set(spec.batch_columns if kind == "features" else spec.label_columns)
    out = []
    for i, name in enumerate(header):
        column = _Column(i, name, "other")
        if name not in typed:
            pass
        elif name == spec.timestamp:
            column.role = "timestamp"
        elif name == spec.entity_id:
            column.role = "entity"
        elif name == spec.target:
            column.role = "target_class" if spec.is_classification else "target_numeric"
            column.categories = ("0", "1")
        else:
            feature = spec.feature(name)
            column.nullable = feature.nullable
            if feature.is_numeric:
                column.role, column.lo, column.hi = "numeric", feature.min, feature.max
            else:
                column.role, column.categories = "categorical", tuple(str(c) for c in feature.categories)
        out.append(column)
    schema = [spec.timestamp] + ([spec.entity_id] if spec.entity_id else [])
    schema += spec.feature_names if kind == "features" else [spec.target]
    missing = [name for name in schema if name not in header]
    return out, missing


def _numeric_like(x: str) -> str:
    """pandas.to_numeric would take it (DuckDB's cast also takes 'nan' and '1_000', which pandas refuses)."""
    return f"(TRY_CAST({x} AS DOUBLE) IS NOT NULL AND NOT isnan(TRY_CAST({x} AS DOUBLE)) AND strpos({x}, '_') = 0)"


def _canonical(x: str, whole: bool) -> str:
    """The string `as_category_strings(pd.to_numeric(...))` makes of a number: "1" for a whole one, else the
    float's shortest repr."""
    if whole:
        return f"CAST(CAST(TRY_CAST({x} AS DOUBLE) AS HUGEINT) AS VARCHAR)"
    return f"CAST(TRY_CAST({x} AS DOUBLE) AS VARCHAR)"


def _typed_fast(c: _Column) -> str:
    """The fast path's typing: strict (a value that does not convert stops the query)."""
    if c.role == "timestamp":
        return f"strptime(trim({c.raw}), {_FORMATS_SQL})"
    if c.role == "numeric":
        return f"NULLIF(CAST({c.raw} AS DOUBLE), 'nan'::DOUBLE)"
    return c.raw


def _typed_general(c: _Column) -> str:
    """The general path's typing, from the staged text, as decided by the profile (a value that does not convert
    is NULL here and counted as a dtype failure)."""
    x = c.raw
    if c.role == "timestamp":
        return _timestamp_any(x) if c.nanos else f"TRY_STRPTIME(trim({x}), {_FORMATS_SQL})"
    if c.role == "numeric" or (c.role == "target_numeric" and not c.integer):
        return f"NULLIF(TRY_CAST({x} AS DOUBLE), 'nan'::DOUBLE)"
    if c.role == "target_numeric":
        return f"TRY_CAST(trim({x}) AS BIGINT)"
    if c.role in ("categorical", "target_class") and c.numeric_text:
        return _canonical(x, c.whole)
    return x


def _timestamp_any(x: str) -> str:
    return (f"COALESCE(CAST(TRY_STRPTIME(trim({x}), {_FORMATS_SQL}) AS TIMESTAMP_NS), "
            f"CASE WHEN regexp_full_match(trim({x}), '{_NANO_RE}') THEN TRY_CAST(trim({x}) AS TIMESTAMP_NS) END)")


def _bad_general(c: _Column) -> str | None:
    """A non-null value that does not convert (None for columns kept as text)."""
    x = c.raw
    if c.role == "timestamp":
        return f"({x} IS NOT NULL AND {_timestamp_any(x)} IS NULL)"
    if c.role in ("numeric", "target_numeric"):
        return f"({x} IS NOT NULL AND TRY_CAST({x} AS DOUBLE) IS NULL)"
    return None


# ------------------------------------------------------------------------------------------------ rules


@dataclass
class _Rule:
    column: str
    check: str
    condition: str  # SQL, true on a failing row
    example: str | None  # SQL value to show (None: a fixed text, below)
    fixed: str = ""
    kind: str = "text"  # how an example is printed: text | float | timestamp


def _rules(columns: list[_Column], typed: dict[int, str], raw: dict[int, str], partition: str) -> list[_Rule]:
    """The spec's schema as SQL rules, with pandera's check names (see validation.build_schema)."""
    day = dt.date.fromisoformat(partition)
    start, end = day.isoformat(), (day + dt.timedelta(days=1)).isoformat()
    rules = []
    for c in columns:
        t, r, name = typed[c.index], raw[c.index], c.name
        if c.role == "other":
            continue
        if c.role == "timestamp":
            if c.bad:
                rules += _dtype_rules(c, "datetime64[ns]")
                rules.append(_Rule(name, "not_nullable", f"{r} IS NULL", None, "nan"))
            else:
                rules.append(_Rule(name, "not_nullable", f"{t} IS NULL", None, "NaT"))
                rules.append(_Rule(name, f"timestamp within partition {partition}",
                                   f"{t} IS NOT NULL AND NOT ({t} >= TIMESTAMP '{start}' AND {t} < TIMESTAMP '{end}')",
                                   t, kind="timestamp"))
        elif c.role == "entity":
            rules.append(_Rule(name, "not_nullable", f"{r} IS NULL", None, "nan"))
        elif c.role in ("numeric", "target_numeric"):
            if c.bad:
                rules += _dtype_rules(c, "float64")
                if not c.nullable:
                    rules.append(_Rule(name, "not_nullable", f"{r} IS NULL", None, "nan"))
                continue
            if not c.nullable:
                rules.append(_Rule(name, "not_nullable", f"{t} IS NULL", None, "nan"))
            rules.append(_Rule(name, "finite (no inf)", f"isinf({t})", t, kind="float"))
            if c.role == "numeric" and c.lo is not None:
                rules.append(_Rule(name, f"greater_than_or_equal_to({c.lo})", f"{t} < {c.lo!r}", t, kind="float"))
            if c.role == "numeric" and c.hi is not None:
                rules.append(_Rule(name, f"less_than_or_equal_to({c.hi})", f"{t} > {c.hi!r}", t, kind="float"))
        else:  # categorical, target_class
            if not c.nullable:
                rules.append(_Rule(name, "not_nullable", f"{t} IS NULL", None, "nan"))
            allowed = list(c.categories)
            rules.append(_Rule(name, f"isin({allowed})", f"{t} IS NOT NULL AND {t} NOT IN ({', '.join(map(_lit, allowed))})", t))
    return rules


def _dtype_rules(c: _Column, dtype: str) -> list[_Rule]:
    bad = _bad_general(c)
    # pandera reports a column that does not coerce twice: the failed coercion, and the dtype it then lacks
    return [_Rule(c.name, f"coerce_dtype('{dtype}')", bad, c.raw), _Rule(c.name, f"dtype('{dtype}')", bad, c.raw)]


def _show(value, kind: str) -> str:
    if kind == "float":
        return str(float(value))
    if kind == "timestamp":
        return str(pd.Timestamp(value))
    return str(value)


# ------------------------------------------------------------------------------------------------ DuckDB


@dataclass
class LoadedBatch:
    rows: int
    columns: list[str]
    validation: ValidationResult
    path: str = "fast"  # fast | general | normalised: how the file was read
    fingerprint: str | None = None  # the staged table's PartitionStore.fingerprint, when computed on the way


# DuckDB errors that say the file is not what the fast path assumed (CSV errors are plain duckdb.Error, a failed
# cast a ConversionException, error() an InvalidInputException), and those that are not about the file at all.
_NOT_READ = duckdb.Error
_NOT_THE_FILE = (duckdb.OutOfMemoryException, duckdb.IOException, duckdb.InterruptException,
                 duckdb.PermissionException)


class _Unreadable(Exception):
    """DuckDB could not read or type the file as the fast path assumed: take the general path."""


def _csv_source(path: Path, width: int, parallel: bool = True) -> str:
    """read_csv with one column more than the header: a row with fewer fields leaves the header's last column
    NULL (null_padding; empty fields are '' since no field can hold the NUL that marks NULL), and a row with one
    field more fills the extra one. DuckDB refuses rows with two fields more on its own."""
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(width + 1)) + "}"
    return (f"read_csv({_lit(str(path))}, header = true, auto_detect = false, columns = {columns}, delim = ',', "
            f"quote = '\"', escape = '\"', strict_mode = true, null_padding = true, nullstr = chr(0), "
            f"allow_quoted_nulls = false, parallel = {'true' if parallel else 'false'})")


def _shape_ok(width: int) -> str:
    return f"(c{width - 1} IS NOT NULL AND c{width} IS NULL)"


def connect(work: Path, memory_limit: str = MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    spill = work / "duckdb-spill"
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": str(spill),
                                 "preserve_insertion_order": True})
    con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false; SET progress_bar_time = 0")
    return con


def _copy(con: duckdb.DuckDBPyConnection, select: str, target: Path, options: str = "") -> None:
    if "'" in str(target):
        raise ValueError(f"refusing to write to a path with a quote: {target}")
    con.execute(f"COPY ({select}) TO '{target}' (FORMAT PARQUET{options})")


class _Reader:
    def __init__(self, path: Path, scan: ByteScan, file: str, partition: str, spec: DatasetSpec, kind: str,
                 staged: Path, work: Path, progress: Progress, con: duckdb.DuckDBPyConnection):
        self.path, self.scan, self.file, self.partition = path, scan, file, partition
        self.spec, self.kind, self.staged, self.work, self.progress, self.con = spec, kind, staged, work, progress, con
        self.estimated_rows = max(scan.newlines - 1, 0)

    def read(self) -> LoadedBatch:
        self.scan.check(self.file, self.partition)
        self.end = text_end(self.path, self.scan)
        header, line = read_header(self.path)
        if header is None and line == 0:
            raise BatchRejected(self.file, self.partition, "empty file (0 rows, no header)")
        if header is not None:
            _check_header(header, self.file, self.partition)
        columns = missing = None
        if header is not None:
            columns, missing = _columns(header, self.spec, self.kind)
        fast = (header is not None and line == 1 and not any(c.role == "target_numeric" for c in columns))
        if fast:
            try:
                return self._fast(header, columns, missing)
            except _Unreadable as exc:
                self.progress(f"{self.file}: {exc}; reading it the careful way")
        return self._general()

    # ------------------------------------------------------------------------------------------ fast path
    def _fast(self, header, columns, missing) -> LoadedBatch:
        width, started = len(header), time.monotonic()
        select = ", ".join(f"{_typed_fast(c)} AS {_ident(c.name)}" for c in columns)
        query = (f"SELECT {select} FROM {_csv_source(self.path, width)} "
                 f"WHERE CASE WHEN {_shape_ok(width)} THEN true ELSE error('a row has too few or too many fields') END")
        try:
            with self.progress.watching(self.con, f"{self.file}: reading and typing", self.estimated_rows):
                _copy(self.con, query, self.staged)
        except _NOT_READ as exc:
            if isinstance(exc, _NOT_THE_FILE):
                raise
            self.staged.unlink(missing_ok=True)
            raise _Unreadable(_first_line(exc)) from None
        rows = self._count(f"read_parquet({_lit(str(self.staged))})")
        self.progress(f"{self.file}: {rows:,} rows read and typed in {time.monotonic() - started:.1f} s")
        if rows == 0:
            raise BatchRejected(self.file, self.partition, "header only, no rows")
        check_last_field(self.end, header, self.file, self.partition)
        source = f"read_parquet({_lit(str(self.staged))}, file_row_number = true)"
        if self._needs_canonical(columns, source):
            self.staged.unlink(missing_ok=True)
            raise _Unreadable("a category column holds numbers not written as pandas writes them")
        refs = {c.index: _ident(c.name) for c in columns}
        return self._validate(columns, missing, source, refs, refs, rows, header, "fast", fingerprint=True)

    def _needs_canonical(self, columns: list[_Column], source: str) -> bool:
        """A category column whose values are all numbers is typed by pandas' to_numeric ("1.0" -> "1"): the
        fast path kept the text, which is right only if every value is already written that way."""
        text = [c for c in columns if c.role in ("categorical", "target_class")]
        if not text:
            return False
        parts = []
        for c in text:
            x = _ident(c.name)
            parts += [f"count({x}) > 0 AND count_if({x} IS NOT NULL AND NOT {_numeric_like(x)}) = 0",
                      f"bool_and(isfinite(TRY_CAST({x} AS DOUBLE)) AND TRY_CAST({x} AS DOUBLE) = round(TRY_CAST({x} AS DOUBLE))) "
                      f"FILTER (WHERE {x} IS NOT NULL)"]
        found = self.con.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchone()
        for i, c in enumerate(text):
            numeric, whole = found[2 * i], bool(found[2 * i + 1])
            if numeric:
                x = _ident(c.name)
                changed = self.con.execute(
                    f"SELECT count_if({x} IS DISTINCT FROM {_canonical(x, whole)}) FROM {source}").fetchone()[0]
                if changed:
                    return True
        return False

    # ------------------------------------------------------------------------------------------ general path
    def _general(self) -> LoadedBatch:
        started = time.monotonic()
        raw, how = self.work / "text.parquet", "general"
        header, width = self._stage_text(self.path, raw, parallel=True)
        if header is None:  # DuckDB could not read it, or it has rows of the wrong shape: check it as pandas did
            normalised = self.work / "normalised.csv"
            header, _ = check_structure_stream(self.path, self.end, self.file, self.partition, normalised)
            header, width = self._stage_text(normalised, raw, parallel=False)
            how = "normalised"
            if header is None:
                raise BatchRejected(self.file, self.partition, f"malformed CSV: {self._last_error}")
        columns, missing = _columns(header, self.spec, self.kind)
        source = f"read_parquet({_lit(str(raw))}, file_row_number = true)"
        rows = self._count(source)
        if rows == 0:
            raise BatchRejected(self.file, self.partition, "header only, no rows")
        check_last_field(self.end, header, self.file, self.partition)
        self._profile(columns, source)
        self.progress(f"{self.file}: {rows:,} rows staged as text and profiled in {time.monotonic() - started:.1f} s")
        typed = {c.index: _typed_general(c) for c in columns}
        raw_refs = {c.index: c.raw for c in columns}
        loaded = self._validate(columns, missing, source, typed, raw_refs, rows, header, how)
        if loaded.validation.passed:
            select = ", ".join(f"{typed[c.index]} AS {_ident(c.name)}" for c in columns)
            _copy(self.con, f"SELECT {select} FROM read_parquet({_lit(str(raw))})", self.staged)
        raw.unlink(missing_ok=True)
        return loaded

    def _stage_text(self, path: Path, target: Path, parallel: bool) -> tuple[list[str] | None, int]:
        """Every column as text in `target` (c0, c1, ...), if DuckDB reads the file and every row has the
        header's width; else (None, 0) and the stream check decides."""
        header, line = read_header(path)
        if header is None or line != 1:
            self._last_error = "the header could not be read"
            return None, 0
        width = len(header)
        query = f"SELECT * EXCLUDE (c{width}), {_shape_ok(width)} AS shape_ok FROM {_csv_source(path, width, parallel)}"
        try:
            with self.progress.watching(self.con, f"{self.file}: staging as text", self.estimated_rows):
                _copy(self.con, query, target, ", COMPRESSION 'uncompressed', DICTIONARY_SIZE_LIMIT 0")
        except _NOT_READ as exc:
            if isinstance(exc, _NOT_THE_FILE):
                raise
            target.unlink(missing_ok=True)
            self._last_error = _first_line(exc)
            return None, 0
        bad_rows = self.con.execute(f"SELECT count_if(NOT shape_ok) FROM read_parquet({_lit(str(target))})").fetchone()[0]
        if bad_rows:
            target.unlink(missing_ok=True)
            self._last_error = f"{bad_rows} rows with too few or too many fields"
            return None, 0
        return header, width

    def _profile(self, columns: list[_Column], source: str) -> None:
        """type_batch's decisions per column, and the timezone-offset refusal (before any other check)."""
        parts: list[str] = []
        slots: list[tuple[_Column, str]] = []
        for c in columns:
            x = c.raw
            if c.role == "timestamp":
                parts += [f"count_if({_bad_general(c)})", f"count_if(regexp_matches({x}, '\\.\\d{{7,}}'))",
                          f"count_if(regexp_matches({x}, {_lit(_OFFSET.pattern)}))", f"count({x})",
                          f"min_by({x}, file_row_number, 3) FILTER (WHERE regexp_matches({x}, {_lit(_OFFSET.pattern)}))"]
                slots.append((c, "timestamp"))
            elif c.role in ("numeric", "target_numeric"):
                parts += [f"count_if({_bad_general(c)})", f"count_if({x} IS NOT NULL AND NOT regexp_full_match({x}, '{_INT_RE}'))",
                          f"count_if({x} IS NULL)"]
                slots.append((c, "numeric"))
            elif c.role in ("categorical", "target_class"):
                parts += [f"count({x}) > 0 AND count_if({x} IS NOT NULL AND NOT {_numeric_like(x)}) = 0",
                          f"coalesce(bool_and(isfinite(TRY_CAST({x} AS DOUBLE)) AND TRY_CAST({x} AS DOUBLE) = "
                          f"round(TRY_CAST({x} AS DOUBLE))) FILTER (WHERE {x} IS NOT NULL), false)"]
                slots.append((c, "text"))
        if not parts:
            return
        found = list(self.con.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchone())
        for c, what in slots:
            if what == "timestamp":
                c.bad, nanos, offsets, present, examples = found[:5]
                del found[:5]
                c.nanos = bool(nanos)
                if offsets and self.spec.timestamp == c.name:
                    shown = ", ".join(repr(v) for v in examples)
                    raise BatchRejected(self.file, self.partition,
                                        f"{offsets} of {present} timestamps carry a timezone offset (e.g. {shown}); "
                                        "the spec's timestamps are naive: send them without an offset or Z",
                                        column=c.name)
            elif what == "numeric":
                c.bad, not_int, nulls = found[:3]
                del found[:3]
                c.integer = c.role == "target_numeric" and not c.bad and not not_int and not nulls
            else:
                c.numeric_text, c.whole = bool(found[0]), bool(found[1])
                del found[:2]

    # ------------------------------------------------------------------------------------------ checks
    def _validate(self, columns, missing, source, typed, raw, rows, header, how, fingerprint=False) -> LoadedBatch:
        """Every rule's count in one scan (with the table's fingerprint when `source` is the table to keep),
        then the first examples of the rules that failed."""
        started = time.monotonic()
        failures = [{"column": name, "check": "column_in_dataframe", "count": 1, "examples": [name]}
                    for name in missing]
        rules = _rules(columns, typed, raw, self.partition)
        parts = [f"count_if({rule.condition})" for rule in rules]
        if fingerprint:
            parts += ["count(*)", "bit_xor(hash(t))", "sum(hash(t)::HUGEINT)"]
        found = self.con.execute(f"SELECT {', '.join(parts)} FROM {source} t").fetchone() if parts else ()
        failed = [(rule, count) for rule, count in zip(rules, found) if count]
        if failed:
            examples = self.con.execute("SELECT " + ", ".join(
                f"min_by({rule.example}, file_row_number, {MAX_EXAMPLES}) FILTER (WHERE {rule.condition})"
                if rule.example else "NULL" for rule, _ in failed) + f" FROM {source}").fetchone()
            for (rule, count), shown in zip(failed, examples):
                shown = ([_show(v, rule.kind) for v in shown] if rule.example else
                         [rule.fixed] * min(count, MAX_EXAMPLES))
                failures.append({"column": rule.column, "check": rule.check, "count": int(count), "examples": shown})
        failures += self._duplicates(columns, source, typed, raw)
        failures.sort(key=lambda f: (f["column"], f["check"]))
        result = ValidationResult(rows=rows, failures=failures)
        digest = None
        if fingerprint and result.passed:
            schema = self.con.execute(f"DESCRIBE SELECT * FROM read_parquet({_lit(str(self.staged))})").fetchall()
            digest = fingerprint_digest(schema, *found[len(rules):])
        self.progress(f"{self.file}: {len(rules) + len(missing) + 1} checks on {rows:,} rows in "
                      f"{time.monotonic() - started:.1f} s: " + ("passed" if result.passed else
                                                                  f"{len(failures)} failed"))
        return LoadedBatch(rows, list(header), result, how, digest)

    def _duplicates(self, columns, source, typed, raw) -> list[dict]:
        """pandera's `unique=` over the key columns the file has: the rows of a duplicated key, reported per key
        column for the rows where that column is not null (two rows both missing their entity but with one
        timestamp are reported under the timestamp only)."""
        keys = [c for name in self.spec.key_columns for c in columns if c.name == name]
        if not keys:
            return []
        exprs = [(raw if c.bad else typed)[c.index] for c in keys]
        selected = ", ".join(f"{e} AS k{i}" for i, e in enumerate(exprs))
        names = ", ".join(f"k{i}" for i in range(len(keys)))
        # A cheap pass first: rows grouped by a 64-bit hash of their key (a collision only costs the exact pass).
        duplicated = self.con.execute(
            f"SELECT count(*) FROM (SELECT hash({', '.join(exprs)}) AS h FROM {source}) GROUP BY h "
            "HAVING count(*) > 1 LIMIT 1").fetchall()
        if not duplicated:
            return []
        match = " AND ".join(f"d.k{i} IS NOT DISTINCT FROM r.k{i}" for i in range(len(keys)))
        parts = ", ".join(f"count(r.k{i}), min_by(r.k{i}, r.n, {MAX_EXAMPLES})" for i in range(len(keys)))
        found = self.con.execute(
            f"WITH r AS (SELECT file_row_number AS n, {selected} FROM {source}), "
            f"d AS (SELECT {names} FROM r GROUP BY {names} HAVING count(*) > 1) "
            f"SELECT {parts} FROM r SEMI JOIN d ON {match}").fetchone()
        out = []
        for i, c in enumerate(keys):
            count, examples = found[2 * i], found[2 * i + 1]
            if not count:
                continue
            kind = "timestamp" if c.role == "timestamp" and not c.bad else "text"
            out.append({"column": c.name, "check": "multiple_fields_uniqueness", "count": int(count),
                        "examples": [_show(v, kind) for v in examples]})
        return out

    def _count(self, source: str) -> int:
        return self.con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    for prefix in ("Invalid Input Error: ", "Conversion Error: "):
        text = text.removeprefix(prefix)
    return text.splitlines()[0] if text else type(exc).__name__


def read_validated(path: Path, scan: ByteScan, file: str, partition: str, spec: DatasetSpec, kind: str, *,
                   staged: Path, work: Path, progress: Progress | None = None,
                   memory_limit: str | None = None) -> LoadedBatch:
    """Read, type and validate the CSV at `path` (whose bytes `scan` describes). Raises BatchRejected for a file
    that is not a readable table (as validation.read_batch does); otherwise returns the checks' result, and,
    when they passed, leaves the typed table at `staged` (Parquet)."""
    progress = progress or Progress()
    work.mkdir(parents=True, exist_ok=True)
    con = connect(work, memory_limit or MEMORY_LIMIT)
    try:
        loaded = _Reader(path, scan, file, partition, spec, kind, staged, work, progress, con).read()
        if not loaded.validation.passed:
            staged.unlink(missing_ok=True)
        return loaded
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    finally:
        con.close()
