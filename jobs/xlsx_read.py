"""The prompts of one column of an uploaded .xlsx, read in bounded memory.

openpyxl's read-only mode pads every row to the width the file declares and keeps an element per row of the sheet
(and, without a declared dimension, parses the whole sheet when the workbook opens), so a 25 KB file could take
hundreds of MB. Here the sheet is streamed once for its header row and once for the chosen column; of the shared
strings only those the column uses are kept; everything decompressed counts against
JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES, and so does the text taken out (a string used by 50,000 cells counts 50,000
times); the rows stop at `max_items`.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format
from openpyxl.utils.datetime import CALENDAR_MAC_1904, CALENDAR_WINDOWS_1900, from_excel, from_ISO8601

from common.errors import InvalidRequest
from common.spreadsheets import CELL_MAX_CHARS
from jobs.xlsx_archive import (
    MAX_COLUMN,
    Archive,
    Budget,
    StopParsing,
    invalid,
    local,
    parse,
    pick_sheet,
    row_number,
    split_reference,
    workbook_parts,
)

_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")  # how OOXML writes characters XML cannot hold (_x000D_)


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "_x" in text else text


@dataclass(slots=True)
class _Cell:
    row: int
    column: int
    kind: str  # the `t` attribute: s, inlineStr, str, b, e, n, d
    style: int
    parts: list[str] = field(default_factory=list)
    size: int = 0


class _SheetScan:
    """One pass over a worksheet's XML, keeping the cells `wanted(row, column)` says yes to."""

    def __init__(
        self, wanted: Callable[[int, int], bool], stop_after_row: int | None, on_cell: Callable[[_Cell], None]
    ):
        self.wanted, self.stop_after_row, self.on_cell = wanted, stop_after_row, on_cell
        self.row = 0
        self.column = 0
        self.cell: _Cell | None = None
        self.text_depth = 0  # inside <v>, or a <t> of an inline string (not a phonetic <rPh> run)
        self.phonetic = 0

    def handlers(self) -> dict:
        return {
            "StartElementHandler": self.start,
            "EndElementHandler": self.end,
            "CharacterDataHandler": self.text,
        }

    def start(self, name, attrs):
        tag = local(name)
        if tag == "row":
            self.row = row_number(attrs.get("r"), self.row)
            if self.stop_after_row is not None and self.row > self.stop_after_row:
                raise StopParsing
            self.column = 0
        elif tag == "c":
            ref = attrs.get("r")
            if ref:
                self.column, row = split_reference(ref)
                if row != self.row:
                    raise invalid(f"cell {ref} outside its row {self.row}")
            else:
                self.column += 1
                if self.column > MAX_COLUMN:
                    raise invalid(f"more than {MAX_COLUMN} cells in row {self.row}")
            if self.row and self.wanted(self.row, self.column):
                style = attrs.get("s", "0")
                self.cell = _Cell(self.row, self.column, attrs.get("t", "n"), int(style) if style.isdigit() else 0)
        elif self.cell is not None:
            if tag == "rPh":
                self.phonetic += 1
            elif tag == "v" or (tag == "t" and not self.phonetic):
                self.text_depth += 1

    def end(self, name):
        tag = local(name)
        if tag == "c" and self.cell is not None:
            cell, self.cell = self.cell, None
            if cell.parts:
                self.on_cell(cell)
        elif self.cell is not None:
            if tag == "rPh":
                self.phonetic -= 1
            elif tag == "v" or (tag == "t" and not self.phonetic):
                self.text_depth -= 1

    def text(self, data):
        if self.cell is not None and self.text_depth > 0:
            self.cell.size += len(data)
            if self.cell.size > CELL_MAX_CHARS * 2:  # Excel holds 32,767 characters; `_x..._` escapes double that
                raise invalid(f"a cell of row {self.cell.row} holds more text than Excel allows")
            self.cell.parts.append(data)


def _shared_strings(archive: Archive, path: str | None, wanted: set[int]) -> dict[int, str]:
    """The shared strings whose index is in `wanted`; the others are parsed past, never kept."""
    found: dict[int, str] = {}
    if not wanted:
        return found
    if path is None:
        raise invalid("cells refer to shared strings but the workbook has none")
    state = {"index": -1, "parts": None, "size": 0, "depth": 0, "phonetic": 0}
    last = max(wanted)

    def start(name, attrs):
        tag = local(name)
        if tag == "si":
            state["index"] += 1
            state["parts"] = [] if state["index"] in wanted else None
            state["size"] = 0
        elif state["parts"] is not None:
            if tag == "rPh":
                state["phonetic"] += 1
            elif tag == "t" and not state["phonetic"]:
                state["depth"] += 1

    def end(name):
        tag = local(name)
        if tag == "si":
            if state["parts"] is not None:
                found[state["index"]] = _unescape("".join(state["parts"]))
            state["parts"] = None
            if state["index"] >= last:
                raise StopParsing
        elif state["parts"] is not None:
            if tag == "rPh":
                state["phonetic"] -= 1
            elif tag == "t" and not state["phonetic"]:
                state["depth"] -= 1

    def text(data):
        if state["parts"] is not None and state["depth"] > 0:
            state["size"] += len(data)
            if state["size"] > CELL_MAX_CHARS * 2:
                raise invalid("a shared string holds more text than Excel allows")
            state["parts"].append(data)

    parse(archive, path, {"StartElementHandler": start, "EndElementHandler": end, "CharacterDataHandler": text})
    return found


def _date_styles(archive: Archive, path: str | None) -> set[int]:
    """Indexes of the cell formats that show a number as a date (as openpyxl reads them)."""
    if path is None:
        return set()
    custom: dict[int, str] = {}
    formats: list[int] = []
    where = {"cellXfs": 0}

    def start(name, attrs):
        tag = local(name)
        if tag == "numFmt" and attrs.get("numFmtId", "").isdigit():
            custom[int(attrs["numFmtId"])] = attrs.get("formatCode", "")[:1000]
        elif tag == "cellXfs":
            where["cellXfs"] += 1
        elif tag == "xf" and where["cellXfs"]:
            number = attrs.get("numFmtId", "0")
            formats.append(int(number) if number.isdigit() else 0)
            if len(formats) > 100_000:
                raise invalid("too many cell formats")

    def end(name):
        if local(name) == "cellXfs":
            where["cellXfs"] -= 1

    parse(archive, path, {"StartElementHandler": start, "EndElementHandler": end})
    dates = set()
    for index, number in enumerate(formats):
        code = custom.get(number, BUILTIN_FORMATS.get(number))
        if code and is_date_format(code):
            dates.add(index)
    return dates


def _number_text(raw: str) -> str:
    try:
        value = float(raw) if any(c in raw for c in ".eE") else int(raw)
    except ValueError:
        return raw
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _Values:
    """Turns kept cells into the text a prompt is made of (numbers, booleans and dates as openpyxl shows them)."""

    def __init__(self, archive: Archive, strings_path: str | None, styles_path: str | None, date1904: bool):
        self.archive, self.strings_path = archive, strings_path
        self.styles_path, self.epoch = styles_path, CALENDAR_MAC_1904 if date1904 else CALENDAR_WINDOWS_1900
        self._dates: set[int] | None = None

    def resolve(self, cells: list[_Cell]) -> list[tuple[_Cell, str]]:
        indexes = set()
        for cell in cells:
            if cell.kind == "s":
                raw = "".join(cell.parts).strip()
                if not raw.isdigit():
                    raise invalid(f"shared string index {raw[:20]!r}")
                indexes.add(int(raw))
        strings = _shared_strings(self.archive, self.strings_path, indexes)
        out = []
        for cell in cells:
            raw = "".join(cell.parts)
            if cell.kind == "s":
                text = strings.get(int(raw.strip()))
                if text is None:
                    raise invalid(f"row {cell.row} refers to a shared string that is not there")
            elif cell.kind in ("inlineStr", "str", "e"):
                text = _unescape(raw)
            elif cell.kind == "b":
                text = str(raw.strip() in ("1", "true"))
            elif cell.kind == "d":
                text = str(from_ISO8601(raw.strip()))
            else:
                text = self._number(raw.strip(), cell.style)
            out.append((cell, text))
        return out

    def _number(self, raw: str, style: int) -> str:
        if self._dates is None:
            self._dates = _date_styles(self.archive, self.styles_path)
        if style in self._dates:
            try:
                value = from_excel(float(raw), self.epoch)
            except (ValueError, OverflowError):
                return raw
            if isinstance(value, datetime):
                return str(value)
            return str(value)
        return _number_text(raw)


def column_index(header: dict[int, str], column: str, has_header: bool) -> int:
    wanted = column.strip()
    if has_header:
        for index in sorted(header):
            if header[index].strip().casefold() == wanted.casefold():
                return index
    if wanted.isalpha() and len(wanted) <= 3:  # a column letter: "A", "bc"
        try:
            return split_reference(wanted.upper() + "1")[0]
        except InvalidRequest:
            pass
    names = ", ".join(f"`{header[i]}`" for i in sorted(header) if header[i].strip())
    raise InvalidRequest(
        f"No column `{wanted}` in the header row" + (f" (found {names})." if names else "."),
        code="column_not_found",
        param="column",
    )


def too_many_rows(limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"More than {limit} rows; the limit is JOB_MAX_ITEMS={limit} per job.",
        code="too_many_items",
        details={"limit": limit},
        param="file",
    )


def xlsx_column(
    data: bytes, *, column: str, sheet: str, has_header: bool, max_items: int, budget: Budget | None = None
) -> tuple[str, int, list[tuple[int, str]]]:
    """(sheet name, 1-based column, [(row number, text)] of its non-empty cells below the header)."""
    budget = budget or Budget()
    archive = Archive(data, budget)
    try:
        archive.measure()
        parts = workbook_parts(archive)
        ref = pick_sheet(parts, sheet)
        values = _Values(archive, parts.shared_strings, parts.styles, parts.date1904)

        header: dict[int, str] = {}
        if has_header:
            cells: list[_Cell] = []
            scan = _SheetScan(lambda row, _col: row == 1, 1, cells.append)
            parse(archive, ref.path, scan.handlers())
            header = {cell.column: text for cell, text in values.resolve(cells)}
        index = column_index(header, column, has_header)

        first = 2 if has_header else 1
        kept: list[_Cell] = []

        def keep(cell: _Cell) -> None:
            if cell.kind in ("inlineStr", "str", "e") and not "".join(cell.parts).strip():
                return  # an empty text cell is not a row
            kept.append(cell)
            if len(kept) > max_items:
                raise too_many_rows(max_items)

        scan = _SheetScan(lambda row, col: col == index and row >= first, None, keep)
        parse(archive, ref.path, scan.handlers())
        rows = []
        for cell, text in values.resolve(kept):
            budget.spend(len(text))  # a shared string repeated in every row is that much text to store and send
            if text.strip():
                rows.append((cell.row, text))
        return ref.name, index, rows
    finally:
        archive.close()


def xlsx_sheets_text(archive: Archive, *, max_cells: int, too_many: Callable[[], Exception]) -> list[tuple[str, str]]:
    """Every worksheet with text as (name, text): a line per row, its non-empty cells joined by " | ", as Excel
    shows them. The archive's budget counts what is decompressed and the text taken out (a shared string used by
    every cell counts every time), and at most `max_cells` cells with a value are held (`too_many()` is raised past
    it), so memory stays bounded."""
    parts = workbook_parts(archive)
    values = _Values(archive, parts.shared_strings, parts.styles, parts.date1904)
    sheets, held = [], 0
    for ref in parts.sheets:
        cells: list[_Cell] = []

        def keep(cell: _Cell, cells=cells) -> None:
            nonlocal held
            held += 1
            if held > max_cells:
                raise too_many()
            cells.append(cell)

        parse(archive, ref.path, _SheetScan(lambda _row, _col: True, None, keep).handlers())
        lines: dict[int, list[str]] = {}
        for cell, text in values.resolve(cells):
            archive.budget.spend(len(text))
            if text.strip():
                lines.setdefault(cell.row, []).append(text.strip())
        sheet_text = "\n".join(" | ".join(lines[row]) for row in sorted(lines))
        if sheet_text:
            sheets.append((ref.name, sheet_text))
    return sheets
