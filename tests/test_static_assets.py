"""The browser gets no JavaScript of ours: only the pinned, checksummed vendor files, and no
inline script or style anywhere in the templates (the CSP would block them anyway)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "static"
VENDOR = STATIC / "vendor"
# Pages and fragments; emails are read by mail clients, where inline style is the norm.
TEMPLATES = sorted(
    path for path in (ROOT / "templates").rglob("*.html") if "email" not in path.parts
)

SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"""\sstyle\s*=""", re.IGNORECASE)
STYLE_TAG = re.compile(r"<style\b", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"""\son[a-z]+\s*=""", re.IGNORECASE)


def test_no_javascript_outside_vendor() -> None:
    scripts = [
        path.relative_to(STATIC)
        for path in STATIC.rglob("*")
        if path.is_file() and path.suffix.lower() in {".js", ".mjs", ".cjs"}
    ]
    assert scripts, "the vendored htmx files should be found"
    assert [p for p in scripts if p.parts[0] != "vendor"] == []


def test_vendored_files_match_their_checksums() -> None:
    listed: dict[str, str] = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            listed[name.removeprefix("*").removeprefix("./")] = digest
    scripts = {p.name for p in VENDOR.glob("*.js")}
    assert scripts <= set(listed), f"not in SHA256SUMS: {sorted(scripts - set(listed))}"
    for name, digest in listed.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_template_has_no_inline_script_or_style(template: Path) -> None:
    html = template.read_text()
    for attributes in SCRIPT_TAG.findall(html):
        assert re.search(r"\bsrc\s*=", attributes), f"inline <script> in {template.name}"
    assert not STYLE_TAG.search(html), f"<style> in {template.name}"
    assert not STYLE_ATTRIBUTE.search(html), f"style= attribute in {template.name}"
    assert not EVENT_HANDLER.search(html), f"on...= event handler in {template.name}"


def test_templates_are_found() -> None:
    assert len(TEMPLATES) >= 10
