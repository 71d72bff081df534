"""The ingress's OpenAPI 3 document, built from the request-type table.

``python -m producers.ingress.openapi`` rewrites ``producers/ingress/openapi.json`` (the copy
kept in the repository for clients); a unit test fails when the two differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from producers.ingress.request_types import KINDS, LANE_NAMES, WEBHOOK_KIND

SPEC_PATH = Path(__file__).with_name("openapi.json")
WEBHOOK_DOC = (
    "HMAC-SHA256 signed: X-Filas-Signature = 'v1=' + hex(HMAC(secret, '<X-Filas-Timestamp>.' +"
    " raw body)); timestamps outside the replay window and signatures already used are refused."
    " payment_id is the idempotency key."
)
STATES = ("queued", "running", "done", "failed", "dead_lettered")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response = _json(_ref("Error"), description)
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return response


def _submission(kind_index: int) -> dict[str, Any]:
    kind = KINDS[kind_index]
    lanes = [lane for lane in LANE_NAMES if not (kind.lane == "bulk" and lane == "high")]
    return {
        "type": "object",
        "description": kind.summary,
        "required": ["type", "params"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "enum": [kind.name]},
            "params": {
                "type": "object",
                "additionalProperties": False,
                "required": [p.name for p in kind.params if p.required],
                "properties": {p.name: p.json_schema() for p in kind.params},
            },
            "lane": {
                "type": "string",
                "enum": lanes,
                "description": f"Priority lane; default {kind.lane} (may only demote to bulk)",
            },
        },
    }


def build_spec() -> dict[str, Any]:
    submissions = {f"Submit_{k.name}": _submission(i) for i, k in enumerate(KINDS)}
    idempotency = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Retrying with the same key returns the first request, never a second",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    }
    accepted = {
        "description": "Accepted (or the first request under this Idempotency-Key)",
        "headers": {"Location": {"description": "The status URL", "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": _ref("RequestStatus")}},
    }
    webhook_params = {
        "type": "object",
        "additionalProperties": False,
        "required": [p.name for p in WEBHOOK_KIND.params if p.required] + ["payment_id"],
        "properties": {p.name: p.json_schema() for p in WEBHOOK_KIND.params},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Filas service-request ingress",
            "version": "1.0.0",
            "description": "Queue work for IXC Provedor: 202 + a status URL; see docs/requests.md",
        },
        "paths": {
            "/v1/requests": {
                "post": {
                    "operationId": "submitRequest",
                    "security": [{"bearer": []}],
                    "parameters": [idempotency],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"oneOf": [_ref(n) for n in submissions]}
                            }
                        },
                    },
                    "responses": {
                        "202": accepted,
                        "400": _error("Bad input; nothing was enqueued"),
                        "401": _error("Missing or unknown token"),
                        "413": _error("Body too large"),
                        "415": _error("Not application/json"),
                        "422": _error("Idempotency-Key reused with a different body"),
                        "429": _error("Rate limit of this client", retry_after=True),
                        "503": _error("The queue is unavailable", retry_after=True),
                    },
                }
            },
            "/v1/requests/{request_id}": {
                "get": {
                    "operationId": "getRequestStatus",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "request_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("RequestStatus"), "The request's latest state"),
                        "401": _error("Missing or unknown token"),
                        "404": _error("No such request for this client"),
                    },
                }
            },
            "/v1/webhooks/payments": {
                "post": {
                    "operationId": "paymentWebhook",
                    "description": WEBHOOK_DOC,
                    "parameters": [
                        {
                            "name": name,
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                        for name in ("X-Filas-Gateway", "X-Filas-Timestamp", "X-Filas-Signature")
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": webhook_params}},
                    },
                    "responses": {
                        "202": accepted,
                        "400": _error("Bad input; nothing was enqueued"),
                        "401": _error("Missing/bad signature, stale timestamp or replay"),
                        "413": _error("Body too large"),
                        "415": _error("Not application/json"),
                        "422": _error("payment_id reused with a different body"),
                        "429": _error("Rate limit of this gateway", retry_after=True),
                        "503": _error("The queue is unavailable", retry_after=True),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **submissions,
                "RequestStatus": {
                    "type": "object",
                    "required": [
                        "request_id",
                        "type",
                        "lane",
                        "state",
                        "attempts",
                        "error",
                        "result",
                        "submitted_at",
                        "updated_at",
                        "status_url",
                    ],
                    "properties": {
                        "request_id": {"type": "string", "format": "uuid"},
                        "type": {"type": "string", "enum": [k.name for k in KINDS]},
                        "lane": {"type": "string", "enum": list(LANE_NAMES)},
                        "state": {"type": "string", "enum": list(STATES)},
                        "attempts": {"type": "integer", "minimum": 0},
                        "error": {
                            "type": "object",
                            "nullable": True,
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                        "result": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "submitted_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                        "status_url": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {"type": "string"},
                            },
                        }
                    },
                },
            },
        },
    }


def render() -> str:
    return json.dumps(build_spec(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SPEC_PATH.write_text(render())
    print(f"wrote {SPEC_PATH}")
