r"""Names that look alike: the confusable skeleton of Unicode TR39 (section 4).

skeleton(x) = NFD(map every character of NFD(x) to its prototype). Two names with one
skeleton look the same ("g\u0435neral", with a Cyrillic small ie, and "general"). The prototype
mapping is Unicode's confusables.txt, as shipped (in both directions) by the maintained
confusable_homoglyphs package: a character whose list holds one entry maps to that entry,
unless that entry lists several characters (then it is their prototype), and a pair that only
names each other maps to the smaller of the two, which keeps the relation symmetric.
"""

from __future__ import annotations

import functools
import unicodedata

from confusable_homoglyphs import utils

_DIRECTION_MARKS = "\u200e\u200f"  # the data file wraps right-to-left glyphs in them


@functools.cache
def prototypes() -> dict[str, str]:
    """character -> prototype, for the characters that have another one (about 6,300).

    Built once from the package's data and kept compact: the data itself takes about 18 MB.
    """
    data = utils.load("confusables.json")
    mapping: dict[str, str] = {}
    for char, entries in data.items():
        if len(char) != 1 or len(entries) != 1:
            continue  # not a single character, or the prototype of several characters
        target = str(entries[0]["c"]).strip(_DIRECTION_MARKS)
        if len(target) != 1 or len(data.get(target, ())) > 1:
            mapping[char] = target  # a prototype is never a source itself
        elif target < char:
            mapping[char] = target  # a pair that only names each other: the smaller one
    return mapping


def skeleton(name: str) -> str:
    """The TR39 skeleton, case-folded after the mapping (so "generaI", with a capital i, meets
    "general"), of the name without its invisible characters: equal means confusable."""
    mapping = prototypes()
    visible = "".join(char for char in name if not is_default_ignorable(char))
    decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", visible))
    mapped = unicodedata.normalize("NFD", "".join(mapping.get(char, char) for char in decomposed))
    return unicodedata.normalize("NFD", mapped.casefold())


# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt): characters that
# show nothing. Python's unicodedata has no such property.
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def is_default_ignorable(char: str) -> bool:
    point = ord(char)
    return any(low <= point <= high for low, high in DEFAULT_IGNORABLE)
