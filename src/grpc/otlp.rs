//! Traces leave roster over OTLP/gRPC (the collector's port 4317); the standard `OTEL_EXPORTER_OTLP_*`
//! variables configure the exporter.

/// The span exporter `telemetry::init` batches into.
pub fn span_exporter() -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    Ok(opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()?)
}
