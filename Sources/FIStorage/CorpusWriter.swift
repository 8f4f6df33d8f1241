internal import CHDF5
import FILocking
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The single writer of one partition's `corpus.h5` (Docs/contract.md §5).
///
/// Opening takes an exclusive lock (`flock` on `<path>.lock`), creates the file
/// on first use, and otherwise recovers it: stale writer flags are cleared the
/// way `h5clear -s` does, and a batch torn by a crash is cut back to the last
/// whole row. The file is then in SWMR-write mode, so h5py (`swmr=True`) and
/// ``CorpusReader`` can read it while this writer appends.
///
/// Every HDF5 call runs on this writer's own serial dispatch queue, never on the
/// Swift cooperative pool.
public final class CorpusWriter: Sendable {
    /// How a new file is laid out and how appends are made durable.
    public struct Options: Sendable {
        /// Compression of the `payload` bytes (only applied when the file is created).
        public struct Compression: Sendable, Equatable, CustomStringConvertible {
            fileprivate let deflateLevel: Int?
            /// No compression (the default, fastest).
            public static let none = Compression(deflateLevel: nil)
            /// zlib deflate at `level` (1…9) with the shuffle filter, on `payload` only.
            public static func deflate(level: Int = 1) -> Compression {
                Compression(deflateLevel: min(9, max(1, level)))
            }
            public var description: String { deflateLevel.map { "deflate(\($0))" } ?? "none" }
        }

        /// Chunk length, in rows, of the four row columns (new files only).
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

        public init(
            batchChunkRows: Int = 8192,
            payloadChunkBytes: Int = 1 << 20,
            compression: Compression = .none,
            fsync: Bool = true,
            validateUTF8: Bool = true
        ) {
            self.batchChunkRows = batchChunkRows
            self.payloadChunkBytes = payloadChunkBytes
            self.compression = compression
            self.fsync = fsync
            self.validateUTF8 = validateUTF8
        }
    }

    private struct Snapshot: Sendable {
        var lastStreamID: StreamEntryID?
        var rowCount: Int
    }

    /// The corpus file this writer owns.
    public let path: String
    private let queue: DispatchQueue
    private let core: WriterCore
    private let snapshot: Locked<Snapshot>

    private init(path: String, queue: DispatchQueue, core: WriterCore, snapshot: Snapshot) {
        self.path = path
        self.queue = queue
        self.core = core
        self.snapshot = Locked(snapshot)
    }

    /// Opens (creating on first use, recovering after a crash) the corpus at `path`.
    ///
    /// - Parameters:
    ///   - path: The `corpus.h5` path; missing parent directories are created.
    ///   - options: Layout (for a new file) and durability.
    ///   - logger: Receives recovery and lifecycle events.
    /// - Returns: The writer, holding the file's lock until ``close()``.
    /// - Throws: ``StorageError`` — `.locked` at once if another writer holds
    ///   the file, `.corrupt` if the file lacks the corpus layout, `.hdf5`/`.io` otherwise.
    public static func open(path: String, options: Options = .init(), logger: Logger = .disabled) async throws -> CorpusWriter {
        let queue = DispatchQueue(label: "fi.storage.writer")
        // The core's state is read only on its queue, even here (see CorpusReader.open).
        let (core, snapshot) = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(WriterCore, Snapshot), any Error>) in
            queue.async {
                continuation.resume(with: Result {
                    let core = try WriterCore(path: path, options: options, logger: logger)
                    return (core, Snapshot(lastStreamID: core.lastStreamID, rowCount: core.rowCount))
                })
            }
        }
        return CorpusWriter(path: path, queue: queue, core: core, snapshot: snapshot)
    }

    /// The watermark: the stream id of the last whole row, `nil` for an empty corpus.
    public var lastStreamID: StreamEntryID? { snapshot.withLock { $0.lastStreamID } }

    /// The number of whole rows.
    public var rowCount: Int { snapshot.withLock { $0.rowCount } }

    /// Appends `records` in order as one durable batch.
    ///
    /// Records whose stream id is at or below the watermark (including one
    /// raised earlier in the same batch) are skipped, so redelivered entries are
    /// stored exactly once. The whole batch is validated before anything is
    /// written; one bad record rejects the batch and leaves the file unchanged.
    /// An empty batch (or one entirely skipped) writes nothing and returns at once.
    ///
    /// - Returns: How many records were appended and how many skipped.
    /// - Throws: ``StorageError`` — `.invalidRecord` (nothing written), `.closed`,
    ///   `.failed` after an earlier part-way failure, `.hdf5`/`.io` if writing or
    ///   syncing fails (the writer then refuses further appends; reopen to recover).
    @discardableResult
    public func append(_ records: [CorpusRecord]) async throws -> AppendOutcome {
        if records.isEmpty { return AppendOutcome(appended: 0, skipped: 0) }
        let core = self.core
        let (outcome, last, rows) = try await run { try core.append(records) }
        snapshot.withLock {
            $0.lastStreamID = last
            $0.rowCount = rows
        }
        return outcome
    }

    /// Flushes, closes the file cleanly (readable by any stock tool) and releases the lock.
    ///
    /// Later calls do nothing.
    /// - Throws: ``StorageError`` if the final flush or close fails.
    public func close() async throws {
        let core = self.core
        try await run { try core.close() }
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// The writer's state; touched only on its serial queue.
final class WriterCore: @unchecked Sendable {
    let path: String
    let options: CorpusWriter.Options
    let logger: Logger
    private var lock: FileLock?
    private var columns: CorpusColumns?
    private var fd: Int32 = -1
    private(set) var rowCount = 0
    private var payloadBytes = 0
    /// The stream id of the last whole row: the watermark.
    private(set) var lastStreamID: StreamEntryID?
    private var failure: StorageError?

    // Scratch buffers reused across batches.
    private var consultationBuffer: [UInt8] = []
    private var streamBuffer: [UInt8] = []
    private var receivedBuffer: [Int64] = []
    private var endBuffer: [UInt64] = []
    private var payloadBuffer: [UInt8] = []
    private var accepted: [Int] = []

    init(path: String, options: CorpusWriter.Options, logger: Logger) throws {
        var logger = logger
        logger[metadataKey: "fi.corpus.path"] = "\(path)"
        self.path = path
        self.options = options
        self.logger = logger

        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try POSIX.createDirectories(directory) }
        let lock = try FileLock(path: path + ".lock")
        var opened = false
        defer { if !opened { lock.release() } }

        if !FileManager.default.fileExists(atPath: path) {
            try createFile()
        }
        try openForWrite()
        self.lock = lock
        opened = true
        logger.debug("corpus opened for writing", metadata: [
            "fi.corpus.rows": "\(rowCount)",
            "fi.corpus.last_stream_id": "\(lastStreamID.map(\.description) ?? "-")",
        ])
    }

    deinit {
        if let columns { _ = columns.close() }
        lock?.release()
    }

    /// Creates the file under a temporary name, syncs it, and renames it into
    /// place, so a crash during creation never leaves a half-made corpus.h5.
    private func createFile() throws {
        let temporary = path + ".creating"
        unlink(temporary)
        try HDF5Library.withLock {
            try CorpusColumns.create(path: temporary, creation: CorpusCreation(
                rowChunk: options.batchChunkRows,
                payloadChunk: options.payloadChunkBytes,
                deflateLevel: options.compression.deflateLevel))
        }
        try POSIX.fsync(path: temporary)
        guard rename(temporary, path) == 0 else {
            throw StorageError(code: .io, message: "rename \(temporary) → \(path): \(String(cString: strerror(errno)))")
        }
        let directory = (path as NSString).deletingLastPathComponent
        try POSIX.fsync(path: directory.isEmpty ? "." : directory, directory: true)
        logger.debug("corpus created", metadata: ["fi.corpus.compression": "\(options.compression)"])
    }

    /// Opens RDWR + SWMR-write with the recovery settings, then cuts a torn batch.
    private func openForWrite() throws {
        let (columns, cut) = try HDF5Library.withLock { () throws -> (CorpusColumns, Bool) in
            let fapl = try HDF5Handle.make(H5Pcreate(CHDF5_P_FILE_ACCESS()), .plist, "H5Pcreate(fapl)")
            try HDF5Library.check(H5Pset_libver_bounds(fapl.id, CHDF5_F_LIBVER_LATEST(), CHDF5_F_LIBVER_LATEST()), "H5Pset_libver_bounds(latest)")
            // What `h5clear -s` does: forget a crashed writer's "open for write" flags.
            // Safe because our lock file guarantees no other writer is alive.
            try HDF5Library.check(CHDF5_set_clear_status_flags(fapl.id), "H5Pset(clear_status_flags)")
            // SWMR readers may hold the file open; our lock file is what excludes writers.
            try HDF5Library.check(H5Pset_file_locking(fapl.id, false, true), "H5Pset_file_locking(off)")
            let file = try HDF5Handle.make(
                H5Fopen(path, CHDF5_F_ACC_RDWR() | CHDF5_F_ACC_SWMR_WRITE(), fapl.id), .file,
                "H5Fopen(\(path), RDWR|SWMR_WRITE)")
            // A crashed writer can leave the stored end-of-allocation below the real
            // end of file; closing would then cut flushed rows away.
            try HDF5Library.check(H5Fincrement_filesize(file.id, 0), "H5Fincrement_filesize")
            let columns = try CorpusColumns.open(file: file, path: path)
            let cut = try recover(columns)
            if cut { try HDF5Library.check(H5Fflush(file.id, H5F_SCOPE_GLOBAL), "H5Fflush after recovery") }
            return (columns, cut)
        }
        self.columns = columns
        fd = HDF5Library.withLock { CHDF5_file_descriptor(columns.file.id) }
        guard fd >= 0 else { throw HDF5Library.error("H5Fget_vfd_handle(\(path))") }
        if cut { try POSIX.dataSync(fd: fd, path: path) }
    }

    /// Finds the last whole row and cuts every dataset back to it. Returns whether anything was cut.
    private func recover(_ columns: CorpusColumns) throws -> Bool {
        let counts = try columns.rowColumns.map { try $0.count() }
        let bytes = try columns.payload.count()
        let whole = try lastWholeRow(columns, rows: counts.min() ?? 0, payloadBytes: bytes)
        var keepBytes = 0
        if whole > 0 {
            var end: UInt64 = 0
            try columns.payloadEnd.read(at: whole - 1, count: 1, into: &end)
            keepBytes = Int(end)
            var cell = [UInt8](repeating: 0, count: CorpusLayout.streamIDBytes)
            try cell.withUnsafeMutableBytes { try columns.streamID.read(at: whole - 1, count: 1, into: $0.baseAddress!) }
            lastStreamID = cell.withUnsafeBytes { StreamEntryID(bytes: FixedString.trimmed($0)) }
        }
        rowCount = whole
        payloadBytes = keepBytes
        let torn = counts.contains { $0 != whole } || bytes != keepBytes
        if torn {
            for column in columns.rowColumns { try column.setCount(whole) }
            try columns.payload.setCount(keepBytes)
            logger.debug("corpus recovered: torn batch cut back to the last whole row", metadata: [
                "fi.corpus.rows": "\(whole)",
                "fi.corpus.column_rows": "\(counts)",
                "fi.corpus.payload_bytes": "\(bytes)",
                "fi.corpus.kept_payload_bytes": "\(keepBytes)",
            ])
        }
        return torn
    }

    /// n = the shortest row column, lowered while the row is not whole: its
    /// payload end past the bytes, its offsets going backwards, or its stream
    /// id unreadable (never-written cells read as zeros).
    private func lastWholeRow(_ columns: CorpusColumns, rows: Int, payloadBytes: Int) throws -> Int {
        let window = 4096
        var n = rows
        while n > 0 {
            let low = max(0, n - window)
            let k = n - low
            var ends = [UInt64](repeating: 0, count: k)
            try ends.withUnsafeMutableBytes { try columns.payloadEnd.read(at: low, count: k, into: $0.baseAddress!) }
            var previousEnd: UInt64 = 0
            if low > 0 { try columns.payloadEnd.read(at: low - 1, count: 1, into: &previousEnd) }
            var ids = [UInt8](repeating: 0, count: k * CorpusLayout.streamIDBytes)
            try ids.withUnsafeMutableBytes { try columns.streamID.read(at: low, count: k, into: $0.baseAddress!) }
            let found: Int? = ids.withUnsafeBytes { raw in
                for i in stride(from: k - 1, through: 0, by: -1) {
                    let end = ends[i]
                    let start = i > 0 ? ends[i - 1] : previousEnd
                    guard end <= UInt64(payloadBytes), end >= start else { continue }
                    let cell = UnsafeRawBufferPointer(rebasing: raw[(i * CorpusLayout.streamIDBytes)..<((i + 1) * CorpusLayout.streamIDBytes)])
                    guard StreamEntryID(bytes: FixedString.trimmed(cell)) != nil else { continue }
                    return low + i + 1
                }
                return nil
            }
            if let found { return found }
            n = low
        }
        return 0
    }

    func append(_ records: [CorpusRecord]) throws -> (AppendOutcome, StreamEntryID?, Int) {
        guard let columns else { throw StorageError(code: .closed, message: "the corpus writer for \(path) is closed") }
        if let failure {
            throw StorageError(code: .failed, message: "an earlier append to \(path) failed part-way; reopen the corpus to recover", underlying: failure)
        }

        // 1. Validate and filter: nothing is written unless the whole batch is good.
        accepted.removeAll(keepingCapacity: true)
        var mark = lastStreamID
        var total = 0
        // Records are read in place (a copy of each would retain and release its three buffers).
        let rejection: (index: Int, why: String)? = records.withUnsafeBufferPointer { records in
            for index in records.indices {
                let id = records[index].streamID
                if let mark, id <= mark { continue }
                let cidBytes = records[index].consultationID.utf8.count
                guard cidBytes <= CorpusLayout.consultationIDBytes else {
                    return (index, "consultation id is \(cidBytes) bytes of UTF-8, at most \(CorpusLayout.consultationIDBytes) allowed")
                }
                let hasNUL = records[index].consultationID.utf8.withContiguousStorageIfAvailable { $0.contains(0) }
                    ?? records[index].consultationID.utf8.contains(0)
                guard !hasNUL else {
                    return (index, "consultation id contains a NUL byte (cells are null-padded)")
                }
                if options.validateUTF8, !UTF8Check.isValid(records[index].payload) {
                    return (index, "payload is not valid UTF-8")
                }
                mark = id
                accepted.append(index)
                total += records[index].payload.count
            }
            return nil
        }
        if let rejection { throw invalid(rejection.index, records[rejection.index], rejection.why) }
        let skipped = records.count - accepted.count
        let k = accepted.count
        if k == 0 { return (AppendOutcome(appended: 0, skipped: skipped), lastStreamID, rowCount) }

        // 2. Fill the column buffers.
        let cidSize = CorpusLayout.consultationIDBytes, sidSize = CorpusLayout.streamIDBytes
        consultationBuffer.removeAll(keepingCapacity: true)
        consultationBuffer.append(contentsOf: repeatElement(0, count: k * cidSize))
        streamBuffer.removeAll(keepingCapacity: true)
        streamBuffer.append(contentsOf: repeatElement(0, count: k * sidSize))
        receivedBuffer.removeAll(keepingCapacity: true)
        endBuffer.removeAll(keepingCapacity: true)
        payloadBuffer.removeAll(keepingCapacity: true)
        payloadBuffer.reserveCapacity(total)
        var end = UInt64(payloadBytes)
        receivedBuffer.reserveCapacity(k)
        endBuffer.reserveCapacity(k)
        records.withUnsafeBufferPointer { records in
            consultationBuffer.withUnsafeMutableBytes { cids in
                streamBuffer.withUnsafeMutableBytes { sids in
                    for (row, index) in accepted.enumerated() {
                        Self.copyUTF8(records[index].consultationID, to: cids.baseAddress! + row * cidSize)
                        _ = records[index].streamID.write(into: UnsafeMutableBufferPointer(
                            start: (sids.baseAddress! + row * sidSize).assumingMemoryBound(to: UInt8.self), count: sidSize))
                        receivedBuffer.append(records[index].receivedAtMs)
                        records[index].payload.withUnsafeBytes { payloadBuffer.append(contentsOf: $0) }
                        end += UInt64(records[index].payload.count)
                        endBuffer.append(end)
                    }
                }
            }
        }
        let lastID = records[accepted[k - 1]].streamID
        let newRows = rowCount + k
        let newBytes = payloadBytes + total

        // 3. Extend and write: payload first, payload_end extended and written last,
        //    then one global flush (and fsync) for the batch.
        do {
            let start = rowCount, byteStart = payloadBytes
            try HDF5Library.withLock {
                if total > 0 {
                    try columns.payload.setCount(newBytes)
                    try payloadBuffer.withUnsafeBytes { try columns.payload.write(at: byteStart, count: total, from: $0.baseAddress!) }
                }
                try columns.consultationID.setCount(newRows)
                try consultationBuffer.withUnsafeBytes { try columns.consultationID.write(at: start, count: k, from: $0.baseAddress!) }
                try columns.streamID.setCount(newRows)
                try streamBuffer.withUnsafeBytes { try columns.streamID.write(at: start, count: k, from: $0.baseAddress!) }
                try columns.receivedAtMs.setCount(newRows)
                try receivedBuffer.withUnsafeBytes { try columns.receivedAtMs.write(at: start, count: k, from: $0.baseAddress!) }
                try columns.payloadEnd.setCount(newRows)
                try endBuffer.withUnsafeBytes { try columns.payloadEnd.write(at: start, count: k, from: $0.baseAddress!) }
                try HDF5Library.check(H5Fflush(columns.file.id, H5F_SCOPE_GLOBAL), "H5Fflush(\(path))")
            }
            if options.fsync { try POSIX.dataSync(fd: fd, path: path) }
        } catch let error as StorageError {
            failure = error
            logger.debug("corpus append failed; writer disabled until reopened", metadata: ["fi.corpus.error": "\(error)"])
            throw error
        }
        rowCount = newRows
        payloadBytes = newBytes
        lastStreamID = lastID
        return (AppendOutcome(appended: k, skipped: skipped), lastID, rowCount)
    }

    /// Copies a string's UTF-8 (already checked to fit) into a null-padded cell.
    private static func copyUTF8(_ text: String, to cell: UnsafeMutableRawPointer) {
        let copied: Void? = text.utf8.withContiguousStorageIfAvailable {
            if let base = $0.baseAddress { cell.copyMemory(from: base, byteCount: $0.count) }
        }
        if copied == nil {
            for (offset, byte) in text.utf8.enumerated() { cell.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self) }
        }
    }

    private func invalid(_ index: Int, _ record: CorpusRecord, _ why: String) -> StorageError {
        StorageError(code: .invalidRecord, message: "record \(index) (stream id \(record.streamID)) rejected, batch not written: \(why)")
    }

    func close() throws {
        guard let columns else { return }
        self.columns = nil
        defer {
            lock?.release()
            lock = nil
        }
        let status = HDF5Library.withLock { () -> herr_t in
            if failure == nil { _ = H5Fflush(columns.file.id, H5F_SCOPE_GLOBAL) }
            return columns.close()
        }
        if status < 0 { throw HDF5Library.withLock { HDF5Library.error("H5Fclose(\(path))") } }
        fd = -1
        // The close rewrote the superblock (status flags cleared): make that durable too.
        if options.fsync { try POSIX.fsync(path: path) }
        logger.debug("corpus closed", metadata: ["fi.corpus.rows": "\(rowCount)"])
    }
}
