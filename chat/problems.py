"""Why something did not happen, as a kind and its numbers: templates/_problem.html has the
words, in every language. Code never builds a sentence for a person."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


def problem(kind: str, **args: Any) -> Problem:
    return Problem(kind, args)


class ShownError(Exception):
    """An HTTP error whose page says what went wrong (blueprints/errors.py renders it)."""

    def __init__(self, status: int, kind: str, **args: Any) -> None:
        super().__init__(kind)
        self.status = status
        self.problem = Problem(kind, args)
