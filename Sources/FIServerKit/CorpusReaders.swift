import FILocking
import FIPartitioning
import FIStorage
import Foundation
import Logging
import Synchronization

/// One reader per partition directory, reused across requests and refreshed
/// before each query, so rows a worker appended since are seen, across segment
/// rolls. Closed segments' consultation indexes stay cached in the reader
/// (their files closed); a segment an erasure rewrote is re-read, one that
/// retention deleted is dropped.
final class CorpusReaders: Sendable {
    private let storageRoot: String
    private let logger: Logger
    private let readers = Locked<[PartitionKey: CorpusReader]>([:])

    init(storageRoot: String, logger: Logger) {
        self.storageRoot = storageRoot
        self.logger = logger
    }

    /// The stored events of one consultation, in stream order; empty when the
    /// partition has no corpus yet.
    func records(consultationID: String, partition: PartitionKey) async throws -> [CorpusRecord] {
        guard let reader = try await reader(for: partition) else { return [] }
        do {
            if try await reader.refresh() == 0 { return [] }
            return try await reader.records(consultationID: consultationID)
        } catch {
            // A reader that failed is reopened next time.
            readers.withLock { if $0[partition] === reader { $0[partition] = nil } }
            try? await reader.close()
            throw error
        }
    }

    private func reader(for partition: PartitionKey) async throws -> CorpusReader? {
        if let reader = readers.withLock({ $0[partition] }) { return reader }
        let directory = partition.directory(storageRoot: storageRoot)
        guard FileManager.default.fileExists(atPath: directory) else { return nil }
        let reader = try await CorpusReader.open(directory: directory, logger: logger)
        let kept = readers.withLock { readers in
            if let existing = readers[partition] { return existing }
            readers[partition] = reader
            return reader
        }
        if kept !== reader { try? await reader.close() }
        return kept
    }

    func closeAll() async {
        let all = readers.withLock { readers in
            defer { readers.removeAll() }
            return Array(readers.values)
        }
        for reader in all { try? await reader.close() }
    }
}
