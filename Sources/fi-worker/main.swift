import ArgumentParser
import FIWorkerKit
import Foundation
import Logging

/// `fi-worker`: persists queued events into per-partition HDF5 corpus files.
/// Only parses flags; FIWorkerKit does the work. (Top-level code rather than
/// `@main`: the subcommands live in files of their own.)
struct FIWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fi-worker",
        abstract: "Persist queued consultation events into per-partition HDF5 corpus files, exactly once.",
        discussion: """
            Consumes the named partitions (site_a, partition_2, …) or, with --all, every fi:events:* stream \
            as it appears. Each partition is written by one worker at a time (a lease in Redis); entries are \
            acknowledged only after their rows are flushed and fsynced. SIGTERM/SIGINT finishes the batch in \
            hand, then exits 0. REDIS_URL is read when neither --redis-url nor --redis-cluster is given.

            `fi-worker corpus erase|verify` erases one consultation or verifies closed segments \
            (`fi-worker corpus --help`).
            """,
        version: BuildInfo.versionLine
    )

    @Argument(help: "Partition keys to consume, e.g. site_a partition_2.")
    var partitions: [String] = []

    @Flag(help: "Consume every fi:events:* stream, discovered as they appear.")
    var all = false

    @Option(help: "Redis URL, redis://[:password@]host[:port][/db].")
    var redisURL: String?

    @Option(help: "Redis Cluster seed nodes, host:port,host:port,….")
    var redisCluster: String?

    @Option(help: "Storage root; partition k is written to segment files in <storage>/<k>/.")
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

    @Option(help: "Close a partition's corpus segment once it reaches this size (e.g. 1GiB; 0: no limit).")
    var segmentMaxBytes = "1GiB"

    @Option(help: "… or this age (e.g. 24h, 7d; 0: no limit).")
    var segmentMaxAge = "24h"

    @Option(help: "Delete closed segments whose newest event is older than this (e.g. 5y; default: keep everything).")
    var retention = "off"

    func validate() throws {
        if all == !partitions.isEmpty {
            throw ValidationError("give partition keys or --all (not both)")
        }
        if redisURL != nil && redisCluster != nil {
            throw ValidationError("give --redis-url or --redis-cluster, not both")
        }
        if batchSize < 1 || batchSize > 100_000 { throw ValidationError("--batch-size must be 1…100000") }
        if claimIdleMs < 0 { throw ValidationError("--claim-idle-ms must not be negative") }
        if leaseTtlMs < 300 { throw ValidationError("--lease-ttl-ms must be at least 300") }
        if maxDeliveries < 1 { throw ValidationError("--max-deliveries must be at least 1") }
        if let metricsPort, !(0...65535).contains(metricsPort) { throw ValidationError("--metrics-port must be 0…65535") }
        var probe = WorkerConfiguration()
        do { try CorpusTool.applySegmentFlags(&probe, maxBytes: segmentMaxBytes, maxAge: segmentMaxAge, retention: retention) } catch {
            throw ValidationError("\(error)")
        }
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
        try CorpusTool.applySegmentFlags(&worker, maxBytes: segmentMaxBytes, maxAge: segmentMaxAge, retention: retention)

        let target = QueueTarget.fromFlags(
            redisURL: redisURL,
            redisCluster: redisCluster,
            environment: ProcessInfo.processInfo.environment
        ) ?? .redis(url: "redis://127.0.0.1:6379")
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

/// Runs a command's async `main` (a plain call here picks the synchronous one).
func start<Command: AsyncParsableCommand>(_: Command.Type, _ arguments: [String]?) async { await Command.main(arguments) }

// `corpus …` is dispatched before the root command parses: its PARTITION_KEY
// arguments would otherwise take the subcommand's words.
if CommandLine.arguments.dropFirst().first == "corpus" {
    await start(CorpusCommand.self, Array(CommandLine.arguments.dropFirst(2)))
} else {
    await start(FIWorkerCommand.self, nil)
}
