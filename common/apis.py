import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from common.db_connections import DB_UNAVAILABLE_ERRORS, close_dropped_connections
from common.errors import ServiceUnavailable
from common.limiter import cache_failures
from common.responses import api_error_body

logger = logging.getLogger(__name__)


class HealthApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Liveness",
        description="Answers 200 while the process serves requests. Touches neither the database nor the cache.",
        responses=inline_serializer("Health", {"status": serializers.CharField()}),
        examples=[OpenApiExample("OK", value={"status": "ok"})],
    )
    def get(self, request):
        return Response({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    cache.set("health:ready", "1", 5)
    if cache.get("health:ready") != "1":
        raise RuntimeError("the cache did not return what was written")


def _counters() -> dict[str, int]:
    return {"rate_limiter_cache_errors": cache_failures()}


class ReadinessApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Readiness",
        description="Checks the database and the cache. 503 names each failing check that requests need: the "
        "database always, the cache only with RATE_LIMIT_FAIL_OPEN=false. With the default (fail open) an unreachable "
        "cache answers 200 with `status: degraded`, since requests are still served: taking every worker out of the "
        "load balancer for it would turn a degraded service into an outage. `counters` are this worker's since it "
        "started: `rate_limiter_cache_errors` counts requests whose rate limit or throttle could not reach the cache "
        "(let through unlimited, or refused, per RATE_LIMIT_FAIL_OPEN).",
        responses={
            200: inline_serializer(
                "Ready",
                {
                    "status": serializers.CharField(),
                    "checks": serializers.DictField(),
                    "counters": serializers.DictField(child=serializers.IntegerField()),
                },
            )
        },
        examples=[
            OpenApiExample(
                "Ready",
                value={
                    "status": "ok",
                    "checks": {"database": "ok", "cache": "ok"},
                    "counters": {"rate_limiter_cache_errors": 0},
                },
            ),
            OpenApiExample(
                "Degraded (cache unreachable, RATE_LIMIT_FAIL_OPEN=true)",
                value={
                    "status": "degraded",
                    "checks": {"database": "ok", "cache": "unavailable"},
                    "counters": {"rate_limiter_cache_errors": 42},
                },
            ),
            OpenApiExample(
                "Not ready",
                status_codes=["503"],
                value={
                    "error": {
                        "code": "not_ready",
                        "message": "Failing checks: database.",
                        "details": {"database": "unavailable", "cache": "ok"},
                        "request_id": "…",
                    }
                },
            ),
        ],
    )
    def get(self, request):
        checks, failing = {}, []
        for name, check in (("database", _check_database), ("cache", _check_cache)):
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:  # any failure is the answer, not a crash
                if isinstance(exc, DB_UNAVAILABLE_ERRORS):
                    close_dropped_connections(force=True)  # the next check connects afresh
                # The probe is public: the error text (hosts, users, driver messages) goes to the log only.
                logger.warning("Readiness check %s failed", name, exc_info=True)
                checks[name] = "unavailable"
                failing.append(name)
        required = {"database"} if settings.RATE_LIMIT_FAIL_OPEN else {"database", "cache"}
        if required.intersection(failing):
            error = ServiceUnavailable(
                f"Failing checks: {', '.join(failing)}.", code="not_ready", details={**checks, "counters": _counters()}
            )
            return Response(api_error_body(error), status=503)
        return Response({"status": "degraded" if failing else "ok", "checks": checks, "counters": _counters()})
