"""`python -m bench.drf_overhead` (the comparison docs/architecture.md cites) runs as documented: both views answer
200 behind the lean ASGI handler, and it prints a line per view and the difference. Figures are not asserted."""

import os
import re
import subprocess
import sys

from django.conf import settings


def test_the_comparison_runs_and_prints_both_views():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.drf_overhead", "--requests", "20", "--concurrency", "4"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.match(r"^plain +mean_us_c1=[\d.]+ +req_per_s_c4=[\d.]+$", lines[0]), result.stdout
    assert re.match(r"^drf +mean_us_c1=[\d.]+ +req_per_s_c4=[\d.]+$", lines[1]), result.stdout
    assert lines[2].startswith("drf - plain: "), result.stdout
