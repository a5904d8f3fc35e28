from drf_spectacular.extensions import OpenApiAuthenticationExtension


class APITokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.APITokenAuthentication"
    name = ["bearerAuth", "apiTokenHeader", "apiKeyHeader"]

    def get_security_requirement(self, auto_schema):
        # Either header authenticates on its own: two alternative requirements, not one that needs both.
        return [{name: []} for name in self.name]

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "djl_<prefix>_<secret>",
                "description": "A djllm API token: `Authorization: Bearer djl_...`.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Token",
                "description": "The same token in `X-API-Token` (for clients of the Flask version).",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "x-api-key",
                "description": "The same token in `x-api-key` (what Anthropic's SDKs send).",
            },
        ]
