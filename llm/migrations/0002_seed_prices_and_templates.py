"""Seed ModelPrice with OpenAI and Anthropic list prices, and PromptTemplate with the webhook's instructions.

PRICES: USD per 1M tokens, written down from the author's knowledge of the public price pages as of late 2025
(2025-11). They were NOT fetched from the providers. Admins must check them against
https://openai.com/api/pricing/ and https://www.anthropic.com/pricing and correct them in the admin
(Model prices); a new row with a later `effective_from` replaces an old price from that day on.

- OpenAI: `cached input` is the prompt-cache read price; OpenAI does not bill cache writes (left empty, which
  bills any such tokens at the input price). Batch, flex and priority tiers are not modelled.
- Anthropic: cache write is the 5-minute cache write (1.25x input), cache read is 0.1x input (Claude 3 Haiku's
  list prices round these to $0.30 and $0.03). One-hour cache writes (2x input) and the long-context rates of
  Sonnet 4/4.5 above 200K input tokens are not modelled.
- Names are matched as prefixes of the upstream model (longest first), so `gpt-4o-2024-08-06` takes `gpt-4o`.
  Rows such as `o1-mini`, `o3-pro` or `claude-opus-4-5` exist so that a shorter name (`o1`, `o3`,
  `claude-opus-4`) does not price them wrongly.

The reverse migration deletes the rows this migration added, unless an admin has changed them since.
"""

import datetime
from decimal import Decimal

from django.db import migrations

EFFECTIVE_FROM = datetime.date(2025, 1, 1)

# (provider, model, input, output, cached input, cache write) in USD per 1M tokens; None: no separate rate.
PRICES = [
    # OpenAI
    ("openai", "gpt-5", "1.25", "10.00", "0.125", None),
    ("openai", "gpt-5-mini", "0.25", "2.00", "0.025", None),
    ("openai", "gpt-5-nano", "0.05", "0.40", "0.005", None),
    ("openai", "gpt-5-pro", "15.00", "120.00", None, None),
    ("openai", "gpt-4.1", "2.00", "8.00", "0.50", None),
    ("openai", "gpt-4.1-mini", "0.40", "1.60", "0.10", None),
    ("openai", "gpt-4.1-nano", "0.10", "0.40", "0.025", None),
    ("openai", "gpt-4o", "2.50", "10.00", "1.25", None),
    ("openai", "gpt-4o-2024-05-13", "5.00", "15.00", None, None),
    ("openai", "gpt-4o-mini", "0.15", "0.60", "0.075", None),
    ("openai", "o1", "15.00", "60.00", "7.50", None),
    ("openai", "o1-mini", "1.10", "4.40", "0.55", None),
    ("openai", "o1-pro", "150.00", "600.00", None, None),
    ("openai", "o3", "2.00", "8.00", "0.50", None),
    ("openai", "o3-mini", "1.10", "4.40", "0.55", None),
    ("openai", "o3-pro", "20.00", "80.00", None, None),
    ("openai", "o3-deep-research", "10.00", "40.00", "2.50", None),
    ("openai", "o4-mini", "1.10", "4.40", "0.275", None),
    ("openai", "o4-mini-deep-research", "2.00", "8.00", "0.50", None),
    # Anthropic
    ("anthropic", "claude-opus-4-5", "5.00", "25.00", "0.50", "6.25"),
    ("anthropic", "claude-opus-4-1", "15.00", "75.00", "1.50", "18.75"),
    ("anthropic", "claude-opus-4", "15.00", "75.00", "1.50", "18.75"),
    ("anthropic", "claude-sonnet-4-5", "3.00", "15.00", "0.30", "3.75"),
    ("anthropic", "claude-sonnet-4", "3.00", "15.00", "0.30", "3.75"),
    ("anthropic", "claude-3-7-sonnet", "3.00", "15.00", "0.30", "3.75"),
    ("anthropic", "claude-haiku-4-5", "1.00", "5.00", "0.10", "1.25"),
    ("anthropic", "claude-3-5-haiku", "0.80", "4.00", "0.08", "1.00"),
    ("anthropic", "claude-3-haiku", "0.25", "1.25", "0.03", "0.30"),
]

# {language} becomes the requested output language ("the same language as the input" when none is given).
_PLAIN = "Output only the result: no preamble, no closing remarks."
_CELL = (
    "The text comes from one spreadsheet cell and the answer goes back into one cell: answer on a single short "
    "line, with no preamble, no quotes, no markdown and no line breaks."
)

# (type, source, system instruction); source "" is the default for any source without its own row.
TEMPLATES = [
    # summary
    (
        "summary",
        "",
        "Summarize the text in {language}. Keep the key facts, names, numbers and dates; leave out filler and "
        "repetition. Use a few sentences, or short bullet points when the text lists several separate points. "
        + _PLAIN,
    ),
    ("summary", "excel", "Summarize the text in {language} in at most 20 words. " + _CELL),
    (
        "summary",
        "email",
        "Summarize this email in {language} in two to four sentences: who wants what from whom, by when, and any "
        "question that needs an answer. Ignore greetings, signatures, disclaimers and quoted earlier messages "
        "unless they change the meaning. " + _PLAIN,
    ),
    (
        "summary",
        "meeting",
        "Summarize these meeting notes or this transcript in {language} under three headings: Summary (two or "
        "three sentences), Decisions (a bullet per decision) and Action items (a bullet each: owner - task - due "
        "date). Write only what the text states: never invent an owner or a date, and write 'none' under a "
        "heading with nothing to list. " + _PLAIN,
    ),
    (
        "summary",
        "chat",
        "Summarize this chat conversation in {language}: what it is about, what was agreed, and which questions "
        "are still open. Name participants when the text shows their names. A few sentences. " + _PLAIN,
    ),
    (
        "summary",
        "document",
        "Summarize this document in {language}: first a one-sentence overview, then the main points as short "
        "bullets in the order the document makes them, keeping key figures, conclusions and recommendations. " + _PLAIN,
    ),
    # keywords
    (
        "keywords",
        "",
        "Extract the 5 to 10 most important keywords or key phrases of the text, most important first. Write "
        "them in {language} as one comma-separated line. " + _PLAIN,
    ),
    ("keywords", "excel", "Extract up to 5 keywords of the text in {language}, comma-separated. " + _CELL),
    (
        "keywords",
        "email",
        "Extract the topics, projects, products and deadlines this email is about as up to 8 keywords or short "
        "key phrases in {language}, most important first, on one comma-separated line. " + _PLAIN,
    ),
    (
        "keywords",
        "meeting",
        "Extract the topics, projects and decisions discussed in this meeting as up to 10 keywords or short key "
        "phrases in {language}, most discussed first, on one comma-separated line. " + _PLAIN,
    ),
    # sentiment
    (
        "sentiment",
        "",
        "Classify the overall sentiment of the text as exactly one of these English labels: positive, negative, "
        "neutral, mixed. Answer with the label, then ' - ', then one short sentence in {language} naming what "
        "drives it. Example: negative - the customer complains about a late delivery.",
    ),
    (
        "sentiment",
        "excel",
        "Classify the sentiment of the text. Answer with exactly one lowercase English word: positive, negative, "
        "neutral or mixed. Nothing else: no punctuation, no explanation.",
    ),
    (
        "sentiment",
        "email",
        "Classify the sender's sentiment in this email as exactly one of these English labels: positive, "
        "negative, neutral, mixed. Answer with the label, then ' - ', then one short sentence in {language} "
        "naming what drives it (for example praise, a complaint, frustration, urgency). Ignore polite formulas.",
    ),
    (
        "sentiment",
        "chat",
        "Classify the overall sentiment of this chat conversation as exactly one of these English labels: "
        "positive, negative, neutral, mixed. Answer with the label, then ' - ', then one short sentence in "
        "{language}; mention it when participants clearly differ.",
    ),
    # entities
    (
        "entities",
        "",
        "List the named entities in the text: people, organizations, locations, dates and times, amounts of "
        "money, products. One per line as 'type: entity', with the type in {language} and the entity exactly as "
        "written in the text; each entity once. If there are none, answer '-'. " + _PLAIN,
    ),
    (
        "entities",
        "excel",
        "List the named entities in the text (people, organizations, locations, dates, amounts, products) as "
        "'type: entity' pairs separated by '; ', with the type in {language} and the entity as written. Answer "
        "'-' if there are none. " + _CELL,
    ),
    (
        "entities",
        "email",
        "List the named entities in this email: people (with their role or company when stated), "
        "organizations, locations, dates and deadlines, amounts of money, products, reference or order numbers. "
        "One per line as 'type: entity', with the type in {language} and the entity exactly as written. Skip "
        "entities that only appear in signatures or disclaimers. If there are none, answer '-'. " + _PLAIN,
    ),
    (
        "entities",
        "meeting",
        "List the named entities in these meeting notes: participants (with their role when stated), "
        "organizations, projects, products, dates and deadlines, amounts. One per line as 'type: entity', with "
        "the type in {language} and the entity exactly as written. If there are none, answer '-'. " + _PLAIN,
    ),
    # translation
    (
        "translation",
        "",
        "Translate the text into {language}. Keep the meaning, tone and formatting; keep names, numbers, code and "
        "placeholders such as {name} or %s unchanged. Output only the translation: no notes, no quotes.",
    ),
    (
        "translation",
        "excel",
        "Translate the text into {language}. Keep numbers, codes, units and formulas unchanged. Output only the "
        "translation. " + _CELL,
    ),
    (
        "translation",
        "email",
        "Translate this email into {language}. Keep its greeting, paragraphs and sign-off, its register (formal "
        "or informal), and names, numbers and addresses unchanged. Output only the translated email.",
    ),
    (
        "translation",
        "chat",
        "Translate these chat messages into {language}. Keep one line per message, speaker names and timestamps "
        "unchanged, and the conversational tone. Output only the translation.",
    ),
    (
        "translation",
        "document",
        "Translate this document into {language}. Keep its structure (headings, lists, tables, paragraphs) and "
        "names, numbers, units and code unchanged. Output only the translation.",
    ),
    # custom: the user's prompt alone
    ("custom", "", ""),
]


def _dec(value):
    return None if value is None else Decimal(value)


def _price_values(row):
    _, _, input_price, output_price, cached, write = row
    return {
        "input_per_mtok": _dec(input_price),
        "output_per_mtok": _dec(output_price),
        "cached_input_per_mtok": _dec(cached),
        "cache_write_per_mtok": _dec(write),
    }


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("llm", "ModelPrice")
    PromptTemplate = apps.get_model("llm", "PromptTemplate")
    for row in PRICES:
        # get_or_create: a price an admin already entered for that day is kept.
        ModelPrice.objects.get_or_create(
            provider=row[0], model=row[1], effective_from=EFFECTIVE_FROM, defaults=_price_values(row)
        )
    for type_, source, system in TEMPLATES:
        PromptTemplate.objects.get_or_create(
            type=type_, source=source, defaults={"system": system, "user_template": "{prompt}"}
        )


def unseed(apps, schema_editor):
    ModelPrice = apps.get_model("llm", "ModelPrice")
    PromptTemplate = apps.get_model("llm", "PromptTemplate")
    for row in PRICES:
        ModelPrice.objects.filter(
            provider=row[0], model=row[1], effective_from=EFFECTIVE_FROM, **_price_values(row)
        ).delete()
    for type_, source, system in TEMPLATES:
        PromptTemplate.objects.filter(type=type_, source=source, system=system, user_template="{prompt}").delete()


class Migration(migrations.Migration):
    dependencies = [("llm", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
