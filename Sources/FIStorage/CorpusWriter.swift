internal import CHDF5
import FILocking
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The single writer of one partition's corpus (Docs/contract.md §5).
///
/// ``open(directory:options:logger:)`` writes a partition directory of segment
/// files (layout 2): rows go to the newest segment; at a batch boundary, once
/// it reaches ``Options/segmentMaxBytes`` or ``Options/segmentMaxAge`` (or an
/// erasure asks), the segment is closed — SWMR flags cleared, flushed, file and
/// directory synced — and recorded with its row count, id range and SHA-256
/// in `manifest.json`; the next batch starts a new segment. A closed segment is
/// never written again. Layout 1's single `corpus.h5` is read as the first segment.
/// ``open(path:options:logger:)`` writes one file and never rolls.
///
/// Opening takes an exclusive lock (`flock` on `corpus.h5.lock`, or
/// `<path>.lock`), creates the first file on first use, and otherwise recovers:
/// stale writer flags are cleared the way `h5clear -s` does, a batch torn by a
/// crash is cut back to the last whole row, a segment closed just before a crash
/// is recorded, and an interrupted erasure or retention is finished. The segment
/// being written is in SWMR-write mode, so h5py (`swmr=True`) and
/// ``CorpusReader`` read it while this writer appends.
///
/// Every HDF5 call runs on this writer's own serial dispatch queue, never on the
/// Swift cooperative pool; checksums and manifest updates run on a second one,
/// off the append path.
public final class CorpusWriter: Sendable {
    /// How a new file is laid out, how appends are made durable, and when segments close.
    public struct Options: Sendable {
        /// Compression of the `payload` bytes (only applied when the file is created).
        public struct Compression: Sendable, Equatable, CustomStringConvertible {
            let deflateLevel: Int?
            /// No compression (the default, fastest).
            public static let none = Compression(deflateLevel: nil)
            /// zlib deflate at `level` (1…9) with the shuffle filter, on `payload` only.
            public static func deflate(level: Int = 1) -> Compression {
                Compression(deflateLevel: min(9, max(1, level)))
            }
            public var description: String { deflateLevel.map { "deflate(\($0))" } ?? "none" }
        }

        /// The default ``segmentMaxBytes``: 1 GiB (Docs/storage.md says why).
        public static let defaultSegmentMaxBytes = 1 << 30
        /// The default ``segmentMaxAge``: 24 hours.
        public static let defaultSegmentMaxAge: Duration = .seconds(24 * 3600)

        /// Chunk length, in rows, of the row columns (new files only).
        public var batchChunkRows: Int
        /// Chunk length, in bytes, of `payload` (new files only).
        public var payloadChunkBytes: Int
        /// Compression of `payload` (new files only).
        public var compression: Compression
        /// Sync the file (`fdatasync`) after every flushed batch, so a returned
        /// append survives a power loss. With `false`, an acknowledged batch
        /// survives a process crash (kill -9) but not a power loss.
        public var fsync: Bool
        /// Reject payloads that are not valid UTF-8 (the contract stores JSON).
        public var validateUTF8: Bool
        /// A directory corpus closes its segment at the first batch boundary at
        /// which the file is at least this large; `nil` or 0: no size limit.
        public var segmentMaxBytes: Int?
        /// … or at least this old (since its creation); `nil` or zero: no age limit.
        public var segmentMaxAge: Duration?
        /// Delete closed segments whose newest row (by the time in its stream
        /// id) is older than this; `nil`: keep everything. Checked at most once a
        /// minute and after each roll. Never the segment being written.
        public var retention: Duration?
        /// The lease epoch of this writer (a directory corpus only), stored in
        /// every row's `epoch` column and checked against the partition's
        /// `fence` file: at open, and before every batch, a fence (or, at open,
        /// a newest row) of a higher epoch means a newer lease has taken the
        /// partition, and the writer throws ``StorageError/Code/fenced``
        /// without writing. Opening raises the fence to this epoch.
        /// `nil` (the default): no fencing — the writer neither checks nor
        /// raises the fence, and its rows record epoch 0 (for tools, tests and
        /// a worker without leases; see Docs/storage.md).
        public var fencingEpoch: UInt64?
        /// The wall clock (segment ages, retention, timestamps in the manifest).
        public var clock: CorpusClock
        /// Told when a segment closes, is recorded, or is deleted by retention;
        /// called on the writer's queues, so keep it short.
        public var events: (@Sendable (CorpusEvent) -> Void)?

        public init(
            batchChunkRows: Int = 8192,
            payloadChunkBytes: Int = 1 << 20,
            compression: Compression = .none,
            fsync: Bool = true,
            validateUTF8: Bool = true,
            segmentMaxBytes: Int? = Options.defaultSegmentMaxBytes,
            segmentMaxAge: Duration? = Options.defaultSegmentMaxAge,
            retention: Duration? = nil,
            fencingEpoch: UInt64? = nil,
            clock: CorpusClock = .system,
            events: (@Sendable (CorpusEvent) -> Void)? = nil
        ) {
            self.batchChunkRows = batchChunkRows
            self.payloadChunkBytes = payloadChunkBytes
            self.compression = compression
            self.fsync = fsync
            self.validateUTF8 = validateUTF8
            self.segmentMaxBytes = segmentMaxBytes
            self.segmentMaxAge = segmentMaxAge
            self.retention = retention
            self.fencingEpoch = fencingEpoch
            self.clock = clock
            self.events = events
        }
    }

    private struct Snapshot: Sendable {
        var lastStreamID: StreamEntryID?
        var rowCount: Int
    }

    /// The corpus file (``open(path:options:logger:)``) or partition directory this writer owns.
    public let path: String
    private let queue: DispatchQueue
    private let engine: any WriterEngine
    private let snapshot: Locked<Snapshot>

    private init(path: String, queue: DispatchQueue, engine: any WriterEngine, snapshot: Snapshot) {
        self.path = path
        self.queue = queue
        self.engine = engine
        self.snapshot = Locked(snapshot)
    }

    /// Opens (creating on first use, recovering after a crash) a partition
    /// directory of segments.
    ///
    /// - Parameters:
    ///   - directory: `<storage>/<partition>`; created if missing. A layout 1
    ///     `corpus.h5` in it is the first segment.
    ///   - options: Layout (for new files), durability, segment limits, retention.
    ///   - logger: Receives recovery and lifecycle events (debug level).
    /// - Returns: The writer, holding the partition's lock until ``close()``.
    /// - Throws: ``StorageError`` — `.locked` at once if another writer holds
    ///   the partition, `.fenced` (nothing written) if the partition's fence or
    ///   newest row carries a higher epoch than ``Options/fencingEpoch``,
    ///   `.corrupt` if a file or the manifest lacks the layout, `.hdf5`/`.io` otherwise.
    public static func open(directory: String, options: Options = .init(), logger: Logger = .disabled) async throws -> CorpusWriter {
        try await open(path: directory, logger: logger) { try PartitionEngine(directory: directory, options: options, logger: logger) }
    }

    /// Opens (creating on first use, recovering after a crash) one corpus file
    /// at `path` (layout 1: it never rolls; segment options are ignored). Its
    /// rows record epoch 0; a file without the `epoch` column (written before
    /// it existed) is written on without one.
    ///
    /// - Parameters:
    ///   - path: The file; missing parent directories are created.
    ///   - options: Layout (for a new file) and durability.
    ///   - logger: Receives recovery and lifecycle events.
    /// - Returns: The writer, holding the file's lock (`<path>.lock`) until ``close()``.
    /// - Throws: ``StorageError`` — `.invalidArgument` if ``Options/fencingEpoch``
    ///   is set (only a partition directory has a fence), `.locked` at once if
    ///   another writer holds the file, `.corrupt` if the file lacks the corpus
    ///   layout, `.hdf5`/`.io` otherwise.
    public static func open(path: String, options: Options = .init(), logger: Logger = .disabled) async throws -> CorpusWriter {
        try await open(path: path, logger: logger) { try SingleFileEngine(path: path, options: options, logger: logger) }
    }

    private static func open(path: String, logger: Logger, _ make: @escaping @Sendable () throws -> any WriterEngine) async throws -> CorpusWriter {
        let queue = DispatchQueue(label: "fi.storage.writer")
        // The engine's state is read only on its queue, even here (see CorpusReader.open).
        let (engine, snapshot) = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(any WriterEngine, Snapshot), any Error>) in
            queue.async {
                continuation.resume(with: Result {
                    let engine = try make()
                    return (engine, Snapshot(lastStreamID: engine.watermark, rowCount: engine.rowCount))
                })
            }
        }
        return CorpusWriter(path: path, queue: queue, engine: engine, snapshot: snapshot)
    }

    /// The watermark: the highest stream id this corpus has stored — its last
    /// row, or a row above it that an erasure removed since — `nil` for a new corpus.
    /// Records at or below it are skipped.
    public var lastStreamID: StreamEntryID? { snapshot.withLock { $0.lastStreamID } }

    /// The number of whole rows in every segment (as of this writer's last
    /// operation; an erasure by another process shows after a reopen).
    public var rowCount: Int { snapshot.withLock { $0.rowCount } }

    /// Appends `records` in order as one durable batch.
    ///
    /// Records whose stream id is at or below the watermark (including one
    /// raised earlier in the same batch) are skipped, so redelivered entries are
    /// stored exactly once. The whole batch is validated before anything is
    /// written; one bad record rejects the batch and leaves the corpus unchanged.
    /// An empty batch (or one entirely skipped) writes nothing and returns at once.
    /// In a directory corpus, the segment is first closed if it is due (size,
    /// age, an erasure's request): a batch never spans two segments.
    ///
    /// With ``Options/fencingEpoch`` set, the partition's fence is read first:
    /// if a newer lease has raised it, nothing is written and this and every
    /// later call throws `.fenced`.
    ///
    /// - Returns: How many records were appended and how many skipped.
    /// - Throws: ``StorageError`` — `.invalidRecord` (nothing written), `.fenced`
    ///   (nothing written; the writer refuses further appends), `.closed`,
    ///   `.failed` after an earlier part-way failure, `.hdf5`/`.io` if writing or
    ///   syncing fails (the writer then refuses further appends; reopen to recover).
    @discardableResult
    public func append(_ records: [CorpusRecord]) async throws -> AppendOutcome {
        if records.isEmpty { return AppendOutcome(appended: 0, skipped: 0) }
        return try await run { engine in try engine.append(records) }
    }

    /// Between batches: closes the segment if it is due (age, size, an
    /// erasure's request), records segments closed earlier, and applies
    /// retention. A worker calls this while its stream is idle; ``append(_:)``
    /// does the same itself. A fencing writer checks the fence first, as
    /// ``append(_:)`` does (`.fenced`).
    public func maintain() async throws {
        try await run { engine in try engine.maintain() }
    }

    /// Closes the segment being written now (if it has rows) and waits until
    /// every closed segment is recorded in the manifest. Does nothing for a
    /// single-file corpus.
    public func roll() async throws {
        try await run { engine in try engine.roll() }
    }

    /// Flushes, closes the file(s) cleanly (readable by any stock tool) and releases the lock.
    /// The segment being written stays the one being written: the next writer continues it.
    ///
    /// Later calls do nothing.
    /// - Throws: ``StorageError`` if the final flush or close fails.
    public func close() async throws {
        try await run { engine in try engine.close() }
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable (any WriterEngine) throws -> T) async throws -> T {
        let engine = self.engine
        let (value, snapshot) = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(T, Snapshot), any Error>) in
            queue.async {
                continuation.resume(with: Result {
                    let value = try body(engine)
                    return (value, Snapshot(lastStreamID: engine.watermark, rowCount: engine.rowCount))
                })
            }
        }
        self.snapshot.withLock { $0 = snapshot }
        return value
    }
}

/// Wall-clock time for segment ages and retention, Unix milliseconds. Tests pass a fake one.
public struct CorpusClock: Sendable {
    /// Now, in milliseconds since the Unix epoch.
    public let nowMs: @Sendable () -> Int64

    public init(nowMs: @escaping @Sendable () -> Int64) { self.nowMs = nowMs }

    /// The system's real-time clock.
    public static let system = CorpusClock { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }
}

/// Something a directory writer did to its segments (``CorpusWriter/Options/events``).
public enum CorpusEvent: Sendable {
    /// The segment being written was closed (on the append path: `duration`
    /// covers the close, the syncs and nothing else).
    case segmentClosed(file: String, rows: Int, bytes: Int, reason: String, duration: Duration)
    /// A closed segment was recorded in the manifest with its checksum
    /// (in the background: `duration` covers the SHA-256 and the manifest write).
    case segmentRecorded(file: String, rows: Int, duration: Duration)
    /// The next segment was created for a batch (the second half of a roll, on the append path).
    case segmentOpened(file: String, duration: Duration)
    /// Retention deleted whole closed segments.
    case segmentsDeleted(files: [String], rows: Int)
    /// Recording a closed segment or applying retention failed (other than waiting for the manifest
    /// lock an erasure holds); it is retried at the next batch boundary.
    case maintenanceFailed(message: String)
}

extension Duration {
    var milliseconds: Int64 {
        let c = components
        return c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000
    }
}

/// What the public writer drives, on its queue.
protocol WriterEngine: AnyObject, Sendable {
    var watermark: StreamEntryID? { get }
    var rowCount: Int { get }
    func append(_ records: [CorpusRecord]) throws -> AppendOutcome
    func maintain() throws
    func roll() throws
    func close() throws
}

/// Layout 1: one file, locked by `<path>.lock`, never rolled.
final class SingleFileEngine: WriterEngine, @unchecked Sendable {
    private var lock: FileLock?
    private let file: SegmentWriter
    private let selection = RecordSelection()

    init(path: String, options: CorpusWriter.Options, logger: Logger) throws {
        if let epoch = options.fencingEpoch {
            throw StorageError(code: .invalidArgument, message: "fencing epoch \(epoch) given for the single corpus file \(path): only a partition directory (CorpusWriter.open(directory:)) has a fence")
        }
        try POSIX.createDirectories(POSIX.directory(of: path))
        let lock = try FileLock(path: path + ".lock")
        file = try SegmentWriter(path: path, options: options, logger: logger)
        self.lock = lock
    }

    deinit { lock?.release() }

    var watermark: StreamEntryID? { file.lastStreamID }
    var rowCount: Int { file.rowCount }

    func append(_ records: [CorpusRecord]) throws -> AppendOutcome {
        guard file.isOpen else { throw StorageError(code: .closed, message: "the corpus writer for \(file.path) is closed") }
        _ = try selection.select(records, above: file.lastStreamID, validateUTF8: file.options.validateUTF8)
        return try file.write(records, selection, epoch: 0)
    }

    func maintain() throws {}
    func roll() throws {}

    func close() throws {
        defer {
            lock?.release()
            lock = nil
        }
        try file.close()
    }
}

/// Layout 2: a partition directory of segments (see PartitionDirectory.swift).
/// Touched only on the writer's queue; the ``Sealer`` works on its own.
final class PartitionEngine: WriterEngine, @unchecked Sendable {
    let directory: PartitionDirectory
    let options: CorpusWriter.Options
    let logger: Logger
    private var lock: FileLock?
    private var active: SegmentWriter?
    private var activeName: String?
    /// When the segment being written was created (Unix ms).
    private var activeCreatedMs: Int64 = 0
    private(set) var watermark: StreamEntryID?
    /// Rows in segments other than the one being written, as of opening plus rolls.
    private var otherRows = 0
    private let sealer: Sealer
    private let selection = RecordSelection()
    /// The `roll.request` this writer last acted on.
    private var handledRequest: FileIdentity?
    private var lastRetentionMs: Int64 = .min
    private var failure: StorageError?
    /// Set once a newer lease's fence is seen: the writer refuses all further work.
    private var fenced: StorageError?
    private var closed = false

    /// How often retention looks for segments to delete.
    static let retentionInterval: Int64 = 60_000

    init(directory path: String, options: CorpusWriter.Options, logger: Logger) throws {
        var logger = logger
        logger[metadataKey: "fi.corpus.directory"] = "\(path)"
        self.directory = PartitionDirectory(path)
        self.options = options
        self.logger = logger
        self.sealer = Sealer(directory: directory, options: options, logger: logger)
        try POSIX.createDirectories(path)
        let lock = try directory.lockWriter()
        var opened = false
        defer { if !opened { lock.release() } }

        // The manifest lock, unless an erasure is at work right now (it is
        // held for the whole rewrite; the erasure repairs what needs it).
        let manifestLock = try? directory.lockManifest(wait: .zero)
        defer { manifestLock?.release() }
        // The fence before anything else: a fenced writer writes nothing.
        if let epoch = options.fencingEpoch { try directory.takeFence(epoch: epoch, logger: logger) }
        // Segments this writer's predecessor was creating when it died.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        where name.hasSuffix(SegmentName.creatingSuffix) && SegmentName.isSegment(String(name.dropLast(SegmentName.creatingSuffix.count))) {
            try POSIX.unlinkIfPresent(directory.file(name))
        }
        // Finish an interrupted erasure or deletion.
        if let manifestLock {
            try directory.repair(logger: logger)
            manifestLock.release()
        }

        let snapshot = try directory.snapshot()
        let manifest = snapshot.manifest
        watermark = manifest.highWaterID
        otherRows = manifest.segments.reduce(0) { $0 + $1.stats.rows }
        let unlisted = snapshot.unlisted
        if let first = unlisted.first {
            let newestClosed = manifest.segments.map(\.file).max(by: SegmentName.precedes)
            if let newestClosed, !SegmentName.precedes(newestClosed, first) {
                throw StorageError(code: .corrupt, message: "\(directory.file(first)) is not in \(SegmentName.manifest) but not newer than its closed segment \(newestClosed); move it away or restore the manifest (Docs/storage.md)")
            }
            if first == SegmentName.legacy, manifest.highWater != nil {
                throw StorageError(code: .corrupt, message: "\(directory.file(first)) is not in \(SegmentName.manifest), which has recorded segments after it; move it away or restore the manifest (Docs/storage.md)")
            }
        }
        // Segments closed before a crash but not yet recorded: make sure each is
        // closed cleanly, and record them (in the background).
        let now = options.clock.nowMs()
        for name in unlisted.dropLast() {
            let file = try SegmentWriter(path: directory.file(name), options: options, logger: logger)
            try file.close()
            raise(to: file.lastStreamID)
            otherRows += file.rowCount
            sealer.enqueue(PendingSegment(file: name, rows: file.rowCount, first: file.firstStreamID, last: file.lastStreamID,
                                          payloadBytes: file.payloadBytes, closedAtMs: now))
        }
        // The newest unlisted segment is the one being written.
        if let name = unlisted.last {
            let file = try SegmentWriter(path: directory.file(name), options: options, logger: logger)
            active = file
            activeName = name
            activeCreatedMs = file.createdAtMs ?? file.firstStreamID.map { Int64(clamping: $0.ms) } ?? now
            raise(to: file.lastStreamID)
            if !file.hasEpochColumn { try retireWithoutEpochColumn(file, name: name) }
        }
        self.lock = lock
        opened = true
        sealer.kick(retainBefore: nil)
        logger.debug("corpus directory opened for writing", metadata: [
            "fi.corpus.closed_segments": "\(manifest.segments.count)",
            "fi.corpus.segment": "\(activeName ?? "-")",
            "fi.corpus.watermark": "\(watermark.map(\.description) ?? "-")",
        ])
    }

    deinit {
        try? active?.close()
        lock?.release()
    }

    /// The segment being written predates the `epoch` column: close it (a
    /// normal roll, recorded with its checksum; an empty one is removed) so
    /// that rows go on in a new segment and no file has a partial column.
    private func retireWithoutEpochColumn(_ file: SegmentWriter, name: String) throws {
        if file.rowCount > 0 {
            try rollActive(reason: "no epoch column")
            return
        }
        try file.close()
        try POSIX.unlinkIfPresent(directory.file(name))
        try POSIX.fsync(path: directory.path, directory: true)
        active = nil
        activeName = nil
        logger.debug("corpus segment without rows or epoch column removed", metadata: ["fi.corpus.segment": "\(name)"])
    }

    private func raise(to id: StreamEntryID?) {
        guard let id else { return }
        if let watermark, watermark >= id { return }
        watermark = id
    }

    var rowCount: Int { max(0, otherRows + (active?.rowCount ?? 0) - sealer.deletedRows) }

    private func usable() throws {
        if closed { throw StorageError(code: .closed, message: "the corpus writer for \(directory.path) is closed") }
        try checkFence()
        if let failure {
            throw StorageError(code: .failed, message: "closing a segment of \(directory.path) failed; reopen the corpus to recover", underlying: failure)
        }
    }

    /// Before every batch (and housekeeping) of a fencing writer: one read of
    /// the fence. Above this writer's epoch: a newer lease has the partition —
    /// refuse, now and for good. Below it (or gone): put it back, so a stale
    /// writer that lowered it by a racing open (where the `flock` does not
    /// work) meets this writer's epoch at its next batch.
    private func checkFence() throws {
        guard let epoch = options.fencingEpoch else { return }
        if let fenced { throw fenced }
        let fence = try directory.readFence()
        if let fence, fence > epoch {
            let error = StorageError(code: .fenced, message: "\(directory.file(SegmentName.fence)) holds epoch \(fence), above this writer's \(epoch): a newer lease has taken the partition; this writer writes nothing more (close it)")
            fenced = error
            logger.debug("corpus writer fenced", metadata: ["fi.corpus.fence": "\(fence)", "fi.corpus.epoch": "\(epoch)"])
            throw error
        }
        if fence != epoch {
            try directory.writeFence(epoch)
            logger.debug("corpus fence restored", metadata: ["fi.corpus.fence": "\(epoch)", "fi.corpus.found": "\(fence.map(String.init) ?? "-")"])
        }
    }

    func append(_ records: [CorpusRecord]) throws -> AppendOutcome {
        try usable()
        try housekeeping()
        guard let first = try selection.select(records, above: watermark, validateUTF8: options.validateUTF8) else {
            return AppendOutcome(appended: 0, skipped: records.count)
        }
        if active == nil {
            // A segment is named after the first stream id it holds.
            let name = SegmentName.name(first: first)
            let now = options.clock.nowMs()
            let started = ContinuousClock.now
            active = try SegmentWriter(path: directory.file(name), options: options, logger: logger, createdAtMs: now)
            activeName = name
            activeCreatedMs = now
            options.events?(.segmentOpened(file: name, duration: ContinuousClock.now - started))
        }
        let outcome = try active!.write(records, selection, epoch: options.fencingEpoch ?? 0)
        raise(to: active!.lastStreamID)
        return outcome
    }

    func maintain() throws {
        try usable()
        try housekeeping()
    }

    /// At a batch boundary: roll if due, and keep the sealer going.
    private func housekeeping() throws {
        let now = options.clock.nowMs()
        if let reason = rollReason(now: now) { try rollActive(reason: reason) }
        var cut: Int64?
        if let retention = options.retention, lastRetentionMs == .min || now - lastRetentionMs >= Self.retentionInterval {
            lastRetentionMs = now
            cut = now - retention.milliseconds
        }
        if cut != nil || sealer.hasPending { sealer.kick(retainBefore: cut) }
    }

    private func rollReason(now: Int64) -> String? {
        let requested = newRequest()
        guard let active, active.rowCount > 0 else { return nil }
        if let limit = options.segmentMaxBytes, limit > 0, active.fileSize() >= limit { return "size" }
        if let age = options.segmentMaxAge, age > .zero, now - activeCreatedMs >= age.milliseconds { return "age" }
        return requested ? "request" : nil
    }

    /// Whether a `roll.request` appeared (or was renewed) since the last one this writer saw.
    private func newRequest() -> Bool {
        guard let request = POSIX.identity(directory.file(SegmentName.rollRequest)) else { return false }
        if request == handledRequest { return false }
        handledRequest = request
        return true
    }

    /// Closes the segment being written: H5Fclose (SWMR flags cleared, flushed),
    /// fsync of the file and the directory. The sealer then checksums it and
    /// records it in the manifest, off the append path.
    private func rollActive(reason: String) throws {
        guard let file = active, let name = activeName, file.rowCount > 0 else { return }
        let started = ContinuousClock.now
        let bytes = file.fileSize()
        FaultInjection.reach("roll.before-close")
        do {
            try file.close()
            FaultInjection.reach("roll.closed")
            try POSIX.fsync(path: directory.path, directory: true)
        } catch let error as StorageError {
            failure = error
            throw error
        }
        active = nil
        activeName = nil
        otherRows += file.rowCount
        sealer.enqueue(PendingSegment(file: name, rows: file.rowCount, first: file.firstStreamID, last: file.lastStreamID,
                                      payloadBytes: file.payloadBytes, closedAtMs: options.clock.nowMs()))
        let duration = ContinuousClock.now - started
        logger.debug("corpus segment closed", metadata: ["fi.corpus.segment": "\(name)", "fi.corpus.rows": "\(file.rowCount)", "fi.corpus.reason": "\(reason)"])
        options.events?(.segmentClosed(file: name, rows: file.rowCount, bytes: bytes, reason: reason, duration: duration))
        sealer.kick(retainBefore: options.retention.map { options.clock.nowMs() - $0.milliseconds })
    }

    func roll() throws {
        try usable()
        _ = newRequest()
        try rollActive(reason: "request")
        try sealer.sealNow(wait: .seconds(30))
    }

    func close() throws {
        guard !closed else { return }
        closed = true
        defer {
            lock?.release()
            lock = nil
        }
        let file = active
        active = nil
        // Best effort: what cannot be recorded now is recorded by the next writer.
        sealer.finish()
        try file?.close()
        logger.debug("corpus directory closed", metadata: ["fi.corpus.rows": "\(rowCount)"])
    }
}

/// A closed segment waiting to be recorded in the manifest.
struct PendingSegment: Sendable {
    var file: String
    var rows: Int
    var first: StreamEntryID?
    var last: StreamEntryID?
    var payloadBytes: Int
    var closedAtMs: Int64
}

/// Records closed segments in the manifest (SHA-256 of the file, then a
/// manifest commit under the manifest lock) and applies retention, on its own
/// serial queue: the writer's appends never wait for a checksum.
final class Sealer: Sendable {
    private struct State {
        var pending: [PendingSegment] = []
        var scheduled = false
        var retainBefore: Int64?
        var closing = false
        var deletedRows = 0
    }

    private let directory: PartitionDirectory
    private let options: CorpusWriter.Options
    private let logger: Logger
    private let queue = DispatchQueue(label: "fi.storage.sealer")
    private let state = Locked(State())

    /// How long the background sealer waits for the manifest lock (an erasure
    /// may hold it) before it gives up until the next kick.
    static let backgroundLockWait: Duration = .seconds(2)
    /// How much lower the background pass runs (nice).
    static let backgroundNice: Int32 = 10

    init(directory: PartitionDirectory, options: CorpusWriter.Options, logger: Logger) {
        self.directory = directory
        self.options = options
        self.logger = logger
    }

    var hasPending: Bool { state.withLock { !$0.pending.isEmpty } }
    var deletedRows: Int { state.withLock { $0.deletedRows } }

    func enqueue(_ segment: PendingSegment) {
        state.withLock { $0.pending.append(segment) }
    }

    /// Starts a background pass (unless one is already waiting to run).
    func kick(retainBefore cut: Int64?) {
        let start = state.withLock { state -> Bool in
            if let cut { state.retainBefore = max(state.retainBefore ?? cut, cut) }
            guard !state.scheduled, !state.closing, !state.pending.isEmpty || state.retainBefore != nil else { return false }
            state.scheduled = true
            return true
        }
        guard start else { return }
        queue.async {
            self.state.withLock { $0.scheduled = false }
            self.pass(wait: Self.backgroundLockWait)
        }
    }

    /// Records every pending segment now, waiting up to `wait` for the manifest lock.
    func sealNow(wait: Duration) throws {
        try queue.sync {
            try sealAll(wait: wait)
        }
    }

    /// Stops background work; records what it can without waiting for the lock.
    func finish() {
        state.withLock { $0.closing = true }
        queue.sync {
            do { try sealAll(wait: .zero) } catch {
                logger.debug("closed segments left for the next writer to record", metadata: ["fi.error": "\(error)"])
            }
        }
    }

    private func pass(wait: Duration) {
        // Checksums are CPU work off the append path: let appends win when cores are busy.
        let nice = CHDF5_thread_nice()
        _ = CHDF5_set_thread_nice(min(19, nice + Self.backgroundNice))
        defer { _ = CHDF5_set_thread_nice(nice) }
        do {
            try sealAll(wait: wait)
            let cut = state.withLock { state -> Int64? in
                defer { state.retainBefore = nil }
                return state.retainBefore
            }
            if let cut { try retain(before: cut, wait: wait) }
        } catch {
            logger.debug("recording closed segments failed; retried at the next batch boundary", metadata: ["fi.error": "\(error)"])
            // The manifest lock held by an erasure is expected (it may take minutes): not a failure.
            if (error as? StorageError)?.code != .locked {
                options.events?(.maintenanceFailed(message: "\(error)"))
            }
        }
    }

    private func sealAll(wait: Duration) throws {
        while let segment = state.withLock({ $0.pending.first }) {
            try seal(segment, wait: wait)
            state.withLock { _ = $0.pending.removeFirst() }
        }
    }

    private func seal(_ segment: PendingSegment, wait: Duration) throws {
        let started = ContinuousClock.now
        let (sha256, bytes) = try FileChecksum.sha256(directory.file(segment.file))
        FaultInjection.reach("seal.hashed")
        let lock = try directory.lockManifest(wait: wait)
        defer { lock.release() }
        var manifest = try directory.repair(logger: logger) ?? Manifest()
        if manifest.entry(segment.file) == nil {
            manifest.segments.append(ManifestSegment(
                file: segment.file,
                stats: SegmentStats(rows: segment.rows, firstStreamID: segment.first?.description, lastStreamID: segment.last?.description,
                                    payloadBytes: segment.payloadBytes, fileBytes: bytes, sha256: sha256),
                closedAtMs: segment.closedAtMs))
            manifest.segments.sort { SegmentName.precedes($0.file, $1.file) }
        }
        manifest.raiseHighWater(to: segment.last)
        try directory.commit(manifest)
        FaultInjection.reach("seal.committed")
        let duration = ContinuousClock.now - started
        logger.debug("corpus segment recorded", metadata: ["fi.corpus.segment": "\(segment.file)", "fi.corpus.sha256": "\(sha256)"])
        options.events?(.segmentRecorded(file: segment.file, rows: segment.rows, duration: duration))
    }

    /// Deletes closed segments whose newest row is older than `cut` (Unix ms,
    /// compared with the time part of the segment's last stream id); empty
    /// closed segments go too. The manifest drops them first (and lists them
    /// under `deleting`), then the files go, then the list is cleared.
    private func retain(before cut: Int64, wait: Duration) throws {
        let lock = try directory.lockManifest(wait: wait)
        defer { lock.release() }
        guard var manifest = try directory.repair(logger: logger) else { return }
        let old = manifest.segments.filter { entry in
            guard let last = entry.stats.last else { return entry.stats.rows == 0 }
            return last.ms < UInt64(clamping: max(0, cut))
        }
        guard !old.isEmpty else { return }
        let names = old.map(\.file)
        let rows = old.reduce(0) { $0 + $1.stats.rows }
        manifest.segments.removeAll { names.contains($0.file) }
        manifest.deleting += names
        try directory.commit(manifest)
        FaultInjection.reach("retention.committed")
        try directory.removeDeleted(&manifest, logger: logger)
        try? directory.audit(["event": "retention", "segments": names, "rows": rows, "cut_ms": cut], nowMs: options.clock.nowMs())
        state.withLock { $0.deletedRows += rows }
        logger.debug("corpus retention deleted segments", metadata: ["fi.corpus.segments": "\(names)", "fi.corpus.rows": "\(rows)"])
        options.events?(.segmentsDeleted(files: names, rows: rows))
    }
}
