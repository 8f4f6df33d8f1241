import ArgumentParser
import FIServerKit
import Foundation
import Logging

/// `fi-server`: the ingestion API. Only parses flags; FIServerKit does the work.
@main
struct FIServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fi-server",
        abstract: "Accept consultation events over HTTP and queue them for the workers.",
        usage: """
            fi-server [--host <host>] [--port <port>] [--redis-url <url> | --redis-cluster <host:port,…>] \
            [--redis-tls-ca <file>] [--redis-tls-cert <file> --redis-tls-key <file>] \
            [--redis-min-replicas <n>] [--redis-replica-timeout <s>] [--partitions <n>] \
            [--storage <path>] [--max-body-bytes <n>] [--max-backlog <n>] [--api-tokens-file <file>] \
            [--shutdown-delay <s>] [--log-level <level>] [--log-format text|json] \
            [--segment-max-bytes <size>] [--segment-max-age <age>] [--retention <age>] [--config <file>]
              fi-server config [<options>]
              fi-server capacity [<options>]
            """,
        discussion: """
            With --redis-url, --redis-cluster or REDIS_URL, events are queued on Redis Streams for fi-worker \
            processes. With none of them fi-server runs embedded: an in-memory queue and in-process workers \
            write the same corpus files, and SIGTERM drains every accepted event to disk before exiting.

            Every setting comes from its flag, else its environment variable (FI_ + the flag in upper case, \
            - as _; REDIS_URL too), else the --config file (JSON or YAML, keys named like the long flags), \
            else its default. `fi-server config` prints the effective settings and where each came from.

            Without a subcommand fi-server serves. `fi-server capacity --help` plans capacity, or measures it \
            from a running fi-server's /metrics.
            """,
        version: BuildInfo.versionLine,
        subcommands: [CapacitySubcommand.self, ConfigSubcommand.self]
    )

    @OptionGroup var flags: ServerFlags

    // Issue 17: request tasks on the event loops, so a request and its Redis append stay on one loop.
    static func main() async {
        ServerApplication.runTasksOnEventLoops()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    func run() async throws {
        let (settings, logging) = try await flags.resolve()
        Observability.bootstrapLogging(level: logging.level, format: logging.format)
        let logger = Logger(label: "fi-server")
        let registry = Observability.bootstrapPrometheus()
        do {
            let exporter = try Traces.bootstrap(settings.traces, serviceName: "fi-server", logger: logger)
            try await ServerApplication.run(settings: settings, registry: registry, observability: exporter.map { [$0] } ?? [], logger: logger)
        } catch let error as ServerApplication.StartupError {
            FileHandle.standardError.write(Data("fi-server: error: \(error)\n".utf8))
            throw ExitCode(1)
        } catch let error as Traces.ExportError {
            FileHandle.standardError.write(Data("fi-server: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// `fi-server config`: the effective settings and where each value came from, secrets redacted.
struct ConfigSubcommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Print the effective settings and where each came from (flag, env, file, default); secrets redacted."
    )

    @OptionGroup var flags: ServerFlags

    @Flag(help: "Print every setting as a Markdown table instead (Docs/operations.md carries it).")
    var reference = false

    func run() async throws {
        if reference {
            print(OptionSpec.markdownReference(ServerOptions.specs), terminator: "")
            return
        }
        _ = try await flags.resolve()  // a bad value exits 64 here too
        print(try await flags.options().table(), terminator: "")
    }
}

/// fi-server's flags. Each is optional: unset, the value comes from the
/// environment, the config file or the default (ServerOptions).
struct ServerFlags: ParsableArguments {
    @Option(help: .init(ServerOptions.host.help)) var host: String?
    @Option(help: .init(ServerOptions.port.help)) var port: Int?
    @Option(help: .init(ServerOptions.redisURL.help)) var redisURL: String?
    @Option(help: .init(ServerOptions.redisCluster.help)) var redisCluster: String?
    @Option(help: .init(ServerOptions.redisTLSCA.help)) var redisTlsCa: String?
    @Option(help: .init(ServerOptions.redisTLSCert.help)) var redisTlsCert: String?
    @Option(help: .init(ServerOptions.redisTLSKey.help)) var redisTlsKey: String?
    @Option(help: .init(ServerOptions.redisMinReplicas.help)) var redisMinReplicas: Int?
    @Option(help: .init(ServerOptions.redisReplicaTimeout.help)) var redisReplicaTimeout: Double?
    @Option(help: .init(ServerOptions.partitions.help)) var partitions: Int?
    @Option(help: .init(ServerOptions.storage.help)) var storage: String?
    @Option(help: .init(ServerOptions.maxBodyBytes.help)) var maxBodyBytes: Int?
    @Option(help: .init(ServerOptions.maxBacklog.help)) var maxBacklog: Int?
    @Option(help: .init(ServerOptions.apiTokensFile.help)) var apiTokensFile: String?
    @Option(help: .init(ServerOptions.shutdownDelay.help)) var shutdownDelay: Double?
    @Option(help: .init(ServerOptions.logLevel.help)) var logLevel: String?
    @Option(help: .init(ServerOptions.logFormat.help)) var logFormat: String?
    @Option(help: .init(ServerOptions.otlpEndpoint.help)) var otlpEndpoint: String?
    @Option(help: .init(ServerOptions.otlpProtocol.help)) var otlpProtocol: String?
    @Option(help: .init(ServerOptions.segmentMaxBytes.help + " (embedded mode)")) var segmentMaxBytes: String?
    @Option(help: .init(ServerOptions.segmentMaxAge.help + " (embedded mode)")) var segmentMaxAge: String?
    @Option(help: .init(ServerOptions.retention.help + " (embedded mode)")) var retention: String?
    @Option(help: "Config file, JSON or YAML (.yaml/.yml), keys named like the long flags (env FI_CONFIG)") var config: String?

    /// The flags given, by setting name.
    var given: [String: String] {
        let given: [String: String?] = [
            "host": host, "port": port.map(String.init), "redis-url": redisURL, "redis-cluster": redisCluster,
            "redis-tls-ca": redisTlsCa, "redis-tls-cert": redisTlsCert, "redis-tls-key": redisTlsKey,
            "redis-min-replicas": redisMinReplicas.map(String.init), "redis-replica-timeout": redisReplicaTimeout.map { String($0) },
            "partitions": partitions.map(String.init), "storage": storage, "max-body-bytes": maxBodyBytes.map(String.init),
            "max-backlog": maxBacklog.map(String.init), "api-tokens-file": apiTokensFile,
            "shutdown-delay": shutdownDelay.map { String($0) }, "log-level": logLevel, "log-format": logFormat,
            "otlp-endpoint": otlpEndpoint, "otlp-protocol": otlpProtocol,
            "segment-max-bytes": segmentMaxBytes, "segment-max-age": segmentMaxAge, "retention": retention,
        ]
        return given.compactMapValues { $0 }
    }

    /// The settings from flags, environment, config file and defaults; a bad value exits 64.
    func options() async throws -> ResolvedOptions {
        do {
            let environment = ProcessInfo.processInfo.environment
            return try await ResolvedOptions.resolve(
                ServerOptions.specs, flags: given, environment: environment,
                configFile: config ?? environment["FI_CONFIG"].flatMap { $0.isEmpty ? nil : $0 })
        } catch {
            FileHandle.standardError.write(Data("fi-server: error: \(error)\n".utf8))
            throw ExitCode(64)
        }
    }

    func resolve() async throws -> (ServerSettings, WorkerOptions.LogSettings) {
        let options = try await options()
        do {
            return try ServerOptions.settings(from: options)
        } catch {
            FileHandle.standardError.write(Data("fi-server: error: \(error)\n".utf8))
            throw ExitCode(64)
        }
    }
}


/// `fi-server capacity`: a capacity plan, or the live estimate of a running server. FIServerKit does the work.
struct CapacitySubcommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capacity",
        abstract: "Print a capacity plan, or measure a running fi-server's capacity from its /metrics.",
        discussion: """
            Without --from-metrics: the reference formula (workers × requests/s × 86,400 / requests per session), \
            the M/M/c queue at the target's peak, the largest load meeting the percentile target, storage, network \
            and (with --ingest-ms and --persist-ms) the latency budget. With --from-metrics URL: two scrapes \
            --interval seconds apart, the observed load and the headroom by the same model. Docs/capacity.md explains each number.
            """
    )

    @Option(help: "Target sessions per day. Default 10000.") var sessionsPerDay: Double?
    @Option(help: "Requests per session (10 messages + 10 events). Default 20.") var requestsPerSession: Double?
    @Option(help: "Events stored per session. Default: one per request.") var eventsPerSession: Double?
    @Option(help: "Workers (M/M/c servers). Default 12; with --from-metrics, this machine's cores.") var workers: Int?
    @Option(help: "Requests per second one worker sustains. Default 100.") var workerRps: Double?
    @Option(help: "Mean service time per request, ms. Default 1000 / --worker-rps; with --from-metrics, measured.") var serviceTimeMs: Double?
    @Option(help: "Headroom factor, capacity over planned load, ≥ 1. Default 1.5.") var headroom: Double?
    @Option(help: "Peak request rate over the day's average, ≥ 1. Default 1 (even spread).") var peakToAverage: Double?
    @Option(help: "Response-time percentile constrained, 0–100. Default 95.") var percentile: Double?
    @Option(help: "Target for that percentile, ms. Default 50.") var targetMs: Double?
    @Option(help: "Mean event size, bytes. Default 1024.") var eventBytes: Double?
    // Not --partitions: after the subcommand that would still set fi-server's own flag.
    @Option(help: "Partitions the events spread over. Default 3.") var partitionCount: Int?
    @Option(help: "HDF5 file bytes per logical byte. Default 1.013 (measured).") var overhead: Double?
    @Option(help: "Disk for the corpus files, GB. Default 1000.") var diskGb: Double?
    @Option(help: "GB already used on that disk. Default 0.") var usedGb: Double?
    @Option(help: "Times an event crosses the network. Default 3.") var traversals: Int?
    @Option(help: "Measured ingest latency, ms (with --persist-ms: the latency budget).") var ingestMs: Double?
    @Option(help: "Measured persist latency of a batch, ms.") var persistMs: Double?
    @Option(help: "End-to-end target, request to persisted row, ms. Default 1000.") var endToEndMs: Double?
    @Option(help: "Measure a running fi-server instead: its base URL or /metrics URL (http://).") var fromMetrics: String?
    @Option(help: "With --from-metrics: seconds between the two scrapes. Default 10.") var interval: Double?
    @Option(help: "With --from-metrics: the route counted, or 'all'. Default /consultations/{consultation_id}/events.") var route: String?
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() async throws {
        var f = CapacityCommand.Flags()
        f.sessionsPerDay = sessionsPerDay
        f.requestsPerSession = requestsPerSession
        f.eventsPerSession = eventsPerSession
        f.workers = workers
        f.workerRPS = workerRps
        f.serviceTimeMs = serviceTimeMs
        f.headroom = headroom
        f.peakToAverage = peakToAverage
        f.percentile = percentile
        f.targetMs = targetMs
        f.eventBytes = eventBytes
        f.partitions = partitionCount
        f.overhead = overhead
        f.diskGB = diskGb
        f.usedGB = usedGb
        f.traversals = traversals
        f.ingestMs = ingestMs
        f.persistMs = persistMs
        f.endToEndMs = endToEndMs
        f.fromMetrics = fromMetrics
        f.interval = interval
        f.route = route
        f.json = json
        do {
            print(try await CapacityCommand.run(f), terminator: "")
        } catch {
            FileHandle.standardError.write(Data("fi-server capacity: error: \(error)\n".utf8))
            throw ExitCode(error.isUsage ? 64 : 1)
        }
    }
}
