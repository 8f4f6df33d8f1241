import FIBuildInfo
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Synchronization

/// Logs, metrics and probes for the executables: call the bootstraps once, from `main`.
public enum Observability {
    /// How log records are written.
    public enum LogFormat: String, Sendable, CaseIterable {
        /// `2026-12-06T04:40:14+0000 info fi-worker: fi.partition=site_a [FIWorkerKit] partition opened`
        case text
        /// One JSON object per line: `time`, `level`, `label`, `message`, `metadata`, `source`.
        case json
    }

    /// Sends logs to stderr at `level` and above, one line per record. Control
    /// characters are escaped the same way in both formats (``OneLineLogHandler``).
    public static func bootstrapLogging(level: Logger.Level, format: LogFormat = .text) {
        LoggingSystem.bootstrap { label in
            // OneLineLogHandler keeps logger metadata itself and hands it over only
            // when a record is written: StreamLogHandler would re-format it on every
            // `logger[metadataKey:] = …`, which Hummingbird does once per request.
            switch format {
            case .text:
                var output = StreamLogHandler.standardError(label: label)
                output.logLevel = level
                return OneLineLogHandler(output)
            case .json:
                var output = JSONLogHandler(label: label)
                output.logLevel = level
                return OneLineLogHandler(output)
            }
        }
    }

    /// Bootstraps swift-metrics with a Prometheus registry, and publishes
    /// `fi_build_info{version,commit} 1`. Call once, from an executable.
    public static func bootstrapPrometheus() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        ]
        MetricsSystem.bootstrap(factory)
        registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: "fi_build_info", unitName: "", helpText: "The running build: always 1."),
            labels: [("version", BuildInfo.version), ("commit", BuildInfo.commit)]
        ).set(1.0)
        return registry
    }

    /// The registry's Prometheus text, with the process series brought up to date first.
    static func metricsResponse(_ registry: PrometheusCollectorRegistry, _ process: ProcessMetrics) -> Response {
        process.update()
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer()))
        )
    }

    /// Adds `GET /metrics` (with the usual `process_*` series), `GET /health/live`
    /// and `GET /health/ready` to a router.
    public static func addRoutes(to router: Router<some RequestContext>, registry: PrometheusCollectorRegistry, readiness: Readiness) {
        let process = ProcessMetrics(registry: registry)
        router.get("/metrics") { _, _ in metricsResponse(registry, process) }
        router.get("/health/live") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status":"live"}"#)))
        }
        router.get("/health/ready") { _, _ in await readiness.response() }
    }

    /// fi-worker's HTTP endpoint: metrics and probes.
    public static func endpoint(
        registry: PrometheusCollectorRegistry, readiness: Readiness, host: String, port: Int, logger: Logger
    ) -> some Service {
        let router = Router()
        addRoutes(to: router, registry: registry, readiness: readiness)
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "fi-worker"),
            logger: logger
        )
    }
}

/// Whether this process should get traffic (`/health/ready`): it is not
/// shutting down and every check passes (the queue answers, storage is usable).
public final class Readiness: Sendable {
    /// A named check: `nil` when fine, else the reason.
    public typealias Check = @Sendable () async -> String?

    private let draining = Atomic<Bool>(false)
    private let checks: [(name: String, run: Check)]

    public init(checks: [(name: String, run: Check)]) {
        self.checks = checks
    }

    /// Set once shutdown begins: from then on ready answers 503.
    public var isDraining: Bool { draining.load(ordering: .relaxed) }

    func startDraining() { draining.store(true, ordering: .relaxed) }

    /// 200 `{"status":"ready"}`, or 503 `{"status":"unavailable","reasons":{…}}` with `Retry-After`.
    func response() async -> Response {
        var reasons: [(String, String)] = []
        if isDraining { reasons.append(("shutdown", "shutting down")) }
        for check in checks {
            if let reason = await check.run() { reasons.append((check.name, reason)) }
        }
        var body = #"{"status":"\#(reasons.isEmpty ? "ready" : "unavailable")""#
        if !reasons.isEmpty {
            body += #","reasons":{"#
            body += reasons.map { name, reason in
                var line = ""
                JSONLogHandler.appendString(name, to: &line)
                line += ":"
                JSONLogHandler.appendString(reason, to: &line)
                return line
            }.joined(separator: ",")
            body += "}"
        }
        body += "}"
        var headers: HTTPFields = [.contentType: "application/json"]
        if !reasons.isEmpty { headers[.retryAfter] = "1" }
        return Response(status: reasons.isEmpty ? .ok : .serviceUnavailable, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// A check that a file can be created in `directory` (created if missing) when
    /// `writable`; else that it is readable if it exists (a reader with nothing to read yet is fine).
    public static func storage(_ directory: String, writable: Bool) -> Check {
        {
            let manager = FileManager.default
            if !manager.fileExists(atPath: directory) {
                guard writable else { return nil }
                do {
                    try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
                } catch {
                    return "cannot create storage \(directory)"
                }
            }
            guard writable else {
                return manager.isReadableFile(atPath: directory) ? nil : "storage \(directory) is not readable"
            }
            // A few KiB, not an empty file: on a full volume creating an empty file still works.
            let probe = directory + "/.fi-ready-\(getpid())"
            defer { try? manager.removeItem(atPath: probe) }
            do {
                try Data(count: 4096).write(to: URL(fileURLWithPath: probe))
            } catch {
                return "storage \(directory) is not writable (full, read-only or missing permissions)"
            }
            return nil
        }
    }
}

/// The last service of a ServiceGroup, so the first one told to stop: on
/// SIGTERM it turns `/health/ready` to 503, waits `delay` for the balancers to
/// see it, and only then lets the group stop the services before it (the HTTP
/// server, the workers).
public struct DrainService: Service {
    let readiness: Readiness
    let delay: Duration
    let logger: Logger

    public init(readiness: Readiness, delay: Duration, logger: Logger) {
        self.readiness = readiness
        self.delay = delay
        self.logger = logger
    }

    public func run() async throws {
        // Wait for the graceful shutdown (or cancellation).
        try? await gracefulShutdown()
        readiness.startDraining()
        logger.info("shutting down: /health/ready answers 503", metadata: ["fi.shutdown_delay": "\(delay)"])
        if delay > .zero { try? await Task.sleep(for: delay) }
    }
}

/// The usual `process_*` series, read from `/proc/self` at each scrape.
final class ProcessMetrics: Sendable {
    private let residentMemory: Prometheus.Gauge
    private let virtualMemory: Prometheus.Gauge
    private let openFDs: Prometheus.Gauge
    private let maxFDs: Prometheus.Gauge
    private let startTime: Prometheus.Gauge
    private let cpuSeconds: Prometheus.Counter
    private let cpuSecondsSeen = Mutex<Double>(0)
    private let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    private let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))

    init(registry: PrometheusCollectorRegistry) {
        residentMemory = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "process_resident_memory_bytes", unitName: "", helpText: "Resident memory size in bytes."))
        virtualMemory = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "process_virtual_memory_bytes", unitName: "", helpText: "Virtual memory size in bytes."))
        openFDs = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "process_open_fds", unitName: "", helpText: "Number of open file descriptors."))
        maxFDs = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "process_max_fds", unitName: "", helpText: "Maximum number of open file descriptors."))
        startTime = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "process_start_time_seconds", unitName: "", helpText: "Start time of the process since the Unix epoch in seconds."))
        cpuSeconds = registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "process_cpu_seconds_total", unitName: "", helpText: "Total user and system CPU time spent in seconds."))
        startTime.set(Self.startTimeSeconds(ticksPerSecond: ticksPerSecond) ?? 0)
        update()
    }

    func update() {
        if let stat = Self.statFields() {
            // Fields after the command: state is [0], utime [11], stime [12], vsize [20], rss [21].
            let cpu = ((Double(stat[11]) ?? 0) + (Double(stat[12]) ?? 0)) / ticksPerSecond
            cpuSecondsSeen.withLock { seen in
                if cpu > seen {
                    cpuSeconds.increment(by: cpu - seen)
                    seen = cpu
                }
            }
            virtualMemory.set(Double(stat[20]) ?? 0)
            residentMemory.set((Double(stat[21]) ?? 0) * pageSize)
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        openFDs.set(Double(max(0, fds - 1)))  // not counting the descriptor that lists them
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { maxFDs.set(Double(limit.rlim_cur)) }
    }

    /// `/proc/self/stat` after the `(command)` field, split on spaces.
    private static func statFields() -> [Substring]? {
        guard let text = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 21 ? fields : nil
    }

    private static func startTimeSeconds(ticksPerSecond: Double) -> Double? {
        guard let fields = statFields(), let started = Double(fields[19]),
              let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
              let boot = Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) else { return nil }
        return boot + started / ticksPerSecond
    }
}
