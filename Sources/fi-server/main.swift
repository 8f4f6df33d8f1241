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
            fi-server [--host <host>] [--port <port>] [--redis-url <url> | --redis-cluster <host:port,…>] [--redis-tls-ca <file>] [--redis-tls-cert <file> --redis-tls-key <file>] [--partitions <n>] \
            [--storage <path>] [--max-body-bytes <n>] [--max-backlog <n>] [--api-tokens-file <file>] [--log-level <level>]
              fi-server capacity [<options>]
            """,
        discussion: """
            With --redis-url, --redis-cluster or REDIS_URL, events are queued on Redis Streams for fi-worker \
            processes. With none of them fi-server runs embedded: an in-memory queue and in-process workers \
            write the same corpus files, and SIGTERM drains every accepted event to disk before exiting.

            Without a subcommand fi-server serves. `fi-server capacity --help` plans capacity, or measures it \
            from a running fi-server's /metrics.
            """,
        version: BuildInfo.versionLine,
        subcommands: [CapacitySubcommand.self]
    )

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port = 7001

    @Option(help: "Redis URL, redis://[:password@]host[:port][/db], or rediss://… for TLS. Default: $REDIS_URL.")
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

    @Option(help: "Number of hash partitions for events without a site.")
    var partitions = 3

    @Option(help: "Storage root of the corpus files (read by GET, written by embedded workers).")
    var storage = "./storage"

    @Option(help: "Largest accepted request body, in bytes.")
    var maxBodyBytes = 1_048_576

    @Option(help: "Answer 429 when a partition's queued, unpersisted events exceed this.")
    var maxBacklog = 100_000

    @Option(help: "Tokens file: lines of '<token> <site>[,<site>…]' or '<token> *'. Default: $FI_API_TOKENS_FILE.")
    var apiTokensFile: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        if redisURL != nil && redisCluster != nil {
            throw ValidationError("give --redis-url or --redis-cluster, not both")
        }
        _ = try queueTarget()
        if !(0...65535).contains(port) { throw ValidationError("--port must be 0…65535") }
        if partitions < 1 || partitions > 1_048_576 { throw ValidationError("--partitions must be 1…1048576") }
        if maxBodyBytes < 2 { throw ValidationError("--max-body-bytes must be at least 2") }
        if maxBacklog < 0 { throw ValidationError("--max-backlog must not be negative") }
    }

    func run() async throws {
        Observability.bootstrapLogging(level: logLevel)
        let logger = Logger(label: "fi-server")
        let registry = Observability.bootstrapPrometheus()
        let environment = ProcessInfo.processInfo.environment

        var settings = ServerSettings()
        settings.host = host
        settings.port = port
        settings.partitions = partitions
        settings.storageRoot = storage
        settings.maxBodyBytes = maxBodyBytes
        settings.maxBacklog = maxBacklog
        settings.apiTokensFile = apiTokensFile ?? environment["FI_API_TOKENS_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        settings.queue = try queueTarget()
        do {
            try await ServerApplication.run(settings: settings, registry: registry, logger: logger)
        } catch let error as ServerApplication.StartupError {
            FileHandle.standardError.write(Data("fi-server: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

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
