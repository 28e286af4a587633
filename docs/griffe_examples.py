"""Griffe extension for the API reference: read a Google-style ``Example:`` section as ``Examples:``.

pyluz's docstrings title their doctest section ``Example:``. Griffe's Google parser only turns
``Examples:`` into code; ``Example:`` would become an admonition whose ``>>>`` lines render as
nested block quotes. This rewrites the title before the docstring is parsed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", flags=re.MULTILINE)


class ExampleSection(griffe.Extension):
    """Rename ``Example:`` section titles to ``Examples:``."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
