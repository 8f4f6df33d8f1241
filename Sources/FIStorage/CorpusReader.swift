internal import CHDF5
import FILocking
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Reads a corpus, also while its writer appends (SWMR read) or after it crashed.
///
/// ``open(directory:logger:)`` reads a partition directory (layout 2): every
/// segment in order — `corpus.h5` of layout 1 first, the closed segments of
/// `manifest.json`, then the one being written — as one sequence of rows.
/// ``refresh()`` follows the writer across segment boundaries, drops segments
/// retention deleted and reloads segments an erasure rewrote. Closed segments'
/// consultation indexes stay in memory while their files are closed (a few are
/// kept open), so a lookup opens only the segments holding that consultation.
/// ``open(path:logger:)`` reads one file.
///
/// The reader sees whole rows only: n = the shortest of the row columns (four,
/// or five with the optional `epoch`),
/// lowered while `payload_end[n-1]` exceeds the `payload` length (HDF5 may
/// publish one dataset's growth before another's). A consultation index (built
/// at open, extended on refresh) answers ``records(consultationID:)`` without
/// scanning payloads.
///
/// Nothing read from a file is trusted: dataset lengths are bounded by the
/// storage actually allocated to them, and payload offsets must be
/// non-decreasing and within `payload`, or the read throws `.corrupt`.
///
/// Every HDF5 call runs on this reader's own serial dispatch queue.
public final class CorpusReader: Sendable {
    /// The corpus file or partition directory being read.
    public let path: String
    private let queue: DispatchQueue
    private let core: any ReaderEngine
    private let rows: Locked<Int>

    private init(path: String, queue: DispatchQueue, core: any ReaderEngine, rowCount: Int) {
        self.path = path
        self.queue = queue
        self.core = core
        self.rows = Locked(rowCount)
    }

    /// Opens one corpus file for SWMR reading and indexes its consultations.
    ///
    /// - Throws: ``StorageError`` — `.hdf5` if HDF5 cannot open it, `.corrupt` if
    ///   it lacks the corpus layout.
    public static func open(path: String, logger: Logger = .disabled) async throws -> CorpusReader {
        try await open(path: path) { try ReaderCore(path: path, logger: logger) }
    }

    /// Opens a partition directory (every segment, in order) and indexes its
    /// consultations. A directory without segments (or none at all) reads as empty.
    ///
    /// - Throws: ``StorageError`` — `.corrupt` for an unreadable manifest or a
    ///   segment without the corpus layout, `.hdf5`/`.io` otherwise.
    public static func open(directory: String, logger: Logger = .disabled) async throws -> CorpusReader {
        try await open(path: directory) { try PartitionReaderCore(directory: directory, logger: logger) }
    }

    private static func open(path: String, _ make: @escaping @Sendable () throws -> any ReaderEngine) async throws -> CorpusReader {
        let queue = DispatchQueue(label: "fi.storage.reader")
        // The core's state is read only on its queue, even here: the row count
        // travels out as a value (Thread Sanitizer cannot see a continuation's
        // resume order the two threads).
        let (core, rowCount) = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(any ReaderEngine, Int), any Error>) in
            queue.async {
                continuation.resume(with: Result {
                    let core = try make()
                    core.idle()
                    return (core, core.rowCount)
                })
            }
        }
        return CorpusReader(path: path, queue: queue, core: core, rowCount: rowCount)
    }

    /// The number of whole rows as of the last open or ``refresh()``.
    public var rowCount: Int { rows.withLock { $0 } }

    /// Picks up rows appended since the last look (`H5Drefresh`) and indexes
    /// them; in a directory, also segments opened, closed, deleted or rewritten since.
    /// - Returns: The number of whole rows now visible.
    @discardableResult
    public func refresh() async throws -> Int {
        let core = self.core
        let count = try await run { try core.refresh() }
        rows.withLock { $0 = count }
        return count
    }

    /// The rows in `range` (positions in the rows visible now: retention and
    /// erasure shift them), clamped to the visible rows, in stream order.
    public func records(in range: Range<Int>) async throws -> [CorpusRecord] {
        let core = self.core
        return try await run { try core.records(in: range) }
    }

    /// Up to `limit` rows whose stream id is above `streamID` (all rows from the
    /// start for `nil`), in stream order, across segments. Binary search on
    /// `stream_id`: the way to follow a corpus, since ids never shift.
    public func records(after streamID: StreamEntryID?, limit: Int) async throws -> [CorpusRecord] {
        let core = self.core
        return try await run { try core.records(after: streamID, limit: limit) }
    }

    /// Every row of one consultation, in stream order, through the in-memory index.
    public func records(consultationID: String) async throws -> [CorpusRecord] {
        let core = self.core
        return try await run { try core.records(consultationID: consultationID) }
    }

    /// Closes the file(s). Later calls throw `.closed`.
    public func close() async throws {
        let core = self.core
        try await run { try core.close() }
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let core = self.core
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                let result = Result { try body() }
                core.idle()
                continuation.resume(with: result)
            }
        }
    }
}

/// The lease epochs of rows in stream order, which must never go down: a row
/// of a lower epoch after one of a higher epoch means two writers (an older
/// lease wrote after a newer one had taken the partition). Epoch 0 — a writer
/// without fencing, or a file without the column — claims no lease and is not compared.
struct EpochOrder: Sendable {
    /// The highest nonzero epoch seen so far.
    private(set) var highest: UInt64 = 0
    /// The last nonzero epoch seen.
    private var last: UInt64 = 0

    /// Takes the next row's epoch; returns what is wrong at the first row of each drop.
    mutating func see(_ epoch: UInt64) -> String? {
        guard epoch != 0 else { return nil }
        defer {
            last = epoch
            highest = max(highest, epoch)
        }
        guard epoch < highest, last == highest else { return nil }
        return "epoch \(epoch) after epoch \(highest) (two writers: an older lease wrote after a newer one)"
    }
}

/// What the public reader drives, on its queue.
protocol ReaderEngine: AnyObject, Sendable {
    var rowCount: Int { get }
    func refresh() throws -> Int
    func records(in range: Range<Int>) throws -> [CorpusRecord]
    func records(after id: StreamEntryID?, limit: Int) throws -> [CorpusRecord]
    func records(consultationID: String) throws -> [CorpusRecord]
    func close() throws
    /// Called after each public operation (see ``InProcessFiles``).
    func idle()
}

/// One file's reader; touched only on its owner's serial queue.
///
/// A reader may be suspended (its file closed, its index kept) and resumes by
/// itself at its next read: how a partition reader keeps closed segments'
/// indexes without holding every file open.
final class ReaderCore: ReaderEngine, @unchecked Sendable {
    let path: String
    let logger: Logger
    private var columns: CorpusColumns?
    private var isClosed = false
    private let metadataReadAttempts: UInt32
    /// The open file in ``InProcessFiles`` (counted as one reader).
    private var fileKey: InProcessFiles.Key?
    /// Opened since the last refresh: the datasets are current, no `H5Drefresh`
    /// needed — and none wanted: refreshing a dataset that another handle of
    /// this process also has open corrupts HDF5's shared chunk index (seen as
    /// one chunk's values read for another).
    private var freshlyOpened = false
    private(set) var rowCount = 0
    /// Hash of a consultation id's bytes → its rows, ascending. Collisions are
    /// resolved when the rows are read.
    private var index: [Int: [UInt32]] = [:]
    private var indexedRows = 0
    /// The length of `payload` as of the last refresh.
    private var payloadBytes: UInt64 = 0

    /// Whether ``refresh()`` indexes consultations (a reader that only wants
    /// the row count and the last row need not read every consultation id).
    private let indexing: Bool

    /// See the comment where it is set.
    static let metadataReadAttempts: UInt32 = 28

    /// - Parameters:
    ///   - metadataReadAttempts: for the fuzzer, which opens thousands of
    ///     corrupt files and need not wait out a writer.
    ///   - indexing: `false`: no consultation index (``records(consultationID:)`` finds nothing).
    init(path: String, logger: Logger, metadataReadAttempts: UInt32 = ReaderCore.metadataReadAttempts, indexing: Bool = true) throws {
        var logger = logger
        logger[metadataKey: "fi.corpus.path"] = "\(path)"
        self.path = path
        self.logger = logger
        self.metadataReadAttempts = metadataReadAttempts
        self.indexing = indexing
        columns = try openFile()
        _ = try refresh()
    }

    private func openFile() throws -> CorpusColumns {
        guard let key = InProcessFiles.key(path: path) else {
            throw StorageError(code: .io, message: "no corpus file at \(path)")
        }
        InProcessFiles.readerOpened(key)
        do {
            let columns = try openColumns()
            fileKey = key
            freshlyOpened = true
            return columns
        } catch {
            InProcessFiles.readerClosed(key)
            throw error
        }
    }

    private func openColumns() throws -> CorpusColumns {
        try HDF5Library.withLock {
            let fapl = try HDF5Handle.make(H5Pcreate(CHDF5_P_FILE_ACCESS()), .plist, "H5Pcreate(fapl)")
            try HDF5Library.check(H5Pset_file_locking(fapl.id, false, true), "H5Pset_file_locking(off)")
            // A SWMR reader re-reads metadata whose checksum fails (a writer may
            // be mid-flush), sleeping 1 ns, 2 ns, 4 ns… between attempts. HDF5's
            // default of 100 attempts makes that ~2^100 ns on a block that is
            // really corrupt: the open never returns (found by the corpus
            // fuzzer). 28 attempts wait out a flush for up to ~0.27 s in all.
            try HDF5Library.check(H5Pset_metadata_read_attempts(fapl.id, metadataReadAttempts), "H5Pset_metadata_read_attempts")
            // No raw-data chunk cache: with one, a lookup's scattered one-row reads each
            // pull a whole chunk (1 MiB of consultation_id) into it; without, HDF5 reads
            // just the elements (measured: 30-40 ms → 1-3 ms per 100-row lookup in a
            // 1,000,000-row corpus). Large sequential reads are unaffected. Set file-wide
            // because H5Drefresh reopens datasets with the default access properties.
            try HDF5Library.check(H5Pset_cache(fapl.id, 0, 521, 0, 1.0), "H5Pset_cache(no chunk cache)")
            let file = try HDF5Handle.make(
                H5Fopen(path, CHDF5_F_ACC_RDONLY() | CHDF5_F_ACC_SWMR_READ(), fapl.id), .file,
                "H5Fopen(\(path), RDONLY|SWMR_READ)")
            return try CorpusColumns.open(file: file, path: path, noChunkCacheInFile: true)
        }
    }

    deinit {
        if let columns { _ = columns.close() }
        if let fileKey { InProcessFiles.readerClosed(fileKey) }
    }

    /// Closes the HDF5 identifiers and leaves ``InProcessFiles``.
    private func closeColumns(_ columns: CorpusColumns) -> Int32 {
        let status = HDF5Library.withLock { columns.close() }
        if let fileKey { InProcessFiles.readerClosed(fileKey) }
        fileKey = nil
        return status
    }

    /// After an operation: lets go of a file that a writer of this process
    /// has open (see ``InProcessFiles``); the next read reopens it.
    func idle() {
        if let fileKey, InProcessFiles.isWritten(fileKey) { suspend() }
    }

    /// The open columns, reopening the file of a suspended reader.
    private func open() throws -> CorpusColumns {
        if isClosed { throw StorageError(code: .closed, message: "the corpus reader for \(path) is closed") }
        if let columns { return columns }
        let reopened = try openFile()
        columns = reopened
        return reopened
    }

    /// Whether the file is open now (not suspended or closed).
    var isOpen: Bool { columns != nil }

    /// Closes the file but keeps the row count and the index; the next read reopens it.
    func suspend() {
        guard let columns else { return }
        self.columns = nil
        _ = closeColumns(columns)
    }

    func close() throws {
        isClosed = true
        guard let columns else { return }
        self.columns = nil
        let status = closeColumns(columns)
        if status < 0 { throw HDF5Library.withLock { HDF5Library.error("H5Fclose(\(path))") } }
    }

    /// The stream ids of the first and last visible rows.
    func bounds() throws -> (first: StreamEntryID?, last: StreamEntryID?) {
        guard rowCount > 0 else { return (nil, nil) }
        let columns = try open()
        func id(_ row: Int) throws -> StreamEntryID? {
            var cell = [UInt8](repeating: 0, count: CorpusLayout.streamIDBytes)
            try HDF5Library.withLock {
                try cell.withUnsafeMutableBytes { try columns.streamID.read(at: row, count: 1, into: $0.baseAddress!) }
            }
            return cell.withUnsafeBytes { StreamEntryID(bytes: FixedString.trimmed($0)) }
        }
        return (try id(0), try id(rowCount - 1))
    }

    /// The `epoch` of the last visible row (0 in a file without the column); `nil` without rows.
    func lastEpoch() throws -> UInt64? {
        guard rowCount > 0 else { return nil }
        let columns = try open()
        guard let column = columns.epoch else { return 0 }
        var epoch: UInt64 = 0
        let row = rowCount - 1
        try HDF5Library.withLock { try column.read(at: row, count: 1, into: &epoch) }
        return epoch
    }

    /// How the file's datasets were created (kept by a rewrite), and its creation time attribute.
    func creation() throws -> (CorpusCreation, createdAtMs: Int64?) {
        let columns = try open()
        return HDF5Library.withLock { (columns.creation, CorpusColumns.createdAtMs(file: columns.file)) }
    }

    /// The end of a block of rows from `start`: at most `maxRows` rows and,
    /// past the first row, at most `maxBytes` of payload.
    func blockEnd(from start: Int, maxRows: Int, maxBytes: Int) throws -> Int {
        let columns = try open()
        let high = min(rowCount, start + maxRows)
        guard high > start + 1 else { return high }
        var ends = [UInt64](repeating: 0, count: high - start)
        var before: UInt64 = 0
        try HDF5Library.withLock {
            try ends.withUnsafeMutableBytes { try columns.payloadEnd.read(at: start, count: high - start, into: $0.baseAddress!) }
            if start > 0 { try columns.payloadEnd.read(at: start - 1, count: 1, into: &before) }
        }
        var end = start + 1
        while end < high, ends[end - start] >= before, ends[end - start] - before <= UInt64(maxBytes) { end += 1 }
        return end
    }

    /// What is wrong with this file as a closed segment of `expectedRows` rows
    /// from `first` to `last`: every column exactly that long, `payload` ending
    /// where the last row ends, offsets non-decreasing, stream ids valid and
    /// rising, and epochs never going down (`epochs` carries the order from the
    /// segments before it). Empty when it is whole.
    func closedSegmentProblems(expectedRows: Int, first: StreamEntryID?, last: StreamEntryID?,
                               epochs order: inout EpochOrder) throws -> [String] {
        let columns = try open()
        var problems: [String] = []
        let (counts, bytes) = try HDF5Library.withLock { () throws -> ([Int], Int) in
            (try columns.rowColumns.map { try $0.count() }, try columns.payload.count())
        }
        for (column, count) in zip(columns.rowColumns, counts) where count != expectedRows {
            problems.append("/events/\(column.name) has \(count) rows, the manifest says \(expectedRows)")
        }
        if rowCount != expectedRows {
            problems.append("\(rowCount) whole rows, the manifest says \(expectedRows)")
        }
        let n = min(rowCount, counts.min() ?? 0)
        var previousEnd: UInt64 = 0
        var previousID: StreamEntryID?
        var firstID: StreamEntryID?
        var row = 0
        let block = 65_536
        while row < n, problems.count < 20 {
            let k = min(block, n - row)
            var ends = [UInt64](repeating: 0, count: k)
            var ids = [UInt8](repeating: 0, count: k * CorpusLayout.streamIDBytes)
            var epochs = [UInt64](repeating: 0, count: k)
            let start = row
            try HDF5Library.withLock {
                try ends.withUnsafeMutableBytes { try columns.payloadEnd.read(at: start, count: k, into: $0.baseAddress!) }
                try ids.withUnsafeMutableBytes { try columns.streamID.read(at: start, count: k, into: $0.baseAddress!) }
                if let epoch = columns.epoch {
                    try epochs.withUnsafeMutableBytes { try epoch.read(at: start, count: k, into: $0.baseAddress!) }
                }
            }
            ids.withUnsafeBytes { raw in
                for i in 0..<k where problems.count < 20 {
                    if ends[i] < previousEnd { problems.append("row \(start + i): payload_end goes backwards") }
                    if let drop = order.see(epochs[i]) { problems.append("row \(start + i): \(drop)") }
                    previousEnd = max(previousEnd, ends[i])
                    let cell = UnsafeRawBufferPointer(rebasing: raw[(i * CorpusLayout.streamIDBytes)..<((i + 1) * CorpusLayout.streamIDBytes)])
                    guard let id = StreamEntryID(bytes: FixedString.trimmed(cell)) else {
                        problems.append("row \(start + i): unreadable stream id")
                        continue
                    }
                    if let previousID, id <= previousID { problems.append("row \(start + i): stream id \(id) not above \(previousID)") }
                    if firstID == nil { firstID = id }
                    previousID = id
                }
            }
            row += k
        }
        if n > 0, previousEnd != UInt64(bytes) {
            problems.append("/events/payload has \(bytes) bytes, the last row ends at \(previousEnd)")
        }
        if n == expectedRows {
            if firstID != first { problems.append("first stream id \(firstID.map(\.description) ?? "none"), the manifest says \(first.map(\.description) ?? "none")") }
            if previousID != last { problems.append("last stream id \(previousID.map(\.description) ?? "none"), the manifest says \(last.map(\.description) ?? "none")") }
        }
        return problems
    }

    /// Whether the index has candidate rows for `consultationID` (no file access).
    func mayHold(_ consultationID: String) -> Bool {
        var wanted = consultationID
        let key = wanted.withUTF8 { Self.key(UnsafeRawBufferPointer($0)) }
        return index[key]?.isEmpty == false
    }

    /// The positions of `consultationID`'s rows, ascending (candidates checked against the file).
    func positions(consultationID: String) throws -> [Int] {
        var wanted = consultationID
        let key = wanted.withUTF8 { Self.key(UnsafeRawBufferPointer($0)) }
        guard let candidates = index[key], !candidates.isEmpty else { return [] }
        let columns = try open()
        let rows = candidates.map { Int($0) }
        let size = CorpusLayout.consultationIDBytes
        var cids = [UInt8](repeating: 0, count: rows.count * size)
        try HDF5Library.withLock {
            try cids.withUnsafeMutableBytes { try columns.consultationID.read(points: rows, into: $0.baseAddress!) }
        }
        let want = Array(consultationID.utf8)
        return cids.withUnsafeBytes { raw in
            rows.indices.filter { i in
                Array(FixedString.trimmed(UnsafeRawBufferPointer(rebasing: raw[(i * size)..<((i + 1) * size)]))) == want
            }.map { rows[$0] }
        }
    }

    static func key(_ bytes: UnsafeRawBufferPointer) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: bytes)
        return hasher.finalize()
    }

    func refresh() throws -> Int {
        let columns = try open()
        // Another handle of this process on the file: its datasets share ours,
        // so H5Drefresh is unsafe (see `freshlyOpened`); reopening picks up what
        // HDF5 knows instead.
        let refreshDatasets = !freshlyOpened && (fileKey.map(InProcessFiles.readerCount) ?? 0) <= 1
        freshlyOpened = false
        let n = try HDF5Library.withLock { () throws -> Int in
            if refreshDatasets { for column in columns.all { try column.refresh() } }
            var n = try columns.rowColumns.map { try $0.count() }.min() ?? 0
            // Rows never written read as zeros: a length beyond the storage of
            // an (unfiltered) row column is corruption or a torn extension.
            for column in columns.rowColumns where !column.filtered {
                n = min(n, Int(clamping: column.storageBytes() / UInt64(column.type.elementSize)))
            }
            guard n <= Int(UInt32.max) else {
                throw StorageError(code: .corrupt, message: "\(path) claims \(n) rows, more than a corpus holds")
            }
            let bytes = UInt64(try columns.payload.count())
            payloadBytes = bytes
            while n > 0 {
                var end: UInt64 = 0
                try columns.payloadEnd.read(at: n - 1, count: 1, into: &end)
                if end <= bytes { break }
                n -= 1
            }
            return n
        }
        if n < indexedRows {  // only if the file was replaced under us
            index = [:]
            indexedRows = 0
        }
        if indexing { try extendIndex(columns, to: n) }
        rowCount = n
        return n
    }

    private func extendIndex(_ columns: CorpusColumns, to n: Int) throws {
        let block = 65_536
        let size = CorpusLayout.consultationIDBytes
        var cells = [UInt8]()
        while indexedRows < n {
            let k = min(block, n - indexedRows)
            cells = [UInt8](repeating: 0, count: k * size)
            let start = indexedRows
            try HDF5Library.withLock {
                try cells.withUnsafeMutableBytes { try columns.consultationID.read(at: start, count: k, into: $0.baseAddress!) }
            }
            cells.withUnsafeBytes { raw in
                for i in 0..<k {
                    let cell = FixedString.trimmed(UnsafeRawBufferPointer(rebasing: raw[(i * size)..<((i + 1) * size)]))
                    index[Self.key(cell), default: []].append(UInt32(start + i))
                }
            }
            indexedRows += k
        }
    }

    func records(in range: Range<Int>) throws -> [CorpusRecord] {
        let columns = try open()
        let low = max(0, min(range.lowerBound, rowCount))
        let high = max(low, min(range.upperBound, rowCount))
        let k = high - low
        guard k > 0 else { return [] }
        let cidSize = CorpusLayout.consultationIDBytes, sidSize = CorpusLayout.streamIDBytes
        var cids = [UInt8](repeating: 0, count: k * cidSize)
        var sids = [UInt8](repeating: 0, count: k * sidSize)
        var received = [Int64](repeating: 0, count: k)
        var epochs = [UInt64](repeating: 0, count: k)
        var ends = [UInt64](repeating: 0, count: k)
        var firstStart: UInt64 = 0
        var payload = [UInt8]()
        try HDF5Library.withLock {
            try cids.withUnsafeMutableBytes { try columns.consultationID.read(at: low, count: k, into: $0.baseAddress!) }
            try sids.withUnsafeMutableBytes { try columns.streamID.read(at: low, count: k, into: $0.baseAddress!) }
            try received.withUnsafeMutableBytes { try columns.receivedAtMs.read(at: low, count: k, into: $0.baseAddress!) }
            if let epoch = columns.epoch {
                try epochs.withUnsafeMutableBytes { try epoch.read(at: low, count: k, into: $0.baseAddress!) }
            }
            try ends.withUnsafeMutableBytes { try columns.payloadEnd.read(at: low, count: k, into: $0.baseAddress!) }
            if low > 0 { try columns.payloadEnd.read(at: low - 1, count: 1, into: &firstStart) }
            try checkOffsets(rows: low..<high, starts: [firstStart] + ends.dropLast(), ends: ends)
            let total = Int(ends[k - 1] - firstStart)
            payload = [UInt8](repeating: 0, count: total)
            if total > 0 {
                try payload.withUnsafeMutableBytes { try columns.payload.read(at: Int(firstStart), count: total, into: $0.baseAddress!) }
            }
        }
        var starts = [UInt64](repeating: 0, count: k)
        for i in 0..<k { starts[i] = i == 0 ? firstStart : ends[i - 1] }
        return try assemble(cids: cids, sids: sids, received: received, epochs: epochs, starts: starts, ends: ends, payload: payload,
                            base: firstStart, firstRow: low)
    }

    /// Payload offsets read from the file: each row's range lies within
    /// `payload` and after the previous row's (rows ascending), so a corrupt
    /// file throws here instead of trapping on the arithmetic below.
    private func checkOffsets(rows: some Collection<Int>, starts: [UInt64], ends: [UInt64]) throws {
        var previousEnd: UInt64 = 0
        for (i, row) in rows.enumerated() {
            guard starts[i] <= ends[i], ends[i] <= payloadBytes, starts[i] >= previousEnd else {
                throw StorageError(
                    code: .corrupt,
                    message: "row \(row) of \(path) has payload bytes \(starts[i])..<\(ends[i]), outside 0..<\(payloadBytes) or out of order")
            }
            previousEnd = ends[i]
        }
    }

    /// Rows from their column cells. A stream id that does not parse is `.corrupt`;
    /// the error names the row: `rows[i]`, or `firstRow + i` for a contiguous read.
    private func assemble(cids: [UInt8], sids: [UInt8], received: [Int64], epochs: [UInt64], starts: [UInt64], ends: [UInt64],
                          payload: [UInt8], base: UInt64, offsets: [Int]? = nil, rows: [Int]? = nil, firstRow: Int = 0) throws -> [CorpusRecord] {
        let cidSize = CorpusLayout.consultationIDBytes, sidSize = CorpusLayout.streamIDBytes
        var records = [CorpusRecord]()
        records.reserveCapacity(received.count)
        try cids.withUnsafeBytes { cidRaw in
            try sids.withUnsafeBytes { sidRaw in
                for i in 0..<received.count {
                    let from = offsets?[i] ?? Int(starts[i] - base)
                    let length = Int(ends[i] - starts[i])
                    let sidCell = FixedString.trimmed(UnsafeRawBufferPointer(rebasing: sidRaw[(i * sidSize)..<((i + 1) * sidSize)]))
                    guard let streamID = StreamEntryID(bytes: sidCell) else {
                        throw StorageError(code: .corrupt, message: "row \(rows?[i] ?? firstRow + i) of \(path) has an unreadable stream id")
                    }
                    records.append(CorpusRecord(
                        consultationID: FixedString.decode(UnsafeRawBufferPointer(rebasing: cidRaw[(i * cidSize)..<((i + 1) * cidSize)])),
                        streamID: streamID,
                        receivedAtMs: received[i],
                        payload: Array(payload[from..<(from + length)]),
                        epoch: epochs[i]))
                }
            }
        }
        return records
    }

    func records(after id: StreamEntryID?, limit: Int) throws -> [CorpusRecord] {
        let columns = try open()
        guard limit > 0 else { return [] }
        var start = 0
        if let after = id {
            // First row whose stream id is above `after`; rows are in stream order.
            var low = 0, high = rowCount
            var cell = [UInt8](repeating: 0, count: CorpusLayout.streamIDBytes)
            while low < high {
                let mid = (low + high) / 2
                try HDF5Library.withLock {
                    try cell.withUnsafeMutableBytes { try columns.streamID.read(at: mid, count: 1, into: $0.baseAddress!) }
                }
                let id = cell.withUnsafeBytes { StreamEntryID(bytes: FixedString.trimmed($0)) }
                guard let id else {
                    throw StorageError(code: .corrupt, message: "row \(mid) of \(path) has an unreadable stream id")
                }
                if id <= after { low = mid + 1 } else { high = mid }
            }
            start = low
        }
        return try records(in: start..<(start + min(limit, rowCount - start)))
    }

    func records(consultationID: String) throws -> [CorpusRecord] {
        if isClosed { throw StorageError(code: .closed, message: "the corpus reader for \(path) is closed") }
        var wanted = consultationID
        let key = wanted.withUTF8 { Self.key(UnsafeRawBufferPointer($0)) }
        guard let candidates = index[key], !candidates.isEmpty else { return [] }
        let columns = try open()
        let rows = candidates.map { Int($0) }
        let k = rows.count
        let cidSize = CorpusLayout.consultationIDBytes, sidSize = CorpusLayout.streamIDBytes
        var cids = [UInt8](repeating: 0, count: k * cidSize)
        var sids = [UInt8](repeating: 0, count: k * sidSize)
        var received = [Int64](repeating: 0, count: k)
        var epochs = [UInt64](repeating: 0, count: k)
        var ends = [UInt64](repeating: 0, count: k)
        var starts = [UInt64](repeating: 0, count: k)
        var payload = [UInt8]()
        var offsets = [Int](repeating: 0, count: k)
        try HDF5Library.withLock {
            try cids.withUnsafeMutableBytes { try columns.consultationID.read(points: rows, into: $0.baseAddress!) }
            try sids.withUnsafeMutableBytes { try columns.streamID.read(points: rows, into: $0.baseAddress!) }
            try received.withUnsafeMutableBytes { try columns.receivedAtMs.read(points: rows, into: $0.baseAddress!) }
            if let epoch = columns.epoch {
                try epochs.withUnsafeMutableBytes { try epoch.read(points: rows, into: $0.baseAddress!) }
            }
            try ends.withUnsafeMutableBytes { try columns.payloadEnd.read(points: rows, into: $0.baseAddress!) }
            let previous = rows.filter { $0 > 0 }.map { $0 - 1 }
            var previousEnds = [UInt64](repeating: 0, count: previous.count)
            try previousEnds.withUnsafeMutableBytes { try columns.payloadEnd.read(points: previous, into: $0.baseAddress!) }
            let shift = rows[0] == 0 ? 1 : 0
            for i in 0..<k { starts[i] = i < shift ? 0 : previousEnds[i - shift] }
            try checkOffsets(rows: rows, starts: starts, ends: ends)
            // Merge adjacent rows' byte ranges, then read them all in one selection.
            var ranges = [Range<Int>]()
            var total = 0
            for i in 0..<k {
                let range = Int(starts[i])..<Int(ends[i])
                offsets[i] = total
                total += range.count
                if range.isEmpty { continue }
                if let last = ranges.last, last.upperBound == range.lowerBound {
                    ranges[ranges.count - 1] = last.lowerBound..<range.upperBound
                } else {
                    ranges.append(range)
                }
            }
            payload = [UInt8](repeating: 0, count: total)
            if total > 0 {
                try payload.withUnsafeMutableBytes { try columns.payload.read(ranges: ranges, into: $0.baseAddress!) }
            }
        }
        let records = try assemble(cids: cids, sids: sids, received: received, epochs: epochs, starts: starts, ends: ends,
                                   payload: payload, base: 0, offsets: offsets, rows: rows)
        return records.filter { $0.consultationID == consultationID }
    }
}
