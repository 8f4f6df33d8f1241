import FIQueue
import Foundation
import Instrumentation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// Distributed traces through the pipeline: a W3C `traceparent` travels from
/// the POST, through the stream entry's optional `traceparent` field, to the
/// worker's span that ends once the event's batch is flushed and fsynced.
/// Exported over OTLP/HTTP when an endpoint is configured; off by default
/// (then no tracer is bootstrapped and spans cost next to nothing).
public enum Traces {
    /// The stream entry field carrying the W3C trace context (Docs/contract.md §2).
    public static let field = "traceparent"

    /// What to export, and where.
    public struct Settings: Sendable {
        /// The OTLP/HTTP endpoint (`http://collector:4318`); `nil` turns tracing off.
        public var endpoint: String?
        /// `http/protobuf` or `http/json`.
        public var `protocol` = "http/protobuf"

        public init(endpoint: String? = nil) {
            self.endpoint = endpoint
        }
    }

    /// Bootstraps the process-wide tracer with an OTLP exporter; call once, from
    /// an executable. Returns the exporter's service (run it in the ServiceGroup,
    /// last, so it flushes the final spans), or `nil` when tracing is off.
    /// OpenTelemetry's `OTEL_*` variables refine the configuration.
    public static func bootstrap(_ settings: Settings, serviceName: String, logger: Logger) throws -> (any Service)? {
        guard let endpoint = settings.endpoint, !endpoint.isEmpty else { return nil }
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        configuration.logs.enabled = false
        configuration.metrics.enabled = false  // metrics are Prometheus' (/metrics)
        configuration.propagators = [.traceContext]
        configuration.diagnosticLogger = .custom(logger)
        configuration.traces.otlpExporter.endpoint = tracesURL(endpoint)
        configuration.traces.otlpExporter.protocol = settings.protocol == "http/json" ? .httpJSON : .httpProtobuf
        do {
            let (tracer, service) = try OTel.makeTracingBackend(configuration: configuration)
            InstrumentationSystem.bootstrap(tracer)
            return service
        } catch {
            throw ExportError(description: "cannot export traces to \(endpoint): \(error)")
        }
    }

    /// The trace exporter could not be set up (a bad endpoint or `OTEL_*` variable).
    public struct ExportError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The collector's base URL gets OTLP's traces path, as `OTEL_EXPORTER_OTLP_ENDPOINT` would;
    /// a URL with a path of its own is used as it is.
    static func tracesURL(_ endpoint: String) -> String {
        guard let components = URLComponents(string: endpoint), components.path.isEmpty || components.path == "/" else { return endpoint }
        return endpoint.hasSuffix("/") ? endpoint + "v1/traces" : endpoint + "/v1/traces"
    }

    /// Whether a tracer was bootstrapped (spans are then recorded and exported).
    public static var isEnabled: Bool { !(InstrumentationSystem.tracer is NoOpTracer) }

    /// A `traceparent` value as W3C Trace Context level 1 writes it:
    /// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lower case.
    public static func isValidTraceparent(_ value: String) -> Bool {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0].count == 2, parts[1].count == 32, parts[2].count == 16, parts[3].count == 2 else { return false }
        let hex = parts.allSatisfy { $0.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) } }
        return hex && parts[0] != "ff" && parts[1] != String(repeating: "0", count: 32) && parts[2] != String(repeating: "0", count: 16)
    }

    /// The entry's trace context, for a span that continues it; `nil` without one.
    static func context(of entry: StreamEntry) -> ServiceContext? {
        guard entry[field: field] != nil else { return nil }
        var context = ServiceContext.topLevel
        InstrumentationSystem.instrument.extract(entry.fields, into: &context, using: StreamFieldsExtractor())
        return context
    }
}

/// Writes trace context into stream entry fields.
public struct StreamFieldsInjector: Injector {
    public init() {}
    public func inject(_ value: String, forKey key: String, into fields: inout [StreamField]) {
        fields.append(StreamField(key, value))
    }
}

/// Reads trace context from stream entry fields.
struct StreamFieldsExtractor: Extractor {
    func extract(key: String, from fields: [StreamField]) -> String? {
        fields.first { $0.name == key }.map { String(decoding: $0.value, as: UTF8.self) }
    }
}
