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

    /// Takes the lock without waiting, or throws `.locked` naming the holder.
    init(path: String) throws {
        self.path = path
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw StorageError(code: .io, message: "cannot open lock file \(path): \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let err = errno
            var holder = [UInt8](repeating: 0, count: 64)
            let n = pread(fd, &holder, holder.count, 0)
            Glibc.close(fd)
            if err == EWOULDBLOCK {
                let who = n > 0 ? String(decoding: holder.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "unknown"
                throw StorageError(code: .locked, message: "\(path) is held by another writer (pid \(who)); one writer per corpus file")
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

    static func createDirectories(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw StorageError(code: .io, message: "cannot create directory \(path): \(error.localizedDescription)")
        }
    }
}
