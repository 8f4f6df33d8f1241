import Crypto
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Operations on a whole partition directory (layout 2) besides appending:
/// listing its segments, erasing one consultation, verifying closed segments
/// against the manifest. Docs/storage.md explains each; every HDF5 call runs
/// on a dispatch queue of the operation's own.
public enum CorpusMaintenance {
    // MARK: listing

    /// One segment of a partition as the manifest and the directory show it.
    public struct SegmentInfo: Sendable, Equatable {
        /// The file name inside the partition directory.
        public var file: String
        /// Recorded in the manifest: it will never be written again.
        public var closed: Bool
        /// Rows, id range and checksum as recorded (closed segments only).
        public var rows: Int?
        public var firstStreamID: StreamEntryID?
        public var lastStreamID: StreamEntryID?
        public var sha256: String?
        /// The file's size now.
        public var fileBytes: Int
    }

    /// The partition's segments in order: closed ones (from the manifest), then
    /// the one being written and any closed but not yet recorded.
    public static func segments(directory: String) async throws -> [SegmentInfo] {
        try await onOwnQueue {
            let partition = PartitionDirectory(directory)
            let snapshot = try partition.snapshot()
            return snapshot.ordered.map { name in
                let entry = snapshot.manifest.entry(name)
                return SegmentInfo(
                    file: name, closed: entry != nil, rows: entry?.stats.rows, firstStreamID: entry?.stats.first,
                    lastStreamID: entry?.stats.last, sha256: entry?.stats.sha256,
                    fileBytes: Int(POSIX.identity(partition.file(name))?.size ?? 0))
            }
        }
    }

    /// The partition's high-water mark as recorded in its manifest (`nil` before the first roll).
    public static func highWater(directory: String) async throws -> StreamEntryID? {
        try await onOwnQueue { try PartitionDirectory(directory).readManifest()?.highWaterID }
    }

    // MARK: erasure

    /// How ``erase(consultationID:directory:options:logger:)`` waits for others.
    public struct ErasureOptions: Sendable {
        /// How long to wait for a running writer to close the segment holding
        /// the consultation's newest rows.
        public var rollWait: Duration = .seconds(60)
        /// How long to wait for the manifest lock (another erasure, or a writer recording a segment).
        public var lockWait: Duration = .seconds(60)
        /// Timestamps in the audit log and the manifest.
        public var clock: CorpusClock = .system
        public init() {}
    }

    /// One segment an erasure rewrote.
    public struct SegmentErasure: Sendable, Equatable {
        public var file: String
        public var rowsRemoved: Int
        public var rowsLeft: Int
    }

    /// What an erasure did.
    public struct ErasureReport: Sendable {
        /// The partition directory.
        public var directory: String
        /// The rewritten segments, in order (a segment left without rows is deleted).
        public var segments: [SegmentErasure]
        /// Rows removed in all.
        public var rowsRemoved: Int { segments.reduce(0) { $0 + $1.rowsRemoved } }
        /// How the consultation's rows in the segment being written were closed:
        /// `"none needed"`, `"by this process"` (no writer was running) or
        /// `"by the running writer"` (asked through `roll.request`).
        public var roll: String
    }

    /// Removes every stored row of `consultationID` from a partition.
    ///
    /// 1. Every such row must be in a closed segment. If no writer holds the
    ///    partition, this call opens it as the writer and closes its segment. If
    ///    one does (a running worker), and the segment it writes (or one it has
    ///    not recorded yet) holds rows of the consultation, it creates
    ///    `roll.request`: the writer closes its segment at its next batch
    ///    boundary (or idle tick), and this call waits until the manifest's
    ///    high-water mark covers those rows (``ErasureOptions/rollWait``).
    /// 2. Under the manifest lock, each closed segment holding rows of the
    ///    consultation is rewritten without them to `<segment>.erasing` (synced),
    ///    the manifest records the replacement, the file is renamed over the
    ///    segment, the directory is synced, and the manifest records the new row
    ///    count, id range and SHA-256 (a segment left without rows is deleted).
    ///    A crash in between is finished by the next holder of the manifest lock.
    /// 3. `audit.log` gets a line when it starts and one when it is done: time,
    ///    segments, rows, and the SHA-256 of the consultation id — never the data.
    ///
    /// The high-water mark never goes down, so a redelivered stream entry of an
    /// erased row is skipped as already stored. Rows stored after step 1 (events
    /// still queued) are not erased: run it again once they are stored.
    public static func erase(consultationID: String, directory: String, options: ErasureOptions = .init(),
                             logger: Logger = .disabled) async throws -> ErasureReport {
        let partition = PartitionDirectory(directory)
        guard FileManager.default.fileExists(atPath: directory) else {
            return ErasureReport(directory: directory, segments: [], roll: "none needed")
        }
        var writerOptions = CorpusWriter.Options()
        writerOptions.clock = options.clock
        var writer: CorpusWriter?
        var requested = false
        defer { if requested { try? POSIX.unlinkIfPresent(partition.file(SegmentName.rollRequest)) } }
        let roll: String
        do {
            let own = try await CorpusWriter.open(directory: directory, options: writerOptions, logger: logger)
            writer = own
            do {
                try await own.roll()
            } catch {
                try? await own.close()
                throw error
            }
            roll = "by this process"
        } catch let error as StorageError where error.code == .locked && error.message.contains(SegmentName.writerLock) {
            // A writer is running: which of our rows has it not closed yet?
            let newest = try await onOwnQueue { try newestUnclosedRow(of: consultationID, in: partition, logger: logger) }
            if let newest {
                requested = true
                roll = try await waitForRoll(through: newest, partition: partition, options: options, writerOptions: writerOptions,
                                             logger: logger, writer: &writer)
            } else {
                roll = "none needed"
            }
        }
        let rolled = roll
        do {
            let segments = try await onOwnQueue {
                try rewrite(without: consultationID, partition: partition, options: options, roll: rolled, logger: logger)
            }
            try await writer?.close()
            return ErasureReport(directory: directory, segments: segments, roll: roll)
        } catch {
            try? await writer?.close()
            throw error
        }
    }

    /// The newest stream id of `consultationID`'s rows in segments the manifest does not list yet.
    private static func newestUnclosedRow(of consultationID: String, in partition: PartitionDirectory, logger: Logger) throws -> StreamEntryID? {
        let snapshot = try partition.snapshot()
        var newest: StreamEntryID?
        for name in snapshot.unlisted {
            guard let core = try? ReaderCore(path: partition.file(name), logger: logger) else { continue }
            defer { try? core.close() }
            if let last = try core.records(consultationID: consultationID).last?.streamID { newest = last }
        }
        return newest
    }

    /// Asks the running writer to close its segment and waits until the
    /// manifest's high-water mark reaches `needed`. If the writer goes away
    /// meanwhile, this process becomes the writer and closes the segment itself.
    private static func waitForRoll(through needed: StreamEntryID, partition: PartitionDirectory, options: ErasureOptions,
                                    writerOptions: CorpusWriter.Options, logger: Logger, writer: inout CorpusWriter?) async throws -> String {
        let request = partition.file(SegmentName.rollRequest)
        let deadline = ContinuousClock.now + options.rollWait
        try POSIX.writeSynced(Array("erase requested by pid \(getpid())\n".utf8), to: request)
        while true {
            if let high = try partition.readManifest()?.highWaterID, high >= needed { return "by the running writer" }
            if let own = try? await CorpusWriter.open(directory: partition.path, options: writerOptions, logger: logger) {
                writer = own
                try await own.roll()
                return "by this process"
            }
            if !FileManager.default.fileExists(atPath: request) {
                try POSIX.writeSynced(Array("erase requested by pid \(getpid())\n".utf8), to: request)
            }
            guard ContinuousClock.now < deadline else {
                throw StorageError(code: .locked, message: "the writer of \(partition.path) did not close its segment within \(options.rollWait) (is its worker stuck?); nothing was erased")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Step 2 of an erasure, under the manifest lock.
    private static func rewrite(without consultationID: String, partition: PartitionDirectory, options: ErasureOptions,
                                roll: String, logger: Logger) throws -> [SegmentErasure] {
        let lock = try partition.lockManifest(wait: options.lockWait)
        defer { lock.release() }
        guard var manifest = try partition.repair(logger: logger) else { return [] }
        let digest = SHA256.hash(data: Array(consultationID.utf8)).map { String(format: "%02x", $0) }.joined()
        let eraseID = UUID().uuidString.lowercased()

        var targets: [(file: String, positions: [Int])] = []
        for entry in manifest.segments {
            let core = try ReaderCore(path: partition.file(entry.file), logger: logger)
            defer { try? core.close() }
            let positions = try core.positions(consultationID: consultationID)
            if !positions.isEmpty { targets.append((entry.file, positions)) }
        }
        let planned = Dictionary(uniqueKeysWithValues: targets.map { ($0.file, $0.positions.count) })
        try partition.audit(["event": "erase_started", "erase_id": eraseID, "consultation_sha256": digest,
                             "segments": planned, "rows": planned.values.reduce(0, +), "roll": roll], nowMs: options.clock.nowMs())
        var done: [SegmentErasure] = []
        for target in targets {
            let stats = try rewriteSegment(partition.file(target.file), dropping: target.positions, logger: logger)
            FaultInjection.reach("erase.rewritten")
            guard let index = manifest.segments.firstIndex(where: { $0.file == target.file }) else { continue }
            manifest.segments[index].replacement = stats
            try partition.commit(manifest)
            FaultInjection.reach("erase.intent-committed")
            try POSIX.rename(partition.file(target.file + SegmentName.erasingSuffix), partition.file(target.file))
            try POSIX.fsync(path: partition.path, directory: true)
            FaultInjection.reach("erase.renamed")
            if stats.rows == 0 {
                manifest.segments.remove(at: index)
                manifest.deleting.append(target.file)
                try partition.commit(manifest)
                try partition.removeDeleted(&manifest, logger: logger)
            } else {
                manifest.segments[index].stats = stats
                manifest.segments[index].replacement = nil
                try partition.commit(manifest)
            }
            FaultInjection.reach("erase.committed")
            done.append(SegmentErasure(file: target.file, rowsRemoved: target.positions.count, rowsLeft: stats.rows))
            logger.debug("corpus segment rewritten without a consultation", metadata: [
                "fi.corpus.segment": "\(target.file)", "fi.corpus.rows_removed": "\(target.positions.count)"])
        }
        try partition.audit(["event": "erase_done", "erase_id": eraseID, "consultation_sha256": digest,
                             "segments": Dictionary(uniqueKeysWithValues: done.map { ($0.file, $0.rowsRemoved) }),
                             "rows": done.reduce(0) { $0 + $1.rowsRemoved }], nowMs: options.clock.nowMs())
        return done
    }

    /// Writes `<path>.erasing`: the segment without the rows at `positions`,
    /// same chunking, compression and creation time, closed and synced.
    /// - Returns: the new file's figures for the manifest.
    private static func rewriteSegment(_ path: String, dropping positions: [Int], logger: Logger) throws -> SegmentStats {
        let temporary = path + SegmentName.erasingSuffix
        try POSIX.unlinkIfPresent(temporary)
        try POSIX.unlinkIfPresent(temporary + SegmentName.creatingSuffix)
        let source = try ReaderCore(path: path, logger: logger)
        defer { try? source.close() }
        let (creation, createdAtMs) = try source.creation()
        let output = try SegmentWriter(path: temporary, options: CorpusWriter.Options(fsync: false, validateUTF8: false),
                                       logger: logger, creation: creation, createdAtMs: createdAtMs)
        let drop = Set(positions)
        var row = 0
        while row < source.rowCount {
            let end = try source.blockEnd(from: row, maxRows: 65_536, maxBytes: 64 << 20)
            let block = try source.records(in: row..<end)
            let kept = block.indices.filter { !drop.contains(row + $0) }.map { block[$0] }
            if !kept.isEmpty { _ = try output.append(kept, above: output.lastStreamID) }
            row = end
        }
        try output.close()
        try POSIX.fsync(path: temporary)
        let (sha256, bytes) = try FileChecksum.sha256(temporary)
        return SegmentStats(rows: output.rowCount, firstStreamID: output.firstStreamID?.description,
                            lastStreamID: output.lastStreamID?.description, payloadBytes: output.payloadBytes,
                            fileBytes: bytes, sha256: sha256)
    }

    // MARK: verification

    /// The result of checking one closed segment.
    public struct SegmentCheck: Sendable {
        public var file: String
        public var rows: Int
        /// What is wrong; empty when the segment matches its manifest entry.
        public var problems: [String]
        public var ok: Bool { problems.isEmpty }
    }

    /// The result of ``verify(directory:logger:)``.
    public struct VerificationReport: Sendable {
        public var directory: String
        /// Every closed segment, in order.
        public var segments: [SegmentCheck]
        /// Problems of the partition as a whole (an unreadable manifest, unlisted old files).
        public var problems: [String]
        /// Segments not checked: the one being written (and any closed but not yet recorded).
        public var unchecked: [String]
        /// Work in progress seen, not damage: an erasure or deletion under way (or interrupted, and
        /// finished by the next writer or erasure).
        public var notes: [String] = []
        public var damaged: [SegmentCheck] { segments.filter { !$0.ok } }
        public var ok: Bool { problems.isEmpty && damaged.isEmpty }
    }

    /// Checks every closed segment against its manifest entry: the file's size
    /// and SHA-256, then as HDF5 — every column exactly `rows` long, `payload`
    /// ending where the last row ends, offsets and stream ids in order, and the
    /// recorded first and last stream ids — and the rows' epochs, which must
    /// never go down in stream order, within a segment or from one segment to
    /// the next (epoch 0, written without fencing, is not compared): a drop is
    /// reported on the segment where it happens. Reads every byte of every closed segment.
    public static func verify(directory: String, logger: Logger = .disabled) async throws -> VerificationReport {
        try await onOwnQueue {
            let partition = PartitionDirectory(directory)
            var report = VerificationReport(directory: directory, segments: [], problems: [], unchecked: [])
            let snapshot: PartitionSnapshot
            do {
                snapshot = try partition.snapshot()
            } catch {
                report.problems.append("\(SegmentName.manifest): \(error)")
                return report
            }
            let manifest = snapshot.manifest
            if !manifest.deleting.isEmpty {
                report.notes.append("being deleted: \(manifest.deleting.joined(separator: ", "))")
            }
            let newestClosed = manifest.segments.map(\.file).max(by: SegmentName.precedes)
            for name in snapshot.unlisted {
                if let newestClosed, !SegmentName.precedes(newestClosed, name) {
                    report.problems.append("\(name) is not in \(SegmentName.manifest) but older than its newest closed segment")
                } else {
                    report.unchecked.append(name)
                }
            }
            var epochs = EpochOrder()
            for entry in manifest.segments {
                if entry.replacement != nil {
                    report.notes.append("\(entry.file): being rewritten by an erasure (or one was interrupted: the next writer or erasure finishes it)")
                    continue
                }
                let before = epochs
                var result = check(entry, in: partition, epochs: &epochs, logger: logger)
                if !result.ok, let again = try? partition.readManifest()?.entry(entry.file), again != entry {
                    // Rewritten (an erasure) or deleted (retention) while we read it: check what is recorded now.
                    epochs = before
                    result = again.replacement == nil ? check(again, in: partition, epochs: &epochs, logger: logger)
                        : SegmentCheck(file: entry.file, rows: entry.stats.rows, problems: [])
                }
                report.segments.append(result)
            }
            return report
        }
    }

    private static func check(_ entry: ManifestSegment, in partition: PartitionDirectory, epochs: inout EpochOrder,
                              logger: Logger) -> SegmentCheck {
        let path = partition.file(entry.file)
        var problems: [String] = []
        guard FileManager.default.fileExists(atPath: path) else {
            return SegmentCheck(file: entry.file, rows: entry.stats.rows, problems: problems + ["the file is missing"])
        }
        do {
            let (sha256, bytes) = try FileChecksum.sha256(path)
            if bytes != entry.stats.fileBytes { problems.append("\(bytes) bytes, the manifest says \(entry.stats.fileBytes)") }
            if sha256 != entry.stats.sha256 { problems.append("SHA-256 \(sha256) does not match the manifest's \(entry.stats.sha256)") }
        } catch {
            problems.append("cannot read it: \(error)")
        }
        do {
            let core = try ReaderCore(path: path, logger: logger)
            defer { try? core.close() }
            problems += try core.closedSegmentProblems(expectedRows: entry.stats.rows, first: entry.stats.first, last: entry.stats.last,
                                                       epochs: &epochs)
        } catch {
            problems.append("cannot be read as a corpus file: \(error)")
        }
        return SegmentCheck(file: entry.file, rows: entry.stats.rows, problems: problems)
    }

    /// Runs blocking work (HDF5, fsync, flock waits) on a dispatch queue of its own.
    static func onOwnQueue<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue(label: "fi.storage.maintenance").async { continuation.resume(with: Result { try body() }) }
        }
    }
}
