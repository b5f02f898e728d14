"""Text as search compares it: case and diacritics ignored, Chinese characters as words.

The archive indexes folded text (SQLite's trigram tokenizer cannot drop diacritics before
3.45, and Debian 12 ships 3.40), queries are folded the same way, and snippets map what was
found in the folded text back onto the original to mark it.
"""

from __future__ import annotations

import re
import unicodedata

# Scripts written without spaces between words: each character is a word of its own in the
# word index (Han, kana, Hangul, and the CJK punctuation and compatibility blocks).
_CJK = re.compile(
    "([\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f])"
)


def fold_char(char: str) -> str:
    decomposed = unicodedata.normalize("NFKD", char)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return kept.casefold()


def fold(text: str) -> str:
    """Lower case, no diacritics, compatibility forms unified ("café" -> "cafe")."""
    return "".join(fold_char(char) for char in text)


def spaced(text: str) -> str:
    """Folded, with every CJK character standing apart (the word index's input)."""
    return _CJK.sub(r" \1 ", fold(text))


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def marked(text: str, terms: list[str], width: int = 160) -> list[tuple[str, bool]]:
    """A snippet of `text` around the first term found, as (piece, is it a match) pairs.

    Matching is on folded text; each original character folds to zero or more characters,
    so a match is marked over the original characters that produced it."""
    folded: list[str] = []
    owner: list[int] = []  # folded position -> original position
    for index, char in enumerate(text):
        for piece in fold_char(char):
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
