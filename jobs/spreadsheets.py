"""Reading prompts out of an uploaded .xlsx / .csv, and writing results: CSV, a new workbook, or the uploaded
workbook with a result column added (openpyxl)."""

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.utils import column_index_from_string, get_column_letter

from common.errors import InvalidRequest

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_CSV_DELIMITERS = ",;\t|"
_MAX_CELL = 32_767  # Excel's limit on the characters in one cell


@dataclass(frozen=True)
class UploadedRows:
    sheet: str  # "" for CSV
    column: int  # 1-based
    rows: list[tuple[int, str]]  # (row number, 1-based as in Excel; the cell's text), empty cells left out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _column_index(header: list[Any], column: str, has_header: bool) -> int:
    wanted = column.strip()
    if has_header:
        for index, name in enumerate(header, start=1):
            if _text(name).strip().casefold() == wanted.casefold():
                return index
    if wanted.isalpha() and len(wanted) <= 3:  # a column letter: "A", "bc"
        return column_index_from_string(wanted.upper())
    names = ", ".join(f"`{_text(n)}`" for n in header if _text(n).strip())
    raise InvalidRequest(
        f"No column `{wanted}` in the header row" + (f" (found {names})." if names else "."),
        code="column_not_found",
        param="column",
    )


def read_rows(kind: str, data: bytes, *, column: str, sheet: str = "", has_header: bool = True) -> UploadedRows:
    """kind: "xlsx" or "csv". Raises InvalidRequest for a file that cannot be read or a missing column/sheet."""
    table, sheet_name = _xlsx_rows(data, sheet) if kind == "xlsx" else (_csv_rows(data), "")
    header = table[0] if table else []
    index = _column_index(list(header), column, has_header)
    first = 2 if has_header else 1
    rows = []
    for number, values in enumerate(table[first - 1 :], start=first):
        text = _text(values[index - 1]) if index <= len(values) else ""
        if text.strip():
            rows.append((number, text))
    return UploadedRows(sheet=sheet_name, column=index, rows=rows)


def _xlsx_rows(data: bytes, sheet: str) -> tuple[list[tuple], str]:
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds (BadZipFile, KeyError, ...): all mean an unreadable upload
        raise InvalidRequest(f"The file is not a readable .xlsx workbook ({exc}).", code="invalid_file") from None
    try:
        if sheet and sheet not in workbook.sheetnames:
            raise InvalidRequest(
                f"No sheet `{sheet}` (found {', '.join(workbook.sheetnames)}).", code="sheet_not_found", param="sheet"
            )
        worksheet = workbook[sheet] if sheet else workbook.worksheets[0]
        return [tuple(row) for row in worksheet.iter_rows(values_only=True)], worksheet.title
    finally:
        workbook.close()


def _csv_rows(data: bytes) -> list[list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # what Excel on Windows saves as "CSV"
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=_CSV_DELIMITERS)
    except csv.Error:
        dialect = csv.excel
    return list(csv.reader(io.StringIO(text), dialect))


def csv_bytes(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8-sig")  # the BOM makes Excel read UTF-8


def new_workbook_bytes(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    workbook = Workbook(write_only=True)
    worksheet = workbook.create_sheet("results")
    worksheet.append(header)
    for row in rows:
        worksheet.append([_cell(value) for value in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return value[:_MAX_CELL]
    return value


def workbook_with_results(
    data: bytes, *, sheet: str, column: int, has_header: bool, title: str, cells: dict[int, str]
) -> bytes:
    """The uploaded workbook with `cells` ({row number: text}) written in a new column right of the used range."""
    workbook = load_workbook(io.BytesIO(data))
    worksheet = workbook[sheet] if sheet in workbook.sheetnames else workbook.worksheets[0]
    target = worksheet.max_column + 1
    if has_header:
        worksheet.cell(row=1, column=target, value=title)
    for row, text in cells.items():
        worksheet.cell(row=row, column=target, value=_cell(text))
    worksheet.column_dimensions[get_column_letter(target)].width = max(
        worksheet.column_dimensions[get_column_letter(column)].width or 13, 40
    )
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
