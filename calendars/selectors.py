from calendars.config import missing_settings
from calendars.models import GoogleCredential


def google_connection_status(*, user) -> dict:
    """What the status endpoint and the account page show. Never a token."""
    credential = GoogleCredential.objects.filter(user=user).first() if user is not None else None
    status = credential.status if credential else "not_connected"
    return {
        "configured": not missing_settings(),
        "missing_settings": missing_settings(),
        "connected": status == GoogleCredential.Status.CONNECTED,
        "status": status,
        "needs_reconnect": status == GoogleCredential.Status.NEEDS_RECONNECT,
        "email": credential.email if credential else "",
        "scopes": list(credential.scopes) if credential else [],
        "connected_at": credential.connected_at if credential else None,
    }
