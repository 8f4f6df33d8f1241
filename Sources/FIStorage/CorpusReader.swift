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
/// The reader sees whole rows only: n = the shortest of the four row columns,
/// lowered while `payload_end[n-1]` exceeds the `payload` length (HDF5 may
/// publish one dataset's growth before another's). ``refresh()`` picks up rows
/// appended since. A consultation index (built at open, extended on refresh)
/// answers ``records(consultationID:)`` without scanning payloads.
///
/// Nothing read from the file is trusted: dataset lengths are bounded by the
/// storage actually allocated to them, and payload offsets must be
/// non-decreasing and within `payload`, or the read throws `.corrupt`.
///
/// Every HDF5 call runs on this reader's own serial dispatch queue.
public final class CorpusReader: Sendable {
    /// The corpus file being read.
    public let path: String
    private let queue: DispatchQueue
    private let core: ReaderCore
    private let rows: Locked<Int>

    private init(path: String, queue: DispatchQueue, core: ReaderCore, rowCount: Int) {
        self.path = path
        self.queue = queue
        self.core = core
        self.rows = Locked(rowCount)
    }

    /// Opens `path` for SWMR reading and indexes its consultations.
    ///
    /// - Throws: ``StorageError`` — `.hdf5` if HDF5 cannot open it, `.corrupt` if
    ///   it lacks the corpus layout.
    public static func open(path: String, logger: Logger = .disabled) async throws -> CorpusReader {
        let queue = DispatchQueue(label: "fi.storage.reader")
        // The core's state is read only on its queue, even here: the row count
        // travels out as a value (Thread Sanitizer cannot see a continuation's
        // resume order the two threads).
        let (core, rowCount) = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(ReaderCore, Int), any Error>) in
            queue.async {
                continuation.resume(with: Result {
                    let core = try ReaderCore(path: path, logger: logger)
                    return (core, core.rowCount)
                })
            }
        }
        return CorpusReader(path: path, queue: queue, core: core, rowCount: rowCount)
    }

    /// The number of whole rows as of the last open or ``refresh()``.
    public var rowCount: Int { rows.withLock { $0 } }

    /// Picks up rows appended since the last look (`H5Drefresh`) and indexes them.
    /// - Returns: The number of whole rows now visible.
    @discardableResult
    public func refresh() async throws -> Int {
        let core = self.core
        let count = try await run { try core.refresh() }
        rows.withLock { $0 = count }
        return count
    }

    /// The rows in `range`, clamped to the visible rows, in stream order.
    public func records(in range: Range<Int>) async throws -> [CorpusRecord] {
        let core = self.core
        return try await run { try core.records(in: range) }
    }

    /// Up to `limit` rows whose stream id is above `streamID` (all rows from the
    /// start for `nil`), in stream order. Binary search on `stream_id`.
    public func records(after streamID: StreamEntryID?, limit: Int) async throws -> [CorpusRecord] {
        let core = self.core
        return try await run { try core.records(after: streamID, limit: limit) }
    }

    /// Every row of one consultation, in stream order, through the in-memory index.
    public func records(consultationID: String) async throws -> [CorpusRecord] {
        let core = self.core
        return try await run { try core.records(consultationID: consultationID) }
    }

    /// Closes the file. Later calls throw `.closed`.
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

/// The reader's state; touched only on its serial queue.
final class ReaderCore: @unchecked Sendable {
    let path: String
    let logger: Logger
    private var columns: CorpusColumns?
    private(set) var rowCount = 0
    /// Hash of a consultation id's bytes → its rows, ascending. Collisions are
    /// resolved when the rows are read.
    private var index: [Int: [UInt32]] = [:]
    private var indexedRows = 0
    /// The length of `payload` as of the last refresh.
    private var payloadBytes: UInt64 = 0

    /// See the comment where it is set.
    static let metadataReadAttempts: UInt32 = 28

    /// - Parameter metadataReadAttempts: for the fuzzer, which opens
    ///   thousands of corrupt files and need not wait out a writer.
    init(path: String, logger: Logger, metadataReadAttempts: UInt32 = ReaderCore.metadataReadAttempts) throws {
        var logger = logger
        logger[metadataKey: "fi.corpus.path"] = "\(path)"
        self.path = path
        self.logger = logger
        guard FileManager.default.fileExists(atPath: path) else {
            throw StorageError(code: .io, message: "no corpus file at \(path)")
        }
        columns = try HDF5Library.withLock {
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
            return try CorpusColumns.open(file: file, path: path)
        }
        _ = try refresh()
    }

    deinit {
        if let columns { _ = columns.close() }
    }

    private func open() throws -> CorpusColumns {
        guard let columns else { throw StorageError(code: .closed, message: "the corpus reader for \(path) is closed") }
        return columns
    }

    func close() throws {
        guard let columns else { return }
        self.columns = nil
        let status = HDF5Library.withLock { columns.close() }
        if status < 0 { throw HDF5Library.withLock { HDF5Library.error("H5Fclose(\(path))") } }
    }

    static func key(_ bytes: UnsafeRawBufferPointer) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: bytes)
        return hasher.finalize()
    }

    func refresh() throws -> Int {
        let columns = try open()
        let n = try HDF5Library.withLock { () throws -> Int in
            for column in columns.all { try column.refresh() }
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
        try extendIndex(columns, to: n)
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
        var ends = [UInt64](repeating: 0, count: k)
        var firstStart: UInt64 = 0
        var payload = [UInt8]()
        try HDF5Library.withLock {
            try cids.withUnsafeMutableBytes { try columns.consultationID.read(at: low, count: k, into: $0.baseAddress!) }
            try sids.withUnsafeMutableBytes { try columns.streamID.read(at: low, count: k, into: $0.baseAddress!) }
            try received.withUnsafeMutableBytes { try columns.receivedAtMs.read(at: low, count: k, into: $0.baseAddress!) }
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
        return try assemble(cids: cids, sids: sids, received: received, starts: starts, ends: ends, payload: payload, base: firstStart, firstRow: low)
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
    private func assemble(cids: [UInt8], sids: [UInt8], received: [Int64], starts: [UInt64], ends: [UInt64],
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
                        payload: Array(payload[from..<(from + length)])))
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
        let columns = try open()
        var wanted = consultationID
        let key = wanted.withUTF8 { Self.key(UnsafeRawBufferPointer($0)) }
        guard let candidates = index[key], !candidates.isEmpty else { return [] }
        let rows = candidates.map { Int($0) }
        let k = rows.count
        let cidSize = CorpusLayout.consultationIDBytes, sidSize = CorpusLayout.streamIDBytes
        var cids = [UInt8](repeating: 0, count: k * cidSize)
        var sids = [UInt8](repeating: 0, count: k * sidSize)
        var received = [Int64](repeating: 0, count: k)
        var ends = [UInt64](repeating: 0, count: k)
        var starts = [UInt64](repeating: 0, count: k)
        var payload = [UInt8]()
        var offsets = [Int](repeating: 0, count: k)
        try HDF5Library.withLock {
            try cids.withUnsafeMutableBytes { try columns.consultationID.read(points: rows, into: $0.baseAddress!) }
            try sids.withUnsafeMutableBytes { try columns.streamID.read(points: rows, into: $0.baseAddress!) }
            try received.withUnsafeMutableBytes { try columns.receivedAtMs.read(points: rows, into: $0.baseAddress!) }
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
        let records = try assemble(cids: cids, sids: sids, received: received, starts: starts, ends: ends,
                                   payload: payload, base: 0, offsets: offsets, rows: rows)
        return records.filter { $0.consultationID == consultationID }
    }
}
