import FICapacity
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// What `fi-server capacity` does: checks its flags, makes a ``CapacityPlan`` or, with
/// `--from-metrics`, a ``LiveCapacity`` from two scrapes, and renders it. The executable only parses.
public enum CapacityCommand {
    /// The flags as given; `nil` means not given (the default applies).
    public struct Flags: Sendable {
        // Plan and live
        public var workers: Int?
        public var serviceTimeMs: Double?
        public var requestsPerSession: Double?
        public var percentile: Double?
        public var targetMs: Double?
        public var json = false
        // Plan only
        public var sessionsPerDay: Double?
        public var eventsPerSession: Double?
        public var workerRPS: Double?
        public var headroom: Double?
        public var peakToAverage: Double?
        public var eventBytes: Double?
        public var partitions: Int?
        public var overhead: Double?
        public var diskGB: Double?
        public var usedGB: Double?
        public var traversals: Int?
        public var ingestMs: Double?
        public var persistMs: Double?
        public var endToEndMs: Double?
        // Live only
        public var fromMetrics: String?
        public var interval: Double?
        public var route: String?

        public init() {}
    }

    /// A reason to stop, in one line. ``isUsage`` tells a bad flag (exit 64) from a failure at run time (exit 1).
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public let isUsage: Bool
    }

    /// The default `--interval` of `--from-metrics`, seconds.
    public static let defaultIntervalSeconds = 10.0

    /// Runs the command and returns what to print.
    /// - Parameters:
    ///   - flags: The parsed flags.
    ///   - sleep: Waits between the two scrapes (tests pass a shorter one).
    /// - Throws: ``Failure`` with a one-line reason.
    public static func run(
        _ flags: Flags,
        sleep: @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) async throws(Failure) -> String {
        if let url = flags.fromMetrics {
            return try await live(flags, url: url, sleep: sleep)
        }
        return try plan(flags)
    }

    // MARK: Plan

    static func plan(_ f: Flags) throws(Failure) -> String {
        let liveOnly: [(String, Bool)] = [("--interval", f.interval != nil), ("--route", f.route != nil)]
        if let given = liveOnly.first(where: { $0.1 }) { throw usage("\(given.0) needs --from-metrics") }

        var i = CapacityPlan.Inputs()
        if let v = f.workers { try int(v, "--workers", 1...1_000_000); i.workers = v }
        if let v = f.workerRPS { try positive(v, "--worker-rps"); i.requestsPerSecondPerWorker = v }
        if let v = f.requestsPerSession { try positive(v, "--requests-per-session"); i.requestsPerSession = v }
        if let v = f.eventsPerSession { try nonNegative(v, "--events-per-session"); i.eventsPerSession = v }
        if let v = f.headroom { try atLeastOne(v, "--headroom"); i.headroomFactor = v }
        if let v = f.sessionsPerDay { try positive(v, "--sessions-per-day"); i.targetSessionsPerDay = v }
        if let v = f.peakToAverage { try atLeastOne(v, "--peak-to-average"); i.peakToAverageRatio = v }
        if let v = f.serviceTimeMs { try positive(v, "--service-time-ms"); i.meanServiceTimeSeconds = v / 1000 }
        if let v = f.percentile { try percent(v, "--percentile"); i.percentile = v / 100 }
        if let v = f.targetMs { try positive(v, "--target-ms"); i.responseTimeTargetSeconds = v / 1000 }
        if let v = f.eventBytes { try positive(v, "--event-bytes"); i.meanEventBytes = v }
        if let v = f.partitions { try int(v, "--partition-count", 1...1_048_576); i.partitions = v }
        if let v = f.overhead { try positive(v, "--overhead"); i.overheadFactor = v }
        if let v = f.diskGB { try positive(v, "--disk-gb"); i.diskCapacityBytes = v * 1e9 }
        if let v = f.usedGB {
            try nonNegative(v, "--used-gb")
            guard v * 1e9 <= i.diskCapacityBytes else {
                throw usage("--used-gb must not exceed --disk-gb (\(Self.number(i.diskCapacityBytes / 1e9))), got \(Self.number(v))")
            }
            i.usedBytes = v * 1e9
        }
        if let v = f.traversals { try int(v, "--traversals", 1...100); i.networkTraversals = v }
        if let v = f.ingestMs { try positive(v, "--ingest-ms"); i.ingestSeconds = v / 1000 }
        if let v = f.persistMs { try positive(v, "--persist-ms"); i.persistSeconds = v / 1000 }
        if (f.ingestMs == nil) != (f.persistMs == nil) { throw usage("give --ingest-ms and --persist-ms together (the latency budget needs both)") }
        if let v = f.endToEndMs { try positive(v, "--end-to-end-ms"); i.endToEndTargetSeconds = v / 1000 }

        let plan: CapacityPlan
        do {
            plan = try CapacityPlan(i)
        } catch {
            throw usage("\(flagNames[error.input] ?? error.input): \(error.message)")
        }
        return try render(plan.jsonData, plan.table, json: f.json)
    }

    /// CapacityError inputs (snake_case) as the flags that set them, for the rare check only the library makes.
    static let flagNames: [String: String] = [
        "workers": "--workers", "requests_per_second_per_worker": "--worker-rps",
        "requests_per_session": "--requests-per-session", "events_per_session": "--events-per-session",
        "headroom_factor": "--headroom", "target_sessions_per_day": "--sessions-per-day",
        "sessions_per_day": "--sessions-per-day", "peak_to_average_ratio": "--peak-to-average",
        "mean_service_time_seconds": "--service-time-ms", "percentile": "--percentile",
        "response_time_target_seconds": "--target-ms", "mean_payload_bytes": "--event-bytes",
        "bytes_per_event": "--event-bytes", "partitions": "--partition-count", "overhead_factor": "--overhead",
        "disk_capacity_bytes": "--disk-gb", "used_bytes": "--used-gb", "traversals": "--traversals",
        "ingest_seconds": "--ingest-ms", "persist_seconds": "--persist-ms",
        "end_to_end_target_seconds": "--end-to-end-ms",
    ]

    // MARK: Live

    static func live(_ f: Flags, url: String, sleep: @Sendable (Duration) async throws -> Void) async throws(Failure) -> String {
        let planOnly: [(String, Bool)] = [
            ("--sessions-per-day", f.sessionsPerDay != nil), ("--events-per-session", f.eventsPerSession != nil),
            ("--worker-rps", f.workerRPS != nil), ("--headroom", f.headroom != nil),
            ("--peak-to-average", f.peakToAverage != nil), ("--event-bytes", f.eventBytes != nil),
            ("--partition-count", f.partitions != nil), ("--overhead", f.overhead != nil), ("--disk-gb", f.diskGB != nil),
            ("--used-gb", f.usedGB != nil), ("--traversals", f.traversals != nil), ("--ingest-ms", f.ingestMs != nil),
            ("--persist-ms", f.persistMs != nil), ("--end-to-end-ms", f.endToEndMs != nil),
        ]
        if let given = planOnly.first(where: { $0.1 }) { throw usage("\(given.0) is a planning input; it has no meaning with --from-metrics") }

        let target = try MetricsURL(url)
        var options = LiveCapacity.Options(
            workers: max(1, ProcessInfo.processInfo.activeProcessorCount),
            workersSource: "this machine's cores; give --workers with the server's cores"
        )
        if let v = f.workers {
            try int(v, "--workers", 1...1_000_000)
            options.workers = v
            options.workersSource = "given"
        }
        if let v = f.serviceTimeMs { try positive(v, "--service-time-ms"); options.meanServiceTimeSeconds = v / 1000 }
        if let v = f.requestsPerSession { try positive(v, "--requests-per-session"); options.requestsPerSession = v }
        if let v = f.percentile { try percent(v, "--percentile"); options.percentile = v / 100 }
        if let v = f.targetMs { try positive(v, "--target-ms"); options.responseTimeTargetSeconds = v / 1000 }
        if let r = f.route {
            guard !r.isEmpty else { throw usage("--route must be a route template, or 'all'") }
            options.route = r == "all" ? nil : r
        }
        let interval = f.interval ?? defaultIntervalSeconds
        try positive(interval, "--interval")
        guard interval <= 3600 else { throw usage("--interval must be at most 3600 seconds, got \(number(interval))") }

        let first = try await scrape(target)
        let start = ContinuousClock.now
        do {
            try await sleep(.nanoseconds(Int64(interval * 1e9)))
        } catch {
            throw Failure(description: "interrupted", isUsage: false)
        }
        let second = try await scrape(target)
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let estimate: LiveCapacity
        do {
            estimate = try LiveCapacity(earlier: first, later: second, intervalSeconds: seconds, options: options)
        } catch {
            throw Failure(description: "\(target.text): \(error.message)", isUsage: false)
        }
        return try render(estimate.jsonData, estimate.table, json: f.json)
    }

    /// An `http://host[:port][/path]` URL; a path other than `/metrics` gets `/metrics` appended.
    struct MetricsURL {
        let host: String
        let port: Int
        let path: String
        var text: String { "http://\(host):\(port)\(path)" }

        init(_ raw: String) throws(Failure) {
            guard let components = URLComponents(string: raw), components.scheme?.lowercased() == "http",
                let host = components.host, !host.isEmpty
            else {
                throw usage("--from-metrics must be an http:// URL of fi-server, e.g. http://127.0.0.1:7001, got '\(raw)'")
            }
            let port = components.port ?? 80
            guard (1...65535).contains(port) else { throw usage("--from-metrics has an invalid port, got '\(raw)'") }
            var path = components.percentEncodedPath
            if !path.hasSuffix("/metrics") { path = (path.hasSuffix("/") ? String(path.dropLast()) : path) + "/metrics" }
            self.host = host
            self.port = port
            self.path = path
        }
    }

    static func scrape(_ url: MetricsURL) async throws(Failure) -> PrometheusExposition {
        let body: String
        do {
            body = try await MetricsFetch.get(host: url.host, port: url.port, path: url.path, timeout: .seconds(10))
        } catch let error as MetricsFetch.Error {
            throw Failure(description: "\(url.text): \(error.message)", isUsage: false)
        } catch {
            throw Failure(description: "\(url.text): \(error)", isUsage: false)
        }
        do {
            return try PrometheusExposition(parsing: body)
        } catch {
            throw Failure(description: "\(url.text): \(error.message)", isUsage: false)
        }
    }

    // MARK: Helpers

    static func render(_ json: () throws -> Data, _ table: () -> String, json asJSON: Bool) throws(Failure) -> String {
        guard asJSON else { return table() }
        do {
            return String(decoding: try json(), as: UTF8.self) + "\n"
        } catch {
            throw Failure(description: "cannot encode the result: \(error)", isUsage: false)
        }
    }

    static func usage(_ message: String) -> Failure { Failure(description: message, isUsage: true) }

    static func number(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : String(x)
    }

    static func finite(_ v: Double, _ flag: String) throws(Failure) {
        guard v.isFinite else { throw usage("\(flag) must be a finite number, got \(v)") }
    }

    static func positive(_ v: Double, _ flag: String) throws(Failure) {
        try finite(v, flag)
        guard v > 0 else { throw usage("\(flag) must be greater than zero, got \(number(v))") }
    }

    static func nonNegative(_ v: Double, _ flag: String) throws(Failure) {
        try finite(v, flag)
        guard v >= 0 else { throw usage("\(flag) must not be negative, got \(number(v))") }
    }

    static func atLeastOne(_ v: Double, _ flag: String) throws(Failure) {
        try finite(v, flag)
        guard v >= 1 else { throw usage("\(flag) must be at least 1, got \(number(v))") }
    }

    static func percent(_ v: Double, _ flag: String) throws(Failure) {
        try finite(v, flag)
        guard v > 0, v < 100 else { throw usage("\(flag) must be between 0 and 100 (exclusive), got \(number(v))") }
    }

    static func int(_ v: Int, _ flag: String, _ range: ClosedRange<Int>) throws(Failure) {
        guard range.contains(v) else { throw usage("\(flag) must be \(range.lowerBound)…\(range.upperBound), got \(v)") }
    }
}

/// A minimal HTTP/1.1 `GET` over SwiftNIO (already fi-server's runtime), for scraping `/metrics`.
enum MetricsFetch {
    struct Error: Swift.Error {
        let message: String
    }

    /// Largest body read, bytes.
    static let maxBodyBytes = 16 << 20

    static func get(host: String, port: Int, path: String, timeout: Duration) async throws -> String {
        try await withThrowingTaskGroup(of: String.self) { group in
            group.addTask { try await fetch(host: host, port: port, path: path, timeout: timeout) }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw Error(message: "no answer within \(timeout)")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    private static func fetch(host: String, port: Int, path: String, timeout: Duration) async throws -> String {
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            let seconds = timeout.components.seconds
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(max(1, seconds)))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw Error(message: "cannot connect: \(error)")
        }
        return try await channel.executeThenClose { inbound, outbound in
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: "\(host):\(port)")
            headers.add(name: "Accept", value: "text/plain")
            headers.add(name: "Connection", value: "close")
            try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)))
            try await outbound.write(.end(nil))
            var status: HTTPResponseStatus?
            var body = ByteBuffer()
            loop: for try await part in inbound {
                switch part {
                case .head(let head):
                    status = head.status
                case .body(var chunk):
                    guard body.readableBytes + chunk.readableBytes <= maxBodyBytes else {
                        throw Error(message: "the body is larger than \(maxBodyBytes) bytes")
                    }
                    body.writeBuffer(&chunk)
                case .end:
                    break loop
                }
            }
            guard let status else { throw Error(message: "the connection closed before a response") }
            guard status == .ok else { throw Error(message: "GET answered \(status.code) \(status.reasonPhrase)") }
            return String(buffer: body)
        }
    }
}
