"""bench/scale.py at a tiny size: its seeding fills the usage table as described and every page it times answers
200 over real HTTP (the admin dashboard may not exist yet: then it is reported missing, not timed). PostgreSQL only
(the seeding is PostgreSQL SQL); figures are not asserted. Without PostgreSQL it says so."""

import pytest
from django.db import connection

from bench import scale
from bench.seed_usage import MODELS
from llm.models import UsageRecord

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the scale bench seeds with PostgreSQL SQL (set DATABASE_URL)"
)

ROWS = 5000  # page 50 of the change list (100 a page) exists


@postgresql_only
def test_seeding_fills_the_table_and_every_timed_page_answers(live_djllm):
    info = scale.prepare(ROWS)

    assert info["rows"] == ROWS == UsageRecord.objects.count()
    assert info["seeded"] == ROWS
    assert set(UsageRecord.objects.values_list("upstream_model", flat=True)) <= {m[0] for m in MODELS} | {""}
    assert UsageRecord.objects.filter(status="ok").count() > ROWS * 0.8
    assert UsageRecord.objects.exclude(status__in=["ok", "cached"]).exists()
    assert UsageRecord.objects.filter(priced=False, cost_usd__isnull=True).exists()
    assert UsageRecord.objects.filter(user_id=info["heavy_user_id"]).count() > ROWS / 50
    info = scale.prepare(ROWS)  # a second run reuses the rows (and gives the staff user a new password)
    assert info["seeded"] == 0 and info["rows"] == ROWS

    results = scale.time_pages(live_djllm.url, info, runs=2)

    assert [r["page"] for r in results] == [label for label, _, _ in scale.pages(info)]
    for result in results:
        if result["page"] == "admin dashboard" and result["status"] == 404:
            assert result["outcome"] == "missing" and result["median_ms"] is None
            continue
        assert result["status"] == 200, result
        assert result["runs"] == 2 and result["median_ms"] > 0
    assert "changelist, page 50" in scale.table([{**info, "database": "test", "database_action": "reused",
                                                  "pages": results}], runs=2)  # fmt: skip


def test_without_postgresql_it_says_the_scale_bench_is_missing_and_why(monkeypatch, tmp_path, capsys):
    from bench import report

    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setenv("BENCH_DATABASE_URL", "postgres://postgres:not-shown@127.0.0.1:9/djllm_bench")
    monkeypatch.delenv("BENCH_SCALE", raising=False)

    assert scale.main([]) == 0

    out = capsys.readouterr().out
    assert "scale bench MISSING: PostgreSQL is unreachable at postgres@127.0.0.1:9" in out
    assert "refused" in out.lower() or "timeout" in out.lower()
    assert "not-shown" not in out
    assert "MISSING" in (tmp_path / "scale.json").read_text()
