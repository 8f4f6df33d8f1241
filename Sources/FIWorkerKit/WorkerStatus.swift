import FIPartitioning
import FIQueue
import FIStorage
import Foundation
import Logging

/// `fi-worker status`: every partition the queue or the storage knows, with
/// who writes it, how far behind it is, and what its corpus holds.
public struct PartitionStatus: Sendable, Codable, Equatable {
    public var partition: String
    /// The worker instance holding the partition's lease; `nil` when nobody writes it.
    public var leaseOwner: String?
    /// Entries queued and not yet persisted (the stream's length).
    public var backlog: Int
    /// Entries delivered to a worker and not yet acknowledged.
    public var pending: Int
    /// How long the oldest pending entry has waited, in seconds.
    public var oldestPendingSeconds: Double?
    /// Entries in `fi:dead:<partition>`.
    public var deadLetters: Int
    /// The stream id of the corpus's last row; `nil` when nothing is stored (or the corpus is not readable here).
    public var lastStoredStreamID: String?
    /// Rows in the corpus; `nil` when the corpus is not readable here.
    public var rows: Int?

    enum CodingKeys: String, CodingKey {
        case partition, backlog, pending, rows
        case leaseOwner = "lease_owner"
        case oldestPendingSeconds = "oldest_pending_seconds"
        case deadLetters = "dead_letters"
        case lastStoredStreamID = "last_stored_stream_id"
    }
}

public enum WorkerStatus {
    /// Connects to `target`, collects, and closes the connection.
    public static func collect(target: QueueTarget, group: String, storageRoot: String) async throws -> [PartitionStatus] {
        let queue = try await target.connect(logger: Logger(label: "fi-worker.status", factory: { _ in SwiftLogNoOpLogHandler() }))
        do {
            let statuses = try await collect(queue: queue, group: group, storageRoot: storageRoot)
            await queue.close()
            return statuses
        } catch {
            await queue.close()
            throw error
        }
    }

    /// The status of every partition with a stream, dead letters, a lease or a corpus under `storageRoot`.
    public static func collect(queue: any EventQueue, group: String, storageRoot: String) async throws -> [PartitionStatus] {
        var keys = Set(try await queue.streams(withPrefix: PartitionKey.streamPrefix).compactMap(PartitionKey.init(streamName:)))
        for name in try await queue.streams(withPrefix: PartitionKey.deadLetterPrefix) {
            if let key = try? PartitionKey(validating: String(name.dropFirst(PartitionKey.deadLetterPrefix.count))) { keys.insert(key) }
        }
        let owners = try await queue.leaseOwners(withPrefix: PartitionKey.leasePrefix)
        for lease in owners.keys {
            if let key = try? PartitionKey(validating: String(lease.dropFirst(PartitionKey.leasePrefix.count))) { keys.insert(key) }
        }
        for key in (try? CorpusTool.partitions(storageRoot: storageRoot)) ?? [] { keys.insert(key) }
        var out: [PartitionStatus] = []
        for key in keys.sorted() {
            let pending = (try? await queue.pending(group, on: key.streamName))?.count ?? 0
            let oldest = try? await queue.oldestPendingIdle(group, on: key.streamName)
            var status = PartitionStatus(
                partition: key.rawValue,
                leaseOwner: owners[key.leaseKey],
                backlog: try await queue.length(of: key.streamName),
                pending: pending,
                oldestPendingSeconds: oldest.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 },
                deadLetters: try await queue.length(of: key.deadLetterStreamName)
            )
            let directory = key.directory(storageRoot: storageRoot)
            if FileManager.default.fileExists(atPath: directory), let reader = try? await CorpusReader.open(directory: directory) {
                status.rows = reader.rowCount
                if reader.rowCount > 0 {
                    status.lastStoredStreamID = try? await reader.records(in: (reader.rowCount - 1)..<reader.rowCount).first?.streamID.description
                }
                try? await reader.close()
            }
            out.append(status)
        }
        return out
    }

    /// A table, one row per partition.
    public static func table(_ statuses: [PartitionStatus]) -> String {
        let header = ["partition", "lease owner", "backlog", "pending", "oldest pending", "dead letters", "last stored", "rows"]
        let rows = statuses.map { s in
            [
                s.partition, s.leaseOwner ?? "(none)", String(s.backlog), String(s.pending),
                s.oldestPendingSeconds.map { String(format: "%.1f s", $0) } ?? "-", String(s.deadLetters),
                s.lastStoredStreamID ?? "-", s.rows.map(String.init) ?? "-",
            ]
        }
        return OperatorOutput.table(header: header, rows: rows)
    }

    /// JSON: an array of objects with snake_case keys.
    public static func json(_ statuses: [PartitionStatus]) throws -> String {
        try OperatorOutput.json(statuses)
    }
}
