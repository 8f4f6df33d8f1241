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
        discussion: """
            With --redis-url, --redis-cluster or REDIS_URL, events are queued on Redis Streams for fi-worker \
            processes. With none of them fi-server runs embedded: an in-memory queue and in-process workers \
            write the same corpus files, and SIGTERM drains every accepted event to disk before exiting.
            """
    )

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port = 7001

    @Option(help: "Redis URL, redis://[:password@]host[:port][/db]. Default: $REDIS_URL.")
    var redisURL: String?

    @Option(help: "Redis Cluster seed nodes, host:port,host:port,….")
    var redisCluster: String?

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
        settings.queue = QueueTarget.fromFlags(redisURL: redisURL, redisCluster: redisCluster, environment: environment)
        do {
            try await ServerApplication.run(settings: settings, registry: registry, logger: logger)
        } catch let error as ServerApplication.StartupError {
            FileHandle.standardError.write(Data("fi-server: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
