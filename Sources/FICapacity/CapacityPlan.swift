import Foundation

/// A capacity plan for given inputs: the reference formula, the M/M/c queue at the target load, the
/// largest load that meets the response-time target, storage, network and the latency budget.
///
/// Build one with ``init(_:)``, print ``table()``, or serve ``jsonData()``.
///
/// ```swift
/// var inputs = CapacityPlan.Inputs()          // the reference: 12 workers × 100 requests/s, 20 requests/session
/// inputs.targetSessionsPerDay = 10_000
/// let plan = try CapacityPlan(inputs)
/// print(plan.table())
/// ```
public struct CapacityPlan: Sendable, Hashable, Codable {
    /// Everything a plan depends on; each `var` has a documented default.
    public struct Inputs: Sendable, Hashable, Codable {
        /// Workers (the M/M/c servers). Default 12, the reference plan.
        public var workers: Int = 12
        /// Requests per second one worker sustains, measured. Default 100, the reference plan.
        public var requestsPerSecondPerWorker: Double = 100
        /// Requests per consultation session. Default 20 (10 messages + 10 events).
        public var requestsPerSession: Double = 20
        /// Events stored per session; `nil` means one per request (every request is an event `POST`).
        public var eventsPerSession: Double? = nil
        /// Capacity over planned load, ≥ 1. Default ``SessionThroughput/defaultHeadroomFactor`` (1.5).
        public var headroomFactor: Double = SessionThroughput.defaultHeadroomFactor
        /// The sessions a day to plan for. Default 10,000.
        public var targetSessionsPerDay: Double = 10_000
        /// Peak request rate over the day's average rate, ≥ 1. Default 1, the reference's even spread;
        /// clinics that see all sessions in 8 busy hours have 3.
        public var peakToAverageRatio: Double = 1
        /// Mean time one request occupies a worker, seconds; `nil` means `1 / requestsPerSecondPerWorker`.
        public var meanServiceTimeSeconds: Double? = nil
        /// The response-time percentile constrained. Default 0.95.
        public var percentile: Double = 0.95
        /// The target for that percentile, seconds. Default 0.050 (50 ms).
        public var responseTimeTargetSeconds: Double = 0.050
        /// Mean `event_json` size, bytes. Default 1,024.
        public var meanEventBytes: Double = 1024
        /// Partitions the events are spread over evenly (for bytes per partition). Default 3.
        public var partitions: Int = 3
        /// HDF5 file bytes per logical byte. Default ``StorageEstimate/measuredHDF5OverheadFactor`` (1.013, measured).
        public var overheadFactor: Double = StorageEstimate.measuredHDF5OverheadFactor
        /// Usable disk for the corpus files, bytes. Default 10¹² (1 TB).
        public var diskCapacityBytes: Double = 1e12
        /// Bytes already on that disk. Default 0.
        public var usedBytes: Double = 0
        /// Times an event crosses the network. Default 3 (client → server → Redis → worker).
        public var networkTraversals: Int = NetworkEstimate.defaultTraversals
        /// Measured ingest latency (HTTP to `XADD` acknowledged), seconds; with ``persistSeconds`` enables the budget.
        public var ingestSeconds: Double? = nil
        /// Measured persist latency (write + flush + fsync of a batch), seconds.
        public var persistSeconds: Double? = nil
        /// End-to-end target from request to persisted row, seconds. Default 1.
        public var endToEndTargetSeconds: Double = 1

        /// The reference plan's inputs, with a 10,000 sessions/day target.
        public init() {}

        private enum CodingKeys: String, CodingKey {
            case workers, requestsPerSecondPerWorker, requestsPerSession, eventsPerSession, headroomFactor
            case targetSessionsPerDay, peakToAverageRatio, meanServiceTimeSeconds, percentile, responseTimeTargetSeconds
            case meanEventBytes, partitions, overheadFactor, diskCapacityBytes, usedBytes, networkTraversals
            case ingestSeconds, persistSeconds, endToEndTargetSeconds
        }

        /// Decodes inputs; any absent field keeps its default, so `{"target_sessions_per_day": 300}` is a whole request.
        /// - Throws: A `DecodingError` for a field of the wrong type.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            func take<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
                if let v = try c.decodeIfPresent(T.self, forKey: key) { value = v }
            }
            func takeOptional<T: Decodable>(_ key: CodingKeys, _ value: inout T?) throws {
                if let v = try c.decodeIfPresent(T.self, forKey: key) { value = v }
            }
            try take(.workers, &workers)
            try take(.requestsPerSecondPerWorker, &requestsPerSecondPerWorker)
            try take(.requestsPerSession, &requestsPerSession)
            try takeOptional(.eventsPerSession, &eventsPerSession)
            try take(.headroomFactor, &headroomFactor)
            try take(.targetSessionsPerDay, &targetSessionsPerDay)
            try take(.peakToAverageRatio, &peakToAverageRatio)
            try takeOptional(.meanServiceTimeSeconds, &meanServiceTimeSeconds)
            try take(.percentile, &percentile)
            try take(.responseTimeTargetSeconds, &responseTimeTargetSeconds)
            try take(.meanEventBytes, &meanEventBytes)
            try take(.partitions, &partitions)
            try take(.overheadFactor, &overheadFactor)
            try take(.diskCapacityBytes, &diskCapacityBytes)
            try take(.usedBytes, &usedBytes)
            try take(.networkTraversals, &networkTraversals)
            try takeOptional(.ingestSeconds, &ingestSeconds)
            try takeOptional(.persistSeconds, &persistSeconds)
            try take(.endToEndTargetSeconds, &endToEndTargetSeconds)
        }
    }

    /// The largest load meeting the response-time target.
    public struct ResponseTimeLimit: Sendable, Hashable, Codable {
        /// The percentile constrained, e.g. 0.95.
        public let percentile: Double
        /// Its target, seconds.
        public let targetSeconds: Double
        /// Largest peak request rate meeting it, requests/s.
        public let maxRequestsPerSecond: Double
        /// The sessions/day that peak corresponds to (÷ peak-to-average ratio).
        public let maxSessionsPerDay: Double
        /// Worker utilisation at that rate, a fraction.
        public let utilisation: Double
    }

    /// The inputs the plan was made from.
    public let inputs: Inputs
    /// Fleet capacity, requests/s: workers × requests/s per worker.
    public let capacityRequestsPerSecond: Double
    /// The reference formula, sessions/day, before headroom.
    public let maxSessionsPerDay: Double
    /// The formula divided by the headroom factor, sessions/day.
    public let plannedSessionsPerDay: Double
    /// Workers the target needs, with headroom (the inverse formula).
    public let workersForTarget: WorkerRequirement
    /// The target's average request rate, requests/s.
    public let targetAverageRequestsPerSecond: Double
    /// The target's peak request rate (average × peak-to-average ratio), requests/s.
    public let targetPeakRequestsPerSecond: Double
    /// The M/M/c queue at the target's peak, or `nil` when the peak exceeds capacity.
    public let queueAtTarget: QueueEstimate?
    /// The largest load meeting the response-time target, or `nil` when no load does.
    public let responseTimeLimit: ResponseTimeLimit?
    /// Disk use at the target's average event rate.
    public let storage: StoragePlan
    /// Network traffic at the target's peak event rate.
    public let network: NetworkEstimate
    /// Ingest + queue (the M/M/c queue wait at ``Inputs/percentile``) + persist against the end-to-end target, when measured stages are given.
    public let latencyBudget: LatencyBudget?
    /// Warnings in words: overload, a missed target, a disk that fills within a year.
    public let notes: [String]

    /// Makes a plan.
    /// - Parameter inputs: The inputs; each is validated.
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public init(_ inputs: Inputs) throws(CapacityError) {
        let throughput = try SessionThroughput(
            workers: inputs.workers,
            requestsPerSecondPerWorker: inputs.requestsPerSecondPerWorker,
            requestsPerSession: inputs.requestsPerSession,
            headroomFactor: inputs.headroomFactor
        )
        try Check.positive(inputs.targetSessionsPerDay, "target_sessions_per_day")
        try Check.atLeastOne(inputs.peakToAverageRatio, "peak_to_average_ratio")
        let eventsPerSession = inputs.eventsPerSession ?? inputs.requestsPerSession
        try Check.nonNegative(eventsPerSession, "events_per_session")
        let serviceTime = inputs.meanServiceTimeSeconds ?? 1 / inputs.requestsPerSecondPerWorker
        try Check.positive(serviceTime, "mean_service_time_seconds")
        try Check.openUnit(inputs.percentile, "percentile")
        try Check.positive(inputs.responseTimeTargetSeconds, "response_time_target_seconds")
        try Check.positive(inputs.partitions, "partitions")

        var notes: [String] = []
        let workersNeeded = try SessionThroughput.workersNeeded(
            sessionsPerDay: inputs.targetSessionsPerDay,
            requestsPerSecondPerWorker: inputs.requestsPerSecondPerWorker,
            requestsPerSession: inputs.requestsPerSession,
            headroomFactor: inputs.headroomFactor
        )
        if workersNeeded.workers > inputs.workers {
            notes.append("the target needs \(workersNeeded.workers) workers at headroom \(inputs.headroomFactor); \(inputs.workers) are planned")
        }
        let average = inputs.targetSessionsPerDay * inputs.requestsPerSession / SessionThroughput.secondsPerDay
        let peak = average * inputs.peakToAverageRatio

        var queue: MMcQueue?
        do {
            queue = try MMcQueue(servers: inputs.workers, arrivalRatePerSecond: peak, meanServiceTimeSeconds: serviceTime)
        } catch where error.code == .unstable {
            notes.append("the peak of \(Format.number(peak, decimals: 1)) requests/s reaches the capacity of \(Format.number(Double(inputs.workers) / serviceTime, decimals: 1)) requests/s: the queue grows without bound")
        }

        var limit: ResponseTimeLimit?
        do {
            let max = try MMcQueue.maxArrivalRate(
                servers: inputs.workers,
                meanServiceTimeSeconds: serviceTime,
                percentile: inputs.percentile,
                targetSeconds: inputs.responseTimeTargetSeconds
            )
            limit = ResponseTimeLimit(
                percentile: inputs.percentile,
                targetSeconds: inputs.responseTimeTargetSeconds,
                maxRequestsPerSecond: max.arrivalRatePerSecond,
                maxSessionsPerDay: max.arrivalRatePerSecond / inputs.peakToAverageRatio * SessionThroughput.secondsPerDay / inputs.requestsPerSession,
                utilisation: max.utilisation
            )
            if peak > max.arrivalRatePerSecond {
                notes.append("at the target's peak the p\(Format.number(inputs.percentile * 100)) response time exceeds \(Format.ms(inputs.responseTimeTargetSeconds)) ms")
            }
        } catch where error.code == .infeasible {
            notes.append(error.message)
        }

        let averageEvents = inputs.targetSessionsPerDay * eventsPerSession / SessionThroughput.secondsPerDay
        let share = averageEvents / Double(inputs.partitions)
        let storage = try StoragePlan(
            partitions: (0..<inputs.partitions).map { ("partition_\($0)", share) },
            meanPayloadBytes: inputs.meanEventBytes,
            overheadFactor: inputs.overheadFactor,
            diskCapacityBytes: inputs.diskCapacityBytes,
            usedBytes: inputs.usedBytes
        )
        if let days = storage.daysUntilFull, days < 365 {
            notes.append("the disk fills in \(Format.number(days, decimals: 0)) days")
        }
        let network = try NetworkEstimate(
            eventsPerSecond: averageEvents * inputs.peakToAverageRatio,
            bytesPerEvent: inputs.meanEventBytes,
            traversals: inputs.networkTraversals
        )
        for link in network.links where link.utilisation > 0.7 {
            notes.append("\(link.link) would be \(Format.percent(link.utilisation)) % busy at peak")
        }

        var budget: LatencyBudget?
        if inputs.ingestSeconds != nil || inputs.persistSeconds != nil {
            guard let ingest = inputs.ingestSeconds, let persist = inputs.persistSeconds else {
                throw CapacityError(code: .invalidValue, input: inputs.ingestSeconds == nil ? "ingest_seconds" : "persist_seconds", message: "the latency budget needs both ingest_seconds and persist_seconds")
            }
            try Check.positive(inputs.endToEndTargetSeconds, "end_to_end_target_seconds")
            if let queue {
                let queueWait = try queue.queueWaitPercentileSeconds(inputs.percentile)
                let b = try LatencyBudget(ingestSeconds: ingest, queueSeconds: queueWait, persistSeconds: persist, targetSeconds: inputs.endToEndTargetSeconds)
                if !b.withinTarget {
                    notes.append("ingest + queue + persist exceed the end-to-end target of \(Format.ms(inputs.endToEndTargetSeconds)) ms")
                }
                budget = b
            } else {
                notes.append("no latency budget: the queue is unstable at the peak")
            }
        }

        self.inputs = inputs
        self.capacityRequestsPerSecond = throughput.capacityRequestsPerSecond
        self.maxSessionsPerDay = throughput.maxSessionsPerDay
        self.plannedSessionsPerDay = throughput.plannedSessionsPerDay
        self.workersForTarget = workersNeeded
        self.targetAverageRequestsPerSecond = average
        self.targetPeakRequestsPerSecond = peak
        self.queueAtTarget = queue?.estimate
        self.responseTimeLimit = limit
        self.storage = storage
        self.network = network
        self.latencyBudget = budget
        self.notes = notes
    }

    /// The plan as JSON: snake_case keys, sorted, pretty-printed; every field name carries its unit.
    /// - Throws: An `EncodingError` (not expected: every number is finite).
    public func jsonData() throws -> Data { try Format.json(self) }

    /// The plan as a text table: one section per topic, each row a quantity, its value and its unit.
    public func table() -> String {
        var t = TextTable()
        let i = inputs
        t.section("Reference formula (workers × requests/s × 86,400 / requests per session)")
        t.row("workers", Format.number(Double(i.workers)), "workers")
        t.row("requests per worker", Format.number(i.requestsPerSecondPerWorker, decimals: 1), "requests/s")
        t.row("requests per session", Format.number(i.requestsPerSession, decimals: 1), "requests")
        t.row("fleet capacity", Format.number(capacityRequestsPerSecond, decimals: 1), "requests/s")
        t.row("max sessions", Format.number(maxSessionsPerDay), "sessions/day")
        t.row("headroom factor", Format.number(i.headroomFactor, decimals: 2), "× load")
        t.row("planned sessions", Format.number(plannedSessionsPerDay), "sessions/day")
        t.row("target", Format.number(i.targetSessionsPerDay), "sessions/day")
        t.row("workers for target", "\(workersForTarget.workers) (\(Format.number(workersForTarget.exactWorkers, decimals: 2)))", "workers")

        t.section("Queue at the target's peak (M/M/c, Erlang C)")
        t.row("average load", Format.number(targetAverageRequestsPerSecond, decimals: 2), "requests/s")
        t.row("peak-to-average ratio", Format.number(i.peakToAverageRatio, decimals: 2), "×")
        t.row("peak load", Format.number(targetPeakRequestsPerSecond, decimals: 2), "requests/s")
        if let q = queueAtTarget {
            t.row("mean service time", Format.ms(q.meanServiceTimeSeconds), "ms")
            t.row("utilisation", Format.percent(q.utilisation), "%")
            t.row("probability of waiting", Format.percent(q.probabilityOfWaiting), "%")
            t.row("mean queue wait", Format.ms(q.meanQueueWaitSeconds), "ms")
            t.row("mean response time", Format.ms(q.meanResponseTimeSeconds), "ms")
            t.row("p50 response time", Format.ms(q.p50ResponseTimeSeconds), "ms")
            t.row("p95 response time", Format.ms(q.p95ResponseTimeSeconds), "ms")
            t.row("p99 response time", Format.ms(q.p99ResponseTimeSeconds), "ms")
        } else {
            t.row("queue", "unstable", "(peak ≥ capacity)")
        }

        let p = "p" + Format.number(i.percentile * 100)
        t.section("Largest load with \(p) ≤ \(Format.ms(i.responseTimeTargetSeconds)) ms")
        if let l = responseTimeLimit {
            t.row("max peak load", Format.number(l.maxRequestsPerSecond, decimals: 2), "requests/s")
            t.row("max sessions", Format.number(l.maxSessionsPerDay), "sessions/day")
            t.row("utilisation there", Format.percent(l.utilisation), "%")
        } else {
            t.row("max peak load", "none", "(target below the service time)")
        }

        t.section("Storage (HDF5 overhead factor \(Format.number(storage.overheadFactor, decimals: 3)))")
        t.row("event size", Format.number(storage.meanPayloadBytes), "bytes")
        for part in storage.partitions {
            t.row(part.partition, Format.number(part.diskGigabytesPerDay, decimals: 3), "GB/day")
        }
        t.row("all partitions", Format.number(storage.totalDiskBytesPerDay / 1e9, decimals: 3), "GB/day")
        t.row("disk", Format.number(storage.diskCapacityBytes / 1e9, decimals: 1), "GB")
        t.row("disk full in", storage.daysUntilFull.map { Format.number($0, decimals: 1) } ?? "never", "days")

        t.section("Network at peak (\(network.traversals) traversals per event)")
        t.row("traffic", Format.number(network.megabytesPerSecond, decimals: 3), "MB/s")
        for link in network.links {
            t.row("\(link.link) (\(Format.number(link.capacityMegabytesPerSecond)) MB/s)", Format.percent(link.utilisation), "% busy")
        }

        if let b = latencyBudget {
            t.section("Latency budget (target \(Format.ms(b.targetSeconds)) ms)")
            for s in b.stages {
                t.row(s.name, Format.ms(s.seconds), "ms (\(Format.percent(s.fractionOfTarget)) %)")
            }
            t.row("total", Format.ms(b.totalSeconds), "ms")
            t.row("slack", Format.ms(b.slackSeconds), b.withinTarget ? "ms (within target)" : "ms (OVER target)")
        }

        return t.render() + Format.notes(notes)
    }
}
