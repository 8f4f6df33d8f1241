/// What fi-server's `/metrics` says at one instant: request counts, the latency histogram and
/// per-partition events and backlog.
///
/// Read from these families (counters are cumulative since the server started):
///
/// | family | labels | used for |
/// | --- | --- | --- |
/// | `fi_http_requests_total` (counter) | `route`, `method`, `status` | request rate, error and 429 rates |
/// | `fi_http_request_duration_seconds` (histogram) | `le` (+ any) | latency percentiles, mean latency |
/// | `fi_events_accepted_total` (counter) | `partition` | events/s per partition |
/// | `fi_queue_backlog` (gauge) | `partition` | stream length per partition |
///
/// Only `fi_http_requests_total` is required; the others may be absent.
/// Take two snapshots some seconds apart and compare them with ``ObservedLoad``.
public struct ServiceMetrics: Sendable, Hashable {
    /// Sample names read.
    public static let requestsTotalName = "fi_http_requests_total"
    /// The latency histogram's family name.
    public static let requestDurationName = "fi_http_request_duration_seconds"
    /// Accepted events per partition.
    public static let eventsAcceptedName = "fi_events_accepted_total"
    /// Backlog (stream length) per partition.
    public static let backlogName = "fi_queue_backlog"

    /// A cumulative request count for one route, method and status.
    public struct RequestCount: Sendable, Hashable {
        /// The route template, e.g. `/consultations/{consultation_id}/events`.
        public let route: String
        /// The HTTP method.
        public let method: String
        /// The HTTP status code as text, e.g. `202`.
        public let status: String
        /// Requests counted since start.
        public let count: Double
    }

    /// A cumulative histogram bucket: requests that took at most ``upperBoundSeconds``.
    public struct Bucket: Sendable, Hashable {
        /// The bucket's `le` bound, seconds (`+infinity` for the last).
        public let upperBoundSeconds: Double
        /// Requests at or below the bound since start.
        public let cumulativeCount: Double
    }

    /// Request counts by route, method and status (summed over other labels).
    public let requests: [RequestCount]
    /// Latency buckets summed over all label sets, ascending by bound.
    public let latencyBuckets: [Bucket]
    /// `fi_http_request_duration_seconds_sum`, seconds (0 if absent).
    public let latencySumSeconds: Double
    /// `fi_http_request_duration_seconds_count`, requests (0 if absent).
    public let latencyCount: Double
    /// `fi_events_accepted_total` by partition.
    public let eventsAcceptedByPartition: [String: Double]
    /// `fi_queue_backlog` by partition, events.
    public let backlogByPartition: [String: Double]

    /// Extracts the fi-server metrics from a parsed exposition.
    /// - Parameters:
    ///   - exposition: A parsed `/metrics` body.
    ///   - route: Count only requests (and latencies) with this `route` label, or all when `nil`.
    /// - Throws: ``CapacityError`` with ``CapacityError/Code/missingMetric`` when
    ///   `fi_http_requests_total` is absent, or ``CapacityError/Code/malformedMetrics`` when a
    ///   bucket has no valid `le` or a value is negative or NaN.
    public init(exposition: PrometheusExposition, route: String? = nil) throws(CapacityError) {
        func matches(_ s: PrometheusSample) -> Bool {
            route == nil || s.labels["route"] == route
        }
        func count(_ s: PrometheusSample) throws(CapacityError) -> Double {
            guard s.value >= 0, s.value.isFinite else {
                throw CapacityError(code: .malformedMetrics, input: "metrics", message: "\(s.name) has the value \(s.value); counts must be finite and not negative")
            }
            return s.value
        }

        let requestSamples = exposition.samples(named: Self.requestsTotalName)
        guard !requestSamples.isEmpty else {
            throw CapacityError(code: .missingMetric, input: "metrics", message: "\(Self.requestsTotalName) is absent; is this an fi-server /metrics endpoint?")
        }
        var byKey: [[String]: Double] = [:]
        var order: [[String]] = []
        for s in requestSamples where matches(s) {
            let key = [s.labels["route"] ?? "", s.labels["method"] ?? "", s.labels["status"] ?? ""]
            if byKey[key] == nil { order.append(key) }
            byKey[key, default: 0] += try count(s)
        }
        requests = order.map { RequestCount(route: $0[0], method: $0[1], status: $0[2], count: byKey[$0]!) }

        var buckets: [Double: Double] = [:]
        for s in exposition.samples(named: Self.requestDurationName + "_bucket") where matches(s) {
            guard let le = s.labels["le"], let bound = PrometheusExposition.number(le), !bound.isNaN else {
                throw CapacityError(code: .malformedMetrics, input: "metrics", message: "\(s.name) has a bucket without a valid le label")
            }
            buckets[bound, default: 0] += try count(s)
        }
        latencyBuckets = buckets.keys.sorted().map { Bucket(upperBoundSeconds: $0, cumulativeCount: buckets[$0]!) }
        var sum = 0.0
        for s in exposition.samples(named: Self.requestDurationName + "_sum") where matches(s) { sum += try count(s) }
        var total = 0.0
        for s in exposition.samples(named: Self.requestDurationName + "_count") where matches(s) { total += try count(s) }
        latencySumSeconds = sum
        latencyCount = total

        var events: [String: Double] = [:]
        for s in exposition.samples(named: Self.eventsAcceptedName) {
            events[s.labels["partition"] ?? "", default: 0] += try count(s)
        }
        eventsAcceptedByPartition = events
        var backlog: [String: Double] = [:]
        for s in exposition.samples(named: Self.backlogName) {
            backlog[s.labels["partition"] ?? "", default: 0] += try count(s)
        }
        backlogByPartition = backlog
    }

    /// Parses `/metrics` text and extracts the fi-server metrics.
    /// - Parameters:
    ///   - text: The body of a `/metrics` response.
    ///   - route: Count only this route, or all when `nil`.
    /// - Throws: ``CapacityError`` as ``init(exposition:route:)`` and ``PrometheusExposition/init(parsing:)``.
    public init(parsing text: String, route: String? = nil) throws(CapacityError) {
        try self.init(exposition: PrometheusExposition(parsing: text), route: route)
    }

    /// All requests counted.
    public var requestsTotal: Double { requests.reduce(0) { $0 + $1.count } }

    /// A latency quantile from cumulative buckets, interpolated linearly inside the bucket as
    /// Prometheus' `histogram_quantile` does; a rank in the `+Inf` bucket returns the largest finite bound.
    /// - Parameters:
    ///   - quantile: q, strictly between 0 and 1.
    ///   - buckets: Cumulative buckets ascending by bound.
    /// - Returns: Seconds, or `nil` when the histogram is empty.
    /// - Throws: ``CapacityError`` if `quantile` is outside `(0, 1)`.
    public static func histogramQuantile(_ quantile: Double, buckets: [Bucket]) throws(CapacityError) -> Double? {
        try Check.openUnit(quantile, "quantile")
        guard let total = buckets.last?.cumulativeCount, total > 0 else { return nil }
        let rank = quantile * total
        guard let i = buckets.firstIndex(where: { $0.cumulativeCount >= rank }) else { return nil }
        let upper = buckets[i].upperBoundSeconds
        if upper == .infinity {
            return buckets[..<i].last(where: { $0.upperBoundSeconds.isFinite })?.upperBoundSeconds
        }
        let lower = i == 0 ? min(0, upper) : buckets[i - 1].upperBoundSeconds
        let below = i == 0 ? 0 : buckets[i - 1].cumulativeCount
        let inBucket = buckets[i].cumulativeCount - below
        guard inBucket > 0 else { return upper }
        return lower + (upper - lower) * (rank - below) / inBucket
    }
}

/// The load fi-server saw between two `/metrics` snapshots.
///
/// Counters are differenced (a counter that went down was reset by a restart; its later value is
/// then the increase). Percentiles come from the differenced latency histogram, so they describe
/// only the interval. The backlog is the later snapshot's gauge; by Little's law a partition's
/// backlog divided by its event rate is the time an event now waits in its stream.
public struct ObservedLoad: Sendable, Hashable, Codable {
    /// The interval between the snapshots, seconds.
    public let intervalSeconds: Double
    /// All requests, per second.
    public let requestsPerSecond: Double
    /// Requests answered 5xx, per second.
    public let serverErrorsPerSecond: Double
    /// Requests answered 429 (backlog above `--max-backlog`), per second.
    public let rejectedPerSecond: Double
    /// Accepted events, per second, all partitions.
    public let eventsAcceptedPerSecond: Double
    /// Mean request latency over the interval, seconds (`nil` without histogram data).
    public let meanLatencySeconds: Double?
    /// Median request latency, seconds (`nil` without histogram data).
    public let p50LatencySeconds: Double?
    /// 95th-percentile request latency, seconds.
    public let p95LatencySeconds: Double?
    /// 99th-percentile request latency, seconds.
    public let p99LatencySeconds: Double?
    /// Per partition, sorted by key: event rate, backlog and the Little's-law wait.
    public let partitions: [Partition]
    /// Backlog at the later snapshot, events, all partitions.
    public let totalBacklogEvents: Double

    /// One partition's observed load.
    public struct Partition: Sendable, Hashable, Codable {
        /// The partition key, e.g. `site_a`.
        public let partition: String
        /// Accepted events per second over the interval.
        public let eventsPerSecond: Double
        /// Backlog (stream length) at the later snapshot, events (`nil` if not reported).
        public let backlogEvents: Double?
        /// Little's law: backlog / events per second, the time a new event waits in the stream, seconds
        /// (`nil` without a backlog or with no events in the interval).
        public let backlogWaitSeconds: Double?
    }

    /// Compares two snapshots.
    /// - Parameters:
    ///   - earlier: The first snapshot.
    ///   - later: The second snapshot.
    ///   - intervalSeconds: Seconds between them, > 0.
    /// - Throws: ``CapacityError`` if the interval is not positive and finite.
    public init(from earlier: ServiceMetrics, to later: ServiceMetrics, intervalSeconds: Double) throws(CapacityError) {
        try Check.positive(intervalSeconds, "interval_seconds")
        func increase(_ a: Double, _ b: Double) -> Double { b >= a ? b - a : b }

        var before: [String: Double] = [:]
        for r in earlier.requests { before["\(r.route)\u{0}\(r.method)\u{0}\(r.status)"] = r.count }
        var all = 0.0, errors = 0.0, rejected = 0.0
        for r in later.requests {
            let d = increase(before["\(r.route)\u{0}\(r.method)\u{0}\(r.status)"] ?? 0, r.count)
            all += d
            if r.status.hasPrefix("5") { errors += d }
            if r.status == "429" { rejected += d }
        }
        var perPartition: [String: Double] = [:]
        var events = 0.0
        for (p, n) in later.eventsAcceptedByPartition {
            let d = increase(earlier.eventsAcceptedByPartition[p] ?? 0, n)
            perPartition[p] = d / intervalSeconds
            events += d
        }
        let keys = Set(perPartition.keys).union(later.backlogByPartition.keys).sorted()
        self.partitions = keys.map { key in
            let rate = perPartition[key] ?? 0
            let backlog = later.backlogByPartition[key]
            return Partition(
                partition: key,
                eventsPerSecond: rate,
                backlogEvents: backlog,
                backlogWaitSeconds: backlog.flatMap { rate > 0 ? $0 / rate : nil }
            )
        }

        var oldBuckets: [Double: Double] = [:]
        for b in earlier.latencyBuckets { oldBuckets[b.upperBoundSeconds] = b.cumulativeCount }
        let delta = later.latencyBuckets.map {
            ServiceMetrics.Bucket(upperBoundSeconds: $0.upperBoundSeconds, cumulativeCount: increase(oldBuckets[$0.upperBoundSeconds] ?? 0, $0.cumulativeCount))
        }
        let countDelta = increase(earlier.latencyCount, later.latencyCount)
        let sumDelta = increase(earlier.latencySumSeconds, later.latencySumSeconds)

        self.intervalSeconds = intervalSeconds
        self.requestsPerSecond = all / intervalSeconds
        self.serverErrorsPerSecond = errors / intervalSeconds
        self.rejectedPerSecond = rejected / intervalSeconds
        self.eventsAcceptedPerSecond = events / intervalSeconds
        self.meanLatencySeconds = countDelta > 0 ? sumDelta / countDelta : nil
        self.p50LatencySeconds = try ServiceMetrics.histogramQuantile(0.50, buckets: delta)
        self.p95LatencySeconds = try ServiceMetrics.histogramQuantile(0.95, buckets: delta)
        self.p99LatencySeconds = try ServiceMetrics.histogramQuantile(0.99, buckets: delta)
        self.totalBacklogEvents = later.backlogByPartition.values.reduce(0, +)
    }
}
