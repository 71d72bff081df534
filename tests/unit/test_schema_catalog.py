"""The schema catalog: loading rules, documentation rule, topic coverage and field-path errors."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from filas.catalog import DEAD_LETTER_SCHEMA, Catalog
from filas.errors import SchemaError, ValidationError
from schemas.catalog import SCHEMAS_DIR, SchemaCatalog
from schemas.samples import sample
from schemas.sources import read_sources, undocumented_fields

CATALOG = SchemaCatalog.load()
ENVELOPE = "ixc.filas.common.Envelope"


def test_every_field_of_every_schema_has_a_doc() -> None:
    for fullname, source in read_sources(SCHEMAS_DIR).items():
        assert undocumented_fields(source) == [], fullname


@pytest.mark.parametrize("spec", list(Catalog.build()), ids=lambda s: s.name)
def test_every_topic_schema_exists_starts_with_envelope_and_has_its_key(spec: Any) -> None:
    schema = CATALOG.get(spec.value_schema)
    fields = schema.parsed["fields"]
    assert fields[0]["name"] == "envelope"
    assert fields[0]["type"]["name"] == ENVELOPE
    key = next(f for f in fields if f["name"] == spec.key_field)
    # A key must always be there to partition on: never optional.
    assert not isinstance(key["type"], list), f"{spec.name}: key field {spec.key_field} is nullable"


def test_dead_letter_topics_use_the_dead_letter_schema() -> None:
    dlqs = [spec for spec in Catalog.build() if spec.name.endswith(".dlq")]
    assert dlqs
    assert {spec.value_schema for spec in dlqs} == {DEAD_LETTER_SCHEMA}


def test_canonical_form_is_self_contained_and_keeps_docs_and_logical_types() -> None:
    canonical = json.loads(CATALOG.get("ixc.filas.radius.AuthDecision").canonical)
    envelope = canonical["fields"][0]["type"]
    assert envelope["name"] == ENVELOPE
    assert envelope["fields"][0]["type"] == {"type": "string", "logicalType": "uuid"}
    assert all("doc" in field for field in canonical["fields"])
    assert "__fastavro_parsed" not in CATALOG.get("ixc.filas.radius.AuthDecision").canonical


def test_fingerprints_are_stable_across_loads() -> None:
    again = SchemaCatalog.load()
    assert [s.fingerprint for s in again] == [s.fingerprint for s in CATALOG]


def test_unknown_schema_names_the_known_ones() -> None:
    with pytest.raises(SchemaError, match=r"ixc\.filas\.radius\.AuthRequest"):
        CATALOG.get("ixc.filas.radius.Nope")


def _copy_schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def test_file_not_named_by_full_name_fails_clearly(tmp_path: Path) -> None:
    directory = _copy_schemas(tmp_path)
    (directory / "ixc.filas.log.LogRecord.avsc").rename(directory / "LogRecord.avsc")
    with pytest.raises(SchemaError, match=r"must be named ixc\.filas\.log\.LogRecord\.avsc"):
        SchemaCatalog.load(directory)


def test_field_without_doc_fails_clearly(tmp_path: Path) -> None:
    directory = _copy_schemas(tmp_path)
    path = directory / "ixc.filas.log.LogRecord.avsc"
    source = json.loads(path.read_text())
    del source["fields"][2]["doc"]
    path.write_text(json.dumps(source))
    with pytest.raises(SchemaError, match="field 'logger' has no doc"):
        SchemaCatalog.load(directory)


def test_missing_referenced_type_fails_clearly(tmp_path: Path) -> None:
    directory = _copy_schemas(tmp_path)
    (directory / f"{ENVELOPE}.avsc").unlink()
    with pytest.raises(SchemaError, match="cannot parse"):
        SchemaCatalog.load(directory)


def _record(fullname: str) -> dict[str, Any]:
    schema = CATALOG.get(fullname)
    record: dict[str, Any] = sample(schema.parsed, schema.named_types, 1)
    return record


@pytest.mark.parametrize("fullname", sorted(CATALOG.schemas))
def test_samples_validate(fullname: str) -> None:
    schema = CATALOG.get(fullname)
    if schema.parsed["type"] == "record":
        CATALOG.validate(fullname, _record(fullname))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("envelope", "event_id"), 5, "field 'envelope.event_id': expected uuid string, got int 5"),
        (("decision",), "maybe", "field 'decision': expected one of ['accept', 'reject']"),
        (("latency_us",), "12", "field 'latency_us': expected long, got str '12'"),
        (("reply_attributes",), {"Framed-Pool": 1}, "field 'reply_attributes['Framed-Pool']'"),
        (("pool",), 3, "field 'pool': expected string, got int 3"),
    ],
)
def test_validation_error_names_the_field_path(
    path: tuple[str, ...], value: Any, message: str
) -> None:
    record = _record("ixc.filas.radius.AuthDecision")
    target = record
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ValidationError) as caught:
        CATALOG.validate("ixc.filas.radius.AuthDecision", record)
    assert message in str(caught.value)
    assert caught.value.field is not None
    assert caught.value.field.startswith(".".join(path))


def test_missing_required_field_is_named() -> None:
    record = _record("ixc.filas.radius.AuthDecision")
    del record["login"]
    with pytest.raises(ValidationError, match="field 'login': expected string, got nothing"):
        CATALOG.validate("ixc.filas.radius.AuthDecision", record)


def test_missing_field_with_default_is_fine() -> None:
    record = _record("ixc.filas.radius.AuthDecision")
    del record["reply_attributes"]
    record["envelope"]["event_id"] = uuid.uuid4()
    CATALOG.validate("ixc.filas.radius.AuthDecision", record)
