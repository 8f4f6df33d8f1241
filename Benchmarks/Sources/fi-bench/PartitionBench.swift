import FIPartitioning
import Foundation

/// `fi-bench partition [COUNT] [PARTITIONS]`: partition keys per second for
/// random UUID consultation ids on one core (the ids are made before timing).
enum PartitionBench {
    static func run(_ arguments: [String]) throws {
        let count = arguments.first.flatMap(Int.init) ?? 2_000_000
        let partitions = arguments.dropFirst().first.flatMap(Int.init) ?? Partitioner.defaultPartitions
        let ids = (0..<count).map { _ in UUID().uuidString.lowercased() }

        for strategy in [Partitioner.Strategy.modulo, .jumpConsistentHash] {
            let partitioner = try Partitioner(partitions: partitions, strategy: strategy)
            var best = 0.0
            var checksum = 0
            for _ in 0..<5 {
                let start = ContinuousClock.now
                for id in ids {
                    checksum &+= partitioner.key(consultationIDUnchecked: id).rawValue.utf8.count
                }
                let seconds = (ContinuousClock.now - start) / .seconds(1)
                best = max(best, Double(count) / seconds)
            }
            print("RESULT bench=partition strategy=\(strategy) partitions=\(partitions) ids=\(count) keys_per_s=\(Int(best)) checksum=\(checksum)")
        }
    }
}

extension Partitioner {
    /// The full routing call the server makes for an event without a site.
    fileprivate func key(consultationIDUnchecked id: String) -> PartitionKey {
        // `try!` is safe: a nil site never throws.
        try! key(consultationID: id, siteID: nil)
    }
}
