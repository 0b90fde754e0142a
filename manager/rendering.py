"""Package-data templates with `{{name}}` placeholders, filled by pure functions."""

from __future__ import annotations

import functools
import importlib.resources
import re

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@functools.cache
def template(name: str) -> str:
    """manager/templates/<name>, read once."""
    return (importlib.resources.files("manager") / "templates" / name).read_text("utf-8")


def fill(text: str, values: dict[str, str]) -> str:
    """Replace every `{{name}}`; a placeholder without a value is a bug (KeyError)."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
