"""Every committed older version of every schema must stay readable with the current schema.

Old records stay on topics (and in compacted state topics forever): a reader on today's schema
must decode what any earlier version wrote. Versions come from git history; named types of an
old version resolve from the same commit's ``schemas/`` directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import parse_schema

from filas.errors import SchemaError
from schemas.catalog import SCHEMAS_DIR, SchemaCatalog, parse_source
from schemas.compat import check_readable
from schemas.sources import SUFFIX, parse_source_text

REPO_ROOT = SCHEMAS_DIR.parent
CATALOG = SchemaCatalog.load()


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], check=True, capture_output=True, text=True
    ).stdout


def _in_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    try:
        return _git("rev-parse", "--is-inside-work-tree").strip() == "true"
    except subprocess.CalledProcessError:
        return False


requires_git = pytest.mark.skipif(
    not _in_git_checkout(), reason="schema history needs a git checkout (not an sdist/wheel)"
)


@cache
def _sources_at(commit: str) -> dict[str, Any]:
    """Every schema of ``schemas/`` as it was at ``commit``, by full name."""
    sources: dict[str, Any] = {}
    for line in _git("ls-tree", "--name-only", commit, "schemas/").splitlines():
        name = Path(line).name
        if name.endswith(SUFFIX):
            fullname, source = parse_source_text(name, _git("show", f"{commit}:{line}"))
            sources[fullname] = source
    return sources


def _older_versions(fullname: str) -> list[str]:
    path = f"schemas/{fullname}{SUFFIX}"
    commits = _git("log", "--format=%H", "--", path).split()
    current = (SCHEMAS_DIR / f"{fullname}{SUFFIX}").read_text(encoding="utf-8")
    return [c for c in commits if _git("show", f"{c}:{path}") != current]


@requires_git
@pytest.mark.parametrize("fullname", sorted(CATALOG.schemas))
def test_every_older_version_is_readable_with_the_current_schema(fullname: str) -> None:
    current = CATALOG.get(fullname)
    for commit in _older_versions(fullname):
        old = parse_source(fullname, _sources_at(commit))
        check_readable(old.parsed, current.parsed, label=f"{fullname} at {commit[:10]}")


@pytest.mark.parametrize("fullname", sorted(CATALOG.schemas))
def test_current_schema_reads_its_own_samples(fullname: str) -> None:
    schema = CATALOG.get(fullname)
    assert check_readable(schema.parsed, schema.parsed, label=fullname) >= 2


# --- the checker itself must catch breaking changes --------------------------------------------

_BASE: dict[str, Any] = {
    "type": "record",
    "name": "Probe",
    "namespace": "test.compat",
    "doc": "A record to change in breaking and non-breaking ways.",
    "fields": [
        {"name": "login", "type": "string", "doc": "Login."},
        {
            "name": "status",
            "type": {"type": "enum", "name": "Status", "symbols": ["active", "blocked", "reduced"]},
            "doc": "Status.",
        },
        {"name": "pool", "type": ["null", "string"], "default": None, "doc": "Pool."},
    ],
}


def _variant(change: Any) -> Any:
    schema = json.loads(json.dumps(_BASE))
    change(schema)
    return parse_schema(schema)


def _add_required_field(schema: dict[str, Any]) -> None:
    schema["fields"].append({"name": "plan_id", "type": "string", "doc": "Plan."})


def _remove_enum_symbol(schema: dict[str, Any]) -> None:
    schema["fields"][1]["type"]["symbols"].remove("reduced")


def _change_type(schema: dict[str, Any]) -> None:
    schema["fields"][0]["type"] = "long"


def _drop_union_branch(schema: dict[str, Any]) -> None:
    schema["fields"][2] = {"name": "pool", "type": "string", "default": "", "doc": "Pool."}


@pytest.mark.parametrize(
    "change", [_add_required_field, _remove_enum_symbol, _change_type, _drop_union_branch]
)
def test_checker_rejects_breaking_change(change: Any) -> None:
    with pytest.raises(SchemaError, match="cannot be read"):
        check_readable(parse_schema(_BASE), _variant(change), label="Probe")


def _add_optional_field(schema: dict[str, Any]) -> None:
    schema["fields"].append(
        {"name": "city", "type": ["null", "string"], "default": None, "doc": "City."}
    )


def _add_enum_symbol(schema: dict[str, Any]) -> None:
    schema["fields"][1]["type"]["symbols"].append("cancelled")


def _remove_field(schema: dict[str, Any]) -> None:
    del schema["fields"][2]


@pytest.mark.parametrize("change", [_add_optional_field, _add_enum_symbol, _remove_field])
def test_checker_accepts_compatible_change(change: Any) -> None:
    check_readable(parse_schema(_BASE), _variant(change), label="Probe")
