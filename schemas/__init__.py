"""Avro schemas (``*.avsc``) and everything that reads or writes them.

- ``catalog``: ``SchemaCatalog.load()`` parses every ``.avsc`` once; ``get(fullname)``.
- ``serde``: ``AvroSerde`` per topic, Confluent-framed values (``wire``) via ``registry_client``.
- ``compat`` / ``samples``: the old-versions-stay-readable check used by the unit tests.
- ``dead_letter``: the ``DeadLetter`` record for a record that could not be processed.
"""
