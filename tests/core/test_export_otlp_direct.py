"""Direct OTLP mode: what the exporter sends (headers) and how it reads the answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import rastir
from rastir import _config
from rastir.export.batch import _partial_success
from rastir.export.http import HttpTransport

pb = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")


class OtlpTarget:
    """An OTLP/HTTP receiver on 127.0.0.1 answering scripted ``(status, body)`` pairs."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes]] = []
        self.requests: list[tuple[dict[str, str], Any]] = []  # (headers, request)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.requests.append(
                        (
                            {k.lower(): v for k, v in self.headers.items()},
                            pb.ExportTraceServiceRequest.FromString(raw),
                        )
                    )
                    status, body = outer.answers.pop(0) if outer.answers else (200, b"")
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def span_names(self) -> list[str]:
        return [
            s.name
            for _, r in self.requests
            for rs in r.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]


@contextmanager
def otlp_target() -> Iterator[OtlpTarget]:
    target = OtlpTarget()
    try:
        yield target
    finally:
        target.httpd.shutdown()
        target.httpd.server_close()


def _partial(rejected: int, message: str = "") -> bytes:
    response = pb.ExportTraceServiceResponse()
    response.partial_success.rejected_spans = rejected
    response.partial_success.error_message = message
    return bytes(response.SerializeToString())


def _configure(url: str, **kwargs: Any) -> None:
    rastir.configure(
        service="direct", exporter="otlp", otlp_endpoint=url, otel_bridge=False, **kwargs
    )


def _spans(n: int) -> None:
    for i in range(n):
        with rastir.span(f"s{i}"):
            pass


# -- answers ----------------------------------------------------------------------------


def test_spans_the_target_rejects_in_a_partial_success_are_counted_as_dropped() -> None:
    with otlp_target() as target:
        target.answers = [(200, _partial(2, "too old"))]
        _configure(target.url, batch_size=5, flush_interval=60)
        _spans(5)
        assert rastir.flush(10)
        stats = _config._exporter_or_none().stats
        assert (stats.spans_sent, stats.spans_dropped) == (3, 2)
        _spans(1)  # an empty answer reports nothing
        assert rastir.flush(10)
        assert (stats.spans_sent, stats.spans_dropped) == (4, 2)
        assert len(target.requests) == 2  # a partial success is final: never retried


@pytest.mark.parametrize(
    ("status", "attempts"),
    [(500, 1), (501, 1), (408, 1), (400, 1), (429, 2), (502, 2), (503, 2), (504, 2)],
)
def test_only_the_otlp_retryable_answers_are_retried(status: int, attempts: int) -> None:
    # OTLP/HTTP specification: 429, 502, 503 and 504 are retryable; others are final.
    with otlp_target() as target:
        target.answers = [(status, b"")]
        _configure(target.url, flush_interval=60)
        _spans(1)
        assert rastir.flush(30)
        stats = _config._exporter_or_none().stats
        assert len(target.requests) == attempts
        assert stats.retries == attempts - 1
        assert stats.spans_sent == (1 if attempts == 2 else 0)


@pytest.mark.parametrize(
    ("body", "n", "expected"),
    [
        (b"", 5, (0, "")),
        (bytes(pb.ExportTraceServiceResponse().SerializeToString()), 5, (0, "")),
        (_partial(3, "too old"), 5, (3, "too old")),
        (_partial(0, "just a warning"), 5, (0, "just a warning")),
        (_partial(9), 5, (5, "")),  # never more than were sent
        (_partial(-1), 5, (0, "")),  # int64 on the wire; a negative count means nothing
        (_partial(1, "caf\u00e9"), 5, (1, "caf\u00e9")),
        (b'{"partialSuccess": {}}', 5, (0, "")),  # not protobuf
        (b"\x0a\x05\x08", 5, (0, "")),  # truncated
        (b"\x0f", 5, (0, "")),  # wire type 7 does not exist
        # Unknown fields around and inside partial_success are skipped.
        (b"\x10\x01" + _partial(2) + b"\x1d\x00\x00\x00\x00", 5, (2, "")),
    ],
)
def test_partial_success_is_read_as_protobuf_parsers_read_it(
    body: bytes, n: int, expected: tuple[int, str]
) -> None:
    assert _partial_success(body, n) == expected


def test_the_transport_hands_back_a_2xx_body_only_when_asked() -> None:
    with otlp_target() as target:
        target.answers = [(200, _partial(1)), (200, _partial(1)), (400, b"bad")]
        asking = HttpTransport(target.url, path="", read_body=True)
        plain = HttpTransport(target.url, path="")
        try:
            assert asking.send(b"").body == _partial(1)
            assert plain.send(b"").body == b""
            assert asking.send(b"").body == b""  # not a 2xx: skipped
        finally:
            asking.close()
            plain.close()


# -- headers from the environment ------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "exporter", "expected"),
    [
        (
            {"OTEL_EXPORTER_OTLP_HEADERS": "x-team=abc,authorization=Basic%20dQ%3D%3D"},
            "otlp",
            {"x-team": "abc", "authorization": "Basic dQ=="},
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_HEADERS": "a=generic",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=traces",
            },
            "otlp",
            {"b": "traces"},
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=traces", "RASTIR_HEADERS": "c=rastir"},
            "otlp",
            {"c": "rastir"},
        ),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "a=generic"}, "rastir", {}),
        (
            {"RASTIR_HEADERS": "authorization=Basic%20dQ%3D%3D,x=50%,y=a%2Cb"},
            "rastir",
            {"authorization": "Basic dQ==", "x": "50%", "y": "a,b"},
        ),
    ],
)
def test_headers_come_from_the_environment_percent_decoded(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], exporter: str, expected: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = rastir.configure(
        exporter=exporter, otlp_endpoint="http://127.0.0.1:9/v1/traces", otel_bridge=False
    )
    assert dict(settings.headers) == expected


def test_an_argument_wins_over_every_header_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RASTIR_HEADERS", "a=1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "b=2")
    settings = rastir.configure(
        exporter="otlp", otlp_endpoint="http://127.0.0.1:9", headers={"c": "3%20"}
    )
    assert dict(settings.headers) == {"c": "3%20"}  # arguments are not decoded


def test_a_percent_encoded_line_break_in_a_header_variable_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x=a%0D%0AInjected: 1")
    with pytest.raises(ValueError, match="line break"):
        rastir.configure(exporter="otlp", otlp_endpoint="http://127.0.0.1:9")


def test_the_otel_header_variables_reach_the_otlp_target(monkeypatch: pytest.MonkeyPatch) -> None:
    with otlp_target() as target:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", target.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Basic%20dXNlcjpwdw%3D%3D")
        rastir.configure(service="env", exporter="otlp", otel_bridge=False, flush_interval=60)
        _spans(1)
        assert rastir.flush(10)
        [(headers, _)] = target.requests
        assert headers["authorization"] == "Basic dXNlcjpwdw=="
        assert target.span_names() == ["s0"]


# -- the OpenTelemetry resource variables -------------------------------------------------


def _resource(request: Any) -> dict[str, Any]:
    [rs] = request.resource_spans
    attributes = rs.resource.attributes
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in attributes}


def test_the_otel_resource_variables_name_the_service_and_join_the_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As an OpenTelemetry SDK reads them: OTEL_SERVICE_NAME wins over the service.name
    of OTEL_RESOURCE_ATTRIBUTES, whose other attributes (percent-decoded) join the
    resource; rastir's own keys are not overridden."""
    monkeypatch.delenv("RASTIR_SERVICE", raising=False)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=ignored,k8s.pod.name=pod%2C7,team=payments,telemetry.sdk.name=other",
    )
    with otlp_target() as target:
        rastir.configure(
            exporter="otlp", otlp_endpoint=target.url, otel_bridge=False, flush_interval=60
        )
        _spans(1)
        assert rastir.flush(10)
        [(_, request)] = target.requests
    resource = _resource(request)
    assert resource["service.name"] == "checkout"
    assert resource["k8s.pod.name"] == "pod,7"
    assert resource["team"] == "payments"
    assert resource["telemetry.sdk.name"] == "rastir"


def test_service_name_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-resource")
    monkeypatch.delenv("RASTIR_SERVICE", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    assert rastir.configure().service == "from-resource"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-otel")
    assert rastir.configure().service == "from-otel"
    monkeypatch.setenv("RASTIR_SERVICE", "from-rastir")
    assert rastir.configure().service == "from-rastir"
    assert rastir.configure(service="explicit").service == "explicit"


def test_a_malformed_resource_variable_is_ignored_whole_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments,not-a-pair")
    monkeypatch.delenv("RASTIR_SERVICE", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    settings = rastir.configure()
    with caplog.at_level("WARNING", logger="rastir"):
        resource = settings.resource()
    assert "team" not in resource
    assert settings.service == "unknown_service"
    assert "OTEL_RESOURCE_ATTRIBUTES ignored" in caplog.text
