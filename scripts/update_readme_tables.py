"""Regenerate the README's generated blocks (topic table, configuration reference) in place.

Run by ``make docs``; tests/unit/test_docs_current.py fails until the README matches the code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from filas.catalog import Catalog
from filas.cli.config_cmd import markdown_reference
from filas.cli.topic_cmds import markdown_table
from filas.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _replace(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:begin[^>]*-->\n)(.*?)(<!-- {name}:end -->)", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README has no {name} block")
    return pattern.sub(lambda m: m.group(1) + body + m.group(3), text)


def main() -> None:
    for var in [v for v in os.environ if v.startswith("FILAS_")]:
        del os.environ[var]
    text = README.read_text()
    text = _replace(text, "topics", markdown_table(Catalog.build()))
    text = _replace(text, "config", markdown_reference(Settings()))
    README.write_text(text)


if __name__ == "__main__":
    main()
