"""``/ready`` on the metrics port (filas.metrics.Readiness), as a WSGI app (no network); and
the RADIUS gateway's Deployment is probed there (decision 0113)."""

from __future__ import annotations

from typing import Any

from filas.admin import k8s_render
from filas.metrics import Readiness


def call(app: Any, path: str) -> tuple[str, bytes]:
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.append(status)

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    return seen[0], body


def metrics_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"filas_events_in_total 1\n"]


def test_a_process_that_declares_nothing_is_ready() -> None:
    app = Readiness().wrap(metrics_app)
    assert call(app, "/ready") == ("200 OK", b"ready\n")
    assert call(app, "/metrics") == ("200 OK", b"filas_events_in_total 1\n")


def test_pending_is_503_until_ready_and_metrics_keep_answering() -> None:
    readiness = Readiness()
    app = readiness.wrap(metrics_app)
    readiness.pending()
    assert call(app, "/ready") == ("503 Service Unavailable", b"not ready\n")
    assert call(app, "/metrics")[0] == "200 OK"  # liveness and scraping go on meanwhile
    readiness.ready()
    assert call(app, "/ready") == ("200 OK", b"ready\n")
    readiness.pending()  # e.g. reloading: out of the Service again
    assert call(app, "/ready")[0] == "503 Service Unavailable"


def test_the_radius_gateway_is_ready_only_when_it_says_so() -> None:
    (gateway,) = [w for w in k8s_render.WORKLOADS if w.name == "radius-gateway"]
    container = k8s_render.deployment(gateway)["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"
