"""Reading prompts out of an uploaded .xlsx / .csv (one column, in bounded memory), and writing results: CSV, a new
workbook, or the uploaded workbook with a result column added. What is written is never run as a formula."""

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from common.errors import InvalidRequest
from common.spreadsheets import csv_cell, xlsx_text
from jobs.xlsx_read import column_index, too_many_rows, xlsx_column
from jobs.xlsx_results import workbook_with_results

__all__ = ["XLSX_CONTENT_TYPE", "UploadedRows", "read_rows", "csv_bytes", "new_workbook_bytes", "workbook_with_results"]

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_CSV_DELIMITERS = ",;\t|"
# One CSV record (a line, or the lines of a quoted field) at most: the csv module makes a list of every field of a
# record, so a one-line file of millions of empty fields would otherwise take hundreds of MB.
CSV_MAX_RECORD_CHARS = 1_000_000


@dataclass(frozen=True)
class UploadedRows:
    sheet: str  # "" for CSV
    column: int  # 1-based
    rows: list[tuple[int, str]]  # (row number, 1-based as in Excel; the cell's text), empty cells left out


def read_rows(
    kind: str, data: bytes, *, column: str, sheet: str = "", has_header: bool = True, max_items: int
) -> UploadedRows:
    """kind: "xlsx" or "csv". Only the chosen column is read; more than `max_items` non-empty cells is a 400
    (`too_many_items`), an .xlsx that decompresses past JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES a 413."""
    if kind == "xlsx":
        name, index, rows = xlsx_column(data, column=column, sheet=sheet, has_header=has_header, max_items=max_items)
        return UploadedRows(sheet=name, column=index, rows=rows)
    return _csv_column(data, column=column, has_header=has_header, max_items=max_items)


def _csv_text(data: bytes) -> io.TextIOWrapper:
    """UTF-8 (with or without BOM) when the whole file decodes as such, else Windows-1252 (what Excel on Windows
    saves as "CSV"). Decoded as it is read, not all at once."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    encoding = "utf-8-sig"
    try:
        for start in range(0, len(data), 1 << 20):
            decoder.decode(data[start : start + (1 << 20)])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        encoding = "cp1252"
    return io.TextIOWrapper(io.BytesIO(data), encoding=encoding, errors="replace", newline="")


def _csv_records(stream: io.TextIOWrapper) -> Iterator[list[str]]:
    try:
        dialect = csv.Sniffer().sniff(stream.read(8192), delimiters=_CSV_DELIMITERS)
    except csv.Error:
        dialect = csv.excel
    stream.seek(0)
    record_chars = [0]

    def lines() -> Iterator[str]:
        while line := stream.readline(CSV_MAX_RECORD_CHARS + 1):
            record_chars[0] += len(line)
            if record_chars[0] > CSV_MAX_RECORD_CHARS:
                raise InvalidRequest(
                    f"A record of the CSV file is longer than {CSV_MAX_RECORD_CHARS} characters.",
                    code="invalid_file",
                    details={"limit": CSV_MAX_RECORD_CHARS},
                    param="file",
                )
            yield line

    reader = csv.reader(lines(), dialect)
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a field over the csv module's limit, a NUL byte, ...
            raise InvalidRequest(
                f"The CSV file cannot be read at line {reader.line_num} ({exc}).", code="invalid_file", param="file"
            ) from None
        record_chars[0] = 0
        yield record


def _csv_column(data: bytes, *, column: str, has_header: bool, max_items: int) -> UploadedRows:
    records = _csv_records(_csv_text(data))
    first = next(records, None)
    header = dict(enumerate(first or [], start=1)) if has_header else {}
    index = column_index(header, column, has_header)
    found = []
    number = 0
    if not has_header and first is not None:
        records = _chain(first, records)
    for number, values in enumerate(records, start=2 if has_header else 1):
        text = values[index - 1] if index <= len(values) else ""
        if text.strip():
            found.append((number, text))
            if len(found) > max_items:
                raise too_many_rows(max_items)
    return UploadedRows(sheet="", column=index, rows=found)


def _chain(first: list[str], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest


def csv_bytes(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    # the BOM makes Excel read UTF-8; a lone surrogate (from a JSON escape) cannot be encoded and becomes "?"
    return out.getvalue().encode("utf-8-sig", errors="replace")


def new_workbook_bytes(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    workbook = Workbook(write_only=True)
    worksheet = workbook.create_sheet("results")
    worksheet.append(header)
    for row in rows:
        worksheet.append([_cell(worksheet, value) for value in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _cell(worksheet, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    cell = WriteOnlyCell(worksheet, value=xlsx_text(value))
    cell.data_type = "s"  # openpyxl makes text that starts with "=" a formula; this is text
    return cell
