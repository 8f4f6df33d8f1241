// One corpus file opened for appending (Docs/contract.md §5): creation,
// crash recovery, validated batches, flush + fdatasync. Knows nothing of
// locks, segments or manifests; CorpusWriter owns those. Touched only on its
// owner's serial queue.
internal import CHDF5
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

final class SegmentWriter: @unchecked Sendable {
    let path: String
    let options: CorpusWriter.Options
    let logger: Logger
    private var columns: CorpusColumns?
    private var fd: Int32 = -1
    /// This file in ``InProcessFiles`` while it is open.
    private var fileKey: InProcessFiles.Key?
    private(set) var rowCount = 0
    private(set) var payloadBytes = 0
    /// The stream ids of the first and last whole rows.
    private(set) var firstStreamID: StreamEntryID?
    private(set) var lastStreamID: StreamEntryID?
    /// The file's creation time (root attribute `fi_segment_created_at_ms`), if it has one.
    private(set) var createdAtMs: Int64?
    private(set) var failure: StorageError?

    // Scratch buffers reused across batches.
    private var consultationBuffer: [UInt8] = []
    private var streamBuffer: [UInt8] = []
    private var receivedBuffer: [Int64] = []
    private var epochBuffer: [UInt64] = []
    private var endBuffer: [UInt64] = []
    private var payloadBuffer: [UInt8] = []

    /// Opens `path` for writing, creating it first if it does not exist.
    ///
    /// - Parameters:
    ///   - creation: how a new file is laid out (the options' chunking when `nil`).
    ///   - createdAtMs: written as the root attribute `fi_segment_created_at_ms` of a new file.
    init(path: String, options: CorpusWriter.Options, logger: Logger, creation: CorpusCreation? = nil, createdAtMs: Int64? = nil) throws {
        var logger = logger
        logger[metadataKey: "fi.corpus.path"] = "\(path)"
        self.path = path
        self.options = options
        self.logger = logger
        if FileManager.default.fileExists(atPath: path) {
            try openForWrite(path)
        } else {
            try createFile(creation ?? CorpusCreation(
                rowChunk: options.batchChunkRows,
                payloadChunk: options.payloadChunkBytes,
                deflateLevel: options.compression.deflateLevel), createdAtMs: createdAtMs)
        }
        logger.debug("corpus opened for writing", metadata: [
            "fi.corpus.rows": "\(rowCount)",
            "fi.corpus.last_stream_id": "\(lastStreamID.map(\.description) ?? "-")",
        ])
    }

    deinit {
        if let columns { _ = columns.close() }
        if let fileKey { InProcessFiles.endWriting(fileKey) }
    }

    var isOpen: Bool { columns != nil }

    /// Whether the file has the `epoch` column (files written before it existed do not).
    var hasEpochColumn: Bool { columns?.epoch != nil }

    /// Creates the file under a temporary name, syncs it, opens it for SWMR
    /// writing and only then renames it into place: a crash during creation
    /// never leaves a half-made file, and no reader opens it before this writer
    /// (in one process, HDF5 cannot open for writing a file already open read-only).
    private func createFile(_ creation: CorpusCreation, createdAtMs: Int64?) throws {
        let temporary = path + SegmentName.creatingSuffix
        unlink(temporary)
        try HDF5Library.withLock {
            try CorpusColumns.create(path: temporary, creation: creation, createdAtMs: createdAtMs)
        }
        try POSIX.fsync(path: temporary)
        try openForWrite(temporary)
        try POSIX.rename(temporary, path)
        try POSIX.fsync(path: POSIX.directory(of: path), directory: true)
        logger.debug("corpus created", metadata: ["fi.corpus.compression": "\(creation.deflateLevel.map { "deflate(\($0))" } ?? "none")"])
    }

    /// Opens RDWR + SWMR-write with the recovery settings, then cuts a torn batch.
    private func openForWrite(_ path: String) throws {
        let (columns, cut, created) = try HDF5Library.withLock { () throws -> (CorpusColumns, Bool, Int64?) in
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
            let created = CorpusColumns.createdAtMs(file: file)
            let columns = try CorpusColumns.open(file: file, path: path)
            let cut = try recover(columns)
            if cut { try HDF5Library.check(H5Fflush(file.id, H5F_SCOPE_GLOBAL), "H5Fflush after recovery") }
            return (columns, cut, created)
        }
        self.columns = columns
        self.createdAtMs = created
        fd = HDF5Library.withLock { CHDF5_file_descriptor(columns.file.id) }
        guard fd >= 0 else { throw HDF5Library.error("H5Fget_vfd_handle(\(path))") }
        fileKey = InProcessFiles.key(fd: fd)
        if let fileKey { InProcessFiles.beginWriting(fileKey) }
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
            lastStreamID = try Self.streamID(columns, row: whole - 1)
            firstStreamID = try Self.streamID(columns, row: 0)
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

    private static func streamID(_ columns: CorpusColumns, row: Int) throws -> StreamEntryID? {
        var cell = [UInt8](repeating: 0, count: CorpusLayout.streamIDBytes)
        try cell.withUnsafeMutableBytes { try columns.streamID.read(at: row, count: 1, into: $0.baseAddress!) }
        return cell.withUnsafeBytes { StreamEntryID(bytes: FixedString.trimmed($0)) }
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

    /// The file's size on disk now (fstat).
    func fileSize() -> Int {
        var info = stat()
        guard fd >= 0, fstat(fd, &info) == 0 else { return 0 }
        return Int(info.st_size)
    }

    /// Validates, then appends the records above `watermark` as one durable batch,
    /// each with its own ``CorpusRecord/epoch`` (a rewrite keeps the rows' epochs).
    func append(_ records: [CorpusRecord], above watermark: StreamEntryID?) throws -> AppendOutcome {
        guard columns != nil else { throw StorageError(code: .closed, message: "the corpus writer for \(path) is closed") }
        let selection = RecordSelection()
        _ = try selection.select(records, above: watermark, validateUTF8: options.validateUTF8)
        return try write(records, selection, epoch: nil)
    }

    /// Writes the records `selection` chose from the same `records`, as one durable batch.
    ///
    /// - Parameter epoch: the `epoch` of every row; `nil`: each record's own. Not
    ///   written to a file without the column (its rows all read as epoch 0).
    func write(_ records: [CorpusRecord], _ selection: RecordSelection, epoch: UInt64?) throws -> AppendOutcome {
        guard let columns else { throw StorageError(code: .closed, message: "the corpus writer for \(path) is closed") }
        if let failure {
            throw StorageError(code: .failed, message: "an earlier append to \(path) failed part-way; reopen the corpus to recover", underlying: failure)
        }
        let accepted = selection.accepted
        let skipped = records.count - accepted.count
        let k = accepted.count
        let total = selection.bytes
        if k == 0 { return AppendOutcome(appended: 0, skipped: skipped) }

        // Fill the column buffers.
        let cidSize = CorpusLayout.consultationIDBytes, sidSize = CorpusLayout.streamIDBytes
        consultationBuffer.removeAll(keepingCapacity: true)
        consultationBuffer.append(contentsOf: repeatElement(0, count: k * cidSize))
        streamBuffer.removeAll(keepingCapacity: true)
        streamBuffer.append(contentsOf: repeatElement(0, count: k * sidSize))
        receivedBuffer.removeAll(keepingCapacity: true)
        epochBuffer.removeAll(keepingCapacity: true)
        endBuffer.removeAll(keepingCapacity: true)
        payloadBuffer.removeAll(keepingCapacity: true)
        payloadBuffer.reserveCapacity(total)
        var end = UInt64(payloadBytes)
        receivedBuffer.reserveCapacity(k)
        endBuffer.reserveCapacity(k)
        let writesEpoch = columns.epoch != nil
        if writesEpoch {
            if let epoch {
                epochBuffer.append(contentsOf: repeatElement(epoch, count: k))
            } else {
                epochBuffer.reserveCapacity(k)
            }
        }
        let ownEpochs = writesEpoch && epoch == nil
        records.withUnsafeBufferPointer { records in
            consultationBuffer.withUnsafeMutableBytes { cids in
                streamBuffer.withUnsafeMutableBytes { sids in
                    for (row, index) in accepted.enumerated() {
                        Self.copyUTF8(records[index].consultationID, to: cids.baseAddress! + row * cidSize)
                        _ = records[index].streamID.write(into: UnsafeMutableBufferPointer(
                            start: (sids.baseAddress! + row * sidSize).assumingMemoryBound(to: UInt8.self), count: sidSize))
                        receivedBuffer.append(records[index].receivedAtMs)
                        if ownEpochs { epochBuffer.append(records[index].epoch) }
                        records[index].payload.withUnsafeBytes { payloadBuffer.append(contentsOf: $0) }
                        end += UInt64(records[index].payload.count)
                        endBuffer.append(end)
                    }
                }
            }
        }
        let firstID = records[accepted[0]].streamID
        let lastID = records[accepted[k - 1]].streamID
        let newRows = rowCount + k
        let newBytes = payloadBytes + total

        // Extend and write: payload first, payload_end extended and written last,
        // then one global flush (and fsync) for the batch.
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
                if let epochColumn = columns.epoch {
                    try epochColumn.setCount(newRows)
                    try epochBuffer.withUnsafeBytes { try epochColumn.write(at: start, count: k, from: $0.baseAddress!) }
                }
                try columns.payloadEnd.setCount(newRows)
                try endBuffer.withUnsafeBytes { try columns.payloadEnd.write(at: start, count: k, from: $0.baseAddress!) }
                try HDF5Library.check(H5Fflush(columns.file.id, H5F_SCOPE_GLOBAL), "H5Fflush(\(path))")
            }
            if options.fsync { try POSIX.dataSync(fd: fd, path: path) }
        } catch let error as StorageError {
            failure = error
            logger.debug("corpus append failed; writer disabled until reopened", metadata: ["fi.error": "\(error)"])
            throw error
        }
        if rowCount == 0 { firstStreamID = firstID }
        rowCount = newRows
        payloadBytes = newBytes
        lastStreamID = lastID
        return AppendOutcome(appended: k, skipped: skipped)
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

    /// Flushes and closes the file cleanly (SWMR flags cleared: any stock tool
    /// opens it), then makes the close durable with `fsync`. Later calls do nothing.
    func close() throws {
        guard let columns else { return }
        self.columns = nil
        if let fileKey {
            // A reader of this process holding the file would delay HDF5's real close (see InProcessFiles).
            if !InProcessFiles.waitForReaders(fileKey) {
                logger.debug("a reader of this process still holds the file; its close completes when that reader lets go")
            }
        }
        defer {
            if let fileKey { InProcessFiles.endWriting(fileKey) }
            fileKey = nil
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

/// Which records of a batch are written: validated as a whole first (one bad
/// record rejects the batch), then those above the watermark, in order.
final class RecordSelection: @unchecked Sendable {
    /// Indices of the records to write.
    private(set) var accepted: [Int] = []
    /// Their payload bytes.
    private(set) var bytes = 0

    /// Validates `records` and picks the ones to write: stream ids above
    /// `watermark` (and above every earlier pick). Nothing is written.
    /// - Returns: the stream id of the first record that would be written, if any.
    /// - Throws: `.invalidRecord` naming the first bad record.
    func select(_ records: [CorpusRecord], above watermark: StreamEntryID?, validateUTF8: Bool) throws -> StreamEntryID? {
        accepted.removeAll(keepingCapacity: true)
        var mark = watermark
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
                if validateUTF8, !UTF8Check.isValid(records[index].payload) {
                    return (index, "payload is not valid UTF-8")
                }
                mark = id
                accepted.append(index)
                total += records[index].payload.count
            }
            return nil
        }
        bytes = total
        if let rejection {
            accepted.removeAll(keepingCapacity: true)
            bytes = 0
            throw StorageError(code: .invalidRecord, message: "record \(rejection.index) (stream id \(records[rejection.index].streamID)) rejected, batch not written: \(rejection.why)")
        }
        return accepted.first.map { records[$0].streamID }
    }
}
