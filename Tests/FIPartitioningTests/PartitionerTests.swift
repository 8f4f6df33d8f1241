import FIPartitioning
import Foundation
import Testing

/// The reference vectors, a resource of this test target: 1,659 cases computed by the
/// plan's Python function (`Benchmarks/reference/partition_vectors.py` regenerates them).
func referenceVectors() throws -> Data {
    let url = try #require(Bundle.module.url(forResource: "partition_vectors", withExtension: "json"))
    return try Data(contentsOf: url)
}

/// Deterministic "random" UUID strings (SplitMix64), so a distribution check
/// either always passes or always fails.
func seededUUIDs(count: Int, seed: UInt64) -> [String] {
    var state = seed
    func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    return (0..<count).map { _ in
        let a = next()
        let b = next()
        var bytes = withUnsafeBytes(of: a.bigEndian, Array.init) + withUnsafeBytes(of: b.bigEndian, Array.init)
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
            bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
        )).uuidString.lowercased()
    }
}

struct Vector: Decodable {
    var consultation_id: String
    var site_id: String?
    var partitions: Int
    var partition: String
}

struct VectorFile: Decodable {
    var cases: [Vector]
}

@Suite("Partitioner")
struct PartitionerTests {
    @Test("reproduces every reference vector (Resources/partition_vectors.json)")
    func reproducesReferenceVectors() throws {
        let file = try JSONDecoder().decode(VectorFile.self, from: try referenceVectors())
        #expect(file.cases.count == 1659)
        var partitioners: [Int: Partitioner] = [:]
        for vector in file.cases {
            let partitioner = try partitioners[vector.partitions] ?? Partitioner(partitions: vector.partitions)
            partitioners[vector.partitions] = partitioner
            let key = try partitioner.key(consultationID: vector.consultation_id, siteID: vector.site_id)
            #expect(key.rawValue == vector.partition, "id \(vector.consultation_id.debugDescription) N=\(vector.partitions)")
        }
    }

    @Test("an empty site id means no site, as over HTTP")
    func emptySiteMeansHash() throws {
        let partitioner = try Partitioner()
        let id = "4ba71ab7-ac05-44a5-acc6-be1805fdf179"
        #expect(try partitioner.key(consultationID: id, siteID: "") == partitioner.hashKey(consultationID: id))
        #expect(try partitioner.key(consultationID: id, siteID: nil) == partitioner.hashKey(consultationID: id))
        #expect(try partitioner.key(consultationID: id, siteID: "a").rawValue == "site_a")
    }

    @Test("keys are in range and stable across partitioner instances", arguments: [1, 2, 3, 7, 16, 1000, 65536])
    func inRangeAndStable(partitions: Int) throws {
        for strategy in [Partitioner.Strategy.modulo, .jumpConsistentHash] {
            let first = try Partitioner(partitions: partitions, strategy: strategy)
            let second = try Partitioner(partitions: partitions, strategy: strategy)
            for id in seededUUIDs(count: 2000, seed: UInt64(partitions)) {
                let n = first.partitionNumber(consultationID: id)
                #expect((0..<partitions).contains(n))
                #expect(second.partitionNumber(consultationID: id) == n)
                #expect(first.hashKey(consultationID: id).rawValue == "partition_\(n)")
            }
        }
    }

    @Test("every partition gets 1/N ± 2 points of 100,000 random UUIDs, N = 3...16")
    func uniformDistribution() throws {
        let ids = seededUUIDs(count: 100_000, seed: 0x5EED)
        for strategy in [Partitioner.Strategy.modulo, .jumpConsistentHash] {
            for n in 3...16 {
                let partitioner = try Partitioner(partitions: n, strategy: strategy)
                var counts = [Int](repeating: 0, count: n)
                for id in ids { counts[partitioner.partitionNumber(consultationID: id)] += 1 }
                let expected = Double(ids.count) / Double(n)
                var chiSquare = 0.0
                for count in counts {
                    let share = Double(count) / Double(ids.count)
                    #expect(abs(share - 1.0 / Double(n)) <= 0.02, "\(strategy) N=\(n) share \(share)")
                    chiSquare += (Double(count) - expected) * (Double(count) - expected) / expected
                }
                // A much stricter check than ±2 points: the χ² statistic with
                // N-1 degrees of freedom stays below its 99.9th percentile
                // (≤ 37.7 for 15 degrees of freedom; bound generously by 3·(N-1)+20).
                #expect(chiSquare < 3.0 * Double(n - 1) + 20, "\(strategy) N=\(n) χ²=\(chiSquare)")
            }
        }
    }

    @Test("jump hash moves ~1/M of ids going N → M; mod-N moves most of them")
    func remapping() throws {
        let ids = seededUUIDs(count: 50_000, seed: 42)
        let modulo = try Partitioner.remappedFraction(from: 8, to: 9, consultationIDs: ids, strategy: .modulo)
        let jump = try Partitioner.remappedFraction(from: 8, to: 9, consultationIDs: ids, strategy: .jumpConsistentHash)
        #expect(modulo.sampleSize == 50_000)
        #expect(abs(modulo.movedFraction - 8.0 / 9.0) < 0.01, "mod-N moved \(modulo.movedFraction)")
        #expect(abs(jump.movedFraction - 1.0 / 9.0) < 0.01, "jump moved \(jump.movedFraction)")
        // Jump hash only ever moves ids to the new partition.
        let before = try Partitioner(partitions: 8, strategy: .jumpConsistentHash)
        let after = try Partitioner(partitions: 9, strategy: .jumpConsistentHash)
        for id in ids.prefix(5000) {
            let a = before.partitionNumber(consultationID: id)
            let b = after.partitionNumber(consultationID: id)
            #expect(a == b || b == 8)
        }
        #expect(try Partitioner.remappedFraction(from: 5, to: 5, consultationIDs: ids, strategy: .modulo).movedFraction == 0)
    }

    @Test(
        "jump hash of the MD5 digest's high 64 bits matches the paper's C function",
        arguments: [
            // id, then the C function of figure 1 in arXiv:1406.2294 at 9, 1000 and 65536 buckets,
            // fed int(md5(id).hexdigest()[:16], 16).
            ("4ba71ab7-ac05-44a5-acc6-be1805fdf179", [5, 732, 18030]),
            ("a", [4, 397, 17755]),
            ("consultation-42", [6, 490, 54294]),
            ("ñandú-ü", [3, 485, 31583]),
        ]
    )
    func jumpKnownValues(id: String, expected: [Int]) throws {
        for (buckets, value) in zip([9, 1000, 65536], expected) {
            let partitioner = try Partitioner(partitions: buckets, strategy: .jumpConsistentHash)
            #expect(partitioner.partitionNumber(consultationID: id) == value, "N=\(buckets)")
        }
    }

    @Test("partition counts outside 1...maximum are rejected", arguments: [0, -1, Partitioner.maximumPartitions + 1])
    func badPartitionCounts(count: Int) {
        #expect(throws: PartitionError.self) { try Partitioner(partitions: count) }
        do {
            _ = try Partitioner(partitions: count)
        } catch {
            #expect(error.code == .invalidPartitionCount)
            #expect(error.code.field == "partitions")
        }
    }
}
