import Foundation

/// Capacity and headroom of a running fi-server, from two `/metrics` snapshots and the M/M/c model.
///
/// The observed request rate is compared with the largest rate the model allows at the
/// response-time target; ``headroomFactor`` is their ratio (2 means the load can double).
/// The observed latency percentiles come from the server's own histogram, so a model that
/// disagrees with them shows its service time needs re-measuring.
public struct MeasuredCapacity: Sendable, Hashable, Codable {
    /// The load seen between the snapshots.
    public let observed: ObservedLoad
    /// Workers (M/M/c servers) assumed.
    public let workers: Int
    /// Mean service time per request assumed, seconds.
    public let meanServiceTimeSeconds: Double
    /// Requests per session, to express rates as sessions/day.
    public let requestsPerSession: Double
    /// The percentile constrained, e.g. 0.95.
    public let percentile: Double
    /// Its target, seconds.
    public let responseTimeTargetSeconds: Double
    /// The observed request rate as sessions/day.
    public let observedSessionsPerDay: Double
    /// Observed requests/s × service time / workers, a fraction (may exceed 1 when overloaded).
    public let utilisation: Double
    /// The largest rate meeting the target by the model, requests/s (`nil` when no rate does).
    public let maxRequestsPerSecondAtTarget: Double?
    /// That rate as sessions/day.
    public let maxSessionsPerDayAtTarget: Double?
    /// Max rate / observed rate (`nil` with no observed traffic or no feasible rate).
    public let headroomFactor: Double?
    /// The model's percentile response time at the observed rate, seconds (`nil` when unstable).
    public let modelResponseTimeSeconds: Double?

    /// Estimates capacity and headroom.
    /// - Parameters:
    ///   - observed: The load between two snapshots.
    ///   - workers: Workers serving requests, > 0.
    ///   - meanServiceTimeSeconds: Measured mean service time per request, seconds, > 0.
    ///   - requestsPerSession: Requests per session, > 0 (default 20).
    ///   - percentile: The percentile constrained, in `(0, 1)` (default 0.95).
    ///   - responseTimeTargetSeconds: Its target, seconds, > 0 (default 0.050).
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public init(
        observed: ObservedLoad,
        workers: Int,
        meanServiceTimeSeconds: Double,
        requestsPerSession: Double = 20,
        percentile: Double = 0.95,
        responseTimeTargetSeconds: Double = 0.050
    ) throws(CapacityError) {
        try Check.positive(workers, "workers")
        try Check.positive(meanServiceTimeSeconds, "mean_service_time_seconds")
        try Check.positive(requestsPerSession, "requests_per_session")
        try Check.openUnit(percentile, "percentile")
        try Check.positive(responseTimeTargetSeconds, "response_time_target_seconds")
        let perDay = SessionThroughput.secondsPerDay / requestsPerSession
        self.observed = observed
        self.workers = workers
        self.meanServiceTimeSeconds = meanServiceTimeSeconds
        self.requestsPerSession = requestsPerSession
        self.percentile = percentile
        self.responseTimeTargetSeconds = responseTimeTargetSeconds
        self.observedSessionsPerDay = observed.requestsPerSecond * perDay
        self.utilisation = observed.requestsPerSecond * meanServiceTimeSeconds / Double(workers)
        var max: Double?
        do {
            max = try MMcQueue.maxArrivalRate(
                servers: workers, meanServiceTimeSeconds: meanServiceTimeSeconds,
                percentile: percentile, targetSeconds: responseTimeTargetSeconds
            ).arrivalRatePerSecond
        } catch where error.code == .infeasible {
            max = nil
        }
        self.maxRequestsPerSecondAtTarget = max
        self.maxSessionsPerDayAtTarget = max.map { $0 * perDay }
        self.headroomFactor = max.flatMap { observed.requestsPerSecond > 0 ? $0 / observed.requestsPerSecond : nil }
        self.modelResponseTimeSeconds = try? MMcQueue(
            servers: workers, arrivalRatePerSecond: observed.requestsPerSecond, meanServiceTimeSeconds: meanServiceTimeSeconds
        ).responsePercentile(percentile)
    }

    /// The estimate as JSON: snake_case keys, sorted, pretty-printed; every field name carries its unit.
    /// - Throws: An `EncodingError` (not expected: every number is finite).
    public func jsonData() throws -> Data { try Format.json(self) }

    /// The estimate as a text table of quantity, value and unit.
    public func table() -> String {
        var t = TextTable()
        let o = observed
        let p = "p" + Format.number(percentile * 100)
        t.section("Observed over \(Format.number(o.intervalSeconds, decimals: 1)) s")
        t.row("request rate", Format.number(o.requestsPerSecond, decimals: 2), "requests/s")
        t.row("as sessions", Format.number(observedSessionsPerDay), "sessions/day")
        t.row("events accepted", Format.number(o.eventsAcceptedPerSecond, decimals: 2), "events/s")
        t.row("server errors (5xx)", Format.number(o.serverErrorsPerSecond, decimals: 2), "requests/s")
        t.row("rejected (429)", Format.number(o.rejectedPerSecond, decimals: 2), "requests/s")
        let dash = "n/a"
        t.row("mean latency", o.meanLatencySeconds.map(Format.ms) ?? dash, "ms")
        t.row("p50 latency", o.p50LatencySeconds.map(Format.ms) ?? dash, "ms")
        t.row("p95 latency", o.p95LatencySeconds.map(Format.ms) ?? dash, "ms")
        t.row("p99 latency", o.p99LatencySeconds.map(Format.ms) ?? dash, "ms")
        t.row("backlog, all partitions", Format.number(o.totalBacklogEvents), "events")
        for part in o.partitions {
            let backlog = part.backlogEvents.map { Format.number($0) } ?? dash
            let wait = part.backlogWaitSeconds.map { ", wait " + Format.ms($0) + " ms" } ?? ""
            t.row("  " + part.partition, Format.number(part.eventsPerSecond, decimals: 2), "events/s, backlog \(backlog) events\(wait)")
        }

        t.section("Capacity (M/M/c: \(workers) workers × \(Format.ms(meanServiceTimeSeconds)) ms service)")
        t.row("utilisation", Format.percent(utilisation), "%")
        t.row("model \(p) at observed rate", modelResponseTimeSeconds.map(Format.ms) ?? "unstable", "ms")
        t.row("max rate for \(p) ≤ \(Format.ms(responseTimeTargetSeconds)) ms", maxRequestsPerSecondAtTarget.map { Format.number($0, decimals: 2) } ?? "none", "requests/s")
        t.row("as sessions", maxSessionsPerDayAtTarget.map { Format.number($0) } ?? "none", "sessions/day")
        t.row("headroom", headroomFactor.map { Format.number($0, decimals: 2) } ?? dash, "× observed load")
        return t.render()
    }
}
