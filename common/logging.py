"""Log filters: every line carries the request id, and no line carries a secret."""

import logging
import re

import pythonjsonlogger.json

from common.request_id import current_request_id

# djllm tokens, provider keys, and whatever follows an auth header or a `token=`-like assignment.
_SECRET_PATTERNS = [
    re.compile(r"djl_[A-Za-z0-9_\-]{8,}"),
    re.compile(r"sk-(?:ant-)?[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[^\s'\",]+"),
    re.compile(
        r"(?i)((?:x-api-token|authorization|api[_-]?key|access_token|refresh_token|client_secret)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s'\",&]+"
    ),
]


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + "[REDACTED]", text)
        else:
            text = pattern.sub("[REDACTED]", text)
    return text


_JSON_NATIVE = (str, int, float, bool, type(None), dict, list, tuple)


def _scrub(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """JSON lines, scrubbed as a whole: python-json-logger formats `exc_info` afresh (not the filtered `exc_text`)
    and writes every `extra=` value, and objects such as Django's request as their `str()`, which includes the
    query string. So every value is redacted here, just before it is serialized."""

    def process_log_record(self, log_data):
        return {
            key: _scrub(value if isinstance(value, _JSON_NATIVE) else str(value))
            for key, value in super().process_log_record(log_data).items()
        }


class RequestIDFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class RedactSecretsFilter(logging.Filter):
    """Render the message once, scrub it, and freeze it, so no formatter sees the raw args."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not take the request down
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
