"""What writing usage records costs, without a server: `python -m bench.record_write [--records N] [--batches 1,4,16]`.

Writes N records through `llm.services.usage_records_create` (what the recorder's database thread calls: one
transaction with the INSERT, the spend counters and the daily rollups) in batches of each size, one after the other,
and prints the wall, user and system CPU time per record. On a fresh SQLite file in a temp directory (production's
PRAGMAs), or on DATABASE_URL's database when it is set (the records are left there). DEBUG is off, as in production.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from decimal import Decimal

import django


def _setup(workdir: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{os.path.join(workdir, 'record_write.sqlite3')}")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def measure(records: int, batch: int, user_id: int, token_id: int) -> dict:
    from llm.providers.base import Usage
    from llm.services import UsageDraft, usage_records_create

    def draft(n: int) -> UsageDraft:
        return UsageDraft(
            request_id=f"record-write-{batch}-{n}-{time.time_ns()}",
            endpoint="chat",
            user_id=user_id,
            token_id=token_id,
            provider="openai",
            requested_model="gpt-4o-mini",
            upstream_model="gpt-4o-mini",
            usage=Usage(input_tokens=45, output_tokens=43),
            cost_usd=Decimal("0.0000325"),
            latency_ms=3,
        )

    written = 0
    start, before = time.perf_counter(), os.times()
    while written < records:
        size = min(batch, records - written)
        usage_records_create(drafts=[draft(written + i) for i in range(size)])
        written += size
    wall, after = time.perf_counter() - start, os.times()
    return {
        "batch": batch,
        "records": written,
        "wall_us": wall / written * 1e6,
        "user_us": (after.user - before.user) / written * 1e6,
        "sys_us": (after.system - before.system) / written * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000, help="records per batch size (default 3000)")
    parser.add_argument("--batches", default="1,4,16", help="batch sizes, a comma list (default 1,4,16)")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.batches.split(",") if size.strip()]
    if args.records < 1 or not sizes or min(sizes) < 1:
        parser.error("--records and every batch size must be at least 1")
    with tempfile.TemporaryDirectory(prefix="djllm-record-write-") as workdir:
        _setup(workdir)
        from django.db import connection

        from accounts import services

        user = services.user_create(username=f"record-write-{time.time_ns()}")
        token, _ = services.api_token_create(user=user, name="record-write")
        print(f"usage_records_create on {connection.vendor}, {args.records} records per batch size")
        for size in sizes:
            measure(min(args.records, 200), size, user.pk, token.pk)  # warm up: imports, statements, pages
            row = measure(args.records, size, user.pk, token.pk)
            print(
                f"  batch {row['batch']:>4}: {row['wall_us']:8.1f} us wall per record "
                f"(user {row['user_us']:.1f}, system {row['sys_us']:.1f} us CPU)"
            )
        from llm.models import UsageRecord

        print(f"  {UsageRecord.objects.filter(token=token).count()} records of this run in the table")
        connection.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
