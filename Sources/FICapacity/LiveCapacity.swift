import Foundation

/// The live capacity estimate of a running fi-server, from two `/metrics` snapshots: what it saw
/// (``ObservedLoad``) and, once a service time is known, the M/M/c capacity and headroom
/// (``MeasuredCapacity``).
///
/// `fi-server capacity --from-metrics URL` (two scrapes some seconds apart) and `GET /capacity`
/// (the server's own registry, against a snapshot about ``MetricsHistory/windowSeconds`` old)
/// both print this value.
///
/// The service time is, in order: the one given; else the mean latency of ``Options/route`` over the
/// interval — an upper bound, since it includes any queueing, so the capacity is a conservative
/// estimate; else the mean latency since the server started; else unknown, and only the observed
/// load is reported.
public struct LiveCapacity: Sendable, Hashable, Encodable {
    /// How to read the snapshots and model the server.
    public struct Options: Sendable, Hashable {
        /// Requests served concurrently: M/M/c servers. For fi-server, its event-loop threads (one per core).
        public var workers: Int
        /// Where ``workers`` came from, in words (printed with the estimate).
        public var workersSource: String
        /// The mean service time per request, seconds; `nil` estimates it from the latency histogram.
        public var meanServiceTimeSeconds: Double? = nil
        /// Requests per session, to express rates as sessions/day. Default 20 (10 messages + 10 events).
        public var requestsPerSession: Double = 20
        /// The response-time percentile constrained. Default 0.95.
        public var percentile: Double = 0.95
        /// Its target, seconds. Default 0.050.
        public var responseTimeTargetSeconds: Double = 0.050
        /// The route counted, or `nil` for every route. Default: the events route.
        public var route: String? = LiveCapacity.eventsRoute

        /// Options with the defaults above.
        /// - Parameters:
        ///   - workers: Requests served concurrently.
        ///   - workersSource: Where that number came from, in words.
        public init(workers: Int, workersSource: String) {
            self.workers = workers
            self.workersSource = workersSource
        }

        /// Checks every option.
        /// - Throws: ``CapacityError`` naming the first invalid option.
        public func validate() throws(CapacityError) {
            try Check.positive(workers, "workers")
            if let s = meanServiceTimeSeconds { try Check.positive(s, "mean_service_time_seconds") }
            try Check.positive(requestsPerSession, "requests_per_session")
            try Check.openUnit(percentile, "percentile")
            try Check.positive(responseTimeTargetSeconds, "response_time_target_seconds")
        }
    }

    /// fi-server's events route template, the ingestion path: `/consultations/{consultation_id}/events`.
    public static let eventsRoute = "/consultations/{consultation_id}/events"

    /// The route counted, or `nil` for every route.
    public let route: String?
    /// Workers (M/M/c servers) assumed.
    public let workers: Int
    /// Where ``workers`` came from.
    public let workersSource: String
    /// The service time used, seconds (`nil` when none is known yet).
    public let meanServiceTimeSeconds: Double?
    /// Where ``meanServiceTimeSeconds`` came from.
    public let serviceTimeSource: String
    /// The load between the snapshots.
    public let observed: ObservedLoad
    /// Capacity and headroom by the M/M/c model (`nil` when no service time is known).
    public let capacity: MeasuredCapacity?
    /// Warnings in words.
    public let notes: [String]

    /// Estimates from two snapshots.
    /// - Parameters:
    ///   - earlier: The first snapshot, or `nil` for an empty one (a server that had served nothing).
    ///   - later: The second snapshot.
    ///   - intervalSeconds: Seconds between them, > 0.
    ///   - options: Workers, service time, targets and route.
    ///   - requireRequestMetric: Throw when `later` has no `fi_http_requests_total` (is it an fi-server?);
    ///     when `false`, a snapshot without it counts as a server that has served nothing yet.
    /// - Throws: ``CapacityError`` for an invalid option or interval, or a scrape that is not fi-server's.
    public init(
        earlier: PrometheusExposition?,
        later: PrometheusExposition,
        intervalSeconds: Double,
        options: Options,
        requireRequestMetric: Bool = true
    ) throws(CapacityError) {
        try options.validate()
        func metrics(_ e: PrometheusExposition?) throws(CapacityError) -> ServiceMetrics {
            guard let e else { return ServiceMetrics.empty }
            if !requireRequestMetric && e.samples(named: ServiceMetrics.requestsTotalName).isEmpty {
                return ServiceMetrics.empty
            }
            return try ServiceMetrics(exposition: e, route: options.route)
        }
        let before = try metrics(earlier)
        let after = try metrics(later)
        let observed = try ObservedLoad(from: before, to: after, intervalSeconds: intervalSeconds)
        let routeName = options.route ?? "all routes"

        var notes: [String] = []
        var service: Double?
        let source: String
        if let given = options.meanServiceTimeSeconds {
            service = given
            source = "given"
        } else if let mean = observed.meanLatencySeconds, mean > 0 {
            service = mean
            source = "mean latency of \(routeName) over the interval (an upper bound: includes queueing)"
        } else if after.latencyCount > 0, after.latencySumSeconds > 0 {
            service = after.latencySumSeconds / after.latencyCount
            source = "mean latency of \(routeName) since the server started (nothing in the interval)"
        } else {
            source = "unknown: no request on \(routeName) yet"
            notes.append("no service time is known yet: send traffic or give the mean service time")
        }

        var capacity: MeasuredCapacity?
        if let service {
            capacity = try MeasuredCapacity(
                observed: observed,
                workers: options.workers,
                meanServiceTimeSeconds: service,
                requestsPerSession: options.requestsPerSession,
                percentile: options.percentile,
                responseTimeTargetSeconds: options.responseTimeTargetSeconds
            )
            if let c = capacity, c.utilisation >= 1 {
                notes.append("the observed load exceeds the modelled capacity: the service time is over-estimated or the server is saturated")
            }
            if let c = capacity, c.maxRequestsPerSecondAtTarget == nil {
                notes.append("no load meets the p\(Format.number(options.percentile * 100)) target with this service time")
            }
        }
        if observed.serverErrorsPerSecond > 0 { notes.append("the server answered 5xx in the interval") }
        if observed.rejectedPerSecond > 0 { notes.append("the server answered 429 (backlog above --max-backlog) in the interval") }

        self.route = options.route
        self.workers = options.workers
        self.workersSource = options.workersSource
        self.meanServiceTimeSeconds = service
        self.serviceTimeSource = source
        self.observed = observed
        self.capacity = capacity
        self.notes = notes
    }

    /// The estimate as JSON: snake_case keys, sorted, pretty-printed; every field name carries its unit.
    /// - Throws: An `EncodingError` (not expected: every number is finite).
    public func jsonData() throws -> Data { try Format.json(self) }

    private enum CodingKeys: String, CodingKey {
        case route, workers, workersSource, meanServiceTimeSeconds, serviceTimeSource, observed, capacity, notes
    }

    /// ``capacity`` without its copy of ``observed``.
    private struct CapacityFields: Encodable {
        let c: MeasuredCapacity
        enum CodingKeys: String, CodingKey {
            case percentile, responseTimeTargetSeconds, requestsPerSession, observedSessionsPerDay, utilisation
            case maxRequestsPerSecondAtTarget, maxSessionsPerDayAtTarget, headroomFactor, modelResponseTimeSeconds
        }
        func encode(to encoder: any Encoder) throws {
            var k = encoder.container(keyedBy: CodingKeys.self)
            try k.encode(c.percentile, forKey: .percentile)
            try k.encode(c.responseTimeTargetSeconds, forKey: .responseTimeTargetSeconds)
            try k.encode(c.requestsPerSession, forKey: .requestsPerSession)
            try k.encode(c.observedSessionsPerDay, forKey: .observedSessionsPerDay)
            try k.encode(c.utilisation, forKey: .utilisation)
            try k.encode(c.maxRequestsPerSecondAtTarget, forKey: .maxRequestsPerSecondAtTarget)
            try k.encode(c.maxSessionsPerDayAtTarget, forKey: .maxSessionsPerDayAtTarget)
            try k.encode(c.headroomFactor, forKey: .headroomFactor)
            try k.encode(c.modelResponseTimeSeconds, forKey: .modelResponseTimeSeconds)
        }
    }

    /// Encodes every field; absent values are `null`, and `capacity` does not repeat `observed`.
    public func encode(to encoder: any Encoder) throws {
        var k = encoder.container(keyedBy: CodingKeys.self)
        try k.encode(route, forKey: .route)
        try k.encode(workers, forKey: .workers)
        try k.encode(workersSource, forKey: .workersSource)
        try k.encode(meanServiceTimeSeconds, forKey: .meanServiceTimeSeconds)
        try k.encode(serviceTimeSource, forKey: .serviceTimeSource)
        try k.encode(observed, forKey: .observed)
        try k.encode(capacity.map(CapacityFields.init), forKey: .capacity)
        try k.encode(notes, forKey: .notes)
    }

    /// The estimate as a text table of quantity, value and unit.
    public func table() -> String {
        var t = TextTable()
        t.section("Live estimate")
        t.row("route", route ?? "all routes")
        t.row("workers", "\(workers)", "(\(workersSource))")
        t.row("mean service time", meanServiceTimeSeconds.map(Format.ms) ?? "unknown", "ms (\(serviceTimeSource))")
        let head = t.render()
        let body: String
        if let capacity {
            body = capacity.table()
        } else {
            var o = TextTable()
            let l = observed
            o.section("Observed over \(Format.number(l.intervalSeconds, decimals: 1)) s")
            o.row("request rate", Format.number(l.requestsPerSecond, decimals: 2), "requests/s")
            o.row("events accepted", Format.number(l.eventsAcceptedPerSecond, decimals: 2), "events/s")
            o.row("backlog, all partitions", Format.number(l.totalBacklogEvents), "events")
            body = o.render()
        }
        return head + "\n" + body + Format.notes(notes)
    }
}

extension ServiceMetrics {
    /// A server that has served nothing: no requests, no latencies, no events, no backlog.
    public static let empty = ServiceMetrics(
        requests: [], latencyBuckets: [], latencySumSeconds: 0, latencyCount: 0,
        eventsAcceptedByPartition: [:], backlogByPartition: [:]
    )

    private init(
        requests: [RequestCount], latencyBuckets: [Bucket], latencySumSeconds: Double, latencyCount: Double,
        eventsAcceptedByPartition: [String: Double], backlogByPartition: [String: Double]
    ) {
        self.requests = requests
        self.latencyBuckets = latencyBuckets
        self.latencySumSeconds = latencySumSeconds
        self.latencyCount = latencyCount
        self.eventsAcceptedByPartition = eventsAcceptedByPartition
        self.backlogByPartition = backlogByPartition
    }
}

/// Timed `/metrics` snapshots to difference against, for an estimate over a recent window.
///
/// ``record(_:at:)`` stores a new snapshot and returns the one to compare it with: the newest that is
/// at least ``windowSeconds`` old, or else the oldest kept (at first, the start-up snapshot). Older
/// snapshots are dropped, so at most a window's worth (plus one) is kept.
public struct MetricsHistory: Sendable {
    /// The snapshot wanted as the baseline is about this old, seconds.
    public let windowSeconds: Double
    private var snapshots: [(time: Double, exposition: PrometheusExposition?)]
    /// A new snapshot closer than this to the one before the last replaces the last, seconds, so
    /// frequent requests keep about 16 snapshots per window.
    private let spacing: Double

    /// A history starting with one snapshot.
    /// - Parameters:
    ///   - windowSeconds: The baseline's wanted age, > 0.
    ///   - start: The first snapshot's time, seconds on any monotonic clock.
    ///   - baseline: The first snapshot, or `nil` for an empty server.
    /// - Throws: ``CapacityError`` if `windowSeconds` is not positive and finite.
    public init(windowSeconds: Double, start: Double, baseline: PrometheusExposition?) throws(CapacityError) {
        try Check.positive(windowSeconds, "window_seconds")
        self.windowSeconds = windowSeconds
        self.spacing = windowSeconds / 16
        self.snapshots = [(start, baseline)]
    }

    /// Snapshots kept.
    public var count: Int { snapshots.count }

    /// Stores a snapshot and returns the baseline to compare it with.
    /// - Parameters:
    ///   - exposition: The snapshot taken at `time`.
    ///   - time: Seconds on the same clock as `start`, not earlier than the last.
    /// - Returns: The baseline snapshot and its time.
    public mutating func record(_ exposition: PrometheusExposition, at time: Double) -> (time: Double, exposition: PrometheusExposition?) {
        let old = snapshots.lastIndex(where: { time - $0.time >= windowSeconds }) ?? 0
        let baseline = snapshots[old]
        snapshots.removeFirst(old)
        if snapshots.count > 1, time - snapshots[snapshots.count - 2].time < spacing {
            snapshots[snapshots.count - 1] = (time, exposition)
        } else {
            snapshots.append((time, exposition))
        }
        return baseline
    }
}
