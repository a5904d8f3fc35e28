"""Login throttling for `/admin/login/` and `/account/login/` with django-axes.

Failed logins are counted per user name and client address in the database (`axes.AccessAttempt`, so Redis being
down changes nothing here). After `LOGIN_FAILURE_LIMIT` failures that pair is refused for `LOGIN_LOCKOUT_MINUTES`
(each further try starts the wait again) with 429 and Retry-After; a successful login clears the count.
"""

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.shortcuts import render

from common.errors import RateLimited
from common.responses import api_error_response


class LoginAttemptsBackend(AxesStandaloneBackend):
    """Refuses a locked-out user name + address before any password is checked. Logins that are not HTTP requests
    (the shell, management commands, the test client's `login()`) have nothing to count and pass through."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def _wants_json(request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def lockout_response(request, original_response=None, credentials=None):
    """429 with Retry-After: the login page with the reason for a browser, the API's error shape for JSON clients."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    minutes = max((seconds + 59) // 60, 1)
    message = f"Too many failed logins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    if _wants_json(request):
        return api_error_response(
            RateLimited(message, code="login_rate_limited", headers={"Retry-After": str(seconds)})
        )
    response = render(request, "accounts/login_locked.html", {"message": message}, status=429)
    response["Retry-After"] = str(seconds)
    return response
