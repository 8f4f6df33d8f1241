/// The partition an event belongs to: `site_<site_id>` or `partition_<n>`.
///
/// A key is always valid: it can be built only from a validated ``SiteID``, a
/// hash partition number, or text that parses as one of the two. So the names
/// derived from it — the stream ``streamName``, the dead-letter stream
/// ``deadLetterStreamName`` and the corpus path ``corpusPath(storageRoot:)`` —
/// never contain `/`, `..`, NUL or anything else that could leave the storage
/// root or collide with another key. Those names are derived here and nowhere else.
public struct PartitionKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The prefix of every event stream: `fi:events:`.
    public static let streamPrefix = "fi:events:"
    /// The prefix of every dead-letter stream: `fi:dead:`.
    public static let deadLetterPrefix = "fi:dead:"
    /// The prefix of every partition-ownership lease key: `fi:lease:`.
    public static let leasePrefix = "fi:lease:"
    /// The file name of a partition's corpus inside its directory.
    public static let corpusFileName = "corpus.h5"

    private static let sitePrefix = "site_"
    private static let hashPrefix = "partition_"

    /// The key's text, e.g. `site_hospital_a` or `partition_2`.
    public let rawValue: String

    private init(unchecked rawValue: String) {
        self.rawValue = rawValue
    }

    /// The key of a site's partition, `site_<site_id>`.
    public static func site(_ site: SiteID) -> PartitionKey {
        PartitionKey(unchecked: sitePrefix + site.rawValue)
    }

    /// The key of hash partition `n`, `partition_<n>`.
    /// - Precondition: `n >= 0`.
    public static func hashPartition(_ n: Int) -> PartitionKey {
        precondition(n >= 0, "hash partition numbers are non-negative")
        return PartitionKey(unchecked: hashPrefix + String(n))
    }

    /// Parses a key such as a worker's command-line argument.
    ///
    /// Accepts exactly `site_<valid site id>` and `partition_<n>` (decimal, no
    /// sign, no leading zeros, below ``Partitioner/maximumPartitions``).
    /// - Throws: ``PartitionError`` with code ``PartitionError/Code/invalidPartitionKey``.
    public init(validating text: String) throws(PartitionError) {
        if text.hasPrefix(Self.sitePrefix) {
            let site: SiteID
            do {
                site = try SiteID(validating: String(text.dropFirst(Self.sitePrefix.count)))
            } catch {
                throw PartitionError(.invalidPartitionKey, "partition key 'site_…' has an invalid site id: \(error.message)")
            }
            self = .site(site)
        } else if text.hasPrefix(Self.hashPrefix) {
            let digits = text.utf8.dropFirst(Self.hashPrefix.utf8.count)
            guard !digits.isEmpty, digits.count <= 7, digits.allSatisfy(ASCII.isDigit),
                digits.count == 1 || digits.first != UInt8(ascii: "0"),
                let n = Int(Substring(digits)), n < Partitioner.maximumPartitions
            else {
                throw PartitionError(
                    .invalidPartitionKey,
                    "partition key 'partition_…' needs a partition number from 0 to \(Partitioner.maximumPartitions - 1) without leading zeros"
                )
            }
            self = .hashPartition(n)
        } else {
            throw PartitionError(.invalidPartitionKey, "a partition key is site_<site_id> or partition_<n>")
        }
    }

    /// Recovers the key from a stream name `fi:events:<key>`; `nil` for any other name.
    public init?(streamName: String) {
        guard streamName.hasPrefix(Self.streamPrefix),
            let key = try? PartitionKey(validating: String(streamName.dropFirst(Self.streamPrefix.count)))
        else { return nil }
        self = key
    }

    /// `true` for `site_<site_id>` keys, `false` for hash partitions.
    public var isSite: Bool { rawValue.hasPrefix(Self.sitePrefix) }

    /// The Redis stream holding this partition's queued events: `fi:events:<key>`.
    public var streamName: String { Self.streamPrefix + rawValue }

    /// The Redis stream for entries of this partition that could not be stored: `fi:dead:<key>`.
    public var deadLetterStreamName: String { Self.deadLetterPrefix + rawValue }

    /// The Redis key of the lease that makes one worker this partition's only writer: `fi:lease:<key>`.
    public var leaseKey: String { Self.leasePrefix + rawValue }

    /// The partition's directory under a storage root: `<storageRoot>/<key>`.
    public func directory(storageRoot: String) -> String {
        Self.join(storageRoot, rawValue)
    }

    /// Layout 1's corpus file: `<storageRoot>/<key>/corpus.h5`. Since layout 2 (Docs/contract.md §5)
    /// a partition's corpus is the directory ``directory(storageRoot:)`` of segment files, of which
    /// this file, if a partition has it, is the first.
    public func corpusPath(storageRoot: String) -> String {
        Self.join(directory(storageRoot: storageRoot), Self.corpusFileName)
    }

    private static func join(_ directory: String, _ name: String) -> String {
        if directory.isEmpty { return name }
        return directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    public var description: String { rawValue }

    public static func < (lhs: PartitionKey, rhs: PartitionKey) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}
