import Foundation

/// An M/M/c queue: Poisson arrivals at rate λ, exponential service with mean 1/μ, `c` identical
/// servers, one FCFS queue, unbounded waiting room.
///
/// With offered load `a = λ/μ` (Erlangs) and utilisation `ρ = a/c < 1`:
///
/// - Probability an arrival waits, Erlang C: `C(c, a) = B / (1 − ρ(1 − B))`, where the Erlang B
///   value `B` comes from the stable recursion `B₀ = 1`, `Bₖ = a·Bₖ₋₁ / (k + a·Bₖ₋₁)`.
/// - Queue wait `Wq`: 0 with probability `1 − C`, otherwise exponential with rate `θ = cμ − λ`, so
///   `P(Wq > t) = C · e^(−θt)` and `E[Wq] = C / θ`.
/// - Response (sojourn) time `T = S + Wq` with the service time `S ~ Exp(μ)` independent of `Wq`:
///   `P(T > t) = (1 − C)·e^(−μt) + C·P(S + Exp(θ) > t)`, where for two exponentials with rates
///   `α ≤ β`, `P(Exp(α) + Exp(β) > t) = e^(−αt)·(1 + α·(1 − e^(−(β−α)t)) / (β − α))`
///   (and `(1 + αt)·e^(−αt)` when `α = β`; the `expm1` form used is exact in both cases).
///   Percentiles of `T` are found by bisection on this survival function.
///
/// Map it to FI Scale as: a request is served by one of `c` busy units (workers, or connections
/// and handlers), with ``meanServiceTimeSeconds`` the measured time one request occupies a unit.
public struct MMcQueue: Sendable, Hashable {
    /// c: the number of servers (workers).
    public let servers: Int
    /// λ: mean arrival rate, requests per second.
    public let arrivalRatePerSecond: Double
    /// 1/μ: mean service time of one request at one server, seconds.
    public let meanServiceTimeSeconds: Double

    /// Validates the inputs and checks the queue is stable (`λ < c·μ`).
    /// - Parameters:
    ///   - servers: c, > 0.
    ///   - arrivalRatePerSecond: λ, requests per second, ≥ 0.
    ///   - meanServiceTimeSeconds: 1/μ, seconds, > 0.
    /// - Throws: ``CapacityError`` naming the invalid input; code ``CapacityError/Code/unstable``
    ///   when the utilisation is 1 or more.
    public init(servers: Int, arrivalRatePerSecond: Double, meanServiceTimeSeconds: Double) throws(CapacityError) {
        try Check.positive(servers, "servers")
        try Check.nonNegative(arrivalRatePerSecond, "arrival_rate_per_second")
        try Check.positive(meanServiceTimeSeconds, "mean_service_time_seconds")
        let capacity = Double(servers) / meanServiceTimeSeconds
        guard arrivalRatePerSecond < capacity else {
            throw CapacityError(
                code: .unstable,
                input: "arrival_rate_per_second",
                message: "arrival_rate_per_second \(arrivalRatePerSecond) is not below the capacity of \(servers) servers × \(1 / meanServiceTimeSeconds) requests/s = \(capacity) requests/s; the queue grows without bound"
            )
        }
        self.servers = servers
        self.arrivalRatePerSecond = arrivalRatePerSecond
        self.meanServiceTimeSeconds = meanServiceTimeSeconds
    }

    /// μ: requests per second one server completes.
    public var serviceRatePerSecond: Double { 1 / meanServiceTimeSeconds }
    /// c·μ: requests per second all servers complete when busy.
    public var capacityRequestsPerSecond: Double { Double(servers) / meanServiceTimeSeconds }
    /// a = λ/μ: offered load, Erlangs (mean number of busy servers).
    public var offeredLoadErlangs: Double { arrivalRatePerSecond * meanServiceTimeSeconds }
    /// ρ = λ/(cμ): utilisation of each server, a fraction in `[0, 1)`.
    public var utilisation: Double { offeredLoadErlangs / Double(servers) }
    /// C(c, a): probability that an arrival has to wait (Erlang C), a fraction.
    public var probabilityOfWaiting: Double { Self.erlangC(servers: servers, offeredLoad: offeredLoadErlangs) }
    /// θ = cμ − λ: decay rate of the queue-wait tail, per second.
    var waitDecayRatePerSecond: Double { capacityRequestsPerSecond - arrivalRatePerSecond }
    /// E[Wq] = C / (cμ − λ): mean time in the queue before service, seconds.
    public var meanQueueWaitSeconds: Double { probabilityOfWaiting / waitDecayRatePerSecond }
    /// E[T] = E[Wq] + 1/μ: mean response (sojourn) time, seconds.
    public var meanResponseTimeSeconds: Double { meanQueueWaitSeconds + meanServiceTimeSeconds }
    /// Lq = λ·E[Wq]: mean number of requests waiting (Little's law), requests.
    public var meanQueueLength: Double { arrivalRatePerSecond * meanQueueWaitSeconds }
    /// L = λ·E[T]: mean number of requests waiting or in service (Little's law), requests.
    public var meanRequestsInSystem: Double { arrivalRatePerSecond * meanResponseTimeSeconds }

    /// P(Wq > t) = C·e^(−(cμ−λ)t): probability the queue wait exceeds `seconds`.
    /// - Parameter seconds: t, ≥ 0.
    /// - Throws: ``CapacityError`` if `seconds` is negative or not finite.
    public func probabilityQueueWaitExceeds(seconds: Double) throws(CapacityError) -> Double {
        try Check.nonNegative(seconds, "seconds")
        return probabilityOfWaiting * exp(-waitDecayRatePerSecond * seconds)
    }

    /// P(T > t): probability the response time (queue wait + service) exceeds `seconds`.
    /// - Parameter seconds: t, ≥ 0.
    /// - Throws: ``CapacityError`` if `seconds` is negative or not finite.
    public func probabilityResponseTimeExceeds(seconds: Double) throws(CapacityError) -> Double {
        try Check.nonNegative(seconds, "seconds")
        return responseSurvival(seconds)
    }

    func responseSurvival(_ t: Double) -> Double {
        let mu = serviceRatePerSecond
        let c = probabilityOfWaiting
        let serviceOnly = exp(-mu * t)
        guard c > 0 else { return serviceOnly }
        let alpha = min(mu, waitDecayRatePerSecond)
        let beta = max(mu, waitDecayRatePerSecond)
        let d = beta - alpha
        // (1 − e^(−dt)) / d, → t as d → 0.
        let g = d * t == 0 ? t : -expm1(-d * t) / d
        let sumOfTwo = exp(-alpha * t) * (1 + alpha * g)
        return (1 - c) * serviceOnly + c * sumOfTwo
    }

    /// The p-quantile of the queue wait, seconds: 0 when `1 − p ≥ C`, else `ln(C / (1 − p)) / (cμ − λ)`.
    /// - Parameter percentile: p, strictly between 0 and 1 (0.95 for p95).
    /// - Throws: ``CapacityError`` if `percentile` is outside `(0, 1)`.
    public func queueWaitPercentileSeconds(_ percentile: Double) throws(CapacityError) -> Double {
        try Check.openUnit(percentile, "percentile")
        let c = probabilityOfWaiting
        let tail = 1 - percentile
        guard c > tail else { return 0 }
        return log(c / tail) / waitDecayRatePerSecond
    }

    /// The p-quantile of the response time (queue wait + service), seconds, by bisection on P(T > t).
    /// - Parameter percentile: p, strictly between 0 and 1 (0.95 for p95, 0.99 for p99).
    /// - Throws: ``CapacityError`` if `percentile` is outside `(0, 1)`.
    public func responseTimePercentileSeconds(_ percentile: Double) throws(CapacityError) -> Double {
        try Check.openUnit(percentile, "percentile")
        return responsePercentile(percentile)
    }

    func responsePercentile(_ percentile: Double) -> Double {
        let tail = 1 - percentile
        var lo = 0.0
        var hi = meanResponseTimeSeconds
        while responseSurvival(hi) > tail { lo = hi; hi *= 2 }
        for _ in 0..<200 {
            let mid = (lo + hi) / 2
            if mid <= lo || mid >= hi { break }
            if responseSurvival(mid) > tail { lo = mid } else { hi = mid }
        }
        return hi
    }

    /// Erlang C, `C(c, a)`, unchecked (callers validate): the probability that an arrival waits.
    ///
    /// Computed from the Erlang B recursion, which neither overflows nor loses precision for
    /// thousands of servers: `B₀ = 1`, `Bₖ = a·Bₖ₋₁ / (k + a·Bₖ₋₁)`, `C = B_c / (1 − (a/c)(1 − B_c))`.
    /// - Parameters:
    ///   - servers: c, > 0.
    ///   - offeredLoad: a = λ/μ in Erlangs, `0 ≤ a < c`.
    /// - Returns: A probability in `[0, 1)`.
    static func erlangC(servers: Int, offeredLoad: Double) -> Double {
        precondition(servers > 0 && offeredLoad >= 0 && offeredLoad < Double(servers), "erlangC needs 0 ≤ a < c")
        var b = 1.0
        for k in 1...servers {
            b = offeredLoad * b / (Double(k) + offeredLoad * b)
        }
        let rho = offeredLoad / Double(servers)
        return b / (1 - rho * (1 - b))
    }

    /// Erlang C, `C(c, a)`: the probability that an arrival waits in an M/M/c queue.
    ///
    /// Computed from the Erlang B recursion, stable for thousands of servers:
    /// `B₀ = 1`, `Bₖ = a·Bₖ₋₁ / (k + a·Bₖ₋₁)`, `C = B_c / (1 − (a/c)(1 − B_c))`.
    /// - Parameters:
    ///   - servers: c, > 0.
    ///   - offeredLoadErlangs: a = λ/μ, `0 ≤ a < c`.
    /// - Returns: A probability in `[0, 1)`.
    /// - Throws: ``CapacityError`` if `servers ≤ 0`, `offeredLoadErlangs` is negative or not finite,
    ///   or `offeredLoadErlangs ≥ servers` (``CapacityError/Code/unstable``).
    public static func probabilityOfWaiting(servers: Int, offeredLoadErlangs: Double) throws(CapacityError) -> Double {
        try Check.positive(servers, "servers")
        try Check.nonNegative(offeredLoadErlangs, "offered_load_erlangs")
        guard offeredLoadErlangs < Double(servers) else {
            throw CapacityError(code: .unstable, input: "offered_load_erlangs", message: "offered_load_erlangs \(offeredLoadErlangs) is not below servers \(servers); the queue grows without bound")
        }
        return erlangC(servers: servers, offeredLoad: offeredLoadErlangs)
    }

    /// The largest arrival rate whose response-time percentile stays within a target.
    ///
    /// The percentile of `T` rises monotonically with λ (from the service-time percentile
    /// `−ln(1−p)/μ` at λ → 0 to infinity at λ → cμ), so bisection on λ in `[0, cμ)` finds the
    /// boundary to about 1e-12 of the capacity; the returned rate meets the target.
    /// - Parameters:
    ///   - servers: c, > 0.
    ///   - meanServiceTimeSeconds: 1/μ, seconds, > 0.
    ///   - percentile: p, strictly between 0 and 1 (default 0.95).
    ///   - targetSeconds: the response-time target for that percentile, seconds, > 0.
    /// - Returns: The rate and the queue at that rate.
    /// - Throws: ``CapacityError``; ``CapacityError/Code/infeasible`` when even an idle system
    ///   misses the target (the target is below the service time's own percentile).
    public static func maxArrivalRate(
        servers: Int,
        meanServiceTimeSeconds: Double,
        percentile: Double = 0.95,
        targetSeconds: Double
    ) throws(CapacityError) -> MaxArrivalRate {
        try Check.positive(servers, "servers")
        try Check.positive(meanServiceTimeSeconds, "mean_service_time_seconds")
        try Check.openUnit(percentile, "percentile")
        try Check.positive(targetSeconds, "target_seconds")
        let idle = -log1p(-percentile) * meanServiceTimeSeconds
        guard idle <= targetSeconds else {
            throw CapacityError(
                code: .infeasible,
                input: "target_seconds",
                message: "target_seconds \(targetSeconds) is below the service time's own p\(percentile * 100) of \(idle) s; no arrival rate meets it"
            )
        }
        let capacity = Double(servers) / meanServiceTimeSeconds
        func meets(_ lambda: Double) -> Bool {
            guard lambda < capacity,
                  let q = try? MMcQueue(servers: servers, arrivalRatePerSecond: lambda, meanServiceTimeSeconds: meanServiceTimeSeconds)
            else { return false }
            return q.responsePercentile(percentile) <= targetSeconds
        }
        var lo = 0.0
        var hi = capacity
        for _ in 0..<200 {
            let mid = (lo + hi) / 2
            if mid <= lo || mid >= hi || hi - lo <= capacity * 1e-13 { break }
            if meets(mid) { lo = mid } else { hi = mid }
        }
        let queue = try MMcQueue(servers: servers, arrivalRatePerSecond: lo, meanServiceTimeSeconds: meanServiceTimeSeconds)
        return MaxArrivalRate(
            arrivalRatePerSecond: lo,
            percentile: percentile,
            targetSeconds: targetSeconds,
            utilisation: queue.utilisation,
            responseTimeAtRateSeconds: queue.responsePercentile(percentile),
            queue: queue
        )
    }

    /// A Codable summary of the queue with p50, p95 and p99 response times.
    public var estimate: QueueEstimate {
        QueueEstimate(
            servers: servers,
            arrivalRatePerSecond: arrivalRatePerSecond,
            meanServiceTimeSeconds: meanServiceTimeSeconds,
            capacityRequestsPerSecond: capacityRequestsPerSecond,
            offeredLoadErlangs: offeredLoadErlangs,
            utilisation: utilisation,
            probabilityOfWaiting: probabilityOfWaiting,
            meanQueueWaitSeconds: meanQueueWaitSeconds,
            meanResponseTimeSeconds: meanResponseTimeSeconds,
            meanQueueLengthRequests: meanQueueLength,
            p50ResponseTimeSeconds: responsePercentile(0.50),
            p95ResponseTimeSeconds: responsePercentile(0.95),
            p99ResponseTimeSeconds: responsePercentile(0.99)
        )
    }
}

/// A Codable snapshot of an ``MMcQueue``'s figures; every field name carries its unit.
public struct QueueEstimate: Sendable, Hashable, Codable {
    /// c, workers.
    public let servers: Int
    /// λ, requests/s.
    public let arrivalRatePerSecond: Double
    /// 1/μ, seconds.
    public let meanServiceTimeSeconds: Double
    /// c·μ, requests/s.
    public let capacityRequestsPerSecond: Double
    /// a = λ/μ, Erlangs.
    public let offeredLoadErlangs: Double
    /// ρ, fraction of each worker's time busy.
    public let utilisation: Double
    /// Erlang C, fraction of requests that wait.
    public let probabilityOfWaiting: Double
    /// E[Wq], seconds.
    public let meanQueueWaitSeconds: Double
    /// E[T], seconds.
    public let meanResponseTimeSeconds: Double
    /// Lq, requests waiting on average.
    public let meanQueueLengthRequests: Double
    /// Median response time, seconds.
    public let p50ResponseTimeSeconds: Double
    /// 95th-percentile response time, seconds.
    public let p95ResponseTimeSeconds: Double
    /// 99th-percentile response time, seconds.
    public let p99ResponseTimeSeconds: Double
}

/// The answer of ``MMcQueue/maxArrivalRate(servers:meanServiceTimeSeconds:percentile:targetSeconds:)``.
public struct MaxArrivalRate: Sendable, Hashable {
    /// The largest arrival rate meeting the target, requests/s.
    public let arrivalRatePerSecond: Double
    /// The percentile constrained, e.g. 0.95.
    public let percentile: Double
    /// The response-time target, seconds.
    public let targetSeconds: Double
    /// Worker utilisation at that rate, a fraction.
    public let utilisation: Double
    /// The response-time percentile at that rate (≤ the target), seconds.
    public let responseTimeAtRateSeconds: Double
    /// The queue at that rate.
    public let queue: MMcQueue
}
