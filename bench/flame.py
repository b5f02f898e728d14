"""A flame graph (SVG) from py-spy's collapsed stacks (`py-spy record --format raw`).

    uv run python -m bench.flame pyspy.txt flame.svg [title]

Each box is a function; its width is its share of the samples, the functions it called stand
on it. Hover a box for its name and share. No JavaScript: the SVG is static.
"""

from __future__ import annotations

import html
import sys
import zlib
from pathlib import Path
from typing import Any

WIDTH = 1200
ROW = 16
MIN_WIDTH = 0.5  # px: thinner boxes are left out


def tree(collapsed: str) -> tuple[dict[str, Any], int]:
    root: dict[str, Any] = {"n": 0, "children": {}}
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        node = root
        node["n"] += n
        for frame in filter(None, stack.split(";")):
            name = frame.split(" (", 1)[0] + " " + frame.rsplit("/", 1)[-1].rstrip(")")
            node = node["children"].setdefault(name, {"n": 0, "children": {}})
            node["n"] += n
    return root, root["n"]


def colour(name: str) -> str:
    hue = zlib.crc32(name.encode()) % 60  # reds to yellows, stable per function
    return f"hsl({hue},80%,{55 + hue % 15}%)"


def render(collapsed: str, title: str) -> str:
    root, total = tree(collapsed)
    boxes: list[str] = []
    depth_max = 0

    def walk(node: dict[str, Any], x: float, depth: int) -> None:
        nonlocal depth_max
        for name, child in sorted(node["children"].items()):
            width = child["n"] / total * WIDTH
            if width >= MIN_WIDTH:
                depth_max = max(depth_max, depth)
                share = child["n"] / total
                label = html.escape(name)
                text = html.escape(name[: int(width / 7)]) if width > 60 else ""
                boxes.append(
                    f'<g data-depth="{depth}"><title>{label} ({share:.1%})</title>'
                    f'<rect x="{x:.1f}" y="{{y{depth}}}" width="{width:.1f}" height="{ROW - 1}" '
                    f'fill="{colour(name)}"/>'
                    f'<text x="{x + 3:.1f}" y="{{t{depth}}}" font-size="11" '
                    f">{text}</text></g>"
                )
                walk(child, x, depth + 1)
            x += width

    if total:
        walk(root, 0.0, 0)
    height = (depth_max + 3) * ROW
    svg = "\n".join(boxes)
    for depth in range(depth_max + 1):  # flames grow upwards: the root row at the bottom
        y = height - (depth + 1) * ROW
        svg = svg.replace(f"{{y{depth}}}", str(y)).replace(f"{{t{depth}}}", str(y + ROW - 4))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="monospace"><rect width="100%" height="100%" fill="#fff"/>'
        f'<text x="4" y="14" font-size="13">{html.escape(title)} ({total} samples)</text>\n'
        f"{svg}\n</svg>\n"
    )


def main(argv: list[str]) -> None:
    source, target = Path(argv[0]), Path(argv[1])
    title = argv[2] if len(argv) > 2 else source.name
    target.write_text(render(source.read_text(), title))


if __name__ == "__main__":
    main(sys.argv[1:])
