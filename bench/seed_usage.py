"""Seed usage records straight into PostgreSQL for the scale bench (bench/scale.py), fast: one
`INSERT ... SELECT ... FROM generate_series` per million rows, the data made up by the database itself.

The spread is meant to look like a busy instance: 400 days (more of it recent), ~50 users (a few heavy ones),
4 tokens each, 12 models over 3 providers (about 1% of the records for a model with no price), mostly `ok` with
some cache hits and errors (rate-limit and budget stops never reach a provider: no provider or upstream model),
skewed token counts, costs from per-model prices, latencies and (for streamed requests) time to first token.
Each million rows is inserted in time order, as a live table fills (a day's rows share pages instead of being
scattered over the whole table, which would make every index range read one page per row). Row `n` gets request id
`bench-<n>` (the numbers in insertion order), so seeding resumes where it stopped.

Works on any DB-API connection of psycopg 3 (Django's `connection.connection` included); the caller commits.
"""

from __future__ import annotations

import time

# (model, provider, share of requests, USD per 1M input tokens, per 1M output tokens). The local models are priced
# at 0, except one nobody priced yet: its records are unpriced (`priced` false, no cost), about 1% of them.
MODELS = [
    ("gpt-4o-mini", "openai", 0.28, 0.15, 0.60),
    ("claude-3-5-haiku-latest", "anthropic", 0.14, 0.80, 4.00),
    ("gpt-4.1-mini", "openai", 0.11, 0.40, 1.60),
    ("claude-sonnet-4-0", "anthropic", 0.10, 3.00, 15.00),
    ("gpt-4o", "openai", 0.08, 2.50, 10.00),
    ("llama3.1:8b", "local", 0.07, 0, 0),
    ("gpt-4.1", "openai", 0.06, 2.00, 8.00),
    ("o3-mini", "openai", 0.05, 1.10, 4.40),
    ("qwen2.5:14b", "local", 0.04, 0, 0),
    ("claude-3-7-sonnet-latest", "anthropic", 0.03, 3.00, 15.00),
    ("claude-opus-4-0", "anthropic", 0.03, 15.00, 75.00),
    ("mistral:7b", "local", 0.01, None, None),
]
USERS = 50
TOKENS_PER_USER = 4
DAYS = 400
CHUNK = 1_000_000
TABLE = "llm_usagerecord"


def _sql_array(values, cast: str) -> str:
    items = ",".join("NULL" if v is None else (f"'{v}'" if isinstance(v, str) else repr(v)) for v in values)
    return f"ARRAY[{items}]::{cast}[]"


def insert_sql() -> str:
    """Rows %(first)s..%(last)s; %(users)s and %(tokens)s are arrays of ids (user i's tokens at 4i+1..4i+4)."""
    models = _sql_array([m[0] for m in MODELS], "text")
    providers = _sql_array([m[1] for m in MODELS], "text")
    price_in = _sql_array([m[3] for m in MODELS], "numeric")
    price_out = _sql_array([m[4] for m in MODELS], "numeric")
    shares = [m[2] for m in MODELS]
    bounds = _sql_array([round(sum(shares[: i + 1]) / sum(shares), 6) for i in range(len(MODELS) - 1)], "float8")
    return f"""
INSERT INTO {TABLE} (
    created_at, request_id, user_id, token_id, endpoint, provider, requested_model, upstream_model, type, source,
    batch_id, status, http_status, error_code, error_message, input_tokens, output_tokens, cached_input_tokens,
    cache_write_tokens, reasoning_tokens, usage_estimated, priced, cost_usd, saved_usd, latency_ms, upstream_latency_ms,
    time_to_first_token_ms, stream, attempts)
SELECT
    created_at, 'bench-' || (%(first)s::bigint - 1 + row_number() OVER (ORDER BY created_at)), user_id, token_id,
    endpoint,
    CASE WHEN routed THEN provider ELSE '' END, model, CASE WHEN routed THEN model ELSE '' END, '', '',
    CASE WHEN endpoint = 'batch' THEN 'bench-batch-' || (n / 5000) ELSE '' END,
    status,
    CASE status WHEN 'ok' THEN 200 WHEN 'cached' THEN 200 WHEN 'upstream_error' THEN 502 WHEN 'client_error' THEN 400
        WHEN 'rate_limited' THEN 429 WHEN 'budget_exceeded' THEN 402 ELSE 499 END,
    CASE status WHEN 'ok' THEN '' WHEN 'cached' THEN '' WHEN 'upstream_error' THEN 'upstream_unavailable'
        WHEN 'client_error' THEN 'invalid_request' WHEN 'rate_limited' THEN 'rate_limited'
        WHEN 'budget_exceeded' THEN 'budget_exceeded' ELSE 'client_disconnected' END,
    CASE status WHEN 'ok' THEN '' WHEN 'cached' THEN '' WHEN 'upstream_error' THEN 'The upstream provider is unavailable.'
        WHEN 'client_error' THEN 'Invalid request.' WHEN 'rate_limited' THEN 'Rate limit exceeded.'
        WHEN 'budget_exceeded' THEN 'Monthly budget exceeded.' ELSE '' END,
    input_tokens, output_tokens, cached_input_tokens, 0, reasoning_tokens, false,
    price_in IS NOT NULL,
    CASE WHEN price_in IS NULL THEN NULL WHEN status = 'ok' THEN full_cost ELSE 0 END,
    CASE WHEN status = 'cached' AND price_in IS NOT NULL THEN full_cost ELSE 0 END,
    latency_ms,
    CASE WHEN status = 'ok' THEN greatest(latency_ms - 12, 0) END,
    CASE WHEN stream AND status = 'ok' THEN least(latency_ms, 60 + floor(-ln(1 - r_ttft) * 350)::int) END,
    stream,
    CASE status WHEN 'ok' THEN 1 WHEN 'upstream_error' THEN 3 WHEN 'cancelled' THEN 1 ELSE 0 END
FROM (
    SELECT *,
        round((input_tokens * price_in + output_tokens * price_out) / 1000000, 12) AS full_cost,
        CASE WHEN status = 'cached' THEN 2 + floor(r_lat * 18)::int
             WHEN status = 'ok' THEN 180 + floor(-ln(1 - r_lat) * 1400)::int
             ELSE floor(r_lat * 2500)::int END AS latency_ms,
        CASE WHEN status IN ('ok', 'cached') AND r_cache < 0.25 THEN input_tokens / 2 ELSE 0 END
            AS cached_input_tokens,
        CASE WHEN model = 'o3-mini' THEN output_tokens / 2 ELSE 0 END AS reasoning_tokens
    FROM (
        SELECT *,
            ({models})[m + 1] AS model,
            ({providers})[m + 1] AS provider,
            ({price_in})[m + 1] AS price_in,
            ({price_out})[m + 1] AS price_out,
            CASE WHEN r_status < 0.88 THEN 'ok' WHEN r_status < 0.94 THEN 'cached'
                 WHEN r_status < 0.97 THEN 'upstream_error' WHEN r_status < 0.985 THEN 'client_error'
                 WHEN r_status < 0.993 THEN 'rate_limited' WHEN r_status < 0.997 THEN 'budget_exceeded'
                 ELSE 'cancelled' END AS status,
            CASE WHEN r_status < 0.94 THEN 20 + floor(-ln(1 - r_in) * 900)::int ELSE 0 END AS input_tokens,
            CASE WHEN r_status < 0.94 THEN 5 + floor(-ln(1 - r_out) * 280)::int ELSE 0 END AS output_tokens,
            CASE WHEN r_end < 0.70 THEN 'chat' WHEN r_end < 0.85 THEN 'messages' WHEN r_end < 0.95 THEN 'webhook'
                 ELSE 'batch' END AS endpoint,
            r_stream < 0.4 AS stream,
            r_status < 0.985 OR r_status >= 0.997 AS routed
        FROM (
            SELECT n,
                now() - make_interval(secs => {DAYS} * 86400 * power(random(), 1.3)) AS created_at,
                u, (%(users)s::bigint[])[u + 1] AS user_id,
                (%(tokens)s::bigint[])[u * {TOKENS_PER_USER} + floor(random() * {TOKENS_PER_USER})::int + 1]
                    AS token_id,
                width_bucket(random(), {bounds}) AS m,
                random() AS r_status, random() AS r_in, random() AS r_out, random() AS r_lat, random() AS r_ttft,
                random() AS r_cache, random() AS r_end, random() AS r_stream
            FROM (
                SELECT n, least(floor(power(random(), 2.2) * {USERS})::int, {USERS - 1}) AS u
                FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
            ) picked
        ) raw
    ) shaped
) costed
ORDER BY created_at
"""


def seeded_rows(cursor) -> int:
    """How many bench rows the table holds: `n` of the newest `bench-<n>` row (rows are added in order, a million
    per transaction, so the newest committed one tells; a backward walk of the primary key finds it)."""
    cursor.execute(f"SELECT request_id FROM {TABLE} WHERE request_id ~ '^bench-[0-9]+$' ORDER BY id DESC LIMIT 1")
    row = cursor.fetchone()
    return int(row[0].removeprefix("bench-")) if row else 0


def secondary_indexes(cursor) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of the table's indexes other than its primary key."""
    cursor.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname "
        "JOIN pg_index x ON x.indexrelid = c.oid WHERE i.tablename = %s AND NOT x.indisprimary "
        "AND NOT x.indisunique ORDER BY i.indexname",
        [TABLE],
    )
    return [(name, definition) for name, definition in cursor.fetchall()]


def seed(connection, *, target: int, users: list[int], tokens: list[int], log=print, drop_indexes: bool = True) -> int:
    """Add rows until the table holds `target` bench rows; returns how many were added. A large addition drops the
    secondary indexes first and builds them again at the end (much faster than updating them row by row); their
    definitions are kept in `bench_scale_indexes` meanwhile, so an interrupted run restores them next time."""
    with connection.cursor() as cursor:
        restore_indexes(cursor, log=log)
        connection.commit()
        have = seeded_rows(cursor)
        if have >= target:
            return 0
        missing = target - have
        cursor.execute("SET synchronous_commit = off")
        dropped = []
        if drop_indexes and missing >= max(200_000, have // 2):
            dropped = secondary_indexes(cursor)
            cursor.execute("CREATE TABLE IF NOT EXISTS bench_scale_indexes (name text PRIMARY KEY, definition text)")
            for name, definition in dropped:
                cursor.execute(
                    "INSERT INTO bench_scale_indexes VALUES (%s, %s) ON CONFLICT DO NOTHING", [name, definition]
                )
            connection.commit()
            for name, _ in dropped:
                cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
            connection.commit()
        sql = insert_sql()
        first = have + 1
        while first <= target:
            last = min(first + CHUNK - 1, target)
            started = time.monotonic()
            cursor.execute(sql, {"first": first, "last": last, "users": users, "tokens": tokens})
            connection.commit()
            log(f"    rows {first:,}..{last:,} in {time.monotonic() - started:.1f} s")
            first = last + 1
        if dropped:
            restore_indexes(cursor, log=log)
            connection.commit()
        return missing


def restore_indexes(cursor, log=print) -> None:
    cursor.execute("SELECT to_regclass('bench_scale_indexes') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return
    cursor.execute("SELECT name, definition FROM bench_scale_indexes ORDER BY name")
    pending = cursor.fetchall()
    if pending:
        cursor.execute("SET maintenance_work_mem = '512MB'")
    for name, definition in pending:
        started = time.monotonic()
        cursor.execute(definition.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1))
        log(f"    index {name} in {time.monotonic() - started:.1f} s")
    cursor.execute("DROP TABLE bench_scale_indexes")
