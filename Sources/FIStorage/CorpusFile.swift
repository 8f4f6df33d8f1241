// Creating and opening corpus files (Docs/contract.md §5). Every function here expects
// the HDF5 library lock held, unless it says otherwise.
internal import CHDF5
import Foundation

/// How the datasets are created.
struct CorpusCreation {
    var rowChunk: Int
    var payloadChunk: Int
    var deflateLevel: Int?
    /// Whether the file gets the `epoch` row column. Every file FI Scale creates
    /// has it; `false` makes a file as written before the column existed (tests).
    var epochColumn = true
}

/// The open group and its columns, in write order.
struct CorpusColumns {
    let file: HDF5Handle
    let group: HDF5Handle
    let consultationID: Column
    let streamID: Column
    let receivedAtMs: Column
    /// `nil` in a file written before the column existed: its rows have epoch 0.
    let epoch: Column?
    let payloadEnd: Column
    let payload: Column

    /// Row columns, the order a reader checks them in (and the writer writes them).
    var rowColumns: [Column] { [consultationID, streamID, receivedAtMs] + (epoch.map { [$0] } ?? []) + [payloadEnd] }
    var all: [Column] { [payload] + rowColumns }

    /// Closes datasets, then the group, then the file; returns the file's close status.
    func close() -> herr_t {
        for column in all {
            column.memoryType.close()
            column.handle.close()
        }
        group.close()
        return file.close()
    }

    /// Opens `/events` and its datasets in an open file, checking types.
    ///
    /// Uncompressed datasets get no chunk cache, so a batch's write goes
    /// straight to its place in the file (measured fastest; see Docs/storage.md);
    /// a compressed payload keeps a cache big enough for its chunk.
    ///
    /// - Parameter noChunkCacheInFile: the file was opened with no raw-data
    ///   chunk cache (a reader's `H5Pset_cache`), so an unfiltered dataset is
    ///   opened once instead of twice.
    static func open(file: HDF5Handle, path: String, noChunkCacheInFile: Bool = false) throws -> CorpusColumns {
        guard H5Lexists(file.id, CorpusLayout.group, CHDF5_P_DEFAULT()) > 0 else {
            throw StorageError(code: .corrupt, message: "\(path) has no /\(CorpusLayout.group) group; not a corpus file (Docs/contract.md §5)")
        }
        let group = try HDF5Handle.make(H5Gopen2(file.id, CorpusLayout.group, CHDF5_P_DEFAULT()), .group, "H5Gopen2(/events) in \(path)")
        func column(_ name: String, _ type: ColumnType) throws -> Column {
            guard H5Lexists(group.id, name, CHDF5_P_DEFAULT()) > 0 else {
                throw StorageError(code: .corrupt, message: "\(path) has no /events/\(name); not a corpus file (Docs/contract.md §5)")
            }
            let probe = try HDF5Handle.make(H5Dopen2(group.id, name, CHDF5_P_DEFAULT()), .dataset, "H5Dopen2(/events/\(name)) in \(path)")
            let dcpl = try HDF5Handle.make(H5Dget_create_plist(probe.id), .plist, "H5Dget_create_plist(\(name))")
            let filters = H5Pget_nfilters(dcpl.id)
            var chunk: hsize_t = 0
            let chunkRank = H5Pget_chunk(dcpl.id, 1, &chunk)
            var deflateLevel: Int?
            if filters > 0 {
                var flags: UInt32 = 0
                var count = 1
                var values: [UInt32] = [0]
                var config: UInt32 = 0
                if H5Pget_filter_by_id2(dcpl.id, H5Z_filter_t(H5Z_FILTER_DEFLATE), &flags, &count, &values, 0, nil, &config) >= 0 {
                    deflateLevel = count > 0 ? Int(values[0]) : 1
                }
                _ = CHDF5_silence_errors()
            }
            dcpl.close()
            guard chunkRank == 1, chunk >= 1, chunk <= 1 << 32 else {
                throw StorageError(code: .corrupt, message: "/events/\(name) in \(path) is not a chunked 1-D dataset")
            }
            let handle: HDF5Handle
            if filters > 0 || !noChunkCacheInFile {
                // The chunk cache is set when a dataset is opened: open it again with the right one.
                let dapl = try HDF5Handle.make(H5Pcreate(CHDF5_P_DATASET_ACCESS()), .plist, "H5Pcreate(dapl)")
                let chunkBytes = Int(chunk) * type.elementSize
                let cacheBytes = filters > 0 ? max(2 * chunkBytes, 1 << 20) : 0
                try HDF5Library.check(H5Pset_chunk_cache(dapl.id, 521, cacheBytes, 1.0), "H5Pset_chunk_cache(\(name))")
                probe.close()
                handle = try HDF5Handle.make(H5Dopen2(group.id, name, dapl.id), .dataset, "H5Dopen2(/events/\(name)) in \(path)")
            } else {
                handle = probe  // already without a chunk cache: the file was opened with none
            }
            let column = try Column(name: name, type: type, handle: handle, chunkLength: Int(chunk), filtered: filters > 0, deflateLevel: deflateLevel)
            try column.verifyType()
            return column
        }
        return CorpusColumns(
            file: file,
            group: group,
            consultationID: try column(CorpusLayout.consultationID, CorpusLayout.consultationIDType),
            streamID: try column(CorpusLayout.streamID, CorpusLayout.streamIDType),
            receivedAtMs: try column(CorpusLayout.receivedAtMs, .int64),
            // Optional: a file written before the column existed has none.
            epoch: H5Lexists(group.id, CorpusLayout.epoch, CHDF5_P_DEFAULT()) > 0 ? try column(CorpusLayout.epoch, .uint64) : nil,
            payloadEnd: try column(CorpusLayout.payloadEnd, .uint64),
            payload: try column(CorpusLayout.payload, .uint8)
        )
    }

    /// How this file's datasets were created (chunking, compression): what a
    /// rewrite of it (erasure) keeps. A rewrite always has the `epoch` column.
    var creation: CorpusCreation {
        CorpusCreation(rowChunk: consultationID.chunkLength, payloadChunk: payload.chunkLength, deflateLevel: payload.filtered ? (payload.deflateLevel ?? 1) : nil)
    }

    /// The root attribute `fi_segment_created_at_ms` (when a segment file was
    /// created, Unix ms), if the file has one. Layout 1 files have none.
    static func createdAtMs(file: HDF5Handle) -> Int64? {
        guard H5Aexists(file.id, CorpusLayout.createdAtAttribute) > 0,
              let attribute = try? HDF5Handle.make(H5Aopen(file.id, CorpusLayout.createdAtAttribute, CHDF5_P_DEFAULT()), .attribute, "H5Aopen")
        else {
            _ = CHDF5_silence_errors()
            return nil
        }
        var value: Int64 = 0
        guard H5Aread(attribute.id, CHDF5_T_STD_I64LE(), &value) >= 0 else { return nil }
        return value
    }

    /// Creates a new corpus file at `path` (truncating), then closes it.
    static func create(path: String, creation: CorpusCreation, createdAtMs: Int64? = nil) throws {
        let fapl = try HDF5Handle.make(H5Pcreate(CHDF5_P_FILE_ACCESS()), .plist, "H5Pcreate(fapl)")
        try HDF5Library.check(H5Pset_libver_bounds(fapl.id, CHDF5_F_LIBVER_LATEST(), CHDF5_F_LIBVER_LATEST()), "H5Pset_libver_bounds(latest)")
        let file = try HDF5Handle.make(H5Fcreate(path, CHDF5_F_ACC_TRUNC(), CHDF5_P_DEFAULT(), fapl.id), .file, "H5Fcreate(\(path))")
        let group = try HDF5Handle.make(
            H5Gcreate2(file.id, CorpusLayout.group, CHDF5_P_DEFAULT(), CHDF5_P_DEFAULT(), CHDF5_P_DEFAULT()),
            .group, "H5Gcreate2(/events)")
        func make(_ name: String, _ type: ColumnType, chunk: Int, deflate: Int?) throws {
            var zero: hsize_t = 0
            var unlimited = CHDF5_S_UNLIMITED()
            let space = try HDF5Handle.make(H5Screate_simple(1, &zero, &unlimited), .dataspace, "H5Screate_simple")
            let dcpl = try HDF5Handle.make(H5Pcreate(CHDF5_P_DATASET_CREATE()), .plist, "H5Pcreate(dcpl)")
            var chunkDims = hsize_t(max(1, chunk))
            try HDF5Library.check(H5Pset_chunk(dcpl.id, 1, &chunkDims), "H5Pset_chunk(\(name), \(chunk))")
            try HDF5Library.check(H5Pset_fill_time(dcpl.id, H5D_FILL_TIME_NEVER), "H5Pset_fill_time(\(name))")
            if let level = deflate {
                try HDF5Library.check(H5Pset_shuffle(dcpl.id), "H5Pset_shuffle(\(name))")
                try HDF5Library.check(H5Pset_deflate(dcpl.id, UInt32(level)), "H5Pset_deflate(\(name), \(level))")
            }
            let fileType = try type.makeType()
            let dataset = try HDF5Handle.make(
                H5Dcreate2(group.id, name, fileType.id, space.id, CHDF5_P_DEFAULT(), dcpl.id, CHDF5_P_DEFAULT()),
                .dataset, "H5Dcreate2(/events/\(name))")
            try HDF5Library.check(dataset.close(), "H5Dclose(\(name))")
        }
        try make(CorpusLayout.consultationID, CorpusLayout.consultationIDType, chunk: creation.rowChunk, deflate: nil)
        try make(CorpusLayout.streamID, CorpusLayout.streamIDType, chunk: creation.rowChunk, deflate: nil)
        try make(CorpusLayout.receivedAtMs, .int64, chunk: creation.rowChunk, deflate: nil)
        if creation.epochColumn { try make(CorpusLayout.epoch, .uint64, chunk: creation.rowChunk, deflate: nil) }
        try make(CorpusLayout.payloadEnd, .uint64, chunk: creation.rowChunk, deflate: nil)
        try make(CorpusLayout.payload, .uint8, chunk: creation.payloadChunk, deflate: creation.deflateLevel)
        if let createdAtMs {
            let space = try HDF5Handle.make(H5Screate(H5S_SCALAR), .dataspace, "H5Screate(scalar)")
            let attribute = try HDF5Handle.make(
                H5Acreate2(file.id, CorpusLayout.createdAtAttribute, CHDF5_T_STD_I64LE(), space.id, CHDF5_P_DEFAULT(), CHDF5_P_DEFAULT()),
                .attribute, "H5Acreate2(\(CorpusLayout.createdAtAttribute))")
            var value = createdAtMs
            try HDF5Library.check(H5Awrite(attribute.id, CHDF5_T_STD_I64LE(), &value), "H5Awrite(\(CorpusLayout.createdAtAttribute))")
            try HDF5Library.check(attribute.close(), "H5Aclose")
        }
        try HDF5Library.check(group.close(), "H5Gclose(/events)")
        try HDF5Library.check(file.close(), "H5Fclose(\(path))")
    }
}

/// Fixed-size string cells: null-padded, so the value ends at the first NUL.
enum FixedString {
    static func decode(_ cell: UnsafeRawBufferPointer) -> String {
        let bytes = cell.bindMemory(to: UInt8.self)
        let end = bytes.firstIndex(of: 0) ?? bytes.count
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[..<end]), as: UTF8.self)
    }

    static func trimmed(_ cell: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        let end = cell.firstIndex(of: 0) ?? cell.count
        return UnsafeRawBufferPointer(rebasing: cell[..<end])
    }
}
