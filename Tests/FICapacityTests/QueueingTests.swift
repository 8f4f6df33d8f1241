import Foundation
import Testing
@testable import FICapacity

// Reference values were computed independently with /usr/bin/python3: Erlang C from the textbook
// sum  C = (aᶜ/c!)·(c/(c−a)) / (Σₖ₌₀^{c−1} aᵏ/k! + (aᶜ/c!)·(c/(c−a))), percentiles by bisection on
// the closed-form sojourn survival, and each cross-checked against a 400,000-arrival FCFS M/M/c
// simulation (the script is in Docs/capacity.md, "Verifying the queueing model"):
//
//   c=2,  λ=1,    μ=1:   C=1/3,          Wq=1/3,          p95=3.8164603052  p99=5.6659606838  (sim 3.84, 5.70)
//   c=5,  λ=4,    μ=1:   C=0.5541125541, Wq=0.5541125541, p95=4.1974625784  p99=6.0796625245  (sim 4.20, 6.06)
//   c=1,  λ=0.5,  μ=1:   C=0.5,          Wq=1,            p95=5.9914645471  (= −ln 0.05 / 0.5)
//   c=12, λ=1000, μ=100: C=0.4493882243, Wq=0.0022469411, p95=0.0335600200  p99=0.0497416564
//   largest λ with p95 ≤ 50 ms at c=12, μ=100: 1119.8824153360626
// c=5, a=4 → C ≈ 0.5541 is also the textbook table value (e.g. Kleinrock, Queueing Systems Vol. 1).

private func close(_ a: Double, _ b: Double, _ rel: Double = 1e-9) -> Bool {
    abs(a - b) <= rel * max(1, abs(b))
}

@Suite("Little's law")
struct LittlesLawTests {
    @Test("L = λW and its two inverses")
    func littlesLaw() throws {
        #expect(try LittlesLaw.meanItemsInSystem(arrivalRatePerSecond: 200, meanTimeInSystemSeconds: 0.05) == 10)
        #expect(try LittlesLaw.meanTimeInSystemSeconds(meanItemsInSystem: 10, arrivalRatePerSecond: 200) == 0.05)
        #expect(try LittlesLaw.arrivalRatePerSecond(meanItemsInSystem: 10, meanTimeInSystemSeconds: 0.05) == 200)
        #expect(try LittlesLaw.meanItemsInSystem(arrivalRatePerSecond: 0, meanTimeInSystemSeconds: 3) == 0)
    }

    @Test("the M/M/c queue obeys Little's law")
    func queueObeysLittle() throws {
        let q = try MMcQueue(servers: 5, arrivalRatePerSecond: 4, meanServiceTimeSeconds: 1)
        #expect(close(q.meanQueueLength, try LittlesLaw.meanItemsInSystem(arrivalRatePerSecond: 4, meanTimeInSystemSeconds: q.meanQueueWaitSeconds)))
        // L = Lq + a for M/M/c.
        #expect(close(q.meanRequestsInSystem, q.meanQueueLength + q.offeredLoadErlangs))
    }
}

@Suite("M/M/c (Erlang C)")
struct ErlangCTests {
    @Test("c=2, λ=1, μ=1: Pw = 1/3, Wq = 1/3")
    func twoServers() throws {
        let q = try MMcQueue(servers: 2, arrivalRatePerSecond: 1, meanServiceTimeSeconds: 1)
        #expect(q.utilisation == 0.5)
        #expect(q.offeredLoadErlangs == 1)
        #expect(close(q.probabilityOfWaiting, 1.0 / 3))
        #expect(close(q.meanQueueWaitSeconds, 1.0 / 3))
        #expect(close(q.meanResponseTimeSeconds, 4.0 / 3))
        // θ = cμ − λ = μ here: the equal-rates branch of the sojourn distribution.
        #expect(close(try q.responseTimePercentileSeconds(0.95), 3.8164603052, 1e-9))
        #expect(close(try q.responseTimePercentileSeconds(0.99), 5.6659606838, 1e-9))
    }

    @Test("c=1 reduces to M/M/1: Pw = ρ, Wq = ρ/(μ−λ), T ~ Exp(μ−λ)")
    func mm1() throws {
        for (lambda, mu) in [(0.5, 1.0), (90.0, 100.0), (1.0, 3.0)] {
            let q = try MMcQueue(servers: 1, arrivalRatePerSecond: lambda, meanServiceTimeSeconds: 1 / mu)
            let rho = lambda / mu
            #expect(close(q.probabilityOfWaiting, rho))
            #expect(close(q.meanQueueWaitSeconds, rho / (mu - lambda)))
            #expect(close(q.meanResponseTimeSeconds, 1 / (mu - lambda)))
            for p in [0.5, 0.95, 0.99] {
                #expect(close(try q.responseTimePercentileSeconds(p), -log(1 - p) / (mu - lambda), 1e-9))
            }
        }
    }

    @Test("c=5, a=4: C ≈ 0.5541 (table value)")
    func tableValue() throws {
        #expect(close(MMcQueue.erlangC(servers: 5, offeredLoad: 4), 0.5541125541, 1e-9))
        #expect(close(try MMcQueue.probabilityOfWaiting(servers: 5, offeredLoadErlangs: 4), 0.5541125541, 1e-9))
        let q = try MMcQueue(servers: 5, arrivalRatePerSecond: 4, meanServiceTimeSeconds: 1)
        #expect(close(q.meanQueueWaitSeconds, 0.5541125541, 1e-9))
        #expect(close(try q.responseTimePercentileSeconds(0.95), 4.1974625784, 1e-9))
        #expect(close(try q.responseTimePercentileSeconds(0.99), 6.0796625245, 1e-9))
    }

    @Test("the reference fleet: 12 workers × 10 ms at 1,000 requests/s")
    func referenceFleet() throws {
        let q = try MMcQueue(servers: 12, arrivalRatePerSecond: 1000, meanServiceTimeSeconds: 0.01)
        #expect(close(q.probabilityOfWaiting, 0.4493882243, 1e-9))
        #expect(close(q.meanQueueWaitSeconds, 0.0022469411, 1e-8))
        let e = q.estimate
        #expect(close(e.p95ResponseTimeSeconds, 0.0335600200, 1e-8))
        #expect(close(e.p99ResponseTimeSeconds, 0.0497416564, 1e-8))
        #expect(e.p50ResponseTimeSeconds < e.p95ResponseTimeSeconds)
    }

    @Test("the wait distribution: P(Wq > t) = C·e^(−(cμ−λ)t) and its percentiles")
    func waitDistribution() throws {
        let q = try MMcQueue(servers: 2, arrivalRatePerSecond: 1, meanServiceTimeSeconds: 1)
        #expect(close(try q.probabilityQueueWaitExceeds(seconds: 0), 1.0 / 3))
        #expect(close(try q.probabilityQueueWaitExceeds(seconds: 2), exp(-2) / 3))
        // 1/3 of arrivals wait, so the median wait is 0 and p95 is ln((1/3)/0.05)/1.
        #expect(try q.queueWaitPercentileSeconds(0.5) == 0)
        #expect(close(try q.queueWaitPercentileSeconds(0.95), log((1.0 / 3) / 0.05)))
        #expect(try q.probabilityResponseTimeExceeds(seconds: 0) == 1)
    }

    @Test("no arrivals: no waiting, the response time is the service time")
    func idle() throws {
        let q = try MMcQueue(servers: 3, arrivalRatePerSecond: 0, meanServiceTimeSeconds: 0.01)
        #expect(q.probabilityOfWaiting == 0)
        #expect(q.meanQueueWaitSeconds == 0)
        #expect(close(try q.responseTimePercentileSeconds(0.95), -log(0.05) * 0.01))
    }

    @Test("Erlang C is stable for thousands of servers")
    func manyServers() throws {
        let c = MMcQueue.erlangC(servers: 5000, offeredLoad: 4900)
        #expect(c > 0 && c < 1)
        #expect(c.isFinite)
    }

    @Test("the response-time percentile is monotone in λ near the equal-rates point")
    func smoothAroundEqualRates() throws {
        // θ = 2μ − λ crosses μ at λ = 1; the expm1 form must not jump there.
        var previous = 0.0
        for lambda in stride(from: 0.999999, through: 1.000001, by: 0.0000005) {
            let p = try MMcQueue(servers: 2, arrivalRatePerSecond: lambda, meanServiceTimeSeconds: 1).responseTimePercentileSeconds(0.95)
            #expect(p >= previous)
            previous = p
        }
    }
}

@Suite("Largest arrival rate for a target percentile")
struct MaxArrivalRateTests {
    @Test("meets the target and is the largest such rate", arguments: [
        (12, 0.01, 0.95, 0.050),
        (1, 1.0, 0.95, 10.0),
        (5, 1.0, 0.99, 8.0),
        (64, 0.004, 0.95, 0.020),
    ])
    func largestRate(servers: Int, service: Double, percentile: Double, target: Double) throws {
        let m = try MMcQueue.maxArrivalRate(servers: servers, meanServiceTimeSeconds: service, percentile: percentile, targetSeconds: target)
        let at = try MMcQueue(servers: servers, arrivalRatePerSecond: m.arrivalRatePerSecond, meanServiceTimeSeconds: service)
        #expect(try at.responseTimePercentileSeconds(percentile) <= target)
        #expect(m.responseTimeAtRateSeconds <= target)
        #expect(close(m.responseTimeAtRateSeconds, target, 1e-6))
        let higher = try MMcQueue(servers: servers, arrivalRatePerSecond: m.arrivalRatePerSecond * 1.0001, meanServiceTimeSeconds: service)
        #expect(try higher.responseTimePercentileSeconds(percentile) > target)
    }

    @Test("the reference fleet takes 1,119.88 requests/s at p95 ≤ 50 ms")
    func referenceValue() throws {
        let m = try MMcQueue.maxArrivalRate(servers: 12, meanServiceTimeSeconds: 0.01, percentile: 0.95, targetSeconds: 0.05)
        #expect(close(m.arrivalRatePerSecond, 1119.8824153360626, 1e-9))
        #expect(close(m.utilisation, 1119.8824153360626 / 1200, 1e-9))
    }

    @Test("M/M/1 has the closed form λ = μ + ln(1−p)/target")
    func mm1ClosedForm() throws {
        let m = try MMcQueue.maxArrivalRate(servers: 1, meanServiceTimeSeconds: 0.01, percentile: 0.95, targetSeconds: 0.05)
        #expect(close(m.arrivalRatePerSecond, 100 + log(0.05) / 0.05, 1e-9))
    }

    @Test("a target below the idle service-time percentile is infeasible")
    func infeasible() throws {
        // p95 of Exp(mean 10 ms) alone is 29.96 ms.
        let error = #expect(throws: CapacityError.self) {
            try MMcQueue.maxArrivalRate(servers: 12, meanServiceTimeSeconds: 0.01, percentile: 0.95, targetSeconds: 0.029)
        }
        #expect(error?.code == .infeasible)
        #expect(error?.input == "target_seconds")
    }
}
