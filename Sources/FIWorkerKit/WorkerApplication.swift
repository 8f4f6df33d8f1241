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
    /// Replicas that must acknowledge appends and lease writes (`--redis-min-replicas`), and how
    /// long a write waits for them.
    public var minReplicas = 0
    public var replicaTimeout: Duration = .seconds(1)

    /// A single Redis: `redis://[:password@]host[:port][/db]`, or `rediss://…` for TLS.
    public static func redis(url: String, tls: RedisEventQueue.TLS? = nil) -> QueueTarget { QueueTarget(value: .redis(url), tls: tls) }
    /// A Redis Cluster, by seed nodes `host:port`; over TLS when `tls` is given.
    public static func cluster(seeds: [String], tls: RedisEventQueue.TLS? = nil) -> QueueTarget { QueueTarget(value: .cluster(seeds), tls: tls) }
    /// The in-process queue (embedded mode; nothing outlives the process).
    public static let inMemory = QueueTarget(value: .inMemory, tls: nil)

    /// Cluster seeds from `host:port,host:port,…`.
    public static func seeds(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    public var isInMemory: Bool {
        if case .inMemory = value { return true }
        return false
    }

    /// The URL of a single-Redis target.
    var redisURL: String? {
        if case .redis(let url) = value { return url }
        return nil
    }

    /// Connects, failing at once with a one-line reason if the queue cannot be reached. Redis
    /// connections run on `eventLoopGroup` (NIO's shared singleton by default — the one
    /// Hummingbird serves on, so a request and its append stay on one event loop).
    public func connect(logger: Logger, eventLoopGroup: (any EventLoopGroup)? = nil) async throws -> any EventQueue {
        var options = RedisEventQueue.Options()
        options.tls = tls
        options.minReplicas = minReplicas
        options.replicaTimeout = replicaTimeout
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

/// What `fi-worker` runs: connect, then a worker and its HTTP endpoint
/// (metrics and probes) under a ServiceGroup that turns SIGTERM/SIGINT into a
/// graceful shutdown — `/health/ready` answers 503 first.
public enum WorkerApplication {
    /// The worker's settings.
    public struct Settings: Sendable {
        public var queue: QueueTarget
        public var worker: WorkerConfiguration
        /// The HTTP endpoint (`/metrics`, `/health/live`, `/health/ready`); port `0` turns it off.
        public var httpHost = "127.0.0.1"
        public var httpPort = WorkerOptions.defaultHTTPPort
        /// On SIGTERM, how long `/health/ready` answers 503 before the worker stops.
        public var shutdownDelay: Duration = .zero
        /// Trace export (off without an endpoint).
        public var traces = Traces.Settings()

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
    /// - Parameter observability: Services of the executable's own bootstraps (the trace
    ///   exporter): started first and stopped last, so they see everything.
    public static func run(
        _ settings: Settings, registry: PrometheusCollectorRegistry?, observability: [any Service] = [], logger: Logger
    ) async throws {
        let queue: any EventQueue
        do {
            queue = try await settings.queue.connect(logger: logger)
            try await queue.ping()
        } catch {
            throw StartupError(description: "cannot reach \(settings.queue): \(oneLine(error))")
        }
        let worker = EventWorker(queue: queue, configuration: settings.worker, logger: logger)
        let readiness = Readiness(checks: [
            ("queue", { await (try? queue.ping()) == nil ? "queue unreachable" : nil }),
            ("storage", Readiness.storage(settings.worker.storageRoot, writable: true)),
        ])
        var services: [any Service] = observability + [worker]
        if settings.httpPort != 0, let registry {
            services.append(Observability.endpoint(registry: registry, readiness: readiness, host: settings.httpHost, port: settings.httpPort, logger: logger))
        }
        // Last, so the first told to stop.
        services.append(DrainService(readiness: readiness, delay: settings.shutdownDelay, logger: logger))
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
                "fi.http": "\(settings.httpPort == 0 ? "off" : "\(settings.httpHost):\(settings.httpPort)")",
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
