"""Text as search compares it: case and diacritics ignored, Chinese characters as words.

The archive indexes folded text (SQLite's trigram tokenizer cannot drop diacritics before
3.45, and Debian 12 ships 3.40), queries are folded the same way, and snippets map what was
found in the folded text back onto the original to mark it.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Scripts written without spaces between words: each character is a word of its own in the
# word index (Han, kana, Hangul, and the CJK punctuation and compatibility blocks).
_CJK = re.compile(
    "([\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f])"
)


@functools.cache
def _combining() -> dict[int, None]:
    """str.translate's table that drops every combining mark (built once, ~0.2 s)."""
    return {point: None for point in range(0x110000) if unicodedata.combining(chr(point))}


def fold(text: str) -> str:
    """Lower case, no diacritics, compatibility forms unified ("café" -> "cafe").

    Whole-string operations, not a loop per character: the archiver folds every message."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKD", text).casefold().translate(_combining())


def spaced(text: str) -> str:
    """Folded, with every CJK character standing apart (the word index's input)."""
    return spaced_folded(fold(text))


def spaced_folded(folded: str) -> str:
    return _CJK.sub(r" \1 ", folded) if not folded.isascii() else folded


def only_cjk(text: str) -> bool:
    """Is every character (but spaces) one the word index treats as a word of its own?"""
    return all(_CJK.fullmatch(char) for char in text if not char.isspace())


def marked(text: str, terms: list[str], width: int = 160) -> list[tuple[str, bool]]:
    """A snippet of `text` around the first term found, as (piece, is it a match) pairs.

    Matching is on folded text; each original character folds to zero or more characters,
    so a match is marked over the original characters that produced it."""
    folded: list[str] = []
    owner: list[int] = []  # folded position -> original position
    for index, char in enumerate(text):
        for piece in fold(char):
            folded.append(piece)
            owner.append(index)
    haystack = "".join(folded)
    hits = [False] * len(text)
    first = None
    for term in (t for t in terms if t):
        start = haystack.find(term)
        while start >= 0:
            for position in range(start, start + len(term)):
                hits[owner[position]] = True
            first = owner[start] if first is None else min(first, owner[start])
            start = haystack.find(term, start + len(term))
    begin = 0 if first is None or first < width // 3 else first - width // 3
    end = min(len(text), begin + width)
    pieces: list[tuple[str, bool]] = []
    if begin > 0:
        pieces.append(("…", False))
    for index in range(begin, end):
        if pieces and pieces[-1][1] == hits[index] and pieces[-1][0] != "…":
            pieces[-1] = (pieces[-1][0] + text[index], hits[index])
        else:
            pieces.append((text[index], hits[index]))
    if end < len(text):
        pieces.append(("…", False))
    return pieces
