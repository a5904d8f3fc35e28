"""Template text as `string.Template` reads it: `$name` or `${name}` is a variable, `$$` a dollar sign, and nothing
else is evaluated (no expressions, no attribute access). Shared by the model's checks and the rendering."""

from string import Template

# The variables of the built-in templates (the webhook's `type`): the text and the output language.
BUILTIN_VARIABLES = ("prompt", "language")
# What a template's `parameters` may set; the request's own values win.
PARAMETERS = ("temperature", "max_tokens", "top_p", "stop")


def template_problem(text: str) -> str | None:
    """Why `text` is not a valid template (None when it is)."""
    for match in Template.pattern.finditer(text):
        if match.group("invalid") is not None:
            start = match.start()  # at the `$`
            snippet = text[start : start + 24].split()[0]
            return (
                f"`{snippet}` at character {start} is not a variable: write `$name` or `${{name}}` (letters, digits "
                "and `_`), and `$$` for a dollar sign."
            )
    return None


def template_variables(*texts: str) -> list[str]:
    """The variables the texts use, in order of first use (valid texts only)."""
    names: list[str] = []
    for text in texts:
        for name in Template(text).get_identifiers():
            if name not in names:
                names.append(name)
    return names
