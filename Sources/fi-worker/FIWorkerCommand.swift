import ArgumentParser
import FIWorkerKit
import Foundation
import Logging

/// `fi-worker`: persists queued events. Only parses flags; FIWorkerKit does the work.
@main
struct FIWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fi-worker",
        abstract: "Persist queued consultation events into per-partition HDF5 corpus files, exactly once.",
        discussion: """
            Consumes the named partitions (site_a, partition_2, …) or, with --all, every fi:events:* stream \
            as it appears. Each partition is written by one worker at a time (a lease in Redis); entries are \
            acknowledged only after their rows are flushed and fsynced. SIGTERM/SIGINT turns /health/ready to \
            503, finishes the batch in hand, then exits 0.

            Every setting comes from its flag, else its environment variable (FI_ + the flag in upper case, \
            - as _; REDIS_URL too), else the --config file (JSON or YAML, keys named like the long flags), \
            else its default. `fi-worker config` prints the effective settings and where each came from.

            Settings (flag, environment variable, default; `fi-worker serve --help` explains each):
            \(OptionSpec.helpTable(WorkerOptions.specs))
            """,
        version: BuildInfo.versionLine,
        subcommands: [Serve.self, ConfigCommand.self, StatusCommand.self, DeadLettersCommand.self, CorpusCommand.self],
        defaultSubcommand: Serve.self
    )
}

/// `fi-worker [serve]`: consume and persist until SIGTERM/SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Consume and persist until SIGTERM/SIGINT (the default)."
    )

    @Argument(help: "Partition keys to consume, e.g. site_a partition_2.")
    var partitions: [String] = []

    @OptionGroup var flags: WorkerFlags

    func run() async throws {
        let (settings, logging) = try await flags.resolve(partitions: partitions)
        Observability.bootstrapLogging(level: logging.level, format: logging.format)
        let logger = Logger(label: "fi-worker")
        let registry = Observability.bootstrapPrometheus()
        do {
            let exporter = try Traces.bootstrap(settings.traces, serviceName: "fi-worker", logger: logger)
            try await WorkerApplication.run(settings, registry: registry, observability: exporter.map { [$0] } ?? [], logger: logger)
        } catch let error as WorkerApplication.StartupError {
            FileHandle.standardError.write(Data("fi-worker: error: \(error)\n".utf8))
            throw ExitCode(1)
        } catch let error as Traces.ExportError {
            FileHandle.standardError.write(Data("fi-worker: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

}

/// `fi-worker config`: the effective settings and where each value came from, secrets redacted.
struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Print the effective settings and where each came from (flag, env, file, default); secrets redacted."
    )

    @Argument(help: "Partition keys, as for fi-worker itself.")
    var partitions: [String] = []

    @OptionGroup var flags: WorkerFlags

    @Flag(help: "Print every setting as a Markdown table instead (Docs/operations.md carries it).")
    var reference = false

    func run() async throws {
        if reference {
            print(OptionSpec.markdownReference(WorkerOptions.specs), terminator: "")
            return
        }
        _ = try await flags.resolve(partitions: partitions, requirePartitions: false)  // a bad value exits 64 here too
        print(try await flags.options().table(), terminator: "")
    }
}

/// `fi-worker status`: every partition's lease owner, backlog, pending entries, dead letters and corpus.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show every partition: lease owner, backlog, pending, oldest pending age, dead letters, last stored stream id, rows."
    )

    @OptionGroup var flags: ConnectionFlags

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        let options = try await flags.options()
        let target: QueueTarget
        do {
            target = try WorkerOptions.queueTarget(from: options)
        } catch {
            FileHandle.standardError.write(Data("fi-worker status: error: \(error)\n".utf8))
            throw ExitCode(64)
        }
        do {
            let statuses = try await WorkerStatus.collect(
                target: target, group: options.string(WorkerOptions.group.name)!, storageRoot: options.string(WorkerOptions.storage.name)!)
            print(json ? try WorkerStatus.json(statuses) : WorkerStatus.table(statuses), terminator: "")
        } catch {
            FileHandle.standardError.write(Data("fi-worker status: error: \(target): \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// fi-worker's flags. Each is optional: unset, the value comes from the
/// environment, the config file or the default (WorkerOptions).
struct WorkerFlags: ParsableArguments {
    @Option(help: .init(WorkerOptions.redisURL.help)) var redisURL: String?
    @Option(help: .init(WorkerOptions.redisCluster.help)) var redisCluster: String?
    @Option(help: .init(WorkerOptions.redisTLSCA.help)) var redisTlsCa: String?
    @Option(help: .init(WorkerOptions.redisTLSCert.help)) var redisTlsCert: String?
    @Option(help: .init(WorkerOptions.redisTLSKey.help)) var redisTlsKey: String?
    @Option(help: .init(WorkerOptions.redisMinReplicas.help)) var redisMinReplicas: Int?
    @Option(help: .init(WorkerOptions.redisReplicaTimeout.help)) var redisReplicaTimeout: Double?
    @Flag(help: .init(WorkerOptions.all.help)) var all = false
    @Option(help: .init(WorkerOptions.storage.help)) var storage: String?
    @Option(help: .init(WorkerOptions.group.help)) var group: String?
    @Option(help: .init(WorkerOptions.consumer.help)) var consumer: String?
    @Option(help: .init(WorkerOptions.batchSize.help)) var batchSize: Int?
    @Option(help: .init(WorkerOptions.claimIdleMs.help)) var claimIdleMs: Int?
    @Option(help: .init(WorkerOptions.leaseTTLMs.help)) var leaseTtlMs: Int?
    @Option(help: .init(WorkerOptions.maxDeliveries.help)) var maxDeliveries: Int?
    @Option(help: .init(WorkerOptions.httpHost.help)) var httpHost: String?
    @Option(help: .init(WorkerOptions.httpPort.help)) var httpPort: Int?
    @Option(help: .hidden) var metricsHost: String?  // before 0.1.0: --http-host
    @Option(help: .hidden) var metricsPort: Int?  // before 0.1.0: --http-port
    @Option(help: .init(WorkerOptions.shutdownDelay.help)) var shutdownDelay: Double?
    @Option(help: .init(WorkerOptions.logLevel.help)) var logLevel: String?
    @Option(help: .init(WorkerOptions.logFormat.help)) var logFormat: String?
    @Option(help: .init(WorkerOptions.otlpEndpoint.help)) var otlpEndpoint: String?
    @Option(help: .init(WorkerOptions.otlpProtocol.help)) var otlpProtocol: String?
    @Option(help: .init(WorkerOptions.segmentMaxBytes.help)) var segmentMaxBytes: String?
    @Option(help: .init(WorkerOptions.segmentMaxAge.help)) var segmentMaxAge: String?
    @Option(help: .init(WorkerOptions.retention.help)) var retention: String?
    @Option(help: "Config file, JSON or YAML (.yaml/.yml), keys named like the long flags (env FI_CONFIG)") var config: String?

    /// The flags given, by setting name.
    var given: [String: String] {
        var given: [String: String?] = [
            "redis-url": redisURL, "redis-cluster": redisCluster, "storage": storage, "group": group,
            "redis-tls-ca": redisTlsCa, "redis-tls-cert": redisTlsCert, "redis-tls-key": redisTlsKey,
            "redis-min-replicas": redisMinReplicas.map(String.init), "redis-replica-timeout": redisReplicaTimeout.map { String($0) },
            "consumer": consumer, "batch-size": batchSize.map(String.init), "claim-idle-ms": claimIdleMs.map(String.init),
            "lease-ttl-ms": leaseTtlMs.map(String.init), "max-deliveries": maxDeliveries.map(String.init),
            "http-host": httpHost ?? metricsHost, "http-port": (httpPort ?? metricsPort).map(String.init),
            "shutdown-delay": shutdownDelay.map { String($0) }, "log-level": logLevel, "log-format": logFormat,
            "otlp-endpoint": otlpEndpoint, "otlp-protocol": otlpProtocol,
            "segment-max-bytes": segmentMaxBytes, "segment-max-age": segmentMaxAge, "retention": retention,
        ]
        if all { given["all"] = "true" }
        return given.compactMapValues { $0 }
    }

    /// The settings from flags, environment, config file and defaults; a bad value exits 64.
    func options() async throws -> ResolvedOptions {
        try await Self.options(given: given, config: config)
    }

    static func options(given: [String: String], config: String?) async throws -> ResolvedOptions {
        do {
            let environment = ProcessInfo.processInfo.environment
            return try await ResolvedOptions.resolve(
                WorkerOptions.specs, flags: given, environment: environment,
                configFile: config ?? environment["FI_CONFIG"].flatMap { $0.isEmpty ? nil : $0 },
                computedDefaults: WorkerOptions.computedDefaults)
        } catch {
            FileHandle.standardError.write(Data("fi-worker: error: \(error)\n".utf8))
            throw ExitCode(64)
        }
    }

    func resolve(partitions: [String], requirePartitions: Bool = true) async throws -> (WorkerApplication.Settings, WorkerOptions.LogSettings) {
        let options = try await options()
        do {
            return try WorkerOptions.settings(from: options, partitions: partitions, requirePartitions: requirePartitions)
        } catch {
            FileHandle.standardError.write(Data("fi-worker: error: \(error)\n".utf8))
            throw ExitCode(64)
        }
    }
}

/// The flags of the operator commands (`status`, `dead-letters`): where the queue
/// and the storage are. The other settings come from the environment, the config
/// file or their defaults, as for `fi-worker serve`.
struct ConnectionFlags: ParsableArguments {
    @Option(help: .init(WorkerOptions.redisURL.help)) var redisURL: String?
    @Option(help: .init(WorkerOptions.redisCluster.help)) var redisCluster: String?
    @Option(help: .init(WorkerOptions.redisTLSCA.help)) var redisTlsCa: String?
    @Option(help: .init(WorkerOptions.redisTLSCert.help)) var redisTlsCert: String?
    @Option(help: .init(WorkerOptions.redisTLSKey.help)) var redisTlsKey: String?
    @Option(help: .init(WorkerOptions.storage.help)) var storage: String?
    @Option(help: .init(WorkerOptions.group.help)) var group: String?
    @Option(help: "Config file, JSON or YAML (.yaml/.yml), keys named like the long flags (env FI_CONFIG)") var config: String?

    func options() async throws -> ResolvedOptions {
        let given: [String: String?] = [
            "redis-url": redisURL, "redis-cluster": redisCluster, "storage": storage, "group": group,
            "redis-tls-ca": redisTlsCa, "redis-tls-cert": redisTlsCert, "redis-tls-key": redisTlsKey,
        ]
        return try await WorkerFlags.options(given: given.compactMapValues { $0 }, config: config)
    }
}
