import FIPartitioning
import Testing
@testable import FICapacity

/// One invalid call and the error it must raise.
struct InvalidCase: Sendable, CustomTestStringConvertible {
    let name: String
    let code: CapacityError.Code
    let input: String
    let call: @Sendable () throws -> Void

    init(_ name: String, _ code: CapacityError.Code, _ input: String, _ call: @escaping @Sendable () throws -> Void) {
        self.name = name
        self.code = code
        self.input = input
        self.call = call
    }

    var testDescription: String { name }
}

private let ids = RepartitionCost.syntheticConsultationIDs(count: 10)
private let nan = Double.nan
private let inf = Double.infinity

private func queue() throws -> MMcQueue { try MMcQueue(servers: 2, arrivalRatePerSecond: 1, meanServiceTimeSeconds: 1) }
private func storage() throws -> StorageEstimate { try StorageEstimate(eventsPerSecond: 1, meanPayloadBytes: 1) }
private func plan(_ change: (inout CapacityPlan.Inputs) -> Void) throws {
    var i = CapacityPlan.Inputs()
    change(&i)
    _ = try CapacityPlan(i)
}
private func load() throws -> ObservedLoad {
    let m = try ServiceMetrics(parsing: "fi_http_requests_total 1\n")
    return try ObservedLoad(from: m, to: m, intervalSeconds: 1)
}

let invalidCases: [InvalidCase] = [
    // Reference formula
    InvalidCase("workers = 0", .notPositive, "workers") { _ = try SessionThroughput(workers: 0, requestsPerSecondPerWorker: 100, requestsPerSession: 20) },
    InvalidCase("workers < 0", .negative, "workers") { _ = try SessionThroughput(workers: -1, requestsPerSecondPerWorker: 100, requestsPerSession: 20) },
    InvalidCase("requests/s per worker NaN", .notFinite, "requests_per_second_per_worker") { _ = try SessionThroughput(workers: 1, requestsPerSecondPerWorker: nan, requestsPerSession: 20) },
    InvalidCase("requests/s per worker ∞", .notFinite, "requests_per_second_per_worker") { _ = try SessionThroughput(workers: 1, requestsPerSecondPerWorker: inf, requestsPerSession: 20) },
    InvalidCase("requests/s per worker = 0", .notPositive, "requests_per_second_per_worker") { _ = try SessionThroughput(workers: 1, requestsPerSecondPerWorker: 0, requestsPerSession: 20) },
    InvalidCase("requests per session < 0", .negative, "requests_per_session") { _ = try SessionThroughput(workers: 1, requestsPerSecondPerWorker: 1, requestsPerSession: -20) },
    InvalidCase("requests per session = 0", .notPositive, "requests_per_session") { _ = try SessionThroughput(workers: 1, requestsPerSecondPerWorker: 1, requestsPerSession: 0) },
    InvalidCase("headroom < 1", .outOfRange, "headroom_factor") { _ = try SessionThroughput(workers: 1, requestsPerSecondPerWorker: 1, requestsPerSession: 1, headroomFactor: 0.9) },
    InvalidCase("headroom NaN", .notFinite, "headroom_factor") { _ = try SessionThroughput(workers: 1, requestsPerSecondPerWorker: 1, requestsPerSession: 1, headroomFactor: nan) },
    InvalidCase("sessions/day = 0", .notPositive, "sessions_per_day") { _ = try SessionThroughput.workersNeeded(sessionsPerDay: 0, requestsPerSecondPerWorker: 1, requestsPerSession: 1) },
    InvalidCase("sessions/day -∞", .notFinite, "sessions_per_day") { _ = try SessionThroughput.workersNeeded(sessionsPerDay: -inf, requestsPerSecondPerWorker: 1, requestsPerSession: 1) },
    InvalidCase("sessions/day too large", .outOfRange, "sessions_per_day") { _ = try SessionThroughput.workersNeeded(sessionsPerDay: 1e300, requestsPerSecondPerWorker: 1, requestsPerSession: 1, headroomFactor: 1) },
    InvalidCase("inverse headroom = 0", .notPositive, "headroom_factor") { _ = try SessionThroughput.workersNeeded(sessionsPerDay: 1, requestsPerSecondPerWorker: 1, requestsPerSession: 1, headroomFactor: 0) },
    InvalidCase("inverse headroom < 1", .outOfRange, "headroom_factor") { _ = try SessionThroughput.workersNeeded(sessionsPerDay: 1, requestsPerSecondPerWorker: 1, requestsPerSession: 1, headroomFactor: 0.5) },

    // Little's law
    InvalidCase("Little λ < 0", .negative, "arrival_rate_per_second") { _ = try LittlesLaw.meanItemsInSystem(arrivalRatePerSecond: -1, meanTimeInSystemSeconds: 1) },
    InvalidCase("Little W NaN", .notFinite, "mean_time_in_system_seconds") { _ = try LittlesLaw.meanItemsInSystem(arrivalRatePerSecond: 1, meanTimeInSystemSeconds: nan) },
    InvalidCase("Little W from λ = 0", .notPositive, "arrival_rate_per_second") { _ = try LittlesLaw.meanTimeInSystemSeconds(meanItemsInSystem: 1, arrivalRatePerSecond: 0) },
    InvalidCase("Little L < 0", .negative, "mean_items_in_system") { _ = try LittlesLaw.meanTimeInSystemSeconds(meanItemsInSystem: -1, arrivalRatePerSecond: 1) },
    InvalidCase("Little λ from W = 0", .notPositive, "mean_time_in_system_seconds") { _ = try LittlesLaw.arrivalRatePerSecond(meanItemsInSystem: 1, meanTimeInSystemSeconds: 0) },
    InvalidCase("Little λ from L = ∞", .notFinite, "mean_items_in_system") { _ = try LittlesLaw.arrivalRatePerSecond(meanItemsInSystem: inf, meanTimeInSystemSeconds: 1) },

    // M/M/c
    InvalidCase("servers = 0", .notPositive, "servers") { _ = try MMcQueue(servers: 0, arrivalRatePerSecond: 1, meanServiceTimeSeconds: 1) },
    InvalidCase("servers < 0", .negative, "servers") { _ = try MMcQueue(servers: -3, arrivalRatePerSecond: 1, meanServiceTimeSeconds: 1) },
    InvalidCase("arrival rate < 0", .negative, "arrival_rate_per_second") { _ = try MMcQueue(servers: 1, arrivalRatePerSecond: -1, meanServiceTimeSeconds: 1) },
    InvalidCase("arrival rate NaN", .notFinite, "arrival_rate_per_second") { _ = try MMcQueue(servers: 1, arrivalRatePerSecond: nan, meanServiceTimeSeconds: 1) },
    InvalidCase("service time = 0", .notPositive, "mean_service_time_seconds") { _ = try MMcQueue(servers: 1, arrivalRatePerSecond: 1, meanServiceTimeSeconds: 0) },
    InvalidCase("service time ∞", .notFinite, "mean_service_time_seconds") { _ = try MMcQueue(servers: 1, arrivalRatePerSecond: 1, meanServiceTimeSeconds: inf) },
    InvalidCase("λ = cμ", .unstable, "arrival_rate_per_second") { _ = try MMcQueue(servers: 2, arrivalRatePerSecond: 2, meanServiceTimeSeconds: 1) },
    InvalidCase("λ > cμ", .unstable, "arrival_rate_per_second") { _ = try MMcQueue(servers: 12, arrivalRatePerSecond: 1300, meanServiceTimeSeconds: 0.01) },
    InvalidCase("Erlang C a = c", .unstable, "offered_load_erlangs") { _ = try MMcQueue.probabilityOfWaiting(servers: 5, offeredLoadErlangs: 5) },
    InvalidCase("Erlang C a < 0", .negative, "offered_load_erlangs") { _ = try MMcQueue.probabilityOfWaiting(servers: 5, offeredLoadErlangs: -1) },
    InvalidCase("Erlang C c = 0", .notPositive, "servers") { _ = try MMcQueue.probabilityOfWaiting(servers: 0, offeredLoadErlangs: 0) },
    InvalidCase("percentile = 1", .outOfRange, "percentile") { _ = try queue().responseTimePercentileSeconds(1) },
    InvalidCase("percentile = 0", .notPositive, "percentile") { _ = try queue().responseTimePercentileSeconds(0) },
    InvalidCase("percentile NaN", .notFinite, "percentile") { _ = try queue().queueWaitPercentileSeconds(nan) },
    InvalidCase("wait seconds < 0", .negative, "seconds") { _ = try queue().probabilityQueueWaitExceeds(seconds: -1) },
    InvalidCase("response seconds NaN", .notFinite, "seconds") { _ = try queue().probabilityResponseTimeExceeds(seconds: nan) },
    InvalidCase("max rate target = 0", .notPositive, "target_seconds") { _ = try MMcQueue.maxArrivalRate(servers: 1, meanServiceTimeSeconds: 1, targetSeconds: 0) },
    InvalidCase("max rate percentile 1.5", .outOfRange, "percentile") { _ = try MMcQueue.maxArrivalRate(servers: 1, meanServiceTimeSeconds: 1, percentile: 1.5, targetSeconds: 1) },
    InvalidCase("max rate servers = 0", .notPositive, "servers") { _ = try MMcQueue.maxArrivalRate(servers: 0, meanServiceTimeSeconds: 1, targetSeconds: 1) },
    InvalidCase("max rate target unreachable", .infeasible, "target_seconds") { _ = try MMcQueue.maxArrivalRate(servers: 4, meanServiceTimeSeconds: 1, targetSeconds: 1) },

    // Storage
    InvalidCase("events/s < 0", .negative, "events_per_second") { _ = try StorageEstimate(eventsPerSecond: -1, meanPayloadBytes: 1) },
    InvalidCase("payload = 0", .notPositive, "mean_payload_bytes") { _ = try StorageEstimate(eventsPerSecond: 1, meanPayloadBytes: 0) },
    InvalidCase("overhead < 1", .outOfRange, "overhead_factor") { _ = try StorageEstimate(eventsPerSecond: 1, meanPayloadBytes: 1, overheadFactor: 0.5) },
    InvalidCase("overhead ∞", .notFinite, "overhead_factor") { _ = try StorageEstimate(eventsPerSecond: 1, meanPayloadBytes: 1, overheadFactor: inf) },
    InvalidCase("disk = 0", .notPositive, "disk_capacity_bytes") { _ = try storage().daysUntilFull(diskCapacityBytes: 0) },
    InvalidCase("used < 0", .negative, "used_bytes") { _ = try storage().daysUntilFull(diskCapacityBytes: 10, usedBytes: -1) },
    InvalidCase("used > disk", .outOfRange, "used_bytes") { _ = try storage().daysUntilFull(diskCapacityBytes: 10, usedBytes: 11) },
    InvalidCase("no partitions", .invalidValue, "partitions") { _ = try StoragePlan(partitions: [], meanPayloadBytes: 1, diskCapacityBytes: 1) },
    InvalidCase("partition twice", .invalidValue, "partitions") { _ = try StoragePlan(partitions: [("site_a", 1), ("site_a", 2)], meanPayloadBytes: 1, diskCapacityBytes: 1) },
    InvalidCase("partition rate NaN", .notFinite, "events_per_second") { _ = try StoragePlan(partitions: [("site_a", nan)], meanPayloadBytes: 1, diskCapacityBytes: 1) },

    // Network
    InvalidCase("link = 0 bit/s", .notPositive, "bits_per_second") { _ = try NetworkLink(name: "x", bitsPerSecond: 0) },
    InvalidCase("network events/s ∞", .notFinite, "events_per_second") { _ = try NetworkEstimate(eventsPerSecond: inf, bytesPerEvent: 1) },
    InvalidCase("network bytes NaN", .notFinite, "bytes_per_event") { _ = try NetworkEstimate(eventsPerSecond: 1, bytesPerEvent: nan) },
    InvalidCase("traversals = 0", .notPositive, "traversals") { _ = try NetworkEstimate(eventsPerSecond: 1, bytesPerEvent: 1, traversals: 0) },

    // Latency budget
    InvalidCase("no stages", .invalidValue, "stages") { _ = try LatencyBudget(stages: [], targetSeconds: 1) },
    InvalidCase("stage < 0", .negative, "persist_seconds") { _ = try LatencyBudget(ingestSeconds: 0, queueSeconds: 0, persistSeconds: -0.1, targetSeconds: 1) },
    InvalidCase("stage NaN", .notFinite, "ingest_seconds") { _ = try LatencyBudget(ingestSeconds: nan, queueSeconds: 0, persistSeconds: 0, targetSeconds: 1) },
    InvalidCase("budget target = 0", .notPositive, "target_seconds") { _ = try LatencyBudget(ingestSeconds: 0, queueSeconds: 0, persistSeconds: 0, targetSeconds: 0) },

    // Partition planning
    InvalidCase("invalid site id", .invalidValue, "site_id") { _ = try PartitionPlan(sites: [SiteLoad(siteID: "no spaces", eventsPerSecond: 1)], hashEventsPerSecond: 0, persistSecondsPerEvent: 0.01, targetUtilisation: 0.7) },
    InvalidCase("site twice", .invalidValue, "site_id") { _ = try PartitionPlan(sites: [SiteLoad(siteID: "a", eventsPerSecond: 1), SiteLoad(siteID: "a", eventsPerSecond: 1)], hashEventsPerSecond: 0, persistSecondsPerEvent: 0.01, targetUtilisation: 0.7) },
    InvalidCase("site rate < 0", .negative, "events_per_second") { _ = try PartitionPlan(sites: [SiteLoad(siteID: "a", eventsPerSecond: -1)], hashEventsPerSecond: 0, persistSecondsPerEvent: 0.01, targetUtilisation: 0.7) },
    InvalidCase("hash rate NaN", .notFinite, "hash_events_per_second") { _ = try PartitionPlan(sites: [], hashEventsPerSecond: nan, persistSecondsPerEvent: 0.01, targetUtilisation: 0.7) },
    InvalidCase("persist time = 0", .notPositive, "persist_seconds_per_event") { _ = try PartitionPlan(sites: [], hashEventsPerSecond: 1, persistSecondsPerEvent: 0, targetUtilisation: 0.7) },
    InvalidCase("target utilisation > 1", .outOfRange, "target_utilisation") { _ = try PartitionPlan(sites: [], hashEventsPerSecond: 1, persistSecondsPerEvent: 0.01, targetUtilisation: 1.5) },
    InvalidCase("target utilisation = 0", .notPositive, "target_utilisation") { _ = try PartitionPlan(sites: [], hashEventsPerSecond: 1, persistSecondsPerEvent: 0.01, targetUtilisation: 0) },
    InvalidCase("minimum partitions = 0", .notPositive, "minimum_hash_partitions") { _ = try PartitionPlan(sites: [], hashEventsPerSecond: 1, persistSecondsPerEvent: 0.01, targetUtilisation: 0.7, minimumHashPartitions: 0) },
    InvalidCase("minimum partitions > 2²⁰", .outOfRange, "minimum_hash_partitions") { _ = try PartitionPlan(sites: [], hashEventsPerSecond: 1, persistSecondsPerEvent: 0.01, targetUtilisation: 0.7, minimumHashPartitions: (1 << 20) + 1) },
    InvalidCase("hash load needs > 2²⁰ partitions", .infeasible, "hash_events_per_second") { _ = try PartitionPlan(sites: [], hashEventsPerSecond: 1e9, persistSecondsPerEvent: 0.01, targetUtilisation: 0.7) },
    InvalidCase("repartition from 0", .notPositive, "from_partitions") { _ = try RepartitionCost(from: 0, to: 3, consultationIDs: ids) },
    InvalidCase("repartition to > 2²⁰", .outOfRange, "to_partitions") { _ = try RepartitionCost(from: 3, to: (1 << 20) + 1, consultationIDs: ids) },
    InvalidCase("repartition no ids", .invalidValue, "consultation_ids") { _ = try RepartitionCost(from: 3, to: 4, consultationIDs: [String]()) },
    InvalidCase("repartition total < 0", .negative, "total_consultations") { _ = try RepartitionCost(from: 3, to: 4, consultationIDs: ids, totalConsultations: -1) },
    InvalidCase("repartition bytes NaN", .notFinite, "stored_bytes") { _ = try RepartitionCost(from: 3, to: 4, consultationIDs: ids, storedBytes: nan) },

    // Metrics
    InvalidCase("interval = 0", .notPositive, "interval_seconds") {
        let m = try ServiceMetrics(parsing: "fi_http_requests_total 1\n")
        _ = try ObservedLoad(from: m, to: m, intervalSeconds: 0)
    },
    InvalidCase("quantile 1.5", .outOfRange, "quantile") { _ = try ServiceMetrics.histogramQuantile(1.5, buckets: []) },
    InvalidCase("measured workers = 0", .notPositive, "workers") { _ = try MeasuredCapacity(observed: load(), workers: 0, meanServiceTimeSeconds: 0.01) },
    InvalidCase("measured service NaN", .notFinite, "mean_service_time_seconds") { _ = try MeasuredCapacity(observed: load(), workers: 1, meanServiceTimeSeconds: nan) },
    InvalidCase("measured target < 0", .negative, "response_time_target_seconds") { _ = try MeasuredCapacity(observed: load(), workers: 1, meanServiceTimeSeconds: 0.01, responseTimeTargetSeconds: -1) },

    // Plan inputs
    InvalidCase("plan target = 0", .notPositive, "target_sessions_per_day") { try plan { $0.targetSessionsPerDay = 0 } },
    InvalidCase("plan peak < 1", .outOfRange, "peak_to_average_ratio") { try plan { $0.peakToAverageRatio = 0.5 } },
    InvalidCase("plan events/session < 0", .negative, "events_per_session") { try plan { $0.eventsPerSession = -1 } },
    InvalidCase("plan service NaN", .notFinite, "mean_service_time_seconds") { try plan { $0.meanServiceTimeSeconds = nan } },
    InvalidCase("plan partitions = 0", .notPositive, "partitions") { try plan { $0.partitions = 0 } },
    InvalidCase("plan disk = 0", .notPositive, "disk_capacity_bytes") { try plan { $0.diskCapacityBytes = 0 } },
    InvalidCase("plan event bytes = 0", .notPositive, "mean_payload_bytes") { try plan { $0.meanEventBytes = 0 } },
    InvalidCase("plan ingest without persist", .invalidValue, "persist_seconds") { try plan { $0.ingestSeconds = 0.001 } },
    InvalidCase("plan end-to-end target = 0", .notPositive, "end_to_end_target_seconds") { try plan { $0.ingestSeconds = 0.001; $0.persistSeconds = 0.01; $0.endToEndTargetSeconds = 0 } },
    InvalidCase("plan workers = 0", .notPositive, "workers") { try plan { $0.workers = 0 } },
]

@Suite("Validation")
struct ValidationTests {
    @Test("every invalid input raises a CapacityError naming it", arguments: invalidCases)
    func invalid(_ c: InvalidCase) {
        do {
            try c.call()
            Issue.record("\(c.name): no error thrown")
        } catch let error as CapacityError {
            #expect(error.code == c.code, "\(c.name): \(error)")
            #expect(error.input == c.input, "\(c.name): \(error)")
            #expect(!error.message.isEmpty)
            #expect(error.description.hasPrefix("\(c.code)(\(c.input)): "))
        } catch {
            Issue.record("\(c.name): not a CapacityError: \(error)")
        }
    }

    @Test("an invalid site id keeps the PartitionError as the underlying error")
    func underlying() throws {
        do {
            _ = try PartitionPlan(sites: [SiteLoad(siteID: "", eventsPerSecond: 1)], hashEventsPerSecond: 0, persistSecondsPerEvent: 0.01, targetUtilisation: 0.7)
            Issue.record("no error")
        } catch {
            let partition = try #require(error.underlying as? PartitionError)
            #expect(partition.code == .invalidSiteID)
        }
    }

    @Test("codes print in snake_case")
    func codeNames() {
        #expect(CapacityError.Code.notFinite.description == "not_finite")
        #expect(CapacityError.Code.notPositive.description == "not_positive")
        #expect(CapacityError.Code.missingMetric.description == "missing_metric")
    }
}
