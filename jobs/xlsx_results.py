"""The uploaded workbook with a result column added, written as a stream.

Every part is copied as it decompresses; the chosen sheet's XML is re-emitted event by event with one inline-string
cell added at the end of each result row (right of everything the sheet uses), the `<dimension>` widened and a
column width set. Nothing is loaded whole, so a download costs the same memory for any workbook the upload took,
however it was built. Results are strings, never formulas.
"""

import io
import re
import zipfile
from xml.sax.saxutils import escape

from common.errors import InvalidRequest
from common.spreadsheets import xlsx_text
from jobs.xlsx_archive import (
    MAX_COLUMN,
    Archive,
    Budget,
    local,
    parse,
    pick_sheet,
    row_number,
    split_reference,
    workbook_parts,
)

_ATTR = {'"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
_TEXT = {"\r": "&#13;"}
_LITERAL_ESCAPE = re.compile(r"_(x[0-9A-Fa-f]{4}_)")  # text that Excel would read as an `_xHHHH_` escape
_RANGE = re.compile(r"^([A-Z]{1,3})(\d+)(?::([A-Z]{1,3})(\d+))?$")


def _letters(column: int) -> str:
    out = ""
    while column:
        column, rem = divmod(column - 1, 26)
        out = chr(65 + rem) + out
    return out


def _extent(archive: Archive, path: str, column: int) -> tuple[int, float | None]:
    """(the rightmost column any cell uses, the width of `column` if the sheet sets one)."""
    state = {"row": 0, "column": 0, "max": 0, "width": None}

    def start(name, attrs):
        tag = local(name)
        if tag == "row":
            state["row"] = row_number(attrs.get("r"), state["row"])
            state["column"] = 0
        elif tag == "c":
            ref = attrs.get("r")
            state["column"] = split_reference(ref)[0] if ref else state["column"] + 1
            state["max"] = max(state["max"], state["column"])
        elif tag == "col":
            low, high = attrs.get("min", ""), attrs.get("max", "")
            if low.isdigit() and high.isdigit() and int(low) <= column <= int(high):
                try:
                    state["width"] = float(attrs.get("width", ""))
                except ValueError:
                    pass

    parse(archive, path, {"StartElementHandler": start})
    return state["max"], state["width"]


class _Rewriter:
    """Re-emits a worksheet's XML (namespace prefixes as written) with the result cells added."""

    def __init__(self, out, *, target: int, width: float, cells: dict[int, str]):
        self.out, self.target, self.width = out, target, width
        self.cells = cells
        self.pending_rows = sorted(cells)  # rows still to be given a cell; a row missing in the sheet is added
        self.letters = _letters(target)
        self.stack: list[str] = []
        self.open_tag: str | None = None  # a start tag not yet closed: it becomes `/>` if nothing follows
        self.row = 0
        self.cols_done = False  # our <col> is written, or a <col> already covers the column
        self.prefix = ""
        self.buffer: list[str] = []
        self.buffered = 0

    def handlers(self) -> dict:
        return {
            "StartElementHandler": self.start,
            "EndElementHandler": self.end,
            "CharacterDataHandler": self.text,
            "ProcessingInstructionHandler": self.pi,
            "CommentHandler": self.comment,
        }

    def write(self, text: str) -> None:
        self.buffer.append(text)
        self.buffered += len(text)
        if self.buffered > 65536:
            self.flush()

    def flush(self) -> None:
        self.out.write("".join(self.buffer).encode("utf-8"))
        self.buffer, self.buffered = [], 0

    def close_open(self) -> None:
        if self.open_tag is not None:
            self.write(self.open_tag + ">")
            self.open_tag = None

    def start(self, name, attrs):
        self.close_open()
        tag = local(name)
        parent = self.stack[-1] if self.stack else ""
        pairs = list(zip(attrs[::2], attrs[1::2], strict=True))
        if tag == "worksheet":
            self.prefix = name[: -len(tag)]
        elif tag == "dimension":
            pairs = [(k, self._dimension(v) if k == "ref" else v) for k, v in pairs]
        elif tag == "col" and parent == "cols" and not self.cols_done:
            low, high = dict(pairs).get("min", ""), dict(pairs).get("max", "")
            if low.isdigit() and high.isdigit():
                if int(low) <= self.target <= int(high):
                    self.cols_done = True
                elif int(low) > self.target:
                    self.write(self._col())
        elif tag == "sheetData" and not self.cols_done:
            self.write(f"<{self.prefix}cols>{self._col()}</{self.prefix}cols>")
        elif tag == "row" and parent == "sheetData":
            self.row = row_number(dict(pairs).get("r"), self.row)
            self._missing_rows_before(self.row)
            if self.pending_rows and self.pending_rows[0] == self.row:
                pairs = [(k, v) for k, v in pairs if k != "spans"]  # the row's span hint no longer holds
        self.stack.append(tag)
        attributes = "".join(f' {k}="{escape(v, _ATTR)}"' for k, v in pairs)
        self.open_tag = f"<{name}{attributes}"

    def end(self, name):
        tag = self.stack.pop()
        parent = self.stack[-1] if self.stack else ""
        if tag == "row" and parent == "sheetData" and self.pending_rows and self.pending_rows[0] == self.row:
            self.close_open()
            self.write(self._cell(self.pending_rows.pop(0)))
        elif tag == "sheetData":
            if self.pending_rows:
                self.close_open()
                self._missing_rows_before(None)
        elif tag == "cols" and not self.cols_done:
            self.close_open()
            self.write(self._col())
        if self.open_tag is not None:
            self.write(self.open_tag + "/>")
            self.open_tag = None
        else:
            self.write(f"</{name}>")

    def text(self, data):
        self.close_open()
        self.write(escape(data, _TEXT))

    def pi(self, target, data):
        self.close_open()
        self.write(f"<?{target} {data}?>")

    def comment(self, data):
        self.close_open()
        self.write(f"<!--{data}-->")

    def _missing_rows_before(self, row: int | None) -> None:
        while self.pending_rows and (row is None or self.pending_rows[0] < row):
            number = self.pending_rows.pop(0)
            self.write(f'<{self.prefix}row r="{number}">{self._cell(number)}</{self.prefix}row>')

    def _cell(self, row: int) -> str:
        text = _LITERAL_ESCAPE.sub(r"_x005F_\1", xlsx_text(self.cells[row]))
        p = self.prefix
        return (
            f'<{p}c r="{self.letters}{row}" t="inlineStr"><{p}is><{p}t xml:space="preserve">'
            f"{escape(text, _TEXT)}</{p}t></{p}is></{p}c>"
        )

    def _col(self) -> str:
        self.cols_done = True
        return f'<{self.prefix}col min="{self.target}" max="{self.target}" width="{self.width:g}" customWidth="1"/>'

    def _dimension(self, ref: str) -> str:
        match = _RANGE.match(ref)
        if not match:
            return ref
        first_col, first_row, last_col, last_row = match.groups()
        last_row = max(int(last_row or first_row), max(self.cells))
        return f"{first_col}{first_row}:{self.letters}{last_row}"


def workbook_with_results(
    data: bytes, *, sheet: str, column: int, has_header: bool, title: str, cells: dict[int, str]
) -> bytes:
    """The uploaded workbook with `cells` ({row number: text}) written in a new column right of the used range."""
    archive = Archive(data, Budget())
    try:
        parts = workbook_parts(archive)
        names = [ref.name for ref in parts.sheets]
        ref = pick_sheet(parts, sheet if sheet in names else "")
        used, width = _extent(archive, ref.path, column)
        target = used + 1
        if target > MAX_COLUMN:
            raise InvalidRequest(
                "The sheet uses its last column, so there is no room for results: download them as CSV.",
                code="no_room_for_results",
                param="format",
            )
        values = dict(cells)
        if has_header:
            values[1] = title
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as result:
            for name in archive.names:
                with result.open(name, "w") as member:
                    if name == ref.path and values:
                        rewriter = _Rewriter(member, target=target, width=max(width or 13, 40), cells=values)
                        member.write(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n')
                        parse(archive, name, rewriter.handlers(), namespaces=False)
                        rewriter.flush()
                    else:
                        for chunk in archive.chunks(name):
                            member.write(chunk)
        return out.getvalue()
    finally:
        archive.close()
