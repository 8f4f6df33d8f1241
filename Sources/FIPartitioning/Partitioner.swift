import Crypto

/// Routes an event to its partition.
///
/// With a site id the key is `site_<site_id>`. Without one it is
/// `partition_<n>`, where `n` comes from the MD5 digest of the consultation
/// id's UTF-8 bytes, read as one 128-bit big-endian unsigned integer:
///
/// - ``Strategy/modulo`` (the contract's default): `n = digest mod N`, exactly
///   the reference Python `int(md5(id).hexdigest(), 16) % N`.
/// - ``Strategy/jumpConsistentHash`` (opt-in): Lamping & Veach's jump hash of
///   the digest's high 64 bits. Growing from N to N+1 partitions moves only
///   about 1/(N+1) of the ids, where mod-N moves about N/(N+1) of them
///   (8 → 9: ~11% against ~89%). See ``remappedFraction(from:to:consultationIDs:strategy:)``.
///
/// A `Partitioner` is a small immutable value; keys for hash partitions are
/// built once, so ``key(consultationID:siteID:)`` allocates nothing on that path.
public struct Partitioner: Sendable {
    /// How consultation ids map to hash partitions.
    public struct Strategy: Sendable, Hashable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case modulo
            case jump
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// `digest mod N`: the contract's strategy and the default.
        public static let modulo = Strategy(.modulo)
        /// Jump consistent hash (arXiv:1406.2294) of the digest's high 64 bits.
        public static let jumpConsistentHash = Strategy(.jump)

        public var description: String {
            switch value {
            case .modulo: "modulo"
            case .jump: "jump-consistent-hash"
            }
        }

        fileprivate var isJump: Bool { value == .jump }
    }

    /// The contract's default number of hash partitions.
    public static let defaultPartitions = 3
    /// The largest accepted number of hash partitions.
    public static let maximumPartitions = 1 << 20

    /// The number of hash partitions, `N`.
    public let partitions: Int
    /// The mapping from digest to partition number.
    public let strategy: Strategy

    private let hashKeys: [PartitionKey]

    /// Creates a partitioner.
    /// - Parameters:
    ///   - partitions: the number of hash partitions, `1...maximumPartitions`.
    ///   - strategy: ``Strategy/modulo`` (default) or ``Strategy/jumpConsistentHash``.
    /// - Throws: ``PartitionError`` with code ``PartitionError/Code/invalidPartitionCount``.
    public init(partitions: Int = Partitioner.defaultPartitions, strategy: Strategy = .modulo) throws(PartitionError) {
        guard partitions >= 1, partitions <= Self.maximumPartitions else {
            throw PartitionError(
                .invalidPartitionCount,
                "the number of partitions must be from 1 to \(Self.maximumPartitions), not \(partitions)"
            )
        }
        self.partitions = partitions
        self.strategy = strategy
        // Keys for small N are precomputed; large N builds them on demand.
        self.hashKeys = partitions <= 4096 ? (0..<partitions).map(PartitionKey.hashPartition) : []
    }

    /// The partition of an event.
    ///
    /// - Parameters:
    ///   - consultationID: any string; hashed as UTF-8 when there is no site.
    ///     Validate untrusted ids with ``ConsultationID`` first.
    ///   - siteID: the site, if any. `nil` and `""` both mean "no site", as
    ///     an absent, `null` or empty `metadata.site_id` does over HTTP.
    /// - Returns: `site_<siteID>` or `partition_<n>`.
    /// - Throws: ``PartitionError`` with code ``PartitionError/Code/invalidSiteID``
    ///   when a non-empty site id is not valid.
    public func key(consultationID: String, siteID: String?) throws(PartitionError) -> PartitionKey {
        if let siteID, !siteID.isEmpty {
            return .site(try SiteID(validating: siteID))
        }
        return hashKey(consultationID: consultationID)
    }

    /// The hash partition of a consultation id, ignoring sites.
    public func hashKey(consultationID: String) -> PartitionKey {
        let n = partitionNumber(consultationID: consultationID)
        return hashKeys.isEmpty ? .hashPartition(n) : hashKeys[n]
    }

    /// The hash partition number, `0..<partitions`, of a consultation id.
    public func partitionNumber(consultationID: String) -> Int {
        var id = consultationID
        return id.withUTF8 { bytes in
            Self.partitionNumber(digest: MD5Digest128(UnsafeRawBufferPointer(bytes)), partitions: partitions, strategy: strategy)
        }
    }

    /// The partition number for a digest under a strategy.
    static func partitionNumber(digest: MD5Digest128, partitions: Int, strategy: Strategy) -> Int {
        strategy.isJump
            ? jumpConsistentHash(key: digest.high, buckets: partitions)
            : digest.remainder(dividingBy: partitions)
    }

    /// Jump consistent hash, from Lamping & Veach, "A Fast, Minimal Memory,
    /// Consistent Hash Algorithm" (arXiv:1406.2294), figure 1.
    static func jumpConsistentHash(key: UInt64, buckets: Int) -> Int {
        var key = key
        var b: Int64 = -1
        var j: Int64 = 0
        while j < Int64(buckets) {
            b = j
            key = key &* 2_862_933_555_777_941_757 &+ 1
            j = Int64(Double(b + 1) * (Double(UInt64(1) << 31) / Double((key >> 33) + 1)))
        }
        return Int(b)
    }
}

/// An MD5 digest held as two big-endian 64-bit halves.
struct MD5Digest128 {
    let high: UInt64
    let low: UInt64

    init(_ bytes: UnsafeRawBufferPointer) {
        var hasher = Insecure.MD5()
        hasher.update(bufferPointer: bytes)
        let digest = hasher.finalize()
        (high, low) = digest.withUnsafeBytes { raw in
            (
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            )
        }
    }

    /// The 128-bit value `high·2⁶⁴ + low` modulo `n`, without a big-integer type:
    /// `((high mod n)·2⁶⁴ + low) mod n`, with the 128-bit intermediate divided
    /// by `dividingFullWidth` (its high word is below `n`, so it cannot trap).
    func remainder(dividingBy n: Int) -> Int {
        let divisor = UInt64(n)
        let highRemainder = high % divisor
        return Int(divisor.dividingFullWidth((high: highRemainder, low: low)).remainder)
    }
}

extension Partitioner {
    /// The share of ids that change hash partition when `N` changes.
    public struct Remapping: Sendable, Hashable {
        /// The partition count before.
        public let from: Int
        /// The partition count after.
        public let to: Int
        /// The number of ids sampled.
        public let sampleSize: Int
        /// The fraction of the sample, `0...1`, whose partition changes.
        public let movedFraction: Double
    }

    /// Measures, over a sample of consultation ids, which fraction would move
    /// to another partition if the number of hash partitions changed from
    /// `from` to `to` under `strategy`.
    ///
    /// Mod-N moves most keys on any change (8 → 9: about 89%); jump hash moves
    /// only the share the new partitions must take (8 → 9: about 11%), which
    /// is why it is offered for deployments that expect to grow.
    /// - Throws: ``PartitionError`` when either count is out of range.
    public static func remappedFraction(
        from: Int,
        to: Int,
        consultationIDs: some Collection<String>,
        strategy: Strategy
    ) throws(PartitionError) -> Remapping {
        let before = try Partitioner(partitions: from, strategy: strategy)
        let after = try Partitioner(partitions: to, strategy: strategy)
        var moved = 0
        for id in consultationIDs {
            var id = id
            let (a, b) = id.withUTF8 { bytes in
                let digest = MD5Digest128(UnsafeRawBufferPointer(bytes))
                return (
                    partitionNumber(digest: digest, partitions: before.partitions, strategy: strategy),
                    partitionNumber(digest: digest, partitions: after.partitions, strategy: strategy)
                )
            }
            if a != b { moved += 1 }
        }
        let count = consultationIDs.count
        return Remapping(
            from: from,
            to: to,
            sampleSize: count,
            movedFraction: count == 0 ? 0 : Double(moved) / Double(count)
        )
    }
}
