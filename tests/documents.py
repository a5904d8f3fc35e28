"""Documents made in the tests: a PDF written by hand (pypdf reads but does not lay out text), Word documents with
python-docx, workbooks with openpyxl, and hostile variants of them (zip bombs, encryption, damage)."""

import io
import zipfile
import zlib

import docx
from openpyxl import Workbook
from pypdf import PdfReader, PdfWriter


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(pages: list[str], padding: int = 0) -> bytes:
    """A PDF with one page per text (each line of a text one line on the page), Helvetica, no compression; with
    `padding`, each page's content stream ends with that many spaces and is deflated (a bomb of a PDF: 30 MB of
    spaces deflate to 30 KB)."""
    objects: list[bytes] = []
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        lines = " T* ".join(f"({_escape(line)}) Tj" for line in text.split("\n"))
        stream = f"BT /F1 11 Tf 14 TL 50 780 Td {lines} ET".encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        flate = b""
        if padding:
            stream, flate = zlib.compress(stream + b" " * padding, 9), b" /Filter /FlateDecode"
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(stream), flate) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def encrypted_pdf(pages: list[str]) -> bytes:
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf_bytes(pages))).pages:
        writer.add_page(page)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes(blocks: list[tuple[str, str]]) -> bytes:
    """(kind, text) blocks: kind "h1"/"h2" a heading, "p" a paragraph, "table" rows of cells split by | and ;."""
    document = docx.Document()
    for kind, text in blocks:
        if kind.startswith("h"):
            document.add_heading(text, level=int(kind[1:]))
        elif kind == "table":
            rows = [row.split("|") for row in text.split(";")]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, cells in enumerate(rows):
                for c, value in enumerate(cells):
                    table.cell(r, c).text = value
        else:
            document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx_bytes(sheets: dict[str, list[list]]) -> bytes:
    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _copy(data: bytes, target: zipfile.ZipFile, skip: str = "") -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        for info in source.infolist():
            if info.filename != skip:
                target.writestr(info, source.read(info.filename))


def with_part(data: bytes, part: str, content: bytes) -> bytes:
    """The zip `data` with `part` replaced by (or added as) `content`."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        _copy(data, target, skip=part)
        target.writestr(part, content)
    return out.getvalue()


def with_bomb(data: bytes, part: str, size: int) -> bytes:
    """The zip `data` with `part` added: `size` bytes of zeros, which deflate to about a thousandth of that."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        _copy(data, target)
        with target.open(part, "w") as member:
            block = b"\0" * (1 << 20)
            for _ in range(size // len(block)):
                member.write(block)
    return out.getvalue()
