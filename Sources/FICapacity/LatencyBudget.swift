/// Per-stage latency summed against an end-to-end target.
///
/// The stages of the event path are ingest (HTTP parse, validate, `XADD` round trip),
/// queue (time in the stream before a worker reads it) and persist (HDF5 write + flush + `fsync`).
/// Measure each (or take the queue stage from ``MMcQueue``) and compare the sum with the target.
public struct LatencyBudget: Sendable, Hashable, Codable {
    /// One stage's share.
    public struct Stage: Sendable, Hashable, Codable {
        /// The stage's name.
        public let name: String
        /// Its latency, seconds.
        public let seconds: Double
        /// Its latency / the target, a fraction.
        public let fractionOfTarget: Double
    }

    /// The stages, in order.
    public let stages: [Stage]
    /// The end-to-end target, seconds.
    public let targetSeconds: Double
    /// The sum of the stages, seconds.
    public let totalSeconds: Double
    /// Target − total, seconds (negative when over budget).
    public let slackSeconds: Double
    /// Whether the total is within the target.
    public let withinTarget: Bool

    /// Sums named stages against a target.
    /// - Parameters:
    ///   - stages: Stage names and latencies in seconds (each ≥ 0), non-empty.
    ///   - targetSeconds: The end-to-end target, seconds, > 0.
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public init(stages: [(name: String, seconds: Double)], targetSeconds: Double) throws(CapacityError) {
        guard !stages.isEmpty else {
            throw CapacityError(code: .invalidValue, input: "stages", message: "stages must not be empty")
        }
        try Check.positive(targetSeconds, "target_seconds")
        var total = 0.0
        var out: [Stage] = []
        for stage in stages {
            try Check.nonNegative(stage.seconds, "\(stage.name)_seconds")
            total += stage.seconds
            out.append(Stage(name: stage.name, seconds: stage.seconds, fractionOfTarget: stage.seconds / targetSeconds))
        }
        self.stages = out
        self.targetSeconds = targetSeconds
        self.totalSeconds = total
        self.slackSeconds = targetSeconds - total
        self.withinTarget = total <= targetSeconds
    }

    /// The three stages of the event path: ingest, queue, persist.
    /// - Parameters:
    ///   - ingestSeconds: HTTP to `XADD` acknowledged, seconds, ≥ 0.
    ///   - queueSeconds: Waiting in the stream, seconds, ≥ 0.
    ///   - persistSeconds: HDF5 write + flush + fsync, seconds, ≥ 0.
    ///   - targetSeconds: The end-to-end target, seconds, > 0.
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public init(ingestSeconds: Double, queueSeconds: Double, persistSeconds: Double, targetSeconds: Double) throws(CapacityError) {
        try self.init(stages: [("ingest", ingestSeconds), ("queue", queueSeconds), ("persist", persistSeconds)], targetSeconds: targetSeconds)
    }
}
