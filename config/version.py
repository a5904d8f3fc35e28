"""djllm's version (semantic versioning, see CHANGELOG.md): sent as `X-API-Version` on every response and shown as
the OpenAPI schema's `info.version`. Kept equal to `version` in pyproject.toml (a test checks it)."""

VERSION = "0.1.0"
