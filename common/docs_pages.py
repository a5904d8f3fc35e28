"""The API's Swagger UI and ReDoc pages, self-contained: their scripts come from drf-spectacular-sidecar's static
files, and a Content-Security-Policy keeps the browser from fetching anything else from outside the app (ReDoc's
bundle shows Redocly's logo from their CDN; that request is refused and the logo left out)."""

from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

SAME_ORIGIN_ONLY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


class _SameOriginOnly:
    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = SAME_ORIGIN_ONLY
        return response


class SwaggerPage(_SameOriginOnly, SpectacularSwaggerView):
    pass


class RedocPage(_SameOriginOnly, SpectacularRedocView):
    pass
