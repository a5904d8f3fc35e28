"""The text of an uploaded document (txt, md, csv, pdf, docx, xlsx), as the sections its structure gives (pages,
headings, sheets, paragraphs), read in bounded memory from content that may be hostile.

The content decides what a file is, not its name: a name whose extension does not match the content is refused,
and so is an empty file or a binary one. A .docx or .xlsx is decompressed part by part with every byte counted
against FILE_MAX_UNCOMPRESSED_BYTES before any parser builds a tree of it (jobs/xlsx_archive.py), so a zip bomb is
a 413; a PDF is read by pypdf, an encrypted or unreadable one is a 400. The text taken out is limited by
FILE_MAX_CHARS, a PDF's pages by FILE_MAX_PAGES.
"""

import io
import logging
import re
from dataclasses import dataclass

from django.conf import settings

from common.errors import AppError, InvalidRequest
from jobs.spreadsheets import _csv_records, _csv_text
from jobs.xlsx_archive import Archive, Budget, parse
from jobs.xlsx_read import xlsx_sheets_text

logger = logging.getLogger(__name__)

FORMATS = ("txt", "md", "csv", "pdf", "docx", "xlsx")
_TEXT_FORMATS = ("txt", "md", "csv")
_NAMES = {
    "pdf": "a PDF",
    "docx": "a Word document (.docx)",
    "xlsx": "an Excel workbook (.xlsx)",
    "zip": "a zip archive",
    "text": "plain text",
    "binary": "binary data",
}
_MD_HEADING = re.compile(r"^ {0,3}#{1,6}\s")


class FileTooLarge(AppError):
    status, code = 413, "file_too_large"


class _UncompressedBudget(Budget):
    def too_large(self) -> AppError:
        return FileTooLarge(
            f"The document holds more than FILE_MAX_UNCOMPRESSED_BYTES={self.limit} bytes once decompressed.",
            code="file_too_large_uncompressed",
            details={"limit": self.limit, "setting": "FILE_MAX_UNCOMPRESSED_BYTES"},
            param="file",
        )


@dataclass(frozen=True)
class Document:
    format: str
    sections: list[str]  # in reading order; each starts where the structure does (a page, a heading, a sheet)
    pages: int | None = None  # PDFs only

    @property
    def characters(self) -> int:
        return sum(len(s) for s in self.sections)


def _invalid(message: str, code: str = "invalid_file") -> InvalidRequest:
    return InvalidRequest(message, code=code, param="file")


def file_format(name: str) -> str:
    """The format a file's name claims; a name with no supported extension is a 400."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension not in FORMATS:
        raise _invalid(
            f"Unsupported file type {('.' + extension) if extension else '(no extension)'}; upload one of "
            f"{', '.join('.' + f for f in FORMATS)}.",
            code="unsupported_file_type",
        )
    return extension


def _sniff(data: bytes) -> str:
    """What the bytes are: pdf, docx, xlsx, zip, text or binary."""
    if data[:1024].lstrip().startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        tail = data[-(1 << 20) :]  # the central directory, where the part names are
        if b"word/document.xml" in tail:
            return "docx"
        if b"xl/workbook.xml" in tail:
            return "xlsx"
        return "zip"
    head = data[: 1 << 16]
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    if b"\x00" in head or controls > len(head) // 100:
        return "binary"
    return "text"


def _check_content(claimed: str, data: bytes) -> None:
    if not data.strip():
        raise _invalid("The file is empty.", code="empty_file")
    actual = _sniff(data)
    if actual == claimed or (actual == "text" and claimed in _TEXT_FORMATS):
        return
    if actual == "binary":
        raise _invalid(f"The file is binary data, not a .{claimed} file.", code="binary_file")
    raise _invalid(f"The file is named .{claimed} but its content is {_NAMES[actual]}.", code="file_type_mismatch")


def _too_much_text(limit: int) -> AppError:
    return FileTooLarge(
        f"The document holds more than FILE_MAX_CHARS={limit} characters of text.",
        code="too_much_text",
        details={"limit": limit, "setting": "FILE_MAX_CHARS"},
        param="file",
    )


def document_read(*, name: str, data: bytes) -> Document:
    """The document's text in sections. Raises a 400 (`invalid_file`, `empty_file`, `binary_file`,
    `file_type_mismatch`, `encrypted_file`, `too_many_pages`, `no_text`) or a 413 (`file_too_large_uncompressed`,
    `too_much_text`) naming the limit."""
    claimed = file_format(name)
    _check_content(claimed, data)
    reader = {"pdf": _pdf, "docx": _docx, "xlsx": _xlsx}.get(claimed, _text)
    document = reader(data, claimed) if reader is _text else reader(data)
    limit = settings.FILE_MAX_CHARS
    if document.characters > limit:
        raise _too_much_text(limit)
    if not any(s.strip() for s in document.sections):
        raise _invalid("The document holds no text to work on.", code="no_text")
    return document


# ---- Text, Markdown, CSV ------------------------------------------------------------------------------------------


def _decoded(data: bytes) -> str:
    if len(data) > settings.FILE_MAX_CHARS * 4:  # UTF-8 takes at most 4 bytes a character
        raise _too_much_text(settings.FILE_MAX_CHARS)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # what Windows editors save as "ANSI"


def _text(data: bytes, claimed: str) -> Document:
    if claimed == "csv":
        limit, size, lines = settings.FILE_MAX_CHARS, 0, []
        for record in _csv_records(_csv_text(data)):
            line = " | ".join(value.strip() for value in record if value.strip())
            size += len(line) + 1
            if size > limit:
                raise _too_much_text(limit)
            if line:
                lines.append(line)
        return Document(format="csv", sections=["\n".join(lines)] if lines else [])
    text = _decoded(data).replace("\r\n", "\n").replace("\r", "\n")
    if claimed == "md":
        return Document(format="md", sections=_markdown_sections(text))
    return Document(format="txt", sections=[text.strip()])


def _markdown_sections(text: str) -> list[str]:
    """A section per heading (with what follows it up to the next heading); text before the first is its own."""
    sections: list[list[str]] = [[]]
    fenced = False
    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and _MD_HEADING.match(line) and any(s.strip() for s in sections[-1]):
            sections.append([])
        sections[-1].append(line)
    return [joined for lines in sections if (joined := "\n".join(lines).strip())]


# ---- PDF ------------------------------------------------------------------------------------------------------------


def _pdf_limits():
    """pypdf's limits on what one stream may decode to, brought down to FILE_MAX_UNCOMPRESSED_BYTES."""
    from pypdf import apply_configuration

    limit = settings.FILE_MAX_UNCOMPRESSED_BYTES
    return apply_configuration(
        maximum_declared_stream_length=limit,
        array_based_stream_maximum_output_length=limit,
        jbig2_maximum_output_length=limit,
        lzw_maximum_output_length=limit,
        run_length_maximum_output_length=limit,
        zlib_maximum_output_length=limit,
        brotli_maximum_output_length=limit,
        image_maximum_buffer_size=limit,
        stream_decoding_work_maximum_length=limit,
    )


def _page_contents_size(page) -> int:
    """The decoded bytes of a page's content streams (pypdf keeps them once decoded, so they add up)."""
    contents = page.get("/Contents")
    contents = contents.get_object() if contents is not None else None
    streams = contents if isinstance(contents, list) else [contents] if contents is not None else []
    return sum(len(s.get_object().get_data()) for s in streams)


def _pdf(data: bytes) -> Document:
    from pypdf.errors import LimitReachedError

    budget = _UncompressedBudget(settings.FILE_MAX_UNCOMPRESSED_BYTES)
    try:
        with _pdf_limits():
            return _pdf_read(data, budget)
    except LimitReachedError:
        raise budget.too_large() from None


def _pdf_read(data: bytes, budget: Budget) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError

    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
        pages = None if encrypted else len(reader.pages)
    except LimitReachedError:
        raise
    except Exception as exc:  # pypdf raises many kinds of error on a broken file; all mean "unreadable"
        logger.info("Unreadable PDF: %s", exc)
        raise _invalid(f"The file is not a readable PDF ({type(exc).__name__}).") from None
    if encrypted:
        raise _invalid("The PDF is encrypted; upload it without a password.", code="encrypted_file")
    if pages > settings.FILE_MAX_PAGES:
        raise _invalid(
            f"The PDF has {pages} pages; the limit is FILE_MAX_PAGES={settings.FILE_MAX_PAGES}.",
            code="too_many_pages",
        )
    sections, size = [], 0
    for number in range(pages):
        try:
            page = reader.pages[number]
            text = page.extract_text() or ""
            budget.spend(_page_contents_size(page))
        except (LimitReachedError, AppError):
            raise
        except Exception as exc:
            logger.info("Unreadable PDF page %d: %s", number + 1, exc)
            raise _invalid(f"Page {number + 1} of the PDF cannot be read ({type(exc).__name__}).") from None
        size += len(text)
        if size > settings.FILE_MAX_CHARS:
            raise _too_much_text(settings.FILE_MAX_CHARS)
        sections.append(text.strip())
    return Document(format="pdf", sections=[s for s in sections if s], pages=pages)


# ---- Word, Excel ------------------------------------------------------------------------------------------------------


def _archive(data: bytes, kind: str) -> Archive:
    """The zip, every part decompressed once and counted before anything parses it (a zip bomb stops here)."""
    archive = Archive(data, _UncompressedBudget(settings.FILE_MAX_UNCOMPRESSED_BYTES), kind=kind)
    try:
        archive.measure()
    except BaseException:
        archive.close()
        raise
    return archive


def _docx(data: bytes) -> Document:
    import docx

    archive = _archive(data, ".docx document")
    try:
        parse(archive, "word/document.xml", {})  # well-formed, and no DTD, before lxml builds its tree
    finally:
        archive.close()
    try:
        document = docx.Document(io.BytesIO(data))
        sections: list[list[str]] = [[]]
        for block in document.iter_inner_content():
            if hasattr(block, "rows"):  # a table: a line per row
                lines = [" | ".join(c.text.strip() for c in row.cells if c.text.strip()) for row in block.rows]
                sections[-1].append("\n".join(line for line in lines if line))
                continue
            style = (block.style.name if block.style is not None else "") or ""
            if style.startswith(("Heading", "Title")) and any(sections[-1]):
                sections.append([])
            sections[-1].append(block.text.strip())
    except Exception as exc:  # python-docx on a damaged document: KeyError, ValueError, lxml errors, ...
        logger.info("Unreadable .docx: %s", exc)
        raise _invalid(f"The file is not a readable .docx document ({type(exc).__name__}).") from None
    return Document(format="docx", sections=[j for lines in sections if (j := "\n\n".join(p for p in lines if p))])


def _xlsx(data: bytes) -> Document:
    archive = _archive(data, ".xlsx workbook")
    try:
        # Each cell with a value is at least one character and a separator of the text: more cannot fit anyway.
        limit = settings.FILE_MAX_CHARS
        sheets = xlsx_sheets_text(archive, max_cells=limit // 2 + 1, too_many=lambda: _too_much_text(limit))
    finally:
        archive.close()
    return Document(format="xlsx", sections=[f"Sheet {name}:\n{text}" for name, text in sheets])
