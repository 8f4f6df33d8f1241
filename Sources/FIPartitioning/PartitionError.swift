/// An input that cannot become a partition key, stream name or corpus path.
///
/// The ``code`` says which field was wrong; the ``message`` says why, in words
/// fit to return to an API client (it never echoes the rejected value, which
/// may be arbitrary bytes).
public struct PartitionError: Error, Hashable, CustomStringConvertible {
    /// What kind of input was rejected. New codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case invalidSiteID
            case invalidConsultationID
            case invalidPartitionKey
            case invalidPartitionCount
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// `site_id` is not 1–64 characters of `A–Z a–z 0–9 _ -`.
        public static let invalidSiteID = Code(.invalidSiteID)
        /// `consultation_id` is not 1–128 characters of `A–Z a–z 0–9 . _ - :` starting alphanumeric.
        public static let invalidConsultationID = Code(.invalidConsultationID)
        /// A partition key, stream name or path component is not `site_<site_id>` or `partition_<n>`.
        public static let invalidPartitionKey = Code(.invalidPartitionKey)
        /// The number of hash partitions is outside `1...Partitioner.maximumPartitions`.
        public static let invalidPartitionCount = Code(.invalidPartitionCount)

        /// The name of the rejected field, as the HTTP API and the contract spell it.
        public var field: String {
            switch value {
            case .invalidSiteID: "site_id"
            case .invalidConsultationID: "consultation_id"
            case .invalidPartitionKey: "partition_key"
            case .invalidPartitionCount: "partitions"
            }
        }

        public var description: String {
            switch value {
            case .invalidSiteID: "invalid_site_id"
            case .invalidConsultationID: "invalid_consultation_id"
            case .invalidPartitionKey: "invalid_partition_key"
            case .invalidPartitionCount: "invalid_partition_count"
            }
        }
    }

    /// Which field was rejected.
    public let code: Code
    /// Why, in human words.
    public let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
