import FIPartitioning
import FIStorage
import Foundation

/// Everything a worker needs to know besides its queue and logger.
public struct WorkerConfiguration: Sendable {
    /// The partitions to consume. Ignored when ``discoverAll`` is set.
    public var partitions: [PartitionKey] = []
    /// Consume every `fi:events:*` stream, discovered as they appear.
    public var discoverAll = false
    /// The storage root; partition `k` is written to segment files in `<storageRoot>/<k>/` (Docs/storage.md).
    public var storageRoot = "./storage"
    /// The consumer group (`fi-workers` by default, as in the contract).
    public var group = "fi-workers"
    /// The consumer name. The default is stable across restarts on one host,
    /// so a restarted worker picks up its own pending entries at once.
    public var consumer = WorkerConfiguration.defaultConsumerName()
    /// Entries read per XREADGROUP (`--batch-size`, COUNT).
    public var batchSize = 256
    /// While a stream has a backlog (a read of `batchSize` comes back full),
    /// up to this many batches are read together and committed to the corpus
    /// with one flush + sync (group commit): the sync, not the rows, is what
    /// a commit costs. Nothing is acknowledged before the sync that covers it.
    /// 16 × 256 entries of 1 KB is a 4 MB commit: drains 100,000 entries at
    /// 164k–176k/s here against 129k–146k/s with 4 (Docs/benchmarks-log.md).
    public var commitBatches = 16
    /// Pending entries of *other* consumers are claimed once a partition has
    /// been held this long (theirs have been idle at least as long).
    public var claimIdle: Duration = .milliseconds(30_000)
    /// How often a held partition sweeps its pending list for leftovers.
    public var claimInterval: Duration = .seconds(5)
    /// How often `--all` looks for new streams, and leases are re-balanced.
    public var rescanInterval: Duration = .seconds(2)
    /// How long a partition lease lasts without renewal. Renewed every third of it.
    public var leaseTTL: Duration = .seconds(10)
    /// How long one read waits for new entries. Short, so shutdown and lease
    /// loss are noticed quickly.
    public var readBlock: Duration = .milliseconds(200)
    /// Entries delivered more than this many times go to `fi:dead:<partition>`.
    public var maxDeliveries = 5
    /// How often progress is logged per partition.
    public var progressInterval: Duration = .seconds(5)
    /// The longest wait between retries after a failure.
    public var maxBackoff: Duration = .seconds(5)
    /// How corpus files are written.
    public var store = CorpusWriter.Options()

    public init() {}

    /// `fi-worker-<hostname>`: the same on every start on one host.
    public static func defaultConsumerName() -> String {
        let host = ProcessInfo.processInfo.hostName
        let safe = host.unicodeScalars.map { scalar -> Character in
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", "-", "_", ".": Character(scalar)
            default: "_"
            }
        }
        return "fi-worker-" + String(safe.prefix(64))
    }
}

extension WorkerConfiguration {
    /// Parses a partition key given on the command line.
    /// - Throws: a `PartitionError` saying what is wrong with it.
    public static func partitionKey(_ text: String) throws -> PartitionKey {
        try PartitionKey(validating: text)
    }
}
