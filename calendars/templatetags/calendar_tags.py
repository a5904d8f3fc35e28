from django import template

from calendars.selectors import google_connection_status

register = template.Library()


@register.simple_tag
def calendar_status_for(user):
    return google_connection_status(user=user if getattr(user, "is_authenticated", False) else None)
