"""Chunks along a document's structure and the groups of a reduce step (jobs/chunking.py)."""

from jobs.chunking import reduce_groups, reduce_prompt, split_sections


def test_sections_are_packed_in_order_while_they_fit():
    assert split_sections(["a" * 40, "b" * 40, "c" * 40], 100) == ["a" * 40 + "\n\n" + "b" * 40, "c" * 40]


def test_a_large_section_is_cut_between_paragraphs_then_lines_then_words():
    section = "first paragraph here\n\nline one\nline two\n\n" + "word " * 10
    chunks = split_sections([section], 25)
    assert all(len(c) <= 25 for c in chunks)
    assert chunks[0] == "first paragraph here"
    assert "line one\nline two" in chunks  # lines kept together while they fit
    assert " ".join(" ".join(chunks).split()) == " ".join(section.split())  # nothing lost, order kept


def test_only_a_word_longer_than_a_chunk_is_cut_inside():
    assert split_sections(["x" * 25], 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_reduce_groups_fit_the_limit_hold_two_answers_at_least_and_keep_the_order():
    answers = [f"answer {i} " + "z" * 30 for i in range(7)]
    groups = reduce_groups(answers, 120)
    assert [a for g in groups for a in g] == answers
    assert all(len(g) >= 2 for g in groups[:-1]) and len(groups) < len(answers)
    assert all(len(reduce_prompt(g)) <= 120 for g in groups)
    assert reduce_groups(["a" * 500, "b" * 500], 100) == [["a" * 500, "b" * 500]]  # the reduction still ends
    assert reduce_groups(["a" * 25, "b" * 25, "c" * 25], 120) == [["a" * 25, "b" * 25, "c" * 25]]  # a lone last joins
    assert reduce_groups(["a" * 30, "b" * 30, "c" * 30], 120) == [["a" * 30, "b" * 30], ["c" * 30]]  # unless too long
