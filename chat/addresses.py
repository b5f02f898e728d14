"""Email addresses as people type them: checked, normalised, and the form the envelope needs."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import idna
from confusable_homoglyphs import categories
from email_validator import EmailNotValidError, validate_email

from chat import confusables
from chat.text import clean_line

MAX_CHARS = 254
# Unicode TR39's "highly restrictive" profile: one script per label, or Latin with Han and the
# Japanese kana, with Han and Bopomofo, or with Han and Hangul (what browsers use for IDNs).
ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)


@dataclass(frozen=True)
class Address:
    email: str  # the identity: normalised, lower case, Unicode (用户@例子.中国)
    deliver_to: str  # for the envelope: ASCII (IDNA domain) unless the local part is not


def normalise(raw: str, allowed_domains: list[str]) -> Address | None:
    """The address, or None when it is not one (or holds hidden or control characters)."""
    text = raw.strip()
    if len(raw) > MAX_CHARS or clean_line(raw) != text:
        return None
    local, at, domain = text.rpartition("@")
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        if not at or unicode_domain(domain) not in allowed_domains:
            return None
        # A domain the operator named but the validator refuses as special-use (corp.local):
        # the local part is still checked as usual, the domain taken as named.
        try:
            checked = validate_email(f"{local}@example.org", check_deliverability=False)
        except EmailNotValidError:
            return None
        email = f"{checked.local_part}@{unicode_domain(domain)}".lower()
        if not _one_script(checked.local_part):
            return None
        return Address(email, email)
    email = checked.normalized.lower()
    if not all(_one_script(part) for part in (checked.local_part, *checked.domain.split("."))):
        return None  # "corp" with a Greek omicron in it is nobody's real address
    return Address(email, (checked.ascii_email or email).lower())


def unicode_domain(domain: str) -> str:
    """A domain as the addresses hold it: lower case, IDNA labels decoded (xn--... -> 例子)."""
    try:
        return idna.decode(domain.strip().lower().rstrip("."))
    except idna.IDNAError:
        return domain.strip().lower()


def _one_script(label: str) -> bool:
    scripts = categories.unique_aliases(label) - {"COMMON", "INHERITED"}
    return len(scripts) <= 1 or any(scripts <= mix for mix in ALLOWED_MIXES)


@functools.lru_cache(maxsize=4096)
def shown_domain(email: str) -> str:
    """The domain as people are shown it: as typed, unless it only imitates a Latin one
    ("copp" spelt in Cyrillic letters), which is shown in the ASCII (xn--) form browsers use."""
    domain = email.rpartition("@")[2]
    if domain.isascii():
        return domain
    for label in domain.split("."):
        if not label.isascii() and confusables.skeleton(label).isascii():
            try:
                return domain.encode("idna").decode("ascii")
            except UnicodeError:
                return domain.encode("ascii", "backslashreplace").decode("ascii")
    return domain


def shown_address(email: str) -> str:
    return f"{email.rpartition('@')[0]}@{shown_domain(email)}"
