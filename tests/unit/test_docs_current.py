"""The README's generated tables match the code, so the docs cannot silently rot."""

import os
import re
from pathlib import Path

import pytest

from filas.catalog import Catalog
from filas.cli.config_cmd import markdown_reference
from filas.cli.topic_cmds import markdown_table
from filas.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _block(name: str) -> str:
    match = re.search(
        rf"<!-- {name}:begin[^>]*-->\n(.*?)<!-- {name}:end -->", README.read_text(), re.DOTALL
    )
    assert match is not None, f"README has no {name} block"
    return match.group(1)


def test_readme_topic_table_matches_the_catalog() -> None:
    assert _block("topics") == markdown_table(Catalog.build())


def test_readme_configuration_matches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("FILAS_")]:
        monkeypatch.delenv(var)
    assert _block("config") == markdown_reference(Settings())
