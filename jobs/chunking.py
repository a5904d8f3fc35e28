"""Splitting a document into chunks of at most FILE_CHUNK_MAX_CHARS characters along its structure, and packing
answers into the groups a reduce step combines.

Sections (pages, heading sections, sheets) are packed in order while they fit; a section too large for one chunk
is cut between paragraphs, then between lines, then between words, and only a word longer than a whole chunk is
cut inside. Characters, not tokens: a chunk's tokens are about a quarter of its characters in English, fewer
words' worth in other scripts, and the limit must hold for every model."""

import re

_SEPARATORS = ("\n\n", "\n", " ")
_PART_SEPARATOR = "\n\n---\n\n"
_PART_LABEL = len("Part 1000:\n")
_BETWEEN_SECTIONS = "\n\n"


def _pieces(text: str, limit: int, separators: tuple[str, ...] = _SEPARATORS) -> list[str]:
    """`text` cut at the coarsest separator that makes every piece fit (recursively), pieces kept whole."""
    if len(text) <= limit:
        return [text]
    if not separators:
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    separator, finer = separators[0], separators[1:]
    parts = [p for p in (re.split(r"\n\s*\n", text) if separator == "\n\n" else text.split(separator)) if p.strip()]
    if len(parts) == 1:
        return _pieces(text, limit, finer)
    return _pack([piece for part in parts for piece in _pieces(part.strip(), limit, finer)], limit, separator)


def _pack(pieces: list[str], limit: int, separator: str) -> list[str]:
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + len(separator) + len(piece) <= limit:
            chunks[-1] += separator + piece
        else:
            chunks.append(piece)
    return chunks


def split_sections(sections: list[str], limit: int) -> list[str]:
    """The chunks of a document, in order, each at most `limit` characters."""
    pieces = [piece for section in sections if section.strip() for piece in _pieces(section.strip(), limit)]
    return _pack(pieces, limit, _BETWEEN_SECTIONS)


def reduce_groups(answers: list[str], limit: int) -> list[list[str]]:
    """Consecutive answers grouped for one reduce call each: as many as fit in `limit` characters, and at least two
    in every group but the last (so every level has fewer calls than the one before and the reduction ends)."""
    groups: list[list[str]] = []
    size = 0
    for answer in answers:
        cost = len(_PART_SEPARATOR) + _PART_LABEL + len(answer.strip())
        if groups and (len(groups[-1]) < 2 or size + cost <= limit):
            groups[-1].append(answer)
            size += cost
        else:
            groups.append([answer])
            size = cost
    if len(groups) > 1 and len(groups[-1]) == 1 and len(reduce_prompt(groups[-2] + groups[-1])) <= limit:
        groups[-2].extend(groups.pop())  # a lone last answer joins the group before it when it fits
    return groups


def reduce_prompt(group: list[str]) -> str:
    """The text a reduce call works on: the parts' answers in document order."""
    return _PART_SEPARATOR.join(f"Part {i}:\n{answer.strip()}" for i, answer in enumerate(group, start=1))
