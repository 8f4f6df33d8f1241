import FIPartitioning
import FIQueue
import FIStorage
import Logging

/// fi-worker's settings (Docs/contract.md §4): each from its flag, `FI_<FLAG>`,
/// the `--config` file, or its default, in that order.
public enum WorkerOptions {
    /// fi-worker's HTTP port by default: fi-server's 7001 plus one, so a node
    /// running both has them side by side. A second worker on the same host
    /// needs its own (`--http-port`), or `0` to turn the endpoint off.
    public static let defaultHTTPPort = 7002

    public static let redisURL = OptionSpec(
        "redis-url", .string, default: "redis://127.0.0.1:6379", "Redis URL, redis://[:password@]host[:port][/db], or rediss://… for TLS",
        legacyEnvironment: ["REDIS_URL"], secret: true)
    public static let redisCluster = OptionSpec("redis-cluster", .string, default: nil, "Redis Cluster seed nodes, host:port,host:port,…")
    // TLS to Redis (issue 17), shared with fi-server.
    public static let redisTLSCA = OptionSpec(
        "redis-tls-ca", .string, default: nil, "PEM CA certificates to verify Redis with (with a rediss:// URL or --redis-cluster; unset: the system's)")
    public static let redisTLSCert = OptionSpec(
        "redis-tls-cert", .string, default: nil, "PEM client certificate for a Redis that verifies clients (with --redis-tls-key)")
    public static let redisTLSKey = OptionSpec("redis-tls-key", .string, default: nil, "PEM private key of --redis-tls-cert")
    // Replica acknowledgement (issue 18), shared with fi-server.
    public static let redisMinReplicas = OptionSpec(
        "redis-min-replicas", .int, default: "0",
        "Replicas that must acknowledge every append and lease write (WAIT) before it counts; 0: replication stays asynchronous")
    public static let redisReplicaTimeout = OptionSpec(
        "redis-replica-timeout", .double, default: "1", "Seconds a write waits for --redis-min-replicas acknowledgements before it fails (fi-server: 503)")
    public static let all = OptionSpec("all", .bool, default: "false", "Consume every fi:events:* stream, discovered as they appear")
    public static let storage = OptionSpec("storage", .string, default: "./storage", "Storage root; partition k is written to <storage>/<k>/")
    public static let group = OptionSpec("group", .string, default: "fi-workers", "Consumer group")
    public static let consumer = OptionSpec(
        "consumer", .string, default: "fi-worker-<hostname>", "Consumer name, stable across restarts on one host")
    public static let batchSize = OptionSpec("batch-size", .int, default: "256", "Entries per batch")
    public static let claimIdleMs = OptionSpec(
        "claim-idle-ms", .int, default: "30000", "Claim other consumers' pending entries once a partition has been held this long (ms)")
    public static let leaseTTLMs = OptionSpec("lease-ttl-ms", .int, default: "10000", "Partition lease time to live (ms); renewed every third of it")
    public static let maxDeliveries = OptionSpec(
        "max-deliveries", .int, default: "5", "Entries delivered more than this many times go to fi:dead:<partition>")
    public static let httpHost = OptionSpec("http-host", .string, default: "127.0.0.1", "Address of the HTTP endpoint (/metrics, /health/live, /health/ready)")
    public static let httpPort = OptionSpec(
        "http-port", .int, default: String(defaultHTTPPort), "Port of the HTTP endpoint; 0 turns it off")
    public static let shutdownDelay = OptionSpec(
        "shutdown-delay", .double, default: "0", "Seconds /health/ready answers 503 after SIGTERM before the worker stops")
    public static let logLevel = OptionSpec(
        "log-level", .string, default: "info", "Log level: trace, debug, info, notice, warning, error, critical")
    public static let logFormat = OptionSpec("log-format", .string, default: "text", "Log format: text, or json (one object per line)")
    public static let otlpEndpoint = OptionSpec(
        "otlp-endpoint", .string, default: nil, "Export traces over OTLP/HTTP to this endpoint, e.g. http://collector:4318 (off when unset)")
    public static let otlpProtocol = OptionSpec("otlp-protocol", .string, default: "http/protobuf", "OTLP encoding: http/protobuf or http/json")
    public static let segmentMaxBytes = OptionSpec(
        "segment-max-bytes", .string, default: "1GiB", "Close a partition's corpus segment at the first batch boundary once its file is this large (e.g. 512MiB; 0: no limit)")
    public static let segmentMaxAge = OptionSpec(
        "segment-max-age", .string, default: "24h", "… or this old (e.g. 6h, 7d; 0: no limit)")
    public static let retention = OptionSpec(
        "retention", .string, default: "off", "Delete closed segments whose newest event is older than this (e.g. 90d, 5y; off: keep everything)")

    /// Every setting, in `--help` order.
    public static let specs: [OptionSpec] = [
        redisURL, redisCluster, redisTLSCA, redisTLSCert, redisTLSKey, redisMinReplicas, redisReplicaTimeout, all, storage, group, consumer, batchSize, claimIdleMs, leaseTTLMs,
        maxDeliveries, httpHost, httpPort, shutdownDelay, logLevel, logFormat, otlpEndpoint, otlpProtocol, segmentMaxBytes, segmentMaxAge,
        retention,
    ]

    /// The run-time defaults: the consumer name carries this host's name.
    public static var computedDefaults: [String: String] { [consumer.name: WorkerConfiguration.defaultConsumerName()] }

    /// The settings the resolved options describe, checked.
    /// - Parameters:
    ///   - partitions: The partition keys given as arguments.
    ///   - requirePartitions: Whether partition keys or `--all` must be given (not for `config`).
    /// - Throws: ``OptionError`` naming the setting and the source of a bad value.
    public static func settings(
        from options: ResolvedOptions, partitions: [String], requirePartitions: Bool = true
    ) throws(OptionError) -> (WorkerApplication.Settings, LogSettings) {
        let logging = try LogSettings(options)
        let discoverAll = options.bool(all.name)
        if requirePartitions || (discoverAll && !partitions.isEmpty) {
            try options.check(all.name, discoverAll != !partitions.isEmpty, partitions.isEmpty ? "give partition keys or --all" : "give partition keys or --all, not both")
        }
        var worker = WorkerConfiguration()
        do {
            worker.partitions = try partitions.map(WorkerConfiguration.partitionKey)
        } catch {
            throw OptionError("partition key: \(error)")
        }
        worker.discoverAll = discoverAll
        worker.storageRoot = options.string(storage.name)!
        worker.group = options.string(group.name)!
        if let name = options.string(consumer.name) { worker.consumer = name }
        let batch = options.int(batchSize.name)!
        try options.check(batchSize.name, (1...100_000).contains(batch), "must be 1…100000")
        worker.batchSize = batch
        let claim = options.int(claimIdleMs.name)!
        try options.check(claimIdleMs.name, claim >= 0, "must not be negative")
        worker.claimIdle = .milliseconds(claim)
        let ttl = options.int(leaseTTLMs.name)!
        try options.check(leaseTTLMs.name, ttl >= 300, "must be at least 300")
        worker.leaseTTL = .milliseconds(ttl)
        let deliveries = options.int(maxDeliveries.name)!
        try options.check(maxDeliveries.name, deliveries >= 1, "must be at least 1")
        worker.maxDeliveries = deliveries
        try applySegments(from: options, to: &worker.store)

        var settings = WorkerApplication.Settings(queue: try withReplicas(try queueTarget(from: options), from: options)!, worker: worker)
        settings.httpHost = options.string(httpHost.name)!
        let port = options.int(httpPort.name)!
        try options.check(httpPort.name, (0...65535).contains(port), "must be 0…65535")
        settings.httpPort = port
        settings.shutdownDelay = try LogSettings.seconds(options, shutdownDelay.name)
        settings.traces = try traces(from: options)
        return (settings, logging)
    }

    /// The trace export, checked.
    public static func traces(from options: ResolvedOptions) throws(OptionError) -> Traces.Settings {
        var traces = Traces.Settings(endpoint: options.string(otlpEndpoint.name).flatMap { $0.isEmpty ? nil : $0 })
        traces.protocol = options.string(otlpProtocol.name)!
        try options.check(otlpProtocol.name, ["http/protobuf", "http/json"].contains(traces.protocol), "http/protobuf or http/json")
        if let endpoint = traces.endpoint {
            try options.check(otlpEndpoint.name, endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://"), "an http:// or https:// URL")
        }
        return traces
    }

    /// The queue: `--redis-url`, or `--redis-cluster`, or Redis on localhost.
    public static func queueTarget(from options: ResolvedOptions) throws(OptionError) -> QueueTarget {
        // --redis-url has a default; a --redis-cluster given anywhere beats only that default.
        let url = options[redisURL.name].source == .defaultValue ? nil : options.string(redisURL.name)
        let target: QueueTarget
        switch (url, options.string(redisCluster.name)) {
        case (let url?, nil): target = .redis(url: url)
        case (nil, let cluster?): target = .cluster(seeds: QueueTarget.seeds(cluster))
        case (nil, nil): target = .redis(url: options.string(redisURL.name) ?? "redis://127.0.0.1:6379")
        case (_?, _?):
            throw OptionError(
                "give --redis-url or --redis-cluster, not both (--redis-url from \(options[redisURL.name].source), --redis-cluster from \(options[redisCluster.name].source))")
        }
        return try withTLS(target, from: options) ?? target
    }

    /// `target` with the TLS settings (`--redis-tls-ca`, `--redis-tls-cert`, `--redis-tls-key`), checked:
    /// they need a `rediss://` URL or `--redis-cluster`, and a certificate goes with its key.
    public static func withTLS(_ target: QueueTarget?, from options: ResolvedOptions) throws(OptionError) -> QueueTarget? {
        let (ca, cert, key) = (
            options.string(redisTLSCA.name).flatMap { $0.isEmpty ? nil : $0 },
            options.string(redisTLSCert.name).flatMap { $0.isEmpty ? nil : $0 },
            options.string(redisTLSKey.name).flatMap { $0.isEmpty ? nil : $0 }
        )
        let given = [ca.map { _ in redisTLSCA.name }, cert.map { _ in redisTLSCert.name }, key.map { _ in redisTLSKey.name }].compactMap { $0 }
        guard let first = given.first else { return target }
        if (cert == nil) != (key == nil) {
            try options.check(cert == nil ? redisTLSKey.name : redisTLSCert.name, false, "give --redis-tls-cert and --redis-tls-key together")
        }
        guard var target, !target.isInMemory else {
            try options.check(first, false, "needs --redis-url rediss://… or --redis-cluster")
            return target
        }
        if let url = target.redisURL, !url.hasPrefix("rediss://") {
            try options.check(first, false, "needs a rediss:// URL (--redis-url is redis://)")
        }
        target.tls = RedisEventQueue.TLS(caFile: ca, certificateFile: cert, privateKeyFile: key)
        return target
    }

    /// `--segment-max-bytes`, `--segment-max-age` and `--retention` into `store`, checked.
    public static func applySegments(from options: ResolvedOptions, to store: inout CorpusWriter.Options) throws(OptionError) {
        var result = store
        for (spec, apply) in [
            (segmentMaxBytes, { (text: String) throws in result.segmentMaxBytes = try CorpusTool.parseBytes(text, flag: "--segment-max-bytes") }),
            (segmentMaxAge, { result.segmentMaxAge = try CorpusTool.parseAge($0, flag: "--segment-max-age") }),
            (retention, { result.retention = try CorpusTool.parseAge($0, flag: "--retention") }),
        ] {
            do { try apply(options.string(spec.name)!) } catch {
                throw OptionError(entry: options[spec.name], problem: CorpusTool.valueHint(spec.name))
            }
        }
        store = result
    }

    /// `target` with the replica acknowledgement (`--redis-min-replicas`, `--redis-replica-timeout`),
    /// checked: more than zero replicas needs Redis.
    public static func withReplicas(_ target: QueueTarget?, from options: ResolvedOptions) throws(OptionError) -> QueueTarget? {
        let replicas = options.int(redisMinReplicas.name)!
        try options.check(redisMinReplicas.name, (0...16).contains(replicas), "must be 0…16")
        let seconds = options.double(redisReplicaTimeout.name)!
        try options.check(redisReplicaTimeout.name, seconds >= 0.001 && seconds <= 60, "must be 0.001…60 seconds")
        guard replicas > 0 else { return target }
        guard var target, !target.isInMemory else {
            try options.check(redisMinReplicas.name, false, "needs --redis-url or --redis-cluster (the embedded queue has no replicas)")
            return target
        }
        target.minReplicas = replicas
        target.replicaTimeout = .milliseconds(Int64((seconds * 1000).rounded()))
        return target
    }

    /// The log level and format, checked.
    public struct LogSettings: Sendable {
        public let level: Logger.Level
        public let format: Observability.LogFormat

        public init(_ options: ResolvedOptions) throws(OptionError) {
            let levelText = options.string(WorkerOptions.logLevel.name)!
            guard let level = Logger.Level(rawValue: levelText.lowercased()) else {
                throw OptionError(entry: options[WorkerOptions.logLevel.name], problem: "one of trace, debug, info, notice, warning, error, critical")
            }
            let formatText = options.string(WorkerOptions.logFormat.name)!
            guard let format = Observability.LogFormat(rawValue: formatText.lowercased()) else {
                throw OptionError(entry: options[WorkerOptions.logFormat.name], problem: "text or json")
            }
            self.level = level
            self.format = format
        }

        public static func seconds(_ options: ResolvedOptions, _ name: String) throws(OptionError) -> Duration {
            let value = options.double(name)!
            try options.check(name, value >= 0 && value <= 3600, "must be 0…3600 seconds")
            return .milliseconds(Int64(value * 1000))
        }
    }
}
