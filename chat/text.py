"""Message text: cleaning what people send, and showing it safely with links."""

from __future__ import annotations

import re
from collections.abc import Iterable

from markupsafe import Markup, escape

# http(s) URLs up to whitespace or a character that cannot end one in prose.
_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]}]", re.IGNORECASE)
# Never shown, never stored: C0 controls but tab and newline, DEL and the C1 controls; the
# bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), with which "\u202e
# lareneg" shows as "general"; and lone surrogates, which JSON can carry ("\ud800") but no
# encoder accepts. The joiners U+200C and U+200D stay: emoji and several scripts need them.
_HIDDEN = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_NOT_IN_BODIES = re.compile(f"[{_HIDDEN}]")
# Names also lose every other character that shows nothing (Unicode's default ignorables:
# soft hyphen, zero-width space, word joiner, BOM, direction marks, Hangul fillers...), which
# only make two names differ invisibly; the joiners, variation selectors and emoji tags stay.
_NOT_IN_NAMES = re.compile(
    f"[{_HIDDEN}\\u00ad\\u034f\\u061c\\u115f\\u1160\\u17b4\\u17b5\\u180b-\\u180f\\u200b"
    "\\u200e\\u200f\\u2060-\\u206f\\u3164\\ufeff\\uffa0\\ufff0-\\ufff8"
    "\\U0001bca0-\\U0001bca3\\U0001d173-\\U0001d17a]"
)


# "@" then a word (up to whitespace, another "@" or characters that cannot be in an address),
# and the few words after it: display names may have spaces ("@Ada Lovelace"). The longest
# start of it that names someone is the mention.
_AT_PART = r"[^\s@<>\"'`(),;:!?]{1,64}"
AT_WORD = re.compile(f"@({_AT_PART}(?: {_AT_PART}){{0,4}})")


def split_word(word: str, names: set[str]) -> tuple[str, str] | None:
    """(the mentioning part, the rest) of an @word whose longest prefix is one of `names`."""
    for end in range(len(word), 0, -1):
        if word[:end].casefold() in names:
            return word[:end], word[end:]
    return None


def clean_body(raw: str) -> str:
    """Normalise newlines, drop hidden and control characters, trim the ends."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
    return _NOT_IN_BODIES.sub("", text.replace("\u2029", "\n")).strip()


def clean_line(raw: str) -> str:
    """A one-line name: hidden characters dropped, runs of whitespace folded to one space."""
    return " ".join(_NOT_IN_NAMES.sub("", raw).split())


def has_hidden(text: str) -> bool:
    """Does the text carry a character that `clean_line` would drop (controls, bidi
    overrides and isolates, invisible characters)?"""
    return _NOT_IN_NAMES.search(text) is not None


def linkify(text: str, mentions: Iterable[tuple[str, str]] = ()) -> Markup:
    """Escape everything; turn http(s) URLs into links that cannot run script, and the
    @names a message mentions into links to those people."""
    people: dict[str, str] = {}
    for name, person in mentions:
        people.setdefault(name, person)
    parts: list[str] = []
    position = 0
    for match in _URL.finditer(text):
        parts.append(_with_mentions(text[position : match.start()], people))
        url = escape(match.group(0))
        parts.append(
            f'<a href="{url}" rel="nofollow noopener noreferrer" target="_blank">{url}</a>'
        )
        position = match.end()
    parts.append(_with_mentions(text[position:], people))
    return Markup("".join(parts))  # noqa: S704 - every piece above is escaped


def _with_mentions(text: str, people: dict[str, str]) -> str:
    if not people or "@" not in text:
        return str(escape(text))
    parts: list[str] = []
    position = 0
    for match in AT_WORD.finditer(text):
        found = split_word(match.group(1), set(people))
        if found is None:
            continue
        name, rest = found
        person = people[name.casefold()]
        parts.append(str(escape(text[position : match.start()])))
        parts.append(
            f'<a class="mention" data-person="{escape(person)}" '
            f'href="/people/{escape(person)}">@{escape(name)}</a>{escape(rest)}'
        )
        position = match.end()
    parts.append(str(escape(text[position:])))
    return "".join(parts)


def initials(name: str) -> str:
    letters = [part[0] for part in re.split(r"[._\-+\s]+", name) if part]
    return ("".join(letters[:2]) or "?").upper()
