import FIPartitioning
import Testing
@testable import FICapacity

@Suite("Partition planning")
struct PartitionPlanTests {
    @Test("sites and hash partitions packed under the target utilisation")
    func mixedPlan() throws {
        // 10 ms per event: 100 events/s fill one worker. Sites use 0.5, 0.3, 0.1; hash events 1.2,
        // which needs ⌈1.2/0.7⌉ = 2 partitions, raised to the contract's 3 (0.4 each).
        let plan = try PartitionPlan(
            sites: [SiteLoad(siteID: "a", eventsPerSecond: 50), SiteLoad(siteID: "b", eventsPerSecond: 30), SiteLoad(siteID: "c", eventsPerSecond: 10)],
            hashEventsPerSecond: 120,
            persistSecondsPerEvent: 0.01,
            targetUtilisation: 0.7
        )
        #expect(plan.hashPartitions == 3)
        #expect(plan.lowerBoundWorkers == 3)  // ⌈2.1 / 0.7⌉
        // 0.4 + 0.4 > 0.7, so the three hash partitions need three workers and site_a (0.5) a
        // fourth unless it shares with site_c (0.1): four is optimal here.
        #expect(plan.workers == 4)
        #expect(plan.maxWorkerUtilisation <= 0.7 + 1e-12)
        #expect(plan.assignments.count == 6)
        #expect(Set(plan.assignments.map(\.partition)) == ["site_a", "site_b", "site_c", "partition_0", "partition_1", "partition_2"])
        var sums = Array(repeating: 0.0, count: plan.workers)
        for a in plan.assignments { sums[a.worker] += a.utilisation }
        for (s, u) in zip(sums, plan.workerUtilisations) { #expect(abs(s - u) < 1e-12) }
    }

    @Test("hash partitions grow with the hash load")
    func hashOnly() throws {
        let plan = try PartitionPlan(sites: [], hashEventsPerSecond: 250, persistSecondsPerEvent: 0.01, targetUtilisation: 0.5, minimumHashPartitions: 1)
        #expect(plan.hashPartitions == 5)
        #expect(plan.workers == 5)
        #expect(plan.assignments.allSatisfy { abs($0.utilisation - 0.5) < 1e-12 })
        let idle = try PartitionPlan(sites: [], hashEventsPerSecond: 0, persistSecondsPerEvent: 0.01, targetUtilisation: 0.5)
        #expect(idle.hashPartitions == 3)
        #expect(idle.workers == 1)
    }

    @Test("a site heavier than one worker's target is infeasible, naming the site")
    func heavySite() throws {
        let error = #expect(throws: CapacityError.self) {
            try PartitionPlan(sites: [SiteLoad(siteID: "big", eventsPerSecond: 80)], hashEventsPerSecond: 0, persistSecondsPerEvent: 0.01, targetUtilisation: 0.7)
        }
        #expect(error?.code == .infeasible)
        #expect(error?.input == "site_id")
        #expect(error?.message.contains("site_big") == true)
    }

    @Test("moving from N to M partitions: modulo moves most keys, jump hash few")
    func repartition() throws {
        let ids = RepartitionCost.syntheticConsultationIDs(count: 20_000)
        #expect(ids.first == "consultation-000000")
        let modulo = try RepartitionCost(from: 8, to: 9, consultationIDs: ids, totalConsultations: 1_000_000, storedBytes: 1e12)
        #expect(modulo.sampleSize == 20_000)
        #expect(abs(modulo.movedFraction - 8.0 / 9) < 0.02)  // stays only when h mod 72 < 8
        #expect(modulo.strategy == "modulo")
        #expect(abs(try #require(modulo.movedConsultations) - 1_000_000 * modulo.movedFraction) < 1e-6)
        #expect(abs(try #require(modulo.movedBytes) - 1e12 * modulo.movedFraction) < 1)
        let jump = try RepartitionCost(from: 8, to: 9, consultationIDs: ids, strategy: .jumpConsistentHash)
        #expect(abs(jump.movedFraction - 1.0 / 9) < 0.02)
        #expect(jump.movedConsultations == nil)
        let same = try RepartitionCost(from: 3, to: 3, consultationIDs: ids)
        #expect(same.movedFraction == 0)
        // It is exactly FIPartitioning's figure.
        let direct = try Partitioner.remappedFraction(from: 3, to: 6, consultationIDs: ids, strategy: .modulo)
        #expect(try RepartitionCost(from: 3, to: 6, consultationIDs: ids).movedFraction == direct.movedFraction)
    }
}
