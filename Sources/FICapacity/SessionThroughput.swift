/// The reference sizing formula: how many consultation sessions a day a fleet of workers can take.
///
/// ```
/// max sessions/day = workers × requests/s per worker × 86,400 s/day / requests per session
///                  = 12 × 100 × 86,400 / 20 = 5,184,000
/// ```
///
/// The formula assumes requests arrive evenly over all 86,400 seconds of the day and
/// that every worker runs at 100 % of its measured throughput. Neither holds in practice,
/// so the plan divides by a stated ``headroomFactor`` (≥ 1): with a factor of 1.5 the
/// workers run at most at 1 / 1.5 ≈ 67 % of their capacity at the planned load.
/// Use ``MMcQueue`` to see what that utilisation means for response times.
public struct SessionThroughput: Sendable, Hashable, Codable {
    /// Seconds in a day: 86,400.
    public static let secondsPerDay: Double = 86_400
    /// The default headroom factor, 1.5: plan for workers busy at most 1 / 1.5 ≈ 67 % of the time.
    public static let defaultHeadroomFactor: Double = 1.5

    /// Number of workers (each one consumer of one or more partitions).
    public let workers: Int
    /// Requests per second that one worker sustains, measured.
    public let requestsPerSecondPerWorker: Double
    /// Requests one consultation session makes (the reference: 10 messages + 10 events = 20).
    public let requestsPerSession: Double
    /// Capacity divided by planned load, ≥ 1. 1 reproduces the bare formula.
    public let headroomFactor: Double

    /// Validates and stores the inputs.
    /// - Parameters:
    ///   - workers: Number of workers, > 0.
    ///   - requestsPerSecondPerWorker: Sustained requests per second of one worker, > 0.
    ///   - requestsPerSession: Requests per consultation session, > 0.
    ///   - headroomFactor: Capacity over planned load, ≥ 1 (default ``defaultHeadroomFactor``).
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public init(
        workers: Int,
        requestsPerSecondPerWorker: Double,
        requestsPerSession: Double,
        headroomFactor: Double = SessionThroughput.defaultHeadroomFactor
    ) throws(CapacityError) {
        try Check.positive(workers, "workers")
        try Check.positive(requestsPerSecondPerWorker, "requests_per_second_per_worker")
        try Check.positive(requestsPerSession, "requests_per_session")
        try Check.atLeastOne(headroomFactor, "headroom_factor")
        self.workers = workers
        self.requestsPerSecondPerWorker = requestsPerSecondPerWorker
        self.requestsPerSession = requestsPerSession
        self.headroomFactor = headroomFactor
    }

    /// Requests per second of the whole fleet at 100 % utilisation: workers × requests/s per worker.
    public var capacityRequestsPerSecond: Double { Double(workers) * requestsPerSecondPerWorker }

    /// The bare reference formula, sessions/day: workers × requests/s × 86,400 / requests per session.
    public var maxSessionsPerDay: Double {
        capacityRequestsPerSecond * Self.secondsPerDay / requestsPerSession
    }

    /// Sessions/day to plan for: ``maxSessionsPerDay`` / ``headroomFactor``.
    public var plannedSessionsPerDay: Double { maxSessionsPerDay / headroomFactor }

    /// The inverse formula: how many workers a target number of sessions a day needs.
    ///
    /// `workers = ⌈sessions/day × requests per session × headroom / (86,400 × requests/s per worker)⌉`
    /// - Parameters:
    ///   - sessionsPerDay: Target sessions per day, > 0.
    ///   - requestsPerSecondPerWorker: Sustained requests per second of one worker, > 0.
    ///   - requestsPerSession: Requests per consultation session, > 0.
    ///   - headroomFactor: Capacity over planned load, ≥ 1.
    /// - Returns: The exact (fractional) and rounded-up worker counts.
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public static func workersNeeded(
        sessionsPerDay: Double,
        requestsPerSecondPerWorker: Double,
        requestsPerSession: Double,
        headroomFactor: Double = SessionThroughput.defaultHeadroomFactor
    ) throws(CapacityError) -> WorkerRequirement {
        try Check.positive(sessionsPerDay, "sessions_per_day")
        try Check.positive(requestsPerSecondPerWorker, "requests_per_second_per_worker")
        try Check.positive(requestsPerSession, "requests_per_session")
        try Check.atLeastOne(headroomFactor, "headroom_factor")
        let demand = sessionsPerDay * requestsPerSession / secondsPerDay
        let exact = demand * headroomFactor / requestsPerSecondPerWorker
        guard exact < Double(Int.max / 2) else {
            throw CapacityError(code: .outOfRange, input: "sessions_per_day", message: "sessions_per_day \(sessionsPerDay) needs more workers than can be counted")
        }
        return WorkerRequirement(
            sessionsPerDay: sessionsPerDay,
            demandRequestsPerSecond: demand,
            headroomFactor: headroomFactor,
            exactWorkers: exact,
            workers: max(1, Int(ceilTolerant(exact)))
        )
    }
}

/// The answer of ``SessionThroughput/workersNeeded(sessionsPerDay:requestsPerSecondPerWorker:requestsPerSession:headroomFactor:)``.
public struct WorkerRequirement: Sendable, Hashable, Codable {
    /// The target, sessions/day.
    public let sessionsPerDay: Double
    /// The average request rate the target makes, requests/s (before headroom).
    public let demandRequestsPerSecond: Double
    /// The headroom factor applied (capacity over load).
    public let headroomFactor: Double
    /// Workers needed before rounding up (fractional).
    public let exactWorkers: Double
    /// Workers to deploy: ``exactWorkers`` rounded up, at least 1.
    public let workers: Int
}
