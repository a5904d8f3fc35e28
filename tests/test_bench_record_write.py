"""`python -m bench.record_write` (the record-write figures README's Performance section cites) runs as documented:
a line per batch size, and every record it wrote is in the table. Figures are not asserted."""

import os
import re
import subprocess
import sys

from django.conf import settings


def test_the_record_write_bench_writes_every_record_and_prints_a_line_per_batch_size():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    result = subprocess.run(
        [sys.executable, "-m", "bench.record_write", "--records", "30", "--batches", "1,7"],
        cwd=settings.BASE_DIR,
        env=env,  # no DATABASE_URL: its own SQLite file in a temp directory
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "usage_records_create on sqlite, 30 records per batch size", result.stdout
    pattern = r"^  batch +{}: +[\d.]+ us wall per record \(user [\d.]+, system [\d.]+ us CPU\)$"
    assert re.match(pattern.format(1), lines[1]) and re.match(pattern.format(7), lines[2]), result.stdout
    # Each size wrote its warm-up (min(records, 200) = 30) and its 30 measured records.
    assert lines[3] == "  120 records of this run in the table", result.stdout


def test_a_batch_size_below_one_is_refused():
    result = subprocess.run(
        [sys.executable, "-m", "bench.record_write", "--batches", "0"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--records and every batch size must be at least 1" in result.stderr
