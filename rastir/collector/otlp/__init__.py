"""OpenTelemetry interop for the collector: OTLP/HTTP receive and export.

* :mod:`.receive`: ``POST /v1/traces``, OTLP protobuf and OTLP/JSON in, through the
  same checks, metrics and store as ``POST /v1/telemetry``.
* The span mapping to the semantic conventions and the encoders live in the core,
  :mod:`rastir.export.otlp`, because an application's direct mode
  (``configure(exporter="otlp")``) uses them too.

Importing this package imports nothing else; the submodules need the collector extra
(``opentelemetry-proto`` for decoding).
"""
