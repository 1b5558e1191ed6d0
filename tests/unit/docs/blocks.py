"""Fenced code blocks of a Markdown file, with their `<!-- doc-test: ... -->` directives. Pure.

A directive is an HTML comment on the last non-blank line before a block's opening fence (code hosts
do not render it):

    <!-- doc-test: skip reason="needs a cluster" -->   not run; the reason must name why
    <!-- doc-test: exit=1 -->                          run; must exit with 1 (an error shown on purpose)
    <!-- doc-test: file="my-model.yaml" -->            (YAML) written to that path before later blocks run
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console"})
QUIET_LANGUAGES = frozenset({"mermaid", "text", "json", "lua"})
"""Never executed: diagrams, output samples, JSON shown for reading."""
SKIP_REASONS = (
    "needs a cluster",
    "needs a GPU",
    "needs Docker",
    "needs network",
    "takes minutes",
    "needs a running server",
)
"""A skip reason starts with one of these: the only reasons a documented command may go untested."""

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^<!--\s*doc-test:(?P<body>.*?)-->\s*$")


class DirectiveError(ValueError):
    """A malformed or unknown doc-test directive, or a block whose language is missing."""


@dataclass(frozen=True)
class Directive:
    skip: str | None = None
    """Why the block is not run (None: it is run)."""
    exit_code: int = 0
    file: str | None = None


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int
    """1-based line of the opening fence."""
    directive: Directive = field(default_factory=Directive)

    @property
    def where(self) -> str:
        return f"line {self.line} ({self.language})"


def parse_directive(text: str) -> Directive:
    """`skip reason="…"`, `exit=N`, `file="path"`; anything else is an error."""
    skip: str | None = None
    exit_code, file = 0, None
    for token in shlex.split(text):
        key, sep, value = token.partition("=")
        if key == "skip" and not sep:
            skip = ""
        elif key == "reason" and sep:
            skip = value
        elif key == "exit" and sep and value.isdigit():
            exit_code = int(value)
        elif key == "file" and sep and value:
            file = value
        else:
            raise DirectiveError(f"unknown doc-test directive {token!r}")
    if skip is not None and not skip.startswith(SKIP_REASONS):
        raise DirectiveError(f'a skip needs reason="…" starting with one of {SKIP_REASONS}, got {skip!r}')
    return Directive(skip=skip, exit_code=exit_code, file=file)


def extract_blocks(markdown: str) -> list[Block]:
    """Every fenced block in order; raises DirectiveError for untagged blocks and bad directives."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, language = opening["fence"], opening["info"].strip().split(" ")[0]
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index])
            index += 1
        index += 1
        if not language:
            raise DirectiveError(f"line {start + 1}: a code block needs a language (bash, yaml, python, text, …)")
        blocks.append(Block(language, "\n".join(body) + "\n", start + 1, _directive_before(lines, start)))
    return blocks


def _directive_before(lines: list[str], fence_index: int) -> Directive:
    previous = next((line.strip() for line in reversed(lines[:fence_index]) if line.strip()), "")
    found = _DIRECTIVE.match(previous)
    if found is None:
        if previous.startswith("<!--") and "doc-test" in previous:
            raise DirectiveError(f"line {fence_index}: malformed directive {previous!r}")
        return Directive()
    return parse_directive(found["body"])
