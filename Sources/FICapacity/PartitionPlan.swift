import FIPartitioning

/// One site's event rate, for partition planning.
public struct SiteLoad: Sendable, Hashable, Codable {
    /// The site id (its events go to partition `site_<siteID>`).
    public let siteID: String
    /// Events per second from the site.
    public let eventsPerSecond: Double

    /// Creates a site load (validated when planned).
    /// - Parameters:
    ///   - siteID: A valid site id (1–64 of `A–Z a–z 0–9 _ -`).
    ///   - eventsPerSecond: Events per second, ≥ 0.
    public init(siteID: String, eventsPerSecond: Double) {
        self.siteID = siteID
        self.eventsPerSecond = eventsPerSecond
    }
}

/// How many hash partitions and workers keep every worker under a target utilisation.
///
/// A partition is consumed by one worker at a time (it holds the partition's lease), so a
/// partition's load cannot be split: each site partition `site_<id>` must fit in one worker on its
/// own, and events without a site are spread by md5 evenly over `N` hash partitions. The planner
/// picks the smallest `N ≥ minimumHashPartitions` whose per-partition load fits, then packs all
/// partitions onto workers first-fit decreasing — at most 11/9 of the optimum plus one worker,
/// and never fewer than ``lowerBoundWorkers`` = ⌈total utilisation / target⌉.
///
/// A partition's utilisation is `events/s × persistSecondsPerEvent`: the fraction of one worker's
/// time its events take to write, flush and acknowledge (measure it as 1 / a worker's sustained events/s).
public struct PartitionPlan: Sendable, Hashable, Codable {
    /// One partition and the worker it is assigned to.
    public struct Assignment: Sendable, Hashable, Codable {
        /// The partition key, `site_<id>` or `partition_<n>`.
        public let partition: String
        /// Events per second into it.
        public let eventsPerSecond: Double
        /// Fraction of one worker's time it needs.
        public let utilisation: Double
        /// The worker it is assigned to, 0-based.
        public let worker: Int
    }

    /// Hash partitions `N` to configure (`--partitions`).
    public let hashPartitions: Int
    /// Workers needed.
    public let workers: Int
    /// ⌈total utilisation / target⌉: no packing can use fewer workers.
    public let lowerBoundWorkers: Int
    /// The utilisation cap each worker stays under, a fraction.
    public let targetUtilisation: Double
    /// Seconds of worker time per event.
    public let persistSecondsPerEvent: Double
    /// Every partition, largest load first, with its worker.
    public let assignments: [Assignment]
    /// Each worker's utilisation, a fraction, by worker index.
    public let workerUtilisations: [Double]
    /// The busiest worker's utilisation, a fraction.
    public var maxWorkerUtilisation: Double { workerUtilisations.max() ?? 0 }

    /// Plans partitions and workers.
    /// - Parameters:
    ///   - sites: Sites with their event rates; ids valid and distinct.
    ///   - hashEventsPerSecond: Events per second without a site, ≥ 0.
    ///   - persistSecondsPerEvent: Worker time per event, seconds, > 0.
    ///   - targetUtilisation: The cap per worker, in `(0, 1]` (e.g. 0.7).
    ///   - minimumHashPartitions: The least `N` to propose, ≥ 1 (default: the contract's 3).
    /// - Throws: ``CapacityError``; ``CapacityError/Code/infeasible`` naming the site when one site
    ///   alone exceeds the target (split it or make persistence faster).
    public init(
        sites: [SiteLoad],
        hashEventsPerSecond: Double,
        persistSecondsPerEvent: Double,
        targetUtilisation: Double,
        minimumHashPartitions: Int = Partitioner.defaultPartitions
    ) throws(CapacityError) {
        try Check.nonNegative(hashEventsPerSecond, "hash_events_per_second")
        try Check.positive(persistSecondsPerEvent, "persist_seconds_per_event")
        try Check.unitInterval(targetUtilisation, "target_utilisation")
        try Check.positive(minimumHashPartitions, "minimum_hash_partitions")

        var loads: [(key: String, rate: Double, util: Double)] = []
        var seen = Set<String>()
        for site in sites {
            let id: SiteID
            do { id = try SiteID(validating: site.siteID) } catch {
                throw CapacityError(code: .invalidValue, input: "site_id", message: error.message, underlying: error)
            }
            guard seen.insert(id.rawValue).inserted else {
                throw CapacityError(code: .invalidValue, input: "site_id", message: "site \(id) is listed twice")
            }
            try Check.nonNegative(site.eventsPerSecond, "events_per_second")
            let util = site.eventsPerSecond * persistSecondsPerEvent
            guard util <= targetUtilisation else {
                throw CapacityError(
                    code: .infeasible,
                    input: "site_id",
                    message: "partition \(PartitionKey.site(id)) alone needs utilisation \(util) of one worker, above the target \(targetUtilisation); a partition is consumed by one worker at a time"
                )
            }
            loads.append((PartitionKey.site(id).rawValue, site.eventsPerSecond, util))
        }

        let hashUtil = hashEventsPerSecond * persistSecondsPerEvent
        let needed = ceilTolerant(hashUtil / targetUtilisation)
        guard needed <= Double(Partitioner.maximumPartitions) else {
            throw CapacityError(code: .infeasible, input: "hash_events_per_second", message: "hash_events_per_second \(hashEventsPerSecond) needs more than \(Partitioner.maximumPartitions) partitions")
        }
        let n = max(minimumHashPartitions, Int(needed))
        guard n <= Partitioner.maximumPartitions else {
            throw CapacityError(code: .outOfRange, input: "minimum_hash_partitions", message: "minimum_hash_partitions must be at most \(Partitioner.maximumPartitions), got \(minimumHashPartitions)")
        }
        for i in 0..<n {
            loads.append((PartitionKey.hashPartition(i).rawValue, hashEventsPerSecond / Double(n), hashUtil / Double(n)))
        }

        // First-fit decreasing; ties keep key order so the plan is deterministic.
        loads.sort { $0.util != $1.util ? $0.util > $1.util : $0.key < $1.key }
        var bins: [Double] = []
        var assignments: [Assignment] = []
        let slack = 1e-12
        for load in loads {
            let worker = bins.firstIndex { $0 + load.util <= targetUtilisation + slack } ?? {
                bins.append(0)
                return bins.count - 1
            }()
            bins[worker] += load.util
            assignments.append(Assignment(partition: load.key, eventsPerSecond: load.rate, utilisation: load.util, worker: worker))
        }
        if bins.isEmpty { bins = [0] }
        let total = loads.reduce(0) { $0 + $1.util }

        self.hashPartitions = n
        self.workers = bins.count
        self.lowerBoundWorkers = max(1, Int(ceilTolerant(total / targetUtilisation)))
        self.targetUtilisation = targetUtilisation
        self.persistSecondsPerEvent = persistSecondsPerEvent
        self.assignments = assignments
        self.workerUtilisations = bins
    }
}

/// What moving from `N` to `M` hash partitions costs: the consultations whose partition changes.
///
/// Their stored events sit in the old partition's corpus file, so each moved consultation's
/// rows must be copied for reads by consultation to find them in one place (or reads must look
/// in both). With the contract's `md5 mod N` about `1 − min(N, M) / lcm(N, M)` of all keys move
/// (8 → 9: ~89 %, 8 → 16: 50 %); jump consistent hash moves only about `|M − N| / max(N, M)` (8 → 9: ~11 %).
public struct RepartitionCost: Sendable, Hashable, Codable {
    /// Hash partitions before.
    public let fromPartitions: Int
    /// Hash partitions after.
    public let toPartitions: Int
    /// The hash strategy, `modulo` or `jump-consistent-hash`.
    public let strategy: String
    /// Consultation ids sampled.
    public let sampleSize: Int
    /// Fraction of the sample whose partition changes.
    public let movedFraction: Double
    /// Estimated consultations that move, if the total was given.
    public let movedConsultations: Double?
    /// Estimated corpus bytes to copy, if the stored hash-partition bytes were given.
    public let movedBytes: Double?

    /// Measures the cost on a sample of consultation ids with `Partitioner.remappedFraction`.
    /// - Parameters:
    ///   - from: Hash partitions now, `1…2²⁰`.
    ///   - to: Hash partitions after, `1…2²⁰`.
    ///   - consultationIDs: A sample of real ids (or ``syntheticConsultationIDs(count:)``), non-empty.
    ///   - strategy: The hash strategy (default the contract's `modulo`).
    ///   - totalConsultations: Consultations stored in hash partitions, ≥ 0, to scale the estimate.
    ///   - storedBytes: Bytes stored in hash partitions, ≥ 0, to estimate the copy volume.
    /// - Throws: ``CapacityError`` naming the first invalid input (wrapping a `PartitionError`).
    public init(
        from: Int,
        to: Int,
        consultationIDs: some Collection<String>,
        strategy: Partitioner.Strategy = .modulo,
        totalConsultations: Double? = nil,
        storedBytes: Double? = nil
    ) throws(CapacityError) {
        for (value, name) in [(from, "from_partitions"), (to, "to_partitions")] {
            try Check.positive(value, name)
            guard value <= Partitioner.maximumPartitions else {
                throw CapacityError(code: .outOfRange, input: name, message: "\(name) must be at most \(Partitioner.maximumPartitions), got \(value)")
            }
        }
        guard !consultationIDs.isEmpty else {
            throw CapacityError(code: .invalidValue, input: "consultation_ids", message: "consultation_ids must not be empty")
        }
        if let totalConsultations { try Check.nonNegative(totalConsultations, "total_consultations") }
        if let storedBytes { try Check.nonNegative(storedBytes, "stored_bytes") }
        let remap: Partitioner.Remapping
        do {
            remap = try Partitioner.remappedFraction(from: from, to: to, consultationIDs: consultationIDs, strategy: strategy)
        } catch {
            throw CapacityError(code: .outOfRange, input: "partitions", message: error.message, underlying: error)
        }
        self.fromPartitions = from
        self.toPartitions = to
        self.strategy = strategy.description
        self.sampleSize = remap.sampleSize
        self.movedFraction = remap.movedFraction
        self.movedConsultations = totalConsultations.map { $0 * remap.movedFraction }
        self.movedBytes = storedBytes.map { $0 * remap.movedFraction }
    }

    /// Deterministic ids `consultation-000000`, `consultation-000001`, … for sampling when real ids are not at hand.
    /// - Parameter count: How many, ≥ 0.
    public static func syntheticConsultationIDs(count: Int) -> [String] {
        (0..<max(0, count)).map { i in
            let digits = String(i)
            return "consultation-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
        }
    }
}
