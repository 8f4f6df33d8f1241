import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Synchronization
import Testing

/// What one client got for one event.
struct Answer: Sendable {
    /// The `event_id` in the body: unique per test run, so a stored row maps back to its send.
    let eventID: String
    /// The HTTP status, or 0 when no answer came (connection refused, reset, timed out).
    let status: Int
    /// From a 202 body: the stream entry id and partition the server reported.
    let messageID: String?
    let partition: String?
    /// Whether the answer carried `Retry-After`.
    var retryAfter = false
    let at: ContinuousClock.Instant
}

/// Clients posting ~`bodyBytes` JSON events to fi-server from `lanes` concurrent
/// tasks, each to one of `sites`, until ``stop()`` — bounded by a count per lane
/// and a duration whatever happens.
final class Load: Sendable {
    let base: String
    let sites: [String]
    let lanes: Int
    let bodyBytes: Int
    let run = String(UUID().uuidString.prefix(8))
    private let stopped = Atomic<Bool>(false)
    private let answered = Atomic<Int>(0)
    private let accepted202 = Atomic<Int>(0)
    private let refused429 = Atomic<Int>(0)

    init(base: String, sites: [String], lanes: Int = 16, bodyBytes: Int = 512) {
        self.base = base
        self.sites = sites
        self.lanes = lanes
        self.bodyBytes = bodyBytes
    }

    func stop() { stopped.store(true, ordering: .relaxed) }

    /// How many requests have been answered (or failed) so far.
    var count: Int { answered.load(ordering: .relaxed) }
    /// How many 202s and 429s so far.
    var acceptedCount: Int { accepted202.load(ordering: .relaxed) }
    var tooManyCount: Int { refused429.load(ordering: .relaxed) }

    func body(eventID: String, site: String) -> Data {
        let head = #"{"event_id":"\#(eventID)","event_type":"TRANSCRIPTION_SEGMENT","metadata":{"site_id":"\#(site)"},"payload":{"text":""#
        let tail = #""}}"#
        let pad = max(0, bodyBytes - head.utf8.count - tail.utf8.count)
        return Data((head + String(repeating: "x", count: pad) + tail).utf8)
    }

    /// Posts until stopped, `perLane` events per lane at most, or `maxDuration`.
    func run(perLane: Int = 200_000, maxDuration: Duration = .seconds(45)) async -> [Answer] {
        let deadline = ContinuousClock.now + maxDuration
        return await withTaskGroup(of: [Answer].self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    var answers: [Answer] = []
                    for n in 0..<perLane {
                        if self.stopped.load(ordering: .relaxed) || ContinuousClock.now >= deadline { break }
                        let site = self.sites[(lane + n) % self.sites.count]
                        let eventID = "\(self.run)-\(lane)-\(n)"
                        let url = "\(self.base)/consultations/c-\(lane)/events"
                        var answer = Answer(eventID: eventID, status: 0, messageID: nil, partition: nil, at: .now)
                        if let reply = try? await HTTP.request("POST", url, body: self.body(eventID: eventID, site: site)) {
                            answer = Answer(
                                eventID: eventID, status: reply.status,
                                messageID: reply.json?["message_id"] as? String,
                                partition: reply.json?["partition"] as? String,
                                retryAfter: reply.headers["retry-after"] != nil, at: .now)
                            if reply.status == 202 { self.accepted202.add(1, ordering: .relaxed) }
                            if reply.status == 429 { self.refused429.add(1, ordering: .relaxed) }
                        } else {
                            // No answer (the server is gone or the connection broke): pause a
                            // little so a lane does not spin on refused connections.
                            try? await Task.sleep(for: .milliseconds(20))
                        }
                        answers.append(answer)
                        self.answered.add(1, ordering: .relaxed)
                    }
                    return answers
                }
            }
            var all: [Answer] = []
            for await part in group { all += part }
            return all
        }
    }
}

/// The count every fault test reports: events sent, accepted (202), stored,
/// lost (answered 202 but not stored), duplicated (stored more than once).
struct Tally: CustomStringConvertible {
    var sent = 0
    var accepted = 0
    /// Non-202 answers by status (0 = no answer).
    var refused: [Int: Int] = [:]
    var stored = 0
    var lost = 0
    var duplicated = 0
    /// Stored although the client got no 202 (a 503 or no answer after Redis
    /// had taken the entry): not a loss, but a client that retries would store it twice.
    var storedWithout202 = 0
    /// Stored under a stream id other than the one the 202 reported.
    var mismatched = 0
    /// Rows whose stream id is not above the previous row's, per partition.
    var outOfOrder = 0
    /// Stored rows that no client of this test sent.
    var unknown = 0
    var lostIDs: [String] = []

    init(answers: [Answer], rows: [String: [CorpusRecord]]) {
        sent = answers.count
        var acceptedIDs: [String: String] = [:]  // event id → message id
        for answer in answers {
            if answer.status == 202 {
                accepted += 1
                acceptedIDs[answer.eventID] = answer.messageID ?? ""
            } else {
                refused[answer.status, default: 0] += 1
            }
        }
        let sentIDs = Set(answers.map(\.eventID))
        var seen: [String: Int] = [:]
        for (_, partitionRows) in rows {
            var previous: StreamEntryID?
            for row in partitionRows {
                stored += 1
                let id = row.streamID
                if let previous, !(previous < id) { outOfOrder += 1 }
                previous = id
                let eventID = Self.eventID(of: row)
                seen[eventID, default: 0] += 1
                if !sentIDs.contains(eventID) {
                    unknown += 1
                } else if let messageID = acceptedIDs[eventID] {
                    if messageID != row.streamID.description { mismatched += 1 }
                } else if seen[eventID] == 1 {
                    storedWithout202 += 1
                }
            }
        }
        duplicated = seen.values.reduce(0) { $0 + max(0, $1 - 1) }
        lostIDs = acceptedIDs.keys.filter { seen[$0] == nil }.sorted()
        lost = lostIDs.count
    }

    static func eventID(of row: CorpusRecord) -> String {
        let object = try? JSONSerialization.jsonObject(with: Data(row.payload)) as? [String: Any]
        return object?["event_id"] as? String ?? "?"
    }

    var description: String {
        let refusals = refused.keys.sorted().map { "\($0 == 0 ? "no_answer" : String($0))=\(refused[$0]!)" }.joined(separator: " ")
        return "sent=\(sent) accepted=\(accepted) stored=\(stored) lost=\(lost) duplicated=\(duplicated) "
            + "stored_without_202=\(storedWithout202) mismatched=\(mismatched) out_of_order=\(outOfOrder) unknown=\(unknown)"
            + (refusals.isEmpty ? "" : " refused: \(refusals)")
    }

    /// Prints the figures on one line (`FAULT <name>: …`) for the CI log and Docs/reliability.md.
    func report(_ name: String, _ extra: String = "") {
        print("FAULT \(name): \(self)\(extra.isEmpty ? "" : " " + extra)")
    }
}

enum Faults {
    /// Every row of each partition, by partition key.
    static func rows(_ partitions: [String], storage: String) async throws -> [String: [CorpusRecord]] {
        var out: [String: [CorpusRecord]] = [:]
        for partition in partitions {
            out[partition] = try await E2E.rows(try PartitionKey(validating: partition), storage: storage)
        }
        return out
    }

    /// Waits until every partition's stream and pending list are empty: all persisted.
    static func drained(_ partitions: [String], url: String, timeout: Duration = .seconds(60), worker: Child? = nil) async throws {
        let queue = try await RedisEventQueue.connect(url: url, logger: E2E.logger)
        defer { Task { await queue.close() } }
        do {
            try await eventually("every stream persisted and empty", timeout: timeout) {
                for partition in partitions {
                    let stream = "fi:events:\(partition)"
                    if try await queue.length(of: stream) != 0 { return false }
                    if try await queue.pending("fi-workers", on: stream).count != 0 { return false }
                }
                return true
            }
        } catch {
            if let worker { Issue.record("fi-worker log:\n\(worker.log.suffix(4000))") }
            throw error
        }
    }

    /// The length of each `fi:dead:<partition>` stream (dead letters).
    static func deadLetters(_ partitions: [String], url: String) async throws -> Int {
        let queue = try await RedisEventQueue.connect(url: url, logger: E2E.logger)
        var total = 0
        for partition in partitions { total += try await queue.length(of: "fi:dead:\(partition)") }
        await queue.close()
        return total
    }

    /// Resident set size of a process, in bytes (0 if it is gone).
    static func rss(_ pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }

    /// Runs a command to completion (bounded); returns its exit status, nil on timeout.
    @discardableResult
    static func command(_ executable: String, _ arguments: [String], directory: String, timeout: Duration = .seconds(20)) async throws -> Int32? {
        let child = try Child(URL(fileURLWithPath: executable).lastPathComponent, executable, arguments, logDirectory: directory)
        return await child.waitForExit(timeout: timeout)
    }

    static var isRoot: Bool { geteuid() == 0 }

    /// Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN: not in an unprivileged container).
    static let canMountTmpfs: Bool = {
        guard isRoot, let mount = try? TmpfsMount(sizeMiB: 1) else { return false }
        _ = mount
        return true
    }()

    /// Whether this process may set the immutable attribute (root with CAP_LINUX_IMMUTABLE, on a file system that has it).
    static let canSetImmutable: Bool = {
        let path = NSTemporaryDirectory() + "/fi-immutable-probe-\(getpid())"
        guard FileManager.default.createFile(atPath: path, contents: Data("x".utf8)) else { return false }
        defer { unlink(path) }
        guard setImmutable(path, true) else { return false }
        return setImmutable(path, false)
    }()

    /// Open file descriptors of a process (-1 if it is gone).
    static func openFiles(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    /// The first log line containing `needle`, cut to `limit` characters.
    static func firstLine(containing needle: String, in log: String, limit: Int = 300) -> String {
        guard let line = log.split(separator: "\n").first(where: { $0.contains(needle) }) else { return "-" }
        return String(line.prefix(limit))
    }
}

extension Faults {
    /// Writes `path` until the volume is full (ENOSPC), bounded; returns the bytes written.
    static func fill(_ path: String) -> Int {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        let block = [UInt8](repeating: 0xA5, count: 1 << 16)
        var total = 0
        for _ in 0..<65_536 {  // at most 4 GiB
            let n = write(fd, block, block.count)
            if n <= 0 { break }
            total += n
        }
        return total
    }

    /// Sets or clears the immutable attribute (`chattr ±i`): even root, and even
    /// through descriptors already open, can then not write the file. Needs root.
    /// - Returns: whether it worked.
    @discardableResult
    static func setImmutable(_ path: String, _ immutable: Bool) -> Bool {
        let getFlags: UInt = 0x8008_6601, setFlags: UInt = 0x4008_6602, immutableFlag = 0x10  // FS_IOC_[GS]ETFLAGS, FS_IMMUTABLE_FL
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var flags = 0
        guard ioctl(fd, getFlags, &flags) == 0 else { return false }
        flags = immutable ? (flags | immutableFlag) : (flags & ~immutableFlag)
        return ioctl(fd, setFlags, &flags) == 0
    }
}

/// A tmpfs of its own, mounted on a fresh temporary directory (needs root);
/// detached and removed when dropped.
final class TmpfsMount: @unchecked Sendable {
    let path: String

    init(sizeMiB: Int) throws {
        path = try E2E.temporaryDirectory()
        guard mount("fi-faults", path, "tmpfs", 0, "size=\(sizeMiB)m,mode=0755") == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: path)
            throw EventQueueError(.unavailable, "mount -t tmpfs on \(path): \(reason)")
        }
    }

    deinit {
        _ = umount2(path, 2)  // MNT_DETACH
        rmdir(path)
    }
}

/// A wall-clock step, as NTP makes it: an LD_PRELOAD library, compiled here
/// with the toolchain's clang, that adds an offset (read from a file on every
/// call) to `CLOCK_REALTIME` in `clock_gettime`, `gettimeofday` and `time`, and
/// leaves every other clock and every timer alone. (libfaketime also shifts
/// monotonic timers — a 250 ms sleep armed at −2 h lasted 2 h — and cannot
/// start Debian's jemalloc-linked redis-server, so it does not model a real
/// clock step.) It uses raw syscalls, never dlsym, so it is safe inside malloc.
enum FakeClock {
    static let source = #"""
    #define _GNU_SOURCE
    #include <fcntl.h>
    #include <stdlib.h>
    #include <sys/syscall.h>
    #include <sys/time.h>
    #include <time.h>
    #include <unistd.h>

    static long long fi_offset_ms(void) {
        const char *path = getenv("FI_FAKE_CLOCK_FILE");
        if (!path) return 0;
        int fd = (int)syscall(SYS_open, path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return 0;
        char buffer[32] = {0};
        long n = syscall(SYS_read, fd, buffer, sizeof buffer - 1);
        syscall(SYS_close, fd);
        return n > 0 ? strtoll(buffer, NULL, 10) : 0;
    }

    static void fi_shift(struct timespec *ts) {
        long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + fi_offset_ms() * 1000000LL;
        ts->tv_sec = ns / 1000000000LL;
        ts->tv_nsec = ns % 1000000000LL;
    }

    int clock_gettime(clockid_t clock, struct timespec *ts) {
        int r = (int)syscall(SYS_clock_gettime, clock, ts);
        if (r == 0 && ts && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) fi_shift(ts);
        return r;
    }

    int gettimeofday(struct timeval *tv, void *tz) {
        struct timespec ts;
        int r = clock_gettime(CLOCK_REALTIME, &ts);
        if (r == 0 && tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
        (void)tz;
        return r;
    }

    time_t time(time_t *out) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (out) *out = ts.tv_sec;
        return ts.tv_sec;
    }
    """#

    /// Builds the library into `directory`; returns its path.
    static func build(in directory: String) async throws -> String {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/opt/swift/usr/bin", "/usr/bin"]
        let clang = try #require(paths.map { $0 + "/clang" }.first { FileManager.default.isExecutableFile(atPath: $0) }, "no clang on PATH (the Swift toolchain ships one)")
        let file = directory + "/fakeclock.c", library = directory + "/libfakeclock.so"
        try source.write(toFile: file, atomically: true, encoding: .utf8)
        let compile = try Child("clang", clang, ["-shared", "-fPIC", "-O1", "-o", library, file], logDirectory: directory)
        let status = await compile.waitForExit(timeout: .seconds(60))
        try #require(status == 0, "compiling the clock shim failed:\n\(compile.log)")
        return library
    }

    /// The environment that puts a process on the shifted clock.
    static func environment(library: String, offsetFile: String) -> [String: String] {
        ["LD_PRELOAD": library, "FI_FAKE_CLOCK_FILE": offsetFile]
    }
}
