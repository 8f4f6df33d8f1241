import FIPartitioning
import FIQueue
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import UnixSignals

/// Where the queue lives: a Redis URL, Redis Cluster seeds, or nowhere (embedded).
public struct QueueTarget: Sendable, CustomStringConvertible {
    enum Value: Sendable {
        case redis(String)
        case cluster([String])
        case inMemory
    }

    let value: Value
    /// TLS files for Redis (`--redis-tls-ca`, `--redis-tls-cert`, `--redis-tls-key`); `nil` for none.
    public var tls: RedisEventQueue.TLS?

    /// A single Redis: `redis://[:password@]host[:port][/db]`, or `rediss://…` for TLS.
    public static func redis(url: String, tls: RedisEventQueue.TLS? = nil) -> QueueTarget { QueueTarget(value: .redis(url), tls: tls) }
    /// A Redis Cluster, by seed nodes `host:port`; over TLS when `tls` is given.
    public static func cluster(seeds: [String], tls: RedisEventQueue.TLS? = nil) -> QueueTarget { QueueTarget(value: .cluster(seeds), tls: tls) }
    /// The in-process queue (embedded mode; nothing outlives the process).
    public static let inMemory = QueueTarget(value: .inMemory, tls: nil)

    /// The target the command-line flags describe: `--redis-url`, then
    /// `--redis-cluster`, then the `REDIS_URL` environment variable; `nil` when
    /// none is given.
    public static func fromFlags(redisURL: String?, redisCluster: String?, environment: [String: String]) -> QueueTarget? {
        if let redisURL, !redisURL.isEmpty { return .redis(url: redisURL) }
        if let redisCluster, !redisCluster.isEmpty {
            return .cluster(seeds: redisCluster.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        }
        if let url = environment["REDIS_URL"], !url.isEmpty { return .redis(url: url) }
        return nil
    }

    /// As ``fromFlags(redisURL:redisCluster:environment:)``, with the TLS flags: `--redis-tls-ca`
    /// (with `rediss://` or `--redis-cluster`), and `--redis-tls-cert` with `--redis-tls-key`.
    /// - Throws: ``UsageError`` (one line naming the flags) for a combination that cannot work.
    public static func fromFlags(
        redisURL: String?, redisCluster: String?, tlsCA: String?, tlsCert: String?, tlsKey: String?, environment: [String: String]
    ) throws -> QueueTarget? {
        guard var target = fromFlags(redisURL: redisURL, redisCluster: redisCluster, environment: environment) else {
            if tlsCA != nil || tlsCert != nil || tlsKey != nil {
                throw UsageError(description: "--redis-tls-ca, --redis-tls-cert and --redis-tls-key need --redis-url rediss://… or --redis-cluster")
            }
            return nil
        }
        if (tlsCert == nil) != (tlsKey == nil) {
            throw UsageError(description: "give --redis-tls-cert and --redis-tls-key together")
        }
        guard tlsCA != nil || tlsCert != nil else { return target }
        if case .redis(let url) = target.value, !url.hasPrefix("rediss://") {
            throw UsageError(description: "--redis-tls-ca, --redis-tls-cert and --redis-tls-key need a rediss:// URL")
        }
        target.tls = RedisEventQueue.TLS(caFile: tlsCA, certificateFile: tlsCert, privateKeyFile: tlsKey)
        return target
    }

    /// A flag combination that cannot work.
    public struct UsageError: Error, CustomStringConvertible {
        public let description: String
    }

    public var isInMemory: Bool {
        if case .inMemory = value { return true }
        return false
    }

    /// Connects, failing at once with a one-line reason if the queue cannot be reached. Redis
    /// connections run on `eventLoopGroup` (NIO's shared singleton by default — the one
    /// Hummingbird serves on, so a request and its append stay on one event loop).
    public func connect(logger: Logger, eventLoopGroup: (any EventLoopGroup)? = nil) async throws -> any EventQueue {
        var options = RedisEventQueue.Options()
        options.tls = tls
        options.eventLoopGroup = eventLoopGroup
        switch value {
        case .redis(let url):
            return try await RedisEventQueue.connect(url: url, options: options, logger: logger)
        case .cluster(let seeds):
            if options.tls == nil && seeds.contains(where: { $0.hasPrefix("rediss://") }) { options.tls = .init() }
            return try await RedisEventQueue.connect(clusterSeeds: seeds.map(Self.withoutScheme), options: options, logger: logger)
        case .inMemory:
            return InMemoryEventQueue()
        }
    }

    /// A cluster seed may be written `rediss://host:port` (TLS with the system's trust store).
    private static func withoutScheme(_ seed: String) -> String {
        for scheme in ["rediss://", "redis://"] where seed.hasPrefix(scheme) { return String(seed.dropFirst(scheme.count)) }
        return seed
    }

    public var description: String {
        switch value {
        case .redis(let url): Self.redacted(url)
        case .cluster(let seeds): "redis cluster " + seeds.joined(separator: ",") + (tls != nil ? " (TLS)" : "")
        case .inMemory: "in-memory queue"
        }
    }

    /// The URL without its password, for logs and error messages.
    static func redacted(_ url: String) -> String {
        guard let at = url.firstIndex(of: "@"), let scheme = url.range(of: "://") else { return url }
        return String(url[..<scheme.upperBound]) + "***" + String(url[at...])
    }
}

/// Metrics for the executables: a Prometheus registry bootstrapped into
/// swift-metrics, and an HTTP endpoint that serves it.
public enum Observability {
    /// Sends logs to stderr at `level` and above, one line per record (see
    /// ``OneLineLogHandler``). Call once, from an executable.
    public static func bootstrapLogging(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var output = StreamLogHandler.standardError(label: label)
            output.logLevel = level
            // OneLineLogHandler keeps logger metadata itself and hands it over only
            // when a record is written: StreamLogHandler would re-format it on every
            // `logger[metadataKey:] = …`, which Hummingbird does once per request.
            return OneLineLogHandler(output)
        }
    }

    /// Bootstraps swift-metrics with a Prometheus registry. Call once, from an executable.
    public static func bootstrapPrometheus() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }

    /// A small HTTP service answering `GET /metrics` with the registry's Prometheus text.
    public static func metricsEndpoint(registry: PrometheusCollectorRegistry, host: String, port: Int, logger: Logger) -> some Service {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer()))
            )
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "fi-worker"),
            logger: logger
        )
    }
}

/// What `fi-worker` runs: connect, then a worker (and a metrics endpoint)
/// under a ServiceGroup that turns SIGTERM/SIGINT into a graceful shutdown.
public enum WorkerApplication {
    /// The worker's command-line settings.
    public struct Settings: Sendable {
        public var queue: QueueTarget
        public var worker: WorkerConfiguration
        public var metricsHost = "127.0.0.1"
        public var metricsPort: Int?

        public init(queue: QueueTarget, worker: WorkerConfiguration) {
            self.queue = queue
            self.worker = worker
        }
    }

    /// A start-up failure with a one-line reason for the operator.
    public struct StartupError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Connects to the queue (failing at once if it cannot be reached) and
    /// runs until SIGTERM/SIGINT.
    public static func run(_ settings: Settings, registry: PrometheusCollectorRegistry?, logger: Logger) async throws {
        let queue: any EventQueue
        do {
            queue = try await settings.queue.connect(logger: logger)
            try await queue.ping()
        } catch {
            throw StartupError(description: "cannot reach \(settings.queue): \(oneLine(error))")
        }
        let worker = EventWorker(queue: queue, configuration: settings.worker, logger: logger)
        var services: [any Service] = [worker]
        if let port = settings.metricsPort, let registry {
            services.append(Observability.metricsEndpoint(registry: registry, host: settings.metricsHost, port: port, logger: logger))
        }
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        logger.info(
            "fi-worker started",
            metadata: [
                "fi.queue": "\(settings.queue)",
                "fi.partitions": "\(settings.worker.discoverAll ? "--all" : settings.worker.partitions.map(\.rawValue).joined(separator: ","))",
                "fi.consumer": "\(settings.worker.consumer)",
                "fi.storage": "\(settings.worker.storageRoot)",
            ]
        )
        try await group.run()
        await queue.close()
    }

    static func oneLine(_ error: any Error) -> String {
        let text = (error as? EventQueueError)?.message ?? "\(error)"
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}
