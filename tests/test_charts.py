"""The server-side SVG charts (common/charts.py): geometry, labels, tooltips, links, and escaping."""

import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from common.charts import Series, StackedBars, nice_ceiling, stacked_bars
from common.formatting import usd

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '</title><script>alert("x")</script><a href="javascript:alert(1)">&amp;'


def parse(markup: str) -> ET.Element:
    """The <svg> element (the legend follows it as HTML): it must be well-formed XML."""
    svg = markup[: markup.index("</svg>") + len("</svg>")]
    return ET.fromstring(svg)


def chart(**overrides) -> StackedBars:
    values = dict(
        title="Cost per day",
        categories=["2026-11-01", "2026-11-02", "2026-11-03"],
        series=[
            Series("openai", [Decimal("1.50"), Decimal("0"), Decimal("0.000974")], links=["/a?x=1&y=2", None, "/c"]),
            Series("anthropic", [Decimal("0.50"), Decimal("2"), Decimal("0")]),
        ],
        axis_format=usd,
        exact_format=lambda v: f"${v}",
    )
    values.update(overrides)
    return StackedBars(**values)


@pytest.mark.parametrize(
    ("value", "top"),
    [(0, 1), (0.3, 0.5), (1, 1), (1.01, 2), (2.4, 2.5), (3, 5), (7, 10), (120, 200), (0.000974, 0.001)],
)
def test_axis_top_is_a_round_number_at_or_above_the_largest_bar(value, top):
    assert nice_ceiling(value) == pytest.approx(top)


def test_stacked_bars_have_one_rect_per_nonzero_value_with_exact_tooltips():
    svg = parse(stacked_bars(chart()))
    assert svg.find(f"{SVG}title").text == "Cost per day"
    rects = svg.iter(f"{SVG}rect")
    tips = [rect.find(f"{SVG}title").text for rect in rects]
    assert tips == [
        "2026-11-01 · openai: $1.50",
        "2026-11-01 · anthropic: $0.50",
        "2026-11-02 · anthropic: $2",
        "2026-11-03 · openai: $0.000974",
    ]
    # Stacked: on day one anthropic sits on top of openai, and the two fill the day's total height.
    day_one = [rect for rect in svg.iter(f"{SVG}rect")][:2]
    openai, anthropic = (float(r.get("y")) for r in day_one)
    assert anthropic < openai
    assert float(day_one[0].get("height")) == pytest.approx(3 * float(day_one[1].get("height")))
    # The value axis reads $0 up to the round top ($2.00 here: the tallest day is $2), in people's format.
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "y-label"]
    assert labels == ["$0", "$0.50", "$1.00", "$1.50", "$2.00"]
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "x-label"] == [
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
    ]


def test_segments_link_to_their_records_and_the_legend_names_each_series():
    markup = stacked_bars(chart())
    links = [a.get("href") for a in parse(markup).iter(f"{SVG}a")]
    assert links == ["/a?x=1&y=2", "/c"]  # escaped in the markup (&amp;), the same URL once parsed
    assert 'href="/a?x=1&amp;y=2"' in markup
    legend = markup[markup.index("</svg>") :]
    assert "openai</li>" in legend and "anthropic</li>" in legend


@pytest.mark.parametrize(
    ("largest", "labels"),
    [(0, ["0", "1", "2", "3", "4"]), (5, ["0", "2", "4", "6", "8"]), (7, ["0", "2", "4", "6", "8"]),
     (150, ["0", "50", "100", "150", "200"])],
)  # fmt: skip
def test_counts_get_whole_number_ticks(largest, labels):
    svg = parse(stacked_bars(chart(series=[Series("requests", [largest, 0, 1])], axis_format=str, integer=True)))
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "y-label"] == labels


def test_many_days_get_about_ten_labels_the_last_always_shown():
    days = [f"2026-10-{d:02d}" for d in range(1, 32)]
    svg = parse(stacked_bars(chart(categories=days, series=[Series("a", [1] * 31)], category_label=lambda d: d[5:])))
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "x-label"]
    assert 8 <= len(labels) <= 12 and labels[0] == "10-01" and labels[-1] == "10-31"


def test_empty_chart_draws_axes_and_no_bars():
    svg = parse(stacked_bars(chart(series=[Series("a", [0, 0, 0])])))
    assert list(svg.iter(f"{SVG}rect")) == []
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "y-label"][0] == "$0"


def test_hostile_series_names_titles_and_links_are_escaped():
    markup = stacked_bars(
        chart(
            title=HOSTILE,
            categories=[HOSTILE],
            series=[Series(HOSTILE, [Decimal("1")], links=['/x?"><script>alert(2)</script>'])],
        )
    )
    assert "<script" not in markup and 'javascript:alert(1)">' not in markup
    svg = parse(markup)  # still well-formed: nothing broke out of its element or attribute
    assert svg.find(f"{SVG}title").text == HOSTILE
    [rect] = svg.iter(f"{SVG}rect")
    assert rect.find(f"{SVG}title").text == f"{HOSTILE} · {HOSTILE}: $1"
    [link] = svg.iter(f"{SVG}a")
    assert link.get("href") == '/x?"><script>alert(2)</script>'
    assert "&lt;/title&gt;&lt;script&gt;" in markup[markup.index("</svg>") :]  # the legend too
