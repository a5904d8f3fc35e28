from django.conf import settings
from django.core.checks import Error, register

from llm.pricing import setting_rate


@register()
def unpriced_fallback_check(app_configs, **kwargs):
    """UNPRICED_INPUT_PER_MTOK and UNPRICED_OUTPUT_PER_MTOK: both blank or both a price."""
    try:
        for name in ("UNPRICED_INPUT_PER_MTOK", "UNPRICED_OUTPUT_PER_MTOK"):
            setting_rate(name)
    except ValueError as error:
        return [Error(str(error), id="llm.E001")]
    names = ("UNPRICED_INPUT_PER_MTOK", "UNPRICED_OUTPUT_PER_MTOK")
    set_ = [name for name in names if str(getattr(settings, name, "") or "").strip()]
    if len(set_) == 1:
        missing = next(name for name in names if name not in set_)
        return [
            Error(
                f"{set_[0]} is set but {missing} is blank: set both (a fallback price for models without a "
                "ModelPrice row) or neither.",
                id="llm.E002",
            )
        ]
    return []
