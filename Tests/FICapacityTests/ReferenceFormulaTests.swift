import Testing
@testable import FICapacity

@Suite("Reference formula")
struct ReferenceFormulaTests {
    @Test("12 workers × 100 requests/s × 86,400 / 20 = 5,184,000 sessions/day exactly")
    func referenceExample() throws {
        let t = try SessionThroughput(workers: 12, requestsPerSecondPerWorker: 100, requestsPerSession: 20, headroomFactor: 1)
        #expect(t.capacityRequestsPerSecond == 1_200)
        #expect(t.maxSessionsPerDay == 5_184_000)
        #expect(t.plannedSessionsPerDay == 5_184_000)
    }

    @Test("the headroom factor divides the planned sessions")
    func headroom() throws {
        let t = try SessionThroughput(workers: 12, requestsPerSecondPerWorker: 100, requestsPerSession: 20, headroomFactor: 1.5)
        #expect(t.maxSessionsPerDay == 5_184_000)
        #expect(t.plannedSessionsPerDay == 3_456_000)
        #expect(SessionThroughput.defaultHeadroomFactor == 1.5)
    }

    @Test("the inverse gives back 12 workers for 5,184,000 sessions/day")
    func inverseReference() throws {
        let w = try SessionThroughput.workersNeeded(sessionsPerDay: 5_184_000, requestsPerSecondPerWorker: 100, requestsPerSession: 20, headroomFactor: 1)
        #expect(w.exactWorkers == 12)
        #expect(w.workers == 12)
        #expect(w.demandRequestsPerSecond == 1_200)
    }

    @Test("the inverse rounds up and applies the headroom")
    func inverseRoundsUp() throws {
        // 5,184,001 sessions/day is one session over 12 workers' capacity → 13.
        let over = try SessionThroughput.workersNeeded(sessionsPerDay: 5_184_001, requestsPerSecondPerWorker: 100, requestsPerSession: 20, headroomFactor: 1)
        #expect(over.workers == 13)
        // With headroom 1.5 the reference load needs 18 workers.
        let h = try SessionThroughput.workersNeeded(sessionsPerDay: 5_184_000, requestsPerSecondPerWorker: 100, requestsPerSession: 20, headroomFactor: 1.5)
        #expect(h.workers == 18)
        // 10,000 sessions/day × 20 / 86,400 = 2.31 requests/s: one worker.
        let small = try SessionThroughput.workersNeeded(sessionsPerDay: 10_000, requestsPerSecondPerWorker: 100, requestsPerSession: 20)
        #expect(small.workers == 1)
        #expect(abs(small.demandRequestsPerSecond - 10_000.0 * 20 / 86_400) < 1e-12)
    }

    @Test("formula and inverse agree for assorted inputs")
    func roundTrip() throws {
        for (workers, rps, perSession) in [(1, 1.0, 1.0), (3, 250.0, 17.0), (40, 80.5, 20.0), (7, 12.25, 3.5)] {
            let t = try SessionThroughput(workers: workers, requestsPerSecondPerWorker: rps, requestsPerSession: perSession, headroomFactor: 1.25)
            let w = try SessionThroughput.workersNeeded(sessionsPerDay: t.plannedSessionsPerDay, requestsPerSecondPerWorker: rps, requestsPerSession: perSession, headroomFactor: 1.25)
            #expect(w.workers == workers)
        }
    }
}
