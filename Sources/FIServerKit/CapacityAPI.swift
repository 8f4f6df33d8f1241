import FICapacity
import FILocking
import Foundation
import Hummingbird
import Prometheus
import Synchronization

/// `GET /capacity`: the live capacity estimate (``LiveCapacity``) as JSON, from the server's own
/// metrics registry — the same numbers `fi-server capacity --from-metrics` prints from `/metrics`.
///
/// Each request snapshots the registry and compares it with a snapshot about a minute old (or, in the
/// first minute, the one taken at start-up); `observed.interval_seconds` says which. Query parameters,
/// all optional: `workers` (default: this machine's cores, i.e. fi-server's event-loop threads),
/// `service_time_ms` (default: measured), `requests_per_session` (20), `percentile` (95),
/// `target_ms` (50).
///
/// With `--api-tokens-file` it needs a `*` token: the estimate names every partition, so every site.
final class CapacityAPI: Sendable {
    static let route = "/capacity"

    private let registry: PrometheusCollectorRegistry
    private let tokens: TokenStore?
    private let origin = ContinuousClock.now
    private let history: Locked<MetricsHistory>
    private let workers: Int

    /// - Parameters:
    ///   - registry: The registry `/metrics` serves.
    ///   - tokens: The tokens, when authentication is configured.
    ///   - windowSeconds: The baseline snapshot's wanted age.
    init(registry: PrometheusCollectorRegistry, tokens: TokenStore?, windowSeconds: Double = 60) {
        self.registry = registry
        self.tokens = tokens
        self.workers = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let start = try? PrometheusExposition(parsing: String(decoding: registry.emitToBuffer(), as: UTF8.self))
        // windowSeconds is a positive constant, so this cannot fail.
        self.history = Locked(try! MetricsHistory(windowSeconds: windowSeconds, start: 0, baseline: start))
    }

    func addRoutes(to router: Router<some RequestContext>) {
        router.get(RouterPath(Self.route)) { request, _ in try self.capacity(request) }
    }

    func capacity(_ request: Request) throws -> Response {
        if let tokens {
            guard let grant = tokens.grant(authorization: request.headers[.authorization]) else { throw APIError.unauthorized }
            guard grant.allSites else { throw APIError.forbidden("only a '*' token may read /capacity: it reports every partition") }
        }
        let options = try Self.options(request.uri.queryParameters, workers: workers)
        let now: PrometheusExposition
        do {
            now = try PrometheusExposition(parsing: String(decoding: registry.emitToBuffer(), as: UTF8.self))
        } catch {
            throw APIError(.internalServerError, "internal_error", "the metrics registry could not be read: \(error)")
        }
        let elapsed = ContinuousClock.now - origin
        let time = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let baseline = history.withLock { $0.record(now, at: time) }
        do {
            let estimate = try LiveCapacity(
                earlier: baseline.exposition,
                later: now,
                intervalSeconds: max(time - baseline.time, 1e-3),
                options: options,
                requireRequestMetric: false
            )
            return Response(
                status: .ok,
                headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: try estimate.jsonData()))
            )
        } catch let error as CapacityError {
            throw APIError(.internalServerError, "internal_error", "the estimate failed: \(error.message)")
        }
    }

    /// The query parameters as ``LiveCapacity/Options``; a bad one is a 400 naming it.
    static func options(_ query: Parameters, workers: Int) throws -> LiveCapacity.Options {
        var options = LiveCapacity.Options(workers: workers, workersSource: "fi-server's event-loop threads, one per core")
        func number(_ name: String) throws -> Double? {
            guard let text = query.get(name) else { return nil }
            guard let value = Double(text), value.isFinite, value > 0 else {
                throw APIError.badRequest("invalid_parameter", "\(name) must be a number greater than zero, got '\(text)'")
            }
            return value
        }
        if let text = query.get("workers") {
            guard let n = Int(text), n > 0, n <= 1_000_000 else {
                throw APIError.badRequest("invalid_parameter", "workers must be a whole number 1…1000000, got '\(text)'")
            }
            options.workers = n
            options.workersSource = "given"
        }
        if let ms = try number("service_time_ms") { options.meanServiceTimeSeconds = ms / 1000 }
        if let n = try number("requests_per_session") { options.requestsPerSession = n }
        if let p = try number("percentile") {
            guard p < 100 else { throw APIError.badRequest("invalid_parameter", "percentile must be between 0 and 100, got '\(p)'") }
            options.percentile = p / 100
        }
        if let ms = try number("target_ms") { options.responseTimeTargetSeconds = ms / 1000 }
        return options
    }
}
