/// Little's law, `L = λ · W`: items in a stable system = arrival rate × mean time in the system.
///
/// It holds for any stable queue whatever the arrival or service distribution, so it turns a
/// measured backlog into a wait (`W = L / λ`) or a latency target into a concurrency bound.
public struct LittlesLaw: Sendable {
    /// Mean number of items in the system, `L = λ · W` (items).
    /// - Parameters:
    ///   - arrivalRatePerSecond: λ, items per second, ≥ 0.
    ///   - meanTimeInSystemSeconds: W, seconds, ≥ 0.
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public static func meanItemsInSystem(arrivalRatePerSecond: Double, meanTimeInSystemSeconds: Double) throws(CapacityError) -> Double {
        try Check.nonNegative(arrivalRatePerSecond, "arrival_rate_per_second")
        try Check.nonNegative(meanTimeInSystemSeconds, "mean_time_in_system_seconds")
        return arrivalRatePerSecond * meanTimeInSystemSeconds
    }

    /// Mean time in the system, `W = L / λ` (seconds).
    /// - Parameters:
    ///   - meanItemsInSystem: L, items, ≥ 0 (for example a partition's backlog).
    ///   - arrivalRatePerSecond: λ, items per second, > 0.
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public static func meanTimeInSystemSeconds(meanItemsInSystem: Double, arrivalRatePerSecond: Double) throws(CapacityError) -> Double {
        try Check.nonNegative(meanItemsInSystem, "mean_items_in_system")
        try Check.positive(arrivalRatePerSecond, "arrival_rate_per_second")
        return meanItemsInSystem / arrivalRatePerSecond
    }

    /// Arrival (= throughput) rate, `λ = L / W` (items per second).
    /// - Parameters:
    ///   - meanItemsInSystem: L, items, ≥ 0.
    ///   - meanTimeInSystemSeconds: W, seconds, > 0.
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public static func arrivalRatePerSecond(meanItemsInSystem: Double, meanTimeInSystemSeconds: Double) throws(CapacityError) -> Double {
        try Check.nonNegative(meanItemsInSystem, "mean_items_in_system")
        try Check.positive(meanTimeInSystemSeconds, "mean_time_in_system_seconds")
        return meanItemsInSystem / meanTimeInSystemSeconds
    }
}
