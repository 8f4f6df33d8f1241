import ArgumentParser
import FIWorkerKit
import Foundation
import Logging

/// `fi-worker`: persists queued events into per-partition HDF5 corpus files.
/// Only parses flags; FIWorkerKit does the work.
@main
struct FIWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fi-worker",
        abstract: "Persist queued consultation events into per-partition HDF5 corpus files, exactly once.",
        discussion: """
            Consumes the named partitions (site_a, partition_2, …) or, with --all, every fi:events:* stream \
            as it appears. Each partition is written by one worker at a time (a lease in Redis); entries are \
            acknowledged only after their rows are flushed and fsynced. SIGTERM/SIGINT finishes the batch in \
            hand, then exits 0. REDIS_URL is read when neither --redis-url nor --redis-cluster is given.
            """,
        version: BuildInfo.versionLine
    )

    @Argument(help: "Partition keys to consume, e.g. site_a partition_2.")
    var partitions: [String] = []

    @Flag(help: "Consume every fi:events:* stream, discovered as they appear.")
    var all = false

    @Option(help: "Redis URL, redis://[:password@]host[:port][/db], or rediss://… for TLS.")
    var redisURL: String?

    @Option(help: "Redis Cluster seed nodes, host:port,host:port,….")
    var redisCluster: String?

    // TLS to Redis (issue 17).
    @Option(help: "PEM file of the CAs to trust for Redis TLS (with a rediss:// URL or --redis-cluster; default: the system's).")
    var redisTlsCa: String?

    @Option(help: "PEM client certificate for a Redis that verifies clients (with --redis-tls-key).")
    var redisTlsCert: String?

    @Option(help: "PEM private key of --redis-tls-cert.")
    var redisTlsKey: String?

    /// The queue the Redis flags describe (TLS included).
    func queueTarget() throws -> QueueTarget? {
        do {
            return try QueueTarget.fromFlags(
                redisURL: redisURL, redisCluster: redisCluster, tlsCA: redisTlsCa, tlsCert: redisTlsCert, tlsKey: redisTlsKey,
                environment: ProcessInfo.processInfo.environment
            )
        } catch {
            throw ValidationError("\(error)")
        }
    }

    @Option(help: "Storage root; partition k is written to <storage>/<k>/corpus.h5.")
    var storage = "./storage"

    @Option(help: "Consumer group.")
    var group = "fi-workers"

    @Option(help: "Consumer name (default: fi-worker-<hostname>, stable across restarts on this host).")
    var consumer: String?

    @Option(help: "Entries per batch.")
    var batchSize = 256

    @Option(help: "Claim other consumers' pending entries once a partition has been held this long (ms).")
    var claimIdleMs = 30_000

    @Option(help: "Partition lease time to live (ms); renewed every third of it.")
    var leaseTtlMs = 10_000

    @Option(help: "Entries delivered more than this many times go to fi:dead:<partition>.")
    var maxDeliveries = 5

    @Option(help: "Serve Prometheus metrics on this port at /metrics.")
    var metricsPort: Int?

    @Option(help: "Address for the metrics endpoint.")
    var metricsHost = "127.0.0.1"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        if all == !partitions.isEmpty {
            throw ValidationError("give partition keys or --all (not both)")
        }
        if redisURL != nil && redisCluster != nil {
            throw ValidationError("give --redis-url or --redis-cluster, not both")
        }
        _ = try queueTarget()
        if batchSize < 1 || batchSize > 100_000 { throw ValidationError("--batch-size must be 1…100000") }
        if claimIdleMs < 0 { throw ValidationError("--claim-idle-ms must not be negative") }
        if leaseTtlMs < 300 { throw ValidationError("--lease-ttl-ms must be at least 300") }
        if maxDeliveries < 1 { throw ValidationError("--max-deliveries must be at least 1") }
        if let metricsPort, !(0...65535).contains(metricsPort) { throw ValidationError("--metrics-port must be 0…65535") }
    }

    func run() async throws {
        Observability.bootstrapLogging(level: logLevel)
        let logger = Logger(label: "fi-worker")
        let registry = Observability.bootstrapPrometheus()

        var worker = WorkerConfiguration()
        do {
            worker.partitions = try partitions.map(WorkerConfiguration.partitionKey)
        } catch {
            throw ValidationError("\(error)")
        }
        worker.discoverAll = all
        worker.storageRoot = storage
        worker.group = group
        if let consumer { worker.consumer = consumer }
        worker.batchSize = batchSize
        worker.claimIdle = .milliseconds(claimIdleMs)
        worker.leaseTTL = .milliseconds(leaseTtlMs)
        worker.maxDeliveries = maxDeliveries

        let target = try queueTarget() ?? .redis(url: "redis://127.0.0.1:6379")
        var settings = WorkerApplication.Settings(queue: target, worker: worker)
        settings.metricsPort = metricsPort
        settings.metricsHost = metricsHost
        do {
            try await WorkerApplication.run(settings, registry: registry, logger: logger)
        } catch let error as WorkerApplication.StartupError {
            FileHandle.standardError.write(Data("fi-worker: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
