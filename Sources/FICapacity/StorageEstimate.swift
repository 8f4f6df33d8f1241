import Foundation

/// Disk use of one partition's `corpus.h5`, from its event rate and mean event size.
///
/// Each stored event is one row of the contract's §5 layout: 128 B `consultation_id` +
/// 41 B `stream_id` + 8 B `received_at_ms` + 8 B `epoch` + 8 B `payload_end` = ``fixedBytesPerRow`` (193 B),
/// plus its `event_json` bytes in `payload`. HDF5 adds chunk rounding (the last chunk of each
/// dataset is allocated whole), chunk indexes and object headers; ``overheadFactor`` scales the
/// logical bytes to file bytes. Its default, ``measuredHDF5OverheadFactor``, was measured — see
/// `Docs/capacity.md`.
public struct StorageEstimate: Sendable, Hashable, Codable {
    /// Fixed bytes per row in the corpus layout: 128 + 41 + 8 + 8 + 8 = 193 B.
    public static let fixedBytesPerRow: Double = 193
    /// File bytes / logical bytes measured for 100,000 rows of 1,024 B payload written in batches of
    /// 256 with FIStorage's default chunking (8,192 rows; 1 MiB of payload), h5py 3.7 / HDF5 1.10.8:
    /// 122,468,372 B on disk for 120,900,000 B of rows → 1.013. See `Docs/capacity.md`.
    public static let measuredHDF5OverheadFactor: Double = 1.013

    /// Events per second written to the partition.
    public let eventsPerSecond: Double
    /// Mean `event_json` size, bytes.
    public let meanPayloadBytes: Double
    /// File bytes per logical byte, ≥ 1.
    public let overheadFactor: Double

    /// Validates and stores the inputs.
    /// - Parameters:
    ///   - eventsPerSecond: Events per second into the partition, ≥ 0.
    ///   - meanPayloadBytes: Mean `event_json` size in bytes, > 0.
    ///   - overheadFactor: HDF5 file bytes per logical byte, ≥ 1 (default ``measuredHDF5OverheadFactor``).
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public init(
        eventsPerSecond: Double,
        meanPayloadBytes: Double,
        overheadFactor: Double = StorageEstimate.measuredHDF5OverheadFactor
    ) throws(CapacityError) {
        try Check.nonNegative(eventsPerSecond, "events_per_second")
        try Check.positive(meanPayloadBytes, "mean_payload_bytes")
        try Check.atLeastOne(overheadFactor, "overhead_factor")
        self.eventsPerSecond = eventsPerSecond
        self.meanPayloadBytes = meanPayloadBytes
        self.overheadFactor = overheadFactor
    }

    /// Logical bytes of one row: 193 B fixed + payload.
    public var logicalBytesPerEvent: Double { Self.fixedBytesPerRow + meanPayloadBytes }
    /// File bytes of one row including HDF5 overhead.
    public var diskBytesPerEvent: Double { logicalBytesPerEvent * overheadFactor }
    /// File growth, bytes per second.
    public var diskBytesPerSecond: Double { diskBytesPerEvent * eventsPerSecond }
    /// File growth, bytes per day.
    public var diskBytesPerDay: Double { diskBytesPerSecond * SessionThroughput.secondsPerDay }

    /// Days until a disk of `diskCapacityBytes`, already holding `usedBytes`, is full at this rate.
    /// - Parameters:
    ///   - diskCapacityBytes: Usable disk size, bytes, > 0.
    ///   - usedBytes: Bytes already used, `0 ≤ used ≤ capacity`.
    /// - Returns: Days, or `nil` when nothing is written (the disk never fills).
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public func daysUntilFull(diskCapacityBytes: Double, usedBytes: Double = 0) throws(CapacityError) -> Double? {
        try Self.daysUntilFull(bytesPerDay: diskBytesPerDay, diskCapacityBytes: diskCapacityBytes, usedBytes: usedBytes)
    }

    static func daysUntilFull(bytesPerDay: Double, diskCapacityBytes: Double, usedBytes: Double) throws(CapacityError) -> Double? {
        try Check.positive(diskCapacityBytes, "disk_capacity_bytes")
        try Check.nonNegative(usedBytes, "used_bytes")
        guard usedBytes <= diskCapacityBytes else {
            throw CapacityError(code: .outOfRange, input: "used_bytes", message: "used_bytes \(usedBytes) exceeds disk_capacity_bytes \(diskCapacityBytes)")
        }
        guard bytesPerDay > 0 else { return nil }
        return (diskCapacityBytes - usedBytes) / bytesPerDay
    }
}

/// Disk use of several partitions sharing one disk.
public struct StoragePlan: Sendable, Hashable, Codable {
    /// One partition's share.
    public struct Partition: Sendable, Hashable, Codable {
        /// The partition key, e.g. `site_a` or `partition_0`.
        public let partition: String
        /// Events per second into it.
        public let eventsPerSecond: Double
        /// Its corpus file's growth, bytes per day.
        public let diskBytesPerDay: Double
        /// Its growth, gigabytes (10⁹ B) per day.
        public var diskGigabytesPerDay: Double { diskBytesPerDay / 1e9 }
    }

    /// Per partition, in the order given.
    public let partitions: [Partition]
    /// Mean `event_json` size, bytes.
    public let meanPayloadBytes: Double
    /// HDF5 file bytes per logical byte.
    public let overheadFactor: Double
    /// All partitions together, bytes per day.
    public let totalDiskBytesPerDay: Double
    /// Usable disk size, bytes.
    public let diskCapacityBytes: Double
    /// Bytes already used on the disk.
    public let usedBytes: Double
    /// Days until the shared disk is full, or `nil` when nothing is written.
    public let daysUntilFull: Double?

    /// Plans storage for partitions sharing one disk.
    /// - Parameters:
    ///   - partitions: Partition key and events per second of each, non-empty, keys distinct.
    ///   - meanPayloadBytes: Mean `event_json` size in bytes, > 0.
    ///   - overheadFactor: HDF5 file bytes per logical byte, ≥ 1.
    ///   - diskCapacityBytes: Usable disk size, bytes, > 0.
    ///   - usedBytes: Bytes already used, `0 ≤ used ≤ capacity`.
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public init(
        partitions: [(partition: String, eventsPerSecond: Double)],
        meanPayloadBytes: Double,
        overheadFactor: Double = StorageEstimate.measuredHDF5OverheadFactor,
        diskCapacityBytes: Double,
        usedBytes: Double = 0
    ) throws(CapacityError) {
        guard !partitions.isEmpty else {
            throw CapacityError(code: .invalidValue, input: "partitions", message: "partitions must not be empty")
        }
        var seen = Set<String>()
        var rows: [Partition] = []
        var total = 0.0
        for p in partitions {
            guard seen.insert(p.partition).inserted else {
                throw CapacityError(code: .invalidValue, input: "partitions", message: "partition \(p.partition) is listed twice")
            }
            let estimate = try StorageEstimate(eventsPerSecond: p.eventsPerSecond, meanPayloadBytes: meanPayloadBytes, overheadFactor: overheadFactor)
            rows.append(Partition(partition: p.partition, eventsPerSecond: p.eventsPerSecond, diskBytesPerDay: estimate.diskBytesPerDay))
            total += estimate.diskBytesPerDay
        }
        self.partitions = rows
        self.meanPayloadBytes = meanPayloadBytes
        self.overheadFactor = overheadFactor
        self.totalDiskBytesPerDay = total
        self.diskCapacityBytes = diskCapacityBytes
        self.usedBytes = usedBytes
        self.daysUntilFull = try StorageEstimate.daysUntilFull(bytesPerDay: total, diskCapacityBytes: diskCapacityBytes, usedBytes: usedBytes)
    }
}
