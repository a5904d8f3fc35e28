"""Peak memory of reading hostile workbooks: `python -m bench.workbook` (a step of `make bench`; no network).

Each workbook is small as uploaded (well under JOB_UPLOAD_MAX_BYTES) and built to cost memory or time when read:
a declared dimension of the whole sheet (A1:XFD1048576) around a few cells, a million empty rows, a sheet and a
sharedStrings.xml that decompress to gigabytes, and large shared strings (unused, or used by every row). For each
one a fresh Python process reads the column as an upload does (`jobs.spreadsheets.read_rows`) and then writes the
results workbook as a download does (`workbook_with_results`); it reports the outcome and how far its peak
resident memory (VmHWM, reset after warming up) and Python's own allocations (tracemalloc) rose over the baseline.
The goal: under 100 MB for every workbook.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

GOAL_MB = 100
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_HEAD = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{_MAIN}">'


def _package(sheet_chunks, strings_chunks=None) -> bytes:
    """An .xlsx whose first sheet (and sharedStrings.xml) are written from these chunks, streamed into the zip."""
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
        'relationships">{}</Relationships>'
    )
    kind = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    book_rels = f'<Relationship Id="rId1" Type="{kind}/worksheet" Target="worksheets/sheet1.xml"/>'
    overrides = (
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        'spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    )
    if strings_chunks is not None:
        book_rels += f'<Relationship Id="rId2" Type="{kind}/sharedStrings" Target="sharedStrings.xml"/>'
        overrides += (
            '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sharedStrings+xml"/>'
        )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            f'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>{overrides}</Types>',
        )
        z.writestr(
            "_rels/.rels",
            rels.format(f'<Relationship Id="rId1" Type="{kind}/officeDocument" Target="xl/workbook.xml"/>'),
        )
        z.writestr(
            "xl/workbook.xml",
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{_MAIN}" xmlns:r="{kind}"><sheets>'
            '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        z.writestr("xl/_rels/workbook.xml.rels", rels.format(book_rels))
        for name, chunks in (("xl/worksheets/sheet1.xml", sheet_chunks), ("xl/sharedStrings.xml", strings_chunks)):
            if chunks is None:
                continue
            with z.open(name, "w", force_zip64=True) as member:
                for chunk in chunks:
                    member.write(chunk.encode() if isinstance(chunk, str) else chunk)
    return out.getvalue()


def _inline(row: int, text: str, column: str = "A") -> str:
    return f'<row r="{row}"><c r="{column}{row}" t="inlineStr"><is><t>{text}</t></is></c></row>'


def declared_dimension() -> bytes:
    """The whole sheet declared (openpyxl's read-only mode pads every row to 16,384 columns) around a few cells."""
    rows = "".join(_inline(r, f"comment {r}" if r > 1 else "Comment") for r in range(1, 6))
    return _package([_HEAD, '<dimension ref="A1:XFD1048576"/><sheetData>', rows, "</sheetData></worksheet>"])


def empty_rows(count: int = 1_000_000) -> bytes:
    """A header, a million empty rows and a last comment: openpyxl keeps an element per row (~80 MB)."""

    def chunks():
        yield _HEAD + "<sheetData>" + _inline(1, "Comment")
        block = "<row/>" * 10_000
        for _ in range(count // 10_000):
            yield block
        yield _inline(count + 2, "the last comment") + "</sheetData></worksheet>"

    return _package(chunks())


def sheet_bomb(gigabytes: float = 1.0) -> bytes:
    """A sheet whose XML decompresses to about a gigabyte (whitespace between two rows); ~1 MB as uploaded."""

    def chunks():
        yield _HEAD + "<sheetData>" + _inline(1, "Comment") + _inline(2, "hello")
        block = b" " * (1 << 20)
        for _ in range(int(gigabytes * 1024)):
            yield block
        yield "</sheetData></worksheet>"

    return _package(chunks())


def shared_strings_bomb(gigabytes: float = 1.0) -> bytes:
    """sharedStrings.xml that decompresses to about a gigabyte: one string of spaces, referenced by one cell."""
    sheet = [_HEAD, '<sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row>', _inline(2, "hello"), "</sheetData>"
             "</worksheet>"]  # fmt: skip

    def strings():
        yield f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{_MAIN}"><si><t>Comment</t></si><si><t>'
        block = b" " * (1 << 20)
        for _ in range(int(gigabytes * 1024)):
            yield block
        yield "</t></si></sst>"

    return _package(sheet, strings())


def unused_shared_strings(megabytes: int = 40) -> bytes:
    """Tens of MB of distinct shared strings (inside the limit) that the column does not use."""

    def strings():
        yield f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{_MAIN}"><si><t>Comment</t></si>'
        n = 1
        written = 0
        while written < megabytes << 20:
            chunk = "".join(f"<si><t>s{i}</t></si>" for i in range(n, n + 10_000))
            n += 10_000
            written += len(chunk)
            yield chunk
        yield "</sst>"

    sheet = [_HEAD, '<sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row>', _inline(2, "hello"),
             "</sheetData></worksheet>"]  # fmt: skip
    return _package(sheet, strings())


def repeated_long_string(rows: int = 50_000) -> bytes:
    """One 32,000-character shared string used by every row: 1.6 G characters of prompts from a ~100 KB file."""

    def sheet():
        yield _HEAD + '<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>Comment</t></is></c></row>'
        for start in range(2, rows + 2, 5000):
            yield "".join(f'<row r="{r}"><c r="A{r}" t="s"><v>0</v></c></row>' for r in range(start, start + 5000))
        yield "</sheetData></worksheet>"

    strings = [f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{_MAIN}"><si><t>{"x" * 32_000}</t></si></sst>']
    return _package(sheet(), strings)


def long_prompts(rows: int = 600, chars: int = 30_000) -> bytes:
    """A legitimate large column: 600 distinct prompts of 30,000 characters (18 MB of text, within the limit)."""

    def sheet():
        yield _HEAD + "<sheetData>" + _inline(1, "Comment")
        for r in range(2, rows + 2):
            yield f'<row r="{r}"><c r="A{r}" t="s"><v>{r - 2}</v></c></row>'
        yield "</sheetData></worksheet>"

    def strings():
        yield f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{_MAIN}">'
        for r in range(rows):
            yield f"<si><t>{r:06d}{'y' * (chars - 6)}</t></si>"
        yield "</sst>"

    return _package(sheet(), strings())


CASES = {
    "declared_dimension": declared_dimension,
    "empty_rows": empty_rows,
    "sheet_bomb": sheet_bomb,
    "shared_strings_bomb": shared_strings_bomb,
    "unused_shared_strings": unused_shared_strings,
    "repeated_long_string": repeated_long_string,
    "long_prompts": long_prompts,
}


# ---- Measuring, in a fresh process per workbook ------------------------------------------------------------------


def _high_water_kb() -> int | None:
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    except (OSError, AttributeError):
        return None


def _reset_high_water() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM back to the current resident size
        return True
    except OSError:
        return False


def _measure_here(path: str) -> dict:
    """Runs in the child: read the column, then write the results workbook, as the upload and a download do."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    django.setup()
    from django.conf import settings

    from common.errors import AppError
    from jobs.spreadsheets import read_rows, workbook_with_results

    data = Path(path).read_bytes()
    warm = _package([_HEAD, "<sheetData>", _inline(1, "Comment"), _inline(2, "hi"), "</sheetData></worksheet>"])
    found = read_rows("xlsx", warm, column="Comment", max_items=settings.JOB_MAX_ITEMS)
    workbook_with_results(warm, sheet=found.sheet, column=found.column, has_header=True, title="t", cells={2: "x"})
    rss_reset = _reset_high_water()
    baseline = _high_water_kb()
    if not rss_reset:  # no way to reset the high-water mark here: count Python's allocations instead (slower)
        tracemalloc.start()
    started = time.monotonic()
    outcome: dict = {}
    try:
        found = read_rows("xlsx", data, column="Comment", max_items=settings.JOB_MAX_ITEMS)
        outcome = {"status": "read", "rows": len(found.rows)}
        results = workbook_with_results(
            data,
            sheet=found.sheet,
            column=found.column,
            has_header=True,
            title="djllm",
            cells={row: f'=HYPERLINK("http://x/?"&A{row})' for row, _ in found.rows},
        )
        outcome["results_bytes"] = len(results)
    except AppError as exc:
        outcome = {"status": exc.status, "code": exc.code, "message": exc.message}
    seconds = time.monotonic() - started
    python_peak = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else None
    tracemalloc.stop()
    peak = _high_water_kb()
    rss_over = (peak - baseline) / 1024 if rss_reset and peak is not None and baseline is not None else None
    return {
        **outcome,
        "upload_bytes": len(data),
        "rss_over_baseline_mb": None if rss_over is None else round(rss_over, 1),
        "python_peak_mb": None if python_peak is None else round(python_peak / 1e6, 1),
        "seconds": round(seconds, 2),
    }


def measure(name: str, data: bytes, workdir: Path, env: dict | None = None) -> dict:
    """One workbook in a fresh process (so one case's memory cannot hide another's)."""
    path = workdir / f"{name}.xlsx"
    path.write_bytes(data)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "bench.workbook", "--child", str(path)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.workbook {name} failed:\n{done.stderr[-3000:]}")
    return {"workbook": name, **json.loads(done.stdout.strip().splitlines()[-1])}


def peak_mb(row: dict) -> float:
    """Resident memory over the baseline when the platform can tell (Linux), else Python's own allocations."""
    return row["rss_over_baseline_mb"] if row["rss_over_baseline_mb"] is not None else row["python_peak_mb"]


def kind(row: dict) -> str:
    return "peak RSS" if row["rss_over_baseline_mb"] is not None else "tracemalloc"


def run(workdir: Path) -> list[dict]:
    results = []
    for name, build in CASES.items():
        results.append(measure(name, build(), workdir))
        row = results[-1]
        outcome = f"{row['rows']} rows read" if row["status"] == "read" else f"{row['status']} {row['code']}"
        print(
            f"  {name:24} {row['upload_bytes'] / 1024:7.0f} KB uploaded  +{peak_mb(row):6.1f} MB {kind(row):10}"
            f"  {row['seconds']:6.2f} s  {outcome}",
            flush=True,
        )
    return results


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        print(json.dumps(_measure_here(argv[1])))
        return 0
    import tempfile

    print(f"Hostile workbooks: peak memory over a warmed-up worker's baseline (goal: under {GOAL_MB} MB)")
    with tempfile.TemporaryDirectory(prefix="djllm-workbooks-") as tmp:
        results = run(Path(tmp))
    worst = max(peak_mb(r) for r in results)
    print(f"  worst: +{worst:.1f} MB ({'within' if worst < GOAL_MB else 'OVER'} the {GOAL_MB} MB goal)")
    return 0 if worst < GOAL_MB else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
