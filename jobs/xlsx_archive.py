"""An uploaded .xlsx as a zip archive whose parts are read as streams, with every decompressed byte counted.

The sizes in a zip's headers are the sender's word, so the limit (`JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES`) is checked
against the bytes that decompression actually produces, as they come; a part is never held whole. The parts are
XML, parsed with expat as they stream (no tree kept, no DTD accepted), so memory does not grow with the rows of a
sheet, the dimension it declares, or the strings it does not use.
"""

import io
import posixpath
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from xml.parsers import expat

from django.conf import settings

from common.errors import AppError, InvalidRequest

_CHUNK = 64 * 1024
_MAX_CENTRAL_DIRECTORY = 1024 * 1024  # ~20,000 parts; a workbook has tens (ZipFile keeps one object per part)
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what Excel and every other writer of .xlsx use
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


class WorkbookTooLarge(AppError):
    status, code = 413, "workbook_too_large"


def invalid(reason: str, kind: str = ".xlsx workbook") -> InvalidRequest:
    return InvalidRequest(f"The file is not a readable {kind} ({reason}).", code="invalid_file", param="file")


class Budget:
    """Decompressed bytes (and text taken out of the workbook) so far, against JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = settings.JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES if limit is None else limit
        self.used = 0

    def spend(self, amount: int) -> None:
        self.used += amount
        if self.used > self.limit:
            raise self.too_large()

    def too_large(self) -> AppError:
        return WorkbookTooLarge(
            f"The workbook holds more than JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES={self.limit} bytes once "
            "decompressed; split it, or send the column as a .csv file.",
            details={"limit": self.limit, "setting": "JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES"},
            param="file",
        )


def _central_directory_size(data: bytes, kind: str) -> int:
    """From the end-of-central-directory record, before zipfile reads the directory into memory."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65535))
    if at < 0 or len(data) < at + 22:
        raise invalid("not a zip archive", kind)
    size = int.from_bytes(data[at + 12 : at + 16], "little")
    if size == 0xFFFFFFFF:  # Zip64: the real size is in the Zip64 end record the locator points at
        locator = at - 20
        if locator < 0 or data[locator : locator + 4] != b"PK\x06\x07":
            raise invalid("broken Zip64 record", kind)
        record = int.from_bytes(data[locator + 8 : locator + 16], "little")
        if data[record : record + 4] != b"PK\x06\x06":
            raise invalid("broken Zip64 record", kind)
        size = int.from_bytes(data[record + 40 : record + 48], "little")
    return size


class Archive:
    """`kind` names the file in error messages (".xlsx workbook", ".docx document")."""

    def __init__(self, data: bytes, budget: Budget, kind: str = ".xlsx workbook") -> None:
        self.kind = kind
        if _central_directory_size(data, kind) > _MAX_CENTRAL_DIRECTORY:
            raise self.invalid("too many parts")
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
            raise self.invalid(str(exc) or "not a zip archive") from None
        self.budget = budget
        self.names: list[str] = []  # in archive order, each once (the last entry of a name is the one read)
        for info in self.zip.infolist():
            if info.compress_type not in _METHODS:
                raise self.invalid(f"part {info.filename} uses an unsupported compression method")
            if info.flag_bits & 0x1:
                raise self.invalid("encrypted")
            if info.filename not in self.names:
                self.names.append(info.filename)
        self._counted: dict[str, int] = {}  # bytes of a part already counted (a part read twice counts once)

    def invalid(self, reason: str) -> InvalidRequest:
        return invalid(reason, self.kind)

    def measure(self) -> None:
        """Decompress every part once, counting: the download copies them all, so all of them must fit (a part
        read again later is not counted twice)."""
        for name in self.names:
            for _chunk in self.chunks(name):
                pass

    def has(self, name: str) -> bool:
        return name in self.names

    def chunks(self, name: str) -> Iterator[bytes]:
        """A part's bytes as they decompress, counted against the budget."""
        if name not in self.names:
            raise self.invalid(f"missing part {name}")
        position = 0
        try:
            with self.zip.open(name) as member:
                while chunk := member.read(_CHUNK):
                    position += len(chunk)
                    counted = self._counted.get(name, 0)
                    if position > counted:
                        self.budget.spend(position - counted)
                        self._counted[name] = position
                    yield chunk
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
            raise self.invalid(f"part {name}: {exc}") from None

    def close(self) -> None:
        self.zip.close()


class StopParsing(Exception):  # noqa: N818 - a signal from a handler, not an error
    pass


def parse(archive: Archive, name: str, handlers: dict[str, Callable], *, namespaces: bool = True) -> None:
    """Feed a part to a fresh expat parser with these handlers (`StartElementHandler`, ...), chunk by chunk. With
    namespaces, names arrive as "uri local". A handler may raise StopParsing to end early."""
    parser = expat.ParserCreate(namespace_separator=" " if namespaces else None)
    parser.buffer_text = True
    parser.ordered_attributes = not namespaces

    def no_doctype(*_args) -> None:
        raise archive.invalid("a DTD is not allowed in its parts")

    parser.StartDoctypeDeclHandler = no_doctype
    parser.EntityDeclHandler = no_doctype
    for event, handler in handlers.items():
        setattr(parser, event, handler)
    try:
        for chunk in archive.chunks(name):
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except StopParsing:
        return
    except expat.ExpatError as exc:
        raise archive.invalid(f"part {name}: {exc}") from None


def local(name: str) -> str:
    """The local part of "uri local" (namespaces on) or "prefix:local" (off)."""
    return name.rsplit(" ", 1)[-1].rsplit(":", 1)[-1]


@dataclass(frozen=True)
class SheetRef:
    name: str
    path: str


@dataclass(frozen=True)
class WorkbookParts:
    sheets: list[SheetRef]  # worksheets in workbook order (chart sheets left out)
    shared_strings: str | None
    styles: str | None
    date1904: bool


def _relationships(archive: Archive, path: str) -> dict[str, tuple[str, str]]:
    """Id -> (type, absolute part name) of a part's relationships file."""
    folder, base = posixpath.split(path)
    rels_path = posixpath.join(folder, "_rels", f"{base}.rels")
    found: dict[str, tuple[str, str]] = {}
    if not archive.has(rels_path):
        return found

    def start(name, attrs):
        if local(name) == "Relationship" and attrs.get("TargetMode") != "External":
            target = attrs.get("Target", "")
            full = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
            found[attrs.get("Id", "")] = (attrs.get("Type", ""), full)
        if len(found) > 10_000:
            raise invalid("too many relationships")

    parse(archive, rels_path, {"StartElementHandler": start})
    return found


def workbook_parts(archive: Archive) -> WorkbookParts:
    office = [t for kind, t in _relationships(archive, "").values() if kind.endswith("/officeDocument")]
    workbook = office[0] if office else "xl/workbook.xml"
    rels = _relationships(archive, workbook)
    listed: list[tuple[str, str]] = []
    date1904 = []

    def start(name, attrs):
        tag = local(name)
        if tag == "sheet":
            rid = attrs.get(f"{_REL_NS} id") or next((v for k, v in attrs.items() if k.endswith(" id")), "")
            listed.append((attrs.get("name", ""), rid))
            if len(listed) > 10_000:
                raise invalid("too many sheets")
        elif tag == "workbookPr":
            date1904.append(attrs.get("date1904", "0").lower() in ("1", "true"))

    parse(archive, workbook, {"StartElementHandler": start})
    sheets = [
        SheetRef(name=name, path=rels[rid][1])
        for name, rid in listed
        if rid in rels and rels[rid][0].endswith("/worksheet") and archive.has(rels[rid][1])
    ]
    if not sheets:
        raise invalid("no worksheet")

    def part(kind: str) -> str | None:
        paths = [p for t, p in rels.values() if t.endswith(kind) and archive.has(p)]
        return paths[0] if paths else None

    return WorkbookParts(
        sheets=sheets,
        shared_strings=part("/sharedStrings"),
        styles=part("/styles"),
        date1904=bool(date1904 and date1904[0]),
    )


def pick_sheet(parts: WorkbookParts, sheet: str) -> SheetRef:
    if not sheet:
        return parts.sheets[0]
    for ref in parts.sheets:
        if ref.name == sheet:
            return ref
    raise InvalidRequest(
        f"No sheet `{sheet}` (found {', '.join(s.name for s in parts.sheets)}).", code="sheet_not_found", param="sheet"
    )


_LETTERS = {chr(c): c - 64 for c in range(65, 91)}
MAX_ROW, MAX_COLUMN = 1_048_576, 16_384  # Excel's sheet


def split_reference(ref: str) -> tuple[int, int]:
    """ "BC12" -> (column 55, row 12); raises for anything outside Excel's sheet."""
    column = i = 0
    while i < len(ref) and ref[i].upper() in _LETTERS:
        column = column * 26 + _LETTERS[ref[i].upper()]
        i += 1
    digits = ref[i:].replace("$", "")
    if not (1 <= column <= MAX_COLUMN and i <= 3 and digits.isdigit() and 1 <= int(digits) <= MAX_ROW):
        raise invalid(f"cell reference {ref[:20]!r}")
    return column, int(digits)


def row_number(text: str | None, previous: int) -> int:
    if text is None:
        number = previous + 1
    elif text.isdigit():
        number = int(text)
    else:
        raise invalid(f"row number {text[:20]!r}")
    if not 1 <= number <= MAX_ROW:
        raise invalid(f"row number {number}")
    return number
