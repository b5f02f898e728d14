"""Words in fragments rendered once for everyone: a marker that each viewer's copy fills in.

Like times (chat/timefmt.py), a word in a broadcast fragment is "\\x01w<key>\\x01" until the
bus makes the copy for a viewer variant; a page rendered for one viewer gets the word itself.
"""

from __future__ import annotations

import functools

from markupsafe import escape

from chat import i18n


def N_(message: str) -> str:  # the name translation tools look for
    return message


WORDS = {
    "edit": N_("Edit"),
    "delete": N_("Delete"),
    "edited": N_("(edited)"),
    "deleted": N_("Message deleted"),
    "bot": N_("bot"),
}


def word(key: str) -> str:
    """The word in the viewer's language, or its marker when rendering for everyone."""
    if i18n.current() is None:
        return f"\x01w{key}\x01"
    return i18n.gettext(WORDS[key])


@functools.lru_cache(maxsize=256)
def fill(key: str, variant: i18n.Variant) -> str:
    with i18n.use(variant):
        return str(escape(i18n.gettext(WORDS.get(key, ""))))
