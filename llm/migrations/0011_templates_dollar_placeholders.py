"""The built-in templates move from `{prompt}`/`{language}` to `string.Template`'s `$prompt`/`$language` (a `$`
already in their text becomes `$$`), get a name (`type`, or `type/source`) and a first version. Backward: the
old placeholders again, and user templates (which the old schema cannot hold) are deleted."""

import re

from django.db import migrations

_DOLLAR_NAMES = re.compile(r"\$(\$|prompt\b|language\b|\{prompt\}|\{language\})")


def to_dollar(text: str) -> str:
    return text.replace("$", "$$").replace("{prompt}", "$prompt").replace("{language}", "$language")


def to_braces(text: str) -> str:
    def one(match: re.Match) -> str:
        word = match.group(1)
        return "$" if word == "$" else "{" + word.strip("{}") + "}"

    return _DOLLAR_NAMES.sub(one, text)


def forward(apps, schema_editor):
    PromptTemplate = apps.get_model("llm", "PromptTemplate")
    PromptTemplateVersion = apps.get_model("llm", "PromptTemplateVersion")
    for template in PromptTemplate.objects.filter(owner__isnull=True).exclude(type=""):
        template.name = template.type if not template.source else f"{template.type}/{template.source}"
        template.system = to_dollar(template.system)
        template.user_template = to_dollar(template.user_template)
        version = PromptTemplateVersion.objects.create(
            template=template,
            number=1,
            name=template.name,
            description=template.description,
            system=template.system,
            user_template=template.user_template,
            default_model=template.default_model,
            parameters=template.parameters,
        )
        template.current_version = version
        template.save(update_fields=["name", "system", "user_template", "current_version"])


def backward(apps, schema_editor):
    PromptTemplate = apps.get_model("llm", "PromptTemplate")
    PromptTemplateVersion = apps.get_model("llm", "PromptTemplateVersion")
    UsageRecord = apps.get_model("llm", "UsageRecord")
    UsageRecord.objects.filter(template_version__isnull=False).update(template_version=None)
    PromptTemplate.objects.filter(type="").delete()
    PromptTemplate.objects.update(current_version=None)
    PromptTemplateVersion.objects.all().delete()
    for template in PromptTemplate.objects.all():
        template.system = to_braces(template.system)
        template.user_template = to_braces(template.user_template)
        template.save(update_fields=["system", "user_template"])


class Migration(migrations.Migration):
    dependencies = [("llm", "0010_user_templates")]

    operations = [migrations.RunPython(forward, backward)]
