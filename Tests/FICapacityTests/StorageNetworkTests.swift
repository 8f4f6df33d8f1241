import Foundation
import Testing
@testable import FICapacity

@Suite("Storage, network and latency budget")
struct StorageNetworkTests {
    @Test("bytes/day per partition: (193 B + payload) × overhead × events/s × 86,400")
    func bytesPerDay() throws {
        let bare = try StorageEstimate(eventsPerSecond: 10, meanPayloadBytes: 1024, overheadFactor: 1)
        #expect(bare.logicalBytesPerEvent == 1217)
        #expect(bare.diskBytesPerDay == 1_051_488_000)  // 1,217 B × 10/s × 86,400 s
        let measured = try StorageEstimate(eventsPerSecond: 10, meanPayloadBytes: 1024)
        #expect(measured.overheadFactor == 1.013)
        #expect(abs(measured.diskBytesPerDay - 1_065_157_344) < 1e-3)  // × 1.013
    }

    @Test("days until a disk fills, and never with no writes")
    func daysUntilFull() throws {
        let s = try StorageEstimate(eventsPerSecond: 10, meanPayloadBytes: 1024, overheadFactor: 1)
        let days = try #require(try s.daysUntilFull(diskCapacityBytes: 1_051_488_000 * 30))
        #expect(abs(days - 30) < 1e-12)
        let half = try #require(try s.daysUntilFull(diskCapacityBytes: 1_051_488_000 * 30, usedBytes: 1_051_488_000 * 15))
        #expect(abs(half - 15) < 1e-12)
        let idle = try StorageEstimate(eventsPerSecond: 0, meanPayloadBytes: 1024)
        #expect(try idle.daysUntilFull(diskCapacityBytes: 1e12) == nil)
    }

    @Test("a storage plan sums partitions on one disk")
    func storagePlan() throws {
        let plan = try StoragePlan(
            partitions: [("site_a", 10), ("partition_0", 5), ("partition_1", 5)],
            meanPayloadBytes: 1024, overheadFactor: 1, diskCapacityBytes: 2_102_976_000 * 100
        )
        #expect(plan.partitions.map(\.partition) == ["site_a", "partition_0", "partition_1"])
        #expect(plan.partitions[0].diskBytesPerDay == 1_051_488_000)
        #expect(plan.partitions[1].diskBytesPerDay == 525_744_000)
        #expect(plan.totalDiskBytesPerDay == 2_102_976_000)
        #expect(abs(try #require(plan.daysUntilFull) - 100) < 1e-9)
        #expect(abs(plan.partitions[0].diskGigabytesPerDay - 1.051488) < 1e-12)
    }

    @Test("MB/s against 1 GbE and 10 GbE")
    func network() throws {
        let n = try NetworkEstimate(eventsPerSecond: 1000, bytesPerEvent: 1024)
        #expect(n.traversals == 3)
        #expect(abs(n.megabytesPerSecond - 3.072) < 1e-12)
        #expect(abs(n.megabitsPerSecond - 24.576) < 1e-12)
        #expect(n.links.map(\.link) == ["1 GbE", "10 GbE"])
        #expect(n.links[0].capacityMegabytesPerSecond == 125)
        #expect(n.links[1].capacityMegabytesPerSecond == 1250)
        #expect(abs(n.links[0].utilisation - 0.024576) < 1e-15)
        #expect(abs(n.links[1].utilisation - 0.0024576) < 1e-15)
        let custom = try NetworkEstimate(eventsPerSecond: 100, bytesPerEvent: 1000, traversals: 1, links: [NetworkLink(name: "25 GbE", bitsPerSecond: 25e9)])
        #expect(custom.links[0].utilisation == 800_000 / 25e9)
    }

    @Test("the latency budget sums ingest, queue and persist against the target")
    func latencyBudget() throws {
        let ok = try LatencyBudget(ingestSeconds: 0.002, queueSeconds: 0.010, persistSeconds: 0.020, targetSeconds: 0.050)
        #expect(ok.stages.map(\.name) == ["ingest", "queue", "persist"])
        #expect(abs(ok.totalSeconds - 0.032) < 1e-15)
        #expect(abs(ok.slackSeconds - 0.018) < 1e-15)
        #expect(ok.withinTarget)
        #expect(abs(ok.stages[2].fractionOfTarget - 0.4) < 1e-15)
        let over = try LatencyBudget(ingestSeconds: 0.002, queueSeconds: 0.010, persistSeconds: 0.020, targetSeconds: 0.030)
        #expect(!over.withinTarget)
        #expect(over.slackSeconds < 0)
        let custom = try LatencyBudget(stages: [("tls", 0.001), ("ingest", 0.002)], targetSeconds: 0.003)
        #expect(custom.withinTarget)
    }
}
