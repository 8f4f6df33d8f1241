import Foundation
import Testing
@testable import FICapacity

@Suite("Capacity plan")
struct CapacityPlanTests {
    @Test("the default plan: reference formula, queue at target, limit, storage, network")
    func defaultPlan() throws {
        let plan = try CapacityPlan(CapacityPlan.Inputs())
        #expect(plan.maxSessionsPerDay == 5_184_000)
        #expect(plan.plannedSessionsPerDay == 3_456_000)
        #expect(plan.workersForTarget.workers == 1)
        let q = try #require(plan.queueAtTarget)
        #expect(abs(q.arrivalRatePerSecond - 10_000.0 * 20 / 86_400) < 1e-12)
        let limit = try #require(plan.responseTimeLimit)
        #expect(abs(limit.maxRequestsPerSecond - 1119.8824153360626) < 1e-6)
        #expect(abs(limit.maxSessionsPerDay - 1119.8824153360626 * 86_400 / 20) < 1e-3)
        #expect(plan.storage.partitions.count == 3)
        // 10,000 × 20 events/day × (193 + 1,024) B × 1.013.
        #expect(abs(plan.storage.totalDiskBytesPerDay - 200_000 * 1217 * 1.013) < 1e-3)
        #expect(plan.network.links.count == 2)
        #expect(plan.latencyBudget == nil)
        #expect(plan.notes.isEmpty)
    }

    @Test("an overloaded peak is reported, not thrown")
    func overloaded() throws {
        var i = CapacityPlan.Inputs()
        i.targetSessionsPerDay = 6_000_000
        let plan = try CapacityPlan(i)
        #expect(plan.queueAtTarget == nil)
        #expect(plan.workersForTarget.workers == 21)  // 6e6 × 20 / 86,400 × 1.5 / 100 = 20.8
        #expect(plan.notes.contains { $0.contains("grows without bound") })
        #expect(plan.notes.contains { $0.contains("21 workers") })
        #expect(plan.table().contains("unstable"))
    }

    @Test("the latency budget uses the model's queue wait")
    func latencyBudget() throws {
        var i = CapacityPlan.Inputs()
        i.targetSessionsPerDay = 4_320_000  // 1,000 requests/s
        i.ingestSeconds = 0.002
        i.persistSeconds = 0.020
        i.endToEndTargetSeconds = 0.05
        let plan = try CapacityPlan(i)
        let b = try #require(plan.latencyBudget)
        let q = try MMcQueue(servers: 12, arrivalRatePerSecond: 1000, meanServiceTimeSeconds: 0.01)
        #expect(abs(b.stages[1].seconds - (try q.queueWaitPercentileSeconds(0.95))) < 1e-12)
        #expect(abs(b.totalSeconds - (0.022 + b.stages[1].seconds)) < 1e-12)
    }

    @Test("table shows units; JSON is snake_case and round-trips")
    func renderings() throws {
        var i = CapacityPlan.Inputs()
        i.ingestSeconds = 0.002
        i.persistSeconds = 0.01
        let plan = try CapacityPlan(i)
        let table = plan.table()
        for unit in ["sessions/day", "requests/s", "ms", "GB/day", "MB/s", "days", "%"] {
            #expect(table.contains(unit), "table lacks \(unit)")
        }
        #expect(table.contains("5,184,000"))
        #expect(table.contains("1 GbE"))
        #expect(table.contains("10 GbE"))
        let data = try plan.jsonData()
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"max_sessions_per_day\" : 5184000"))
        #expect(text.contains("\"p95_response_time_seconds\""))
        #expect(text.contains("\"disk_bytes_per_day\""))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let back = try decoder.decode(CapacityPlan.self, from: data)
        #expect(back.maxSessionsPerDay == plan.maxSessionsPerDay)
        #expect(back.inputs == plan.inputs)
    }
}

@Suite("Capacity plan inputs")
struct CapacityPlanInputsTests {
    @Test("JSON inputs may give only some fields; the rest keep their defaults")
    func partialInputs() throws {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let i = try decoder.decode(CapacityPlan.Inputs.self, from: Data(#"{"target_sessions_per_day": 300, "ingest_seconds": 0.002}"#.utf8))
        #expect(i.targetSessionsPerDay == 300)
        #expect(i.ingestSeconds == 0.002)
        #expect(i.workers == 12)
        #expect(i.headroomFactor == 1.5)
        #expect(i.persistSeconds == nil)
        #expect(try decoder.decode(CapacityPlan.Inputs.self, from: Data("{}".utf8)) == CapacityPlan.Inputs())
    }
}
