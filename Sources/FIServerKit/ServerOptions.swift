import FIPartitioning
import FIWorkerKit

/// fi-server's settings (Docs/contract.md §4): each from its flag, `FI_<FLAG>`,
/// the `--config` file, or its default, in that order.
public enum ServerOptions {
    public static let host = OptionSpec("host", .string, default: "127.0.0.1", "Address to listen on")
    public static let port = OptionSpec("port", .int, default: "7001", "Port to listen on")
    public static let redisURL = OptionSpec(
        "redis-url", .string, default: nil, "Redis URL, redis://[:password@]host[:port][/db], or rediss://… for TLS; with neither this nor --redis-cluster, fi-server runs embedded",
        legacyEnvironment: ["REDIS_URL"], secret: true)
    public static let redisCluster = OptionSpec("redis-cluster", .string, default: nil, "Redis Cluster seed nodes, host:port,host:port,…")
    public static let redisTLSCA = WorkerOptions.redisTLSCA
    public static let redisTLSCert = WorkerOptions.redisTLSCert
    public static let redisTLSKey = WorkerOptions.redisTLSKey
    public static let redisMinReplicas = WorkerOptions.redisMinReplicas
    public static let redisReplicaTimeout = WorkerOptions.redisReplicaTimeout
    public static let partitions = OptionSpec("partitions", .int, default: String(Partitioner.defaultPartitions), "Number of hash partitions for events without a site")
    public static let storage = OptionSpec(
        "storage", .string, default: "./storage", "Storage root of the corpus files (read by GET, written by embedded workers)")
    public static let maxBodyBytes = OptionSpec("max-body-bytes", .int, default: "1048576", "Largest accepted request body, in bytes")
    public static let maxBacklog = OptionSpec(
        "max-backlog", .int, default: "100000", "Answer 429 when a partition's queued, unpersisted events exceed this")
    public static let apiTokensFile = OptionSpec(
        "api-tokens-file", .string, default: nil, "Tokens file: lines of '<token> <site>[,<site>…]' or '<token> *'")
    public static let shutdownDelay = OptionSpec(
        "shutdown-delay", .double, default: "0", "Seconds /health/ready answers 503 after SIGTERM before fi-server stops accepting")
    public static let logLevel = WorkerOptions.logLevel
    public static let logFormat = WorkerOptions.logFormat
    public static let otlpEndpoint = WorkerOptions.otlpEndpoint
    public static let otlpProtocol = WorkerOptions.otlpProtocol
    // Embedded mode's corpus segments, as fi-worker's.
    public static let segmentMaxBytes = WorkerOptions.segmentMaxBytes
    public static let segmentMaxAge = WorkerOptions.segmentMaxAge
    public static let retention = WorkerOptions.retention

    /// Every setting, in `--help` order.
    public static let specs: [OptionSpec] = [
        host, port, redisURL, redisCluster, redisTLSCA, redisTLSCert, redisTLSKey, redisMinReplicas, redisReplicaTimeout, partitions, storage, maxBodyBytes, maxBacklog, apiTokensFile,
        shutdownDelay, logLevel, logFormat, otlpEndpoint, otlpProtocol, segmentMaxBytes, segmentMaxAge, retention,
    ]

    /// The settings the resolved options describe, checked.
    /// - Throws: ``OptionError`` naming the setting and the source of a bad value.
    public static func settings(from options: ResolvedOptions) throws(OptionError) -> (ServerSettings, WorkerOptions.LogSettings) {
        let logging = try WorkerOptions.LogSettings(options)
        var settings = ServerSettings()
        settings.host = options.string(host.name)!
        settings.port = options.int(port.name)!
        try options.check(port.name, (0...65535).contains(settings.port), "must be 0…65535")
        settings.partitions = options.int(partitions.name)!
        try options.check(partitions.name, (1...1_048_576).contains(settings.partitions), "must be 1…1048576")
        settings.storageRoot = options.string(storage.name)!
        settings.maxBodyBytes = options.int(maxBodyBytes.name)!
        try options.check(maxBodyBytes.name, settings.maxBodyBytes >= 2, "must be at least 2")
        settings.maxBacklog = options.int(maxBacklog.name)!
        try options.check(maxBacklog.name, settings.maxBacklog >= 0, "must not be negative")
        settings.apiTokensFile = options.string(apiTokensFile.name).flatMap { $0.isEmpty ? nil : $0 }
        settings.shutdownDelay = try WorkerOptions.LogSettings.seconds(options, shutdownDelay.name)
        settings.traces = try WorkerOptions.traces(from: options)
        switch (options.string(redisURL.name), options.string(redisCluster.name)) {
        case (let url?, nil): settings.queue = .redis(url: url)
        case (nil, let cluster?): settings.queue = .cluster(seeds: QueueTarget.seeds(cluster))
        case (nil, nil): settings.queue = nil
        case (_?, _?):
            throw OptionError(
                "give --redis-url or --redis-cluster, not both (--redis-url from \(options[redisURL.name].source), --redis-cluster from \(options[redisCluster.name].source))")
        }
        settings.queue = try WorkerOptions.withTLS(settings.queue, from: options)
        settings.queue = try WorkerOptions.withReplicas(settings.queue, from: options)
        try WorkerOptions.applySegments(from: options, to: &settings.embeddedWorker.store)
        return (settings, logging)
    }
}
