import FILocking
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Which corpus files this process has open for writing, and how many of its
/// readers have each open.
///
/// Within one process HDF5 shares one open file between every identifier
/// that names it, so while a reader of this process holds a file, a writer's
/// `H5Fclose` only drops its identifier: the final flush and superblock write
/// happen when the reader closes — after the segment's checksum was taken.
/// So readers let go of a file this process writes after each operation
/// (their indexes stay), and a writer closing a file first waits until no
/// reader of this process holds it. Other processes are not affected: each
/// has its own HDF5.
enum InProcessFiles {
    struct Key: Hashable, Sendable {
        let device: UInt64
        let inode: UInt64
    }

    private struct Entry {
        var writing = false
        var readers = 0
        var isEmpty: Bool { !writing && readers == 0 }
    }

    private static let files = Locked<[Key: Entry]>([:])

    static func key(fd: Int32) -> Key? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        return Key(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    static func key(path: String) -> Key? {
        POSIX.identity(path).map { Key(device: $0.device, inode: $0.inode) }
    }

    static func beginWriting(_ key: Key) { update(key) { $0.writing = true } }
    static func endWriting(_ key: Key) { update(key) { $0.writing = false } }
    static func readerOpened(_ key: Key) { update(key) { $0.readers += 1 } }
    static func readerClosed(_ key: Key) { update(key) { $0.readers = max(0, $0.readers - 1) } }

    /// How many readers of this process have the file open.
    static func readerCount(_ key: Key) -> Int { files.withLock { $0[key]?.readers ?? 0 } }

    /// Whether a writer of this process has the file open.
    static func isWritten(_ key: Key) -> Bool { files.withLock { $0[key]?.writing ?? false } }

    /// Waits (up to `timeout`) until no reader of this process holds the file.
    /// - Returns: `false` on timeout.
    static func waitForReaders(_ key: Key, timeout: Duration = .seconds(10)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while files.withLock({ ($0[key]?.readers ?? 0) > 0 }) {
            if ContinuousClock.now >= deadline { return false }
            usleep(500)
        }
        return true
    }

    private static func update(_ key: Key, _ change: (inout Entry) -> Void) {
        files.withLock { files in
            var entry = files[key] ?? Entry()
            change(&entry)
            files[key] = entry.isEmpty ? nil : entry
        }
    }
}
