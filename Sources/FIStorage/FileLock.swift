import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Our own exclusive writer lock: `flock` on a sidecar file next to the corpus.
///
/// HDF5's own file lock is released by `H5Fstart_swmr_write` and is off on NFS
/// (`HDF5_USE_FILE_LOCKING=FALSE`), so it cannot keep a second writer out. The
/// lock file can; it is never deleted (unlinking lock files races).
final class FileLock: @unchecked Sendable {
    let path: String
    private var fd: Int32

    /// Takes the lock, waiting up to `wait` (not at all by default), or throws
    /// `.locked` naming the holder.
    init(path: String, wait: Duration = .zero, holder what: String = "another writer", purpose: String = "one writer per corpus file") throws {
        self.path = path
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw StorageError(code: .io, message: "cannot open lock file \(path): \(String(cString: strerror(errno)))")
        }
        let deadline = ContinuousClock.now + wait
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let err = errno
            if err == EINTR { continue }
            if err == EWOULDBLOCK, ContinuousClock.now < deadline {
                usleep(5_000)
                continue
            }
            var holder = [UInt8](repeating: 0, count: 64)
            let n = pread(fd, &holder, holder.count, 0)
            Glibc.close(fd)
            if err == EWOULDBLOCK {
                let who = n > 0 ? String(decoding: holder.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "unknown"
                throw StorageError(code: .locked, message: "\(path) is held by \(what) (pid \(who)); \(purpose)")
            }
            throw StorageError(code: .io, message: "flock \(path): \(String(cString: strerror(err)))")
        }
        // Best effort: record who holds it, for the error message above.
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        self.fd = fd
    }

    func release() {
        guard fd >= 0 else { return }
        Glibc.close(fd)  // closing the descriptor drops the flock
        fd = -1
    }

    deinit { release() }
}

/// Which file a path names right now: a replaced file (rename over it) has
/// another inode, a changed one another size or modification time.
struct FileIdentity: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: Int64

    /// Same file (not necessarily same contents).
    func sameFile(as other: FileIdentity) -> Bool { device == other.device && inode == other.inode }
}

enum POSIX {
    /// `fdatasync`: every written byte and the metadata needed to read it back
    /// (file size, block map) reach stable storage; only timestamps may lag.
    /// This is what makes an appended batch durable.
    static func dataSync(fd: Int32, path: String) throws {
        while Glibc.fdatasync(fd) != 0 {
            if errno == EINTR { continue }
            throw StorageError(code: .io, message: "fdatasync \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// A full `fsync` of a path (file or directory) through a fresh descriptor:
    /// used after creating, renaming and closing a corpus.
    static func fsync(path: String, directory: Bool = false) throws {
        let fd = Glibc.open(path, (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else {
            throw StorageError(code: .io, message: "open \(path) for fsync: \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(fd) }
        while Glibc.fsync(fd) != 0 {
            if errno == EINTR { continue }
            throw StorageError(code: .io, message: "fsync \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// `rename(2)`: atomically replaces `to`.
    static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else {
            throw StorageError(code: .io, message: "rename \(from) → \(to): \(String(cString: strerror(errno)))")
        }
    }

    /// Removes a file; a file that is already gone is fine.
    static func unlinkIfPresent(_ path: String) throws {
        guard Glibc.unlink(path) == 0 || errno == ENOENT else {
            throw StorageError(code: .io, message: "unlink \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// The directory part of a path ("." for a bare name).
    static func directory(of path: String) -> String {
        let directory = (path as NSString).deletingLastPathComponent
        return directory.isEmpty ? "." : directory
    }

    /// `stat(2)` identity of a path: device, inode, size and modification
    /// time, or `nil` if it does not exist.
    static func identity(_ path: String) -> FileIdentity? {
        var info = stat()
        guard fstatat(AT_FDCWD, path, &info, 0) == 0 else { return nil }
        return FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                            modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))
    }

    /// Writes `data` to `path` (created or truncated) and syncs it.
    static func writeSynced(_ data: [UInt8], to path: String) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw StorageError(code: .io, message: "open \(path) for writing: \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(fd) }
        try writeAll(fd: fd, data, path: path)
        try dataSync(fd: fd, path: path)
    }

    /// The whole contents of `path`, or `nil` if it does not exist (a file
    /// replaced by rename meanwhile is read whole, old or new).
    static func readFile(_ path: String) throws -> Data? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw StorageError(code: .io, message: "open \(path): \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(fd) }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError(code: .io, message: "read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { return data }
            data.append(contentsOf: buffer[0..<n])
        }
    }

    /// Appends one line to `path` (created if missing) and syncs it.
    static func appendLineSynced(_ line: String, to path: String) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw StorageError(code: .io, message: "open \(path) for appending: \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(fd) }
        try writeAll(fd: fd, Array((line + "\n").utf8), path: path)
        try dataSync(fd: fd, path: path)
    }

    private static func writeAll(fd: Int32, _ data: [UInt8], path: String) throws {
        var written = 0
        while written < data.count {
            let n = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, data.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError(code: .io, message: "write \(path): \(String(cString: strerror(errno)))")
            }
            written += n
        }
    }

    static func createDirectories(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw StorageError(code: .io, message: "cannot create directory \(path): \(error.localizedDescription)")
        }
    }
}
