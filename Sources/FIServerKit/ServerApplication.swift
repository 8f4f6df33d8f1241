import FIPartitioning
import FIQueue
import FIWorkerKit
import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle
import UnixSignals

/// fi-server's settings: the contract's flags plus a few tunables.
public struct ServerSettings: Sendable {
    public var host = "127.0.0.1"
    public var port = 7001
    /// Hash partitions, N.
    public var partitions = Partitioner.defaultPartitions
    public var storageRoot = "./storage"
    public var maxBodyBytes = 1 << 20
    /// A partition whose stream holds more entries than this is answered 429.
    public var maxBacklog = 100_000
    public var apiTokensFile: String?
    /// The queue; `nil` runs embedded (in-memory queue and in-process workers).
    public var queue: QueueTarget?
    /// Seconds clients are told to wait in `Retry-After` on 429 and 503.
    public var retryAfterSeconds = 1
    /// How often partition backlogs are re-read in the background.
    public var backlogRefreshInterval: Duration = .milliseconds(250)
    /// Connections idle this long are closed (slow clients cannot hold them).
    /// A request head that never completes counts as idle.
    public var idleTimeout: Duration = .seconds(60)
    /// A request must be received whole, head to the end of its body, within
    /// this long of its head, or its connection is closed (a body trickled in
    /// byte by byte cannot hold a connection).
    public var requestReadTimeout: Duration = .seconds(30)
    /// The largest request header, and the largest header block, in bytes; a
    /// larger one is answered 400 and the connection closed.
    public var maxHeaderBytes = 32 * 1024
    /// The most header fields a request may carry.
    public var maxHeaderFields = 100
    /// The in-process worker of embedded mode.
    public var embeddedWorker = WorkerConfiguration()
    /// On SIGTERM, how long `/health/ready` answers 503 before the server stops accepting.
    public var shutdownDelay: Duration = .zero
    /// Trace export (off without an endpoint).
    public var traces = Traces.Settings()

    public init() {}
}

/// Builds and runs fi-server.
public enum ServerApplication {
    /// A start-up failure with a one-line reason for the operator.
    public struct StartupError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The HTTP application over a given queue, for `run` and for in-process tests.
    public static func buildApplication(
        settings: ServerSettings,
        queue: any EventQueue,
        registry: PrometheusCollectorRegistry,
        readiness: Readiness? = nil,
        logger: Logger
    ) throws -> some ApplicationProtocol {
        var tokens: TokenStore?
        if let path = settings.apiTokensFile {
            do {
                let loaded = try TokenStore.load(path: path)
                if let warning = loaded.warning { logger.warning("\(warning)") }
                tokens = loaded.store
            } catch {
                throw StartupError(description: "\(error)")
            }
        } else {
            logger.warning("no --api-tokens-file: the API is open to anyone who can reach it")
        }
        let backlog = BacklogMonitor(queue: queue, limit: settings.maxBacklog, interval: settings.backlogRefreshInterval, logger: logger)
        let readers = CorpusReaders(storageRoot: settings.storageRoot, logger: logger)
        let api: IngestAPI
        do {
            api = try IngestAPI(settings: settings, queue: queue, tokens: tokens, backlog: backlog, readers: readers)
        } catch {
            throw StartupError(description: "\(error)")
        }

        let router = Router()
        router.add(middleware: RequestMiddleware())
        // A server span per request, continuing the caller's traceparent (only when a tracer is bootstrapped).
        if Traces.isEnabled { router.add(middleware: TracingMiddleware()) }
        api.addRoutes(to: router)
        CapacityAPI(registry: registry, tokens: tokens).addRoutes(to: router)
        Observability.addRoutes(to: router, registry: registry, readiness: readiness ?? Self.readiness(settings, queue: queue))

        return Application(
            router: router,
            server: .http1(configuration: http1Configuration(settings, logger: logger)),
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "fi-server"),
            services: [backlog],
            logger: logger
        )
    }

    /// Connects (or, embedded, starts in-process workers) and serves until
    /// SIGTERM/SIGINT. Embedded mode then drains: every event answered 202 is
    /// in its corpus before the process exits.
    /// - Parameter observability: Services of the executable's own bootstraps (the trace
    ///   exporter): started first and stopped last, so they see everything.
    public static func run(
        settings: ServerSettings, registry: PrometheusCollectorRegistry, observability: [any Service] = [], logger: Logger
    ) async throws {
        let queue: any EventQueue
        let target = settings.queue ?? .inMemory
        do {
            queue = try await target.connect(logger: logger)
            try await queue.ping()
        } catch {
            throw StartupError(description: "cannot reach \(target): \((error as? EventQueueError)?.message ?? "\(error)")")
        }

        let readiness = Self.readiness(settings, queue: queue)
        let app = try buildApplication(settings: settings, queue: queue, registry: registry, readiness: readiness, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = observability.map { .init(service: $0) }
        if settings.queue == nil {
            var worker = settings.embeddedWorker
            worker.storageRoot = settings.storageRoot
            worker.discoverAll = true
            worker.rescanInterval = min(worker.rescanInterval, .milliseconds(250))
            var options = EventWorker.Options()
            options.drainOnShutdown = true
            // Services stop in reverse order: the HTTP server first, then the
            // worker drains what was accepted.
            services.append(.init(service: EventWorker(queue: queue, configuration: worker, options: options, logger: logger)))
        }
        services.append(.init(service: app))
        // Last, so the first told to stop: ready turns 503 before the server stops accepting.
        services.append(.init(service: DrainService(readiness: readiness, delay: settings.shutdownDelay, logger: logger)))
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        logger.info(
            "fi-server starting",
            metadata: [
                "fi.address": "\(settings.host):\(settings.port)",
                "fi.queue": "\(settings.queue.map { "\($0)" } ?? "embedded (in-memory queue, in-process workers)")",
                "fi.storage": "\(settings.storageRoot)",
                "fi.partitions": "\(settings.partitions)",
            ]
        )
        try await group.run()
        await queue.close()
    }

    /// Ready: the queue answers, storage is usable (writable when embedded workers
    /// write it; readable, if it exists yet, when fi-server only reads it), and
    /// not shutting down.
    static func readiness(_ settings: ServerSettings, queue: any EventQueue) -> Readiness {
        Readiness(checks: [
            ("queue", { await (try? queue.ping()) == nil ? "queue unreachable" : nil }),
            ("storage", Readiness.storage(settings.storageRoot, writable: settings.queue == nil)),
        ])
    }
}
