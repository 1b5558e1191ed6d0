"""User regular expressions (golden prompts' `expect.regex`) under RE2: linear time, no catastrophic
backtracking, so a hostile pattern such as `([a-z]+)+$` cannot stall the operator, `slm serve` or the
router (which applies them to live answers in a shadow phase).

RE2 (google-re2) has no backreferences or lookaround; a pattern it cannot compile is rejected when the
SLMDeployment is validated (`slm_operator.api.checks`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

MAX_PROGRAM_MEMORY = 8 << 20
"""RE2's memory budget per compiled pattern (its DFA falls back to a slower NFA beyond it, still linear)."""


class RegexError(ValueError):
    """A pattern RE2 cannot compile; the message says why."""


@lru_cache(maxsize=512)
def compile_regex(pattern: str) -> Any:
    """The compiled RE2 program for `pattern` (cached); raises RegexError."""
    options = re2.Options()
    options.log_errors = False  # the error comes back as the exception, not on stderr
    options.max_mem = MAX_PROGRAM_MEMORY
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        raise RegexError(_text(error)) from error


def regex_search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches anywhere in `text` (Python's `re.search` semantics, RE2's engine)."""
    return compile_regex(pattern).search(text) is not None


def _text(error: Exception) -> str:
    detail = error.args[0] if error.args else error
    return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
