// Thin, internal wrappers over the HDF5 C API. Every handle is owned by a
// Swift object that closes it; every failure becomes a StorageError carrying
// HDF5's own error stack. Nothing here is public.
internal import CHDF5
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Serialises access to the HDF5 library.
///
/// Debian's build is thread-safe (one global lock inside the library), but a
/// plain build is not, and the error stack we read after a failure must be the
/// one our call left. Holding our own (recursive, because a handle's `deinit`
/// may run inside a locked region) lock around every call covers both. POSIX
/// work such as `fsync` runs outside it so one file's fsync never stalls
/// another file's HDF5 calls.
enum HDF5Library {
    private static let lock = NSRecursiveLock()

    /// Tells HDF5, before its first use, not to close leftover identifiers at
    /// process exit. A file whose `H5Fclose` failed (its flush hit a full disk
    /// or a read-only file) keeps a half-destroyed identifier that the exit
    /// handler would dereference and crash on (SIGSEGV in `H5F__close_cb`,
    /// found by the read-only corpus fault test). Every file we open is closed
    /// explicitly before exit, so the handler has nothing else to do.
    private static let configured: Void = { _ = H5dont_atexit() }()

    static func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        _ = configured
        _ = CHDF5_silence_errors()
        return try body()
    }

    /// The error HDF5 just reported, with its error stack as the message.
    static func error(_ what: String, file: String = #fileID, line: Int = #line) -> StorageError {
        var buffer = [CChar](repeating: 0, count: 2048)
        let length = buffer.withUnsafeMutableBufferPointer { CHDF5_take_error_stack($0.baseAddress, $0.count) }
        // One line: HDF5 puts a ctime() string, newline included, into some messages.
        let stack = length > 0
            ? String(decoding: buffer.prefix(length).map { $0 == 10 || $0 == 13 ? 32 : UInt8(bitPattern: $0) }, as: UTF8.self)
            : "no HDF5 error stack"
        return StorageError(code: .hdf5, message: "\(what): \(stack)", file: file, line: line)
    }

    @discardableResult
    static func check(_ status: herr_t, _ what: @autoclosure () -> String, file: String = #fileID, line: Int = #line) throws -> herr_t {
        if status < 0 { throw error(what(), file: file, line: line) }
        return status
    }

    static func check(id: hid_t, _ what: @autoclosure () -> String, file: String = #fileID, line: Int = #line) throws -> hid_t {
        if id < 0 { throw error(what(), file: file, line: line) }
        return id
    }
}

/// One HDF5 identifier, closed exactly once (explicitly or in `deinit`).
final class HDF5Handle: @unchecked Sendable {
    enum Kind { case file, group, dataset, dataspace, datatype, plist, attribute }
    private(set) var id: hid_t
    let kind: Kind

    init(_ id: hid_t, _ kind: Kind) {
        self.id = id
        self.kind = kind
    }

    /// Closes the handle; later calls do nothing. Returns HDF5's status.
    @discardableResult
    func close() -> herr_t {
        guard id >= 0 else { return 0 }
        let closing = id
        id = -1
        return HDF5Library.withLock {
            switch kind {
            case .file: H5Fclose(closing)
            case .group: H5Gclose(closing)
            case .dataset: H5Dclose(closing)
            case .dataspace: H5Sclose(closing)
            case .datatype: H5Tclose(closing)
            case .plist: H5Pclose(closing)
            case .attribute: H5Aclose(closing)
            }
        }
    }

    deinit { close() }
}

extension HDF5Handle {
    static func make(_ id: hid_t, _ kind: Kind, _ what: @autoclosure () -> String, file: String = #fileID, line: Int = #line) throws -> HDF5Handle {
        HDF5Handle(try HDF5Library.check(id: id, what(), file: file, line: line), kind)
    }
}

/// The element types of Docs/contract.md §5.
enum ColumnType {
    case fixedString(size: Int, utf8: Bool)
    case int64
    case uint64
    case uint8

    var elementSize: Int {
        switch self {
        case .fixedString(let size, _): size
        case .int64, .uint64: 8
        case .uint8: 1
        }
    }

    /// A datatype usable both as the file type and the memory type. Caller holds the library lock.
    func makeType() throws -> HDF5Handle {
        switch self {
        case .fixedString(let size, let utf8):
            let type = try HDF5Handle.make(H5Tcopy(CHDF5_T_C_S1()), .datatype, "H5Tcopy(H5T_C_S1)")
            try HDF5Library.check(H5Tset_size(type.id, size), "H5Tset_size(\(size))")
            try HDF5Library.check(H5Tset_strpad(type.id, H5T_STR_NULLPAD), "H5Tset_strpad(NULLPAD)")
            try HDF5Library.check(H5Tset_cset(type.id, utf8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII), "H5Tset_cset")
            return type
        case .int64:
            return try HDF5Handle.make(H5Tcopy(CHDF5_T_STD_I64LE()), .datatype, "H5Tcopy(H5T_STD_I64LE)")
        case .uint64:
            return try HDF5Handle.make(H5Tcopy(CHDF5_T_STD_U64LE()), .datatype, "H5Tcopy(H5T_STD_U64LE)")
        case .uint8:
            return try HDF5Handle.make(H5Tcopy(CHDF5_T_STD_U8LE()), .datatype, "H5Tcopy(H5T_STD_U8LE)")
        }
    }
}

/// One chunked, extendable 1-D dataset. Every method expects the library lock held.
final class Column: @unchecked Sendable {
    let name: String
    let type: ColumnType
    let handle: HDF5Handle
    /// The memory (= file) type used for reads and writes.
    let memoryType: HDF5Handle

    /// Elements per chunk, and whether chunks pass through filters (compression).
    let chunkLength: Int
    let filtered: Bool
    /// The deflate level of a compressed dataset.
    let deflateLevel: Int?
    init(name: String, type: ColumnType, handle: HDF5Handle, chunkLength: Int = 1, filtered: Bool = false, deflateLevel: Int? = nil) throws {
        self.name = name
        self.type = type
        self.handle = handle
        self.memoryType = try type.makeType()
        self.chunkLength = max(1, chunkLength)
        self.filtered = filtered
        self.deflateLevel = deflateLevel
    }

    var id: hid_t { handle.id }

    /// The current number of elements.
    func count() throws -> Int {
        let space = try HDF5Handle.make(H5Dget_space(id), .dataspace, "H5Dget_space(\(name))")
        var dims: hsize_t = 0
        let rank = H5Sget_simple_extent_dims(space.id, &dims, nil)
        guard rank == 1 else {
            if rank < 0 { throw HDF5Library.error("H5Sget_simple_extent_dims(\(name))") }
            throw StorageError(code: .corrupt, message: "dataset \(name) has rank \(rank), expected 1")
        }
        guard dims <= hsize_t(Int.max / max(1, type.elementSize)) else {
            throw StorageError(code: .corrupt, message: "dataset \(name) claims \(dims) elements")
        }
        return Int(dims)
    }

    /// The bytes of the file allocated to this dataset's chunks (HDF5 reads
    /// never-written chunks as zeros, so a corrupt length is bounded by this
    /// for an unfiltered dataset).
    func storageBytes() -> UInt64 {
        UInt64(H5Dget_storage_size(id))
    }

    func setCount(_ count: Int) throws {
        var dims = hsize_t(count)
        try HDF5Library.check(H5Dset_extent(id, &dims), "H5Dset_extent(\(name), \(count))")
    }

    func refresh() throws {
        try HDF5Library.check(H5Drefresh(id), "H5Drefresh(\(name))")
    }

    /// Writes `count` elements from `buffer` at element `offset`; the dataset must already be that long.
    func write(at offset: Int, count: Int, from buffer: UnsafeRawPointer) throws {
        guard count > 0 else { return }
        let (memory, file) = try selection(offset: offset, count: count)
        try HDF5Library.check(H5Dwrite(id, memoryType.id, memory.id, file.id, CHDF5_P_DEFAULT(), buffer),
                              "H5Dwrite(\(name), [\(offset)..<\(offset + count)])")
    }

    /// Reads `count` elements at element `offset` into `buffer`.
    func read(at offset: Int, count: Int, into buffer: UnsafeMutableRawPointer) throws {
        guard count > 0 else { return }
        let (memory, file) = try selection(offset: offset, count: count)
        try HDF5Library.check(H5Dread(id, memoryType.id, memory.id, file.id, CHDF5_P_DEFAULT(), buffer),
                              "H5Dread(\(name), [\(offset)..<\(offset + count)])")
    }

    /// Reads the elements at `indices` (any order) into `buffer`, in that order.
    func read(points indices: [Int], into buffer: UnsafeMutableRawPointer) throws {
        guard !indices.isEmpty else { return }
        let file = try HDF5Handle.make(H5Dget_space(id), .dataspace, "H5Dget_space(\(name))")
        let coordinates = indices.map { hsize_t($0) }
        try HDF5Library.check(H5Sselect_elements(file.id, H5S_SELECT_SET, coordinates.count, coordinates),
                              "H5Sselect_elements(\(name), \(indices.count) points)")
        var n = hsize_t(indices.count)
        let memory = try HDF5Handle.make(H5Screate_simple(1, &n, nil), .dataspace, "H5Screate_simple")
        try HDF5Library.check(H5Dread(id, memoryType.id, memory.id, file.id, CHDF5_P_DEFAULT(), buffer),
                              "H5Dread(\(name), \(indices.count) points)")
    }

    /// Reads the union of element ranges (ascending, disjoint) into `buffer`, concatenated.
    func read(ranges: [Range<Int>], into buffer: UnsafeMutableRawPointer) throws {
        let total = ranges.reduce(0) { $0 + $1.count }
        guard total > 0 else { return }
        let file = try HDF5Handle.make(H5Dget_space(id), .dataspace, "H5Dget_space(\(name))")
        var first = true
        for range in ranges where !range.isEmpty {
            var start = hsize_t(range.lowerBound)
            var count = hsize_t(range.count)
            try HDF5Library.check(H5Sselect_hyperslab(file.id, first ? H5S_SELECT_SET : H5S_SELECT_OR, &start, nil, &count, nil),
                                  "H5Sselect_hyperslab(\(name))")
            first = false
        }
        var n = hsize_t(total)
        let memory = try HDF5Handle.make(H5Screate_simple(1, &n, nil), .dataspace, "H5Screate_simple")
        try HDF5Library.check(H5Dread(id, memoryType.id, memory.id, file.id, CHDF5_P_DEFAULT(), buffer),
                              "H5Dread(\(name), \(ranges.count) ranges)")
    }

    private func selection(offset: Int, count: Int) throws -> (memory: HDF5Handle, file: HDF5Handle) {
        let file = try HDF5Handle.make(H5Dget_space(id), .dataspace, "H5Dget_space(\(name))")
        var start = hsize_t(offset)
        var n = hsize_t(count)
        try HDF5Library.check(H5Sselect_hyperslab(file.id, H5S_SELECT_SET, &start, nil, &n, nil),
                              "H5Sselect_hyperslab(\(name), [\(offset)..<\(offset + count)])")
        let memory = try HDF5Handle.make(H5Screate_simple(1, &n, nil), .dataspace, "H5Screate_simple")
        return (memory, file)
    }

    /// Checks the stored element type against the layout.
    func verifyType() throws {
        let stored = try HDF5Handle.make(H5Dget_type(id), .datatype, "H5Dget_type(\(name))")
        let cls = H5Tget_class(stored.id)
        let size = H5Tget_size(stored.id)
        let ok: Bool
        switch type {
        case .fixedString(let expected, _):
            ok = cls == H5T_STRING && H5Tis_variable_str(stored.id) == 0 && size == expected
        case .int64, .uint64:
            ok = cls == H5T_INTEGER && size == 8
        case .uint8:
            ok = cls == H5T_INTEGER && size == 1
        }
        guard ok else {
            throw StorageError(code: .corrupt, message: "dataset /events/\(name) has an unexpected type (class \(cls.rawValue), size \(size)); see Docs/contract.md §5")
        }
    }
}
