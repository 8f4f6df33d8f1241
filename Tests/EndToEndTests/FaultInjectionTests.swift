import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Testing

/// Faults injected under load, against the real binaries (Docs/reliability.md).
/// Each test starts its own redis-server and reports, on a `FAULT …` line, how
/// many events were sent, accepted (202), stored, lost and duplicated.
@Suite(
    "fault injection",
    .serialized,
    .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server"), "needs redis-server")
)
struct FaultInjectionTests {
    static let sites = ["f1", "f2"]
    static var partitions: [String] { sites.map { "site_\($0)" } }

    /// fi-server and fi-worker against `redis`, storing under `storage`.
    struct Stack {
        let server: Child
        let worker: Child
        let base: String

        init(redis: OwnRedis, storage: String, serverArguments: [String] = [], workerArguments: [String] = [], environment: [String: String] = [:], logs: String? = nil) async throws {
            let port = try Loopback.freePort()
            base = "http://127.0.0.1:\(port)"
            let logs = logs ?? storage
            func launch(_ name: String, _ binary: String, _ arguments: [String]) throws -> Child {
                try Child(name, binary, arguments, environment: environment, logDirectory: logs)
            }
            server = try launch(
                "server", try E2E.binary("fi-server"),
                ["--port", "\(port)", "--redis-url", redis.url, "--storage", storage] + serverArguments)
            worker = try launch(
                "worker", try E2E.binary("fi-worker"),
                ["--all", "--redis-url", redis.url, "--storage", storage, "--log-level", "info"] + workerArguments)
            try await HTTP.waitHealthy(base, process: server)
            let worker = self.worker
            try await eventually("fi-worker started", timeout: .seconds(20)) { worker.log.contains("fi-worker started") }
        }

        /// SIGTERM to both; each must exit 0.
        func stop() async {
            server.terminate()
            worker.terminate()
            let serverStatus = await server.waitForExit(timeout: .seconds(15))
            let workerStatus = await worker.waitForExit(timeout: .seconds(15))
            #expect(serverStatus == 0, "fi-server: \(String(describing: serverStatus))\n\(server.log.suffix(2000))")
            #expect(workerStatus == 0, "fi-worker: \(String(describing: workerStatus))\n\(worker.log.suffix(2000))")
        }
    }

    @Test(
        "Redis killed (-9) and restarted while 16 clients post: with appendfsync always nothing answered 202 is lost; with everysec the loss is bounded by 1 s of accepted events",
        arguments: ["always", "everysec"]
    )
    func redisKilledUnderLoad(appendfsync: String) async throws {
        let redis = try await OwnRedis(appendfsync: appendfsync)
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let stack = try await Stack(redis: redis, storage: storage)
        let load = Load(base: stack.base, sites: Self.sites)
        let clients = Task { await load.run(maxDuration: .seconds(40)) }

        try await eventually("clients get answers", timeout: .seconds(20)) { load.count >= 300 }
        try await Task.sleep(for: .seconds(1))
        let killedAt = ContinuousClock.now
        await redis.kill9()
        try await Task.sleep(for: .seconds(1))
        try await redis.start()
        let restartedAt = ContinuousClock.now
        let before = load.count
        try await eventually("clients get answers again", timeout: .seconds(20)) { load.count >= before + 300 }
        load.stop()
        let answers = await clients.value

        try await Faults.drained(Self.partitions, url: redis.url, worker: stack.worker)
        await stack.stop()
        let tally = Tally(answers: answers, rows: try await Faults.rows(Self.partitions, storage: storage))
        // The rate just before the crash: what "1 s of accepted events" means here.
        let lastSecond = answers.filter { $0.status == 202 && $0.at <= killedAt && $0.at > killedAt - .seconds(1) }.count
        let duringOutage = answers.filter { $0.status == 202 && $0.at > killedAt + .milliseconds(100) && $0.at < restartedAt }.count
        tally.report("redis-kill appendfsync=\(appendfsync)", "accepted_in_last_second_before_kill=\(lastSecond) accepted_while_down=\(duringOutage)")

        #expect(tally.accepted > 0 && tally.refused[503, default: 0] + tally.refused[0, default: 0] > 0, "the outage was seen by the clients: \(tally)")
        #expect(duringOutage == 0, "no 202 while Redis was down")
        #expect(tally.duplicated == 0 && tally.mismatched == 0 && tally.unknown == 0, "\(tally)")
        #expect(tally.outOfOrder == 0, "rows in stream order: \(tally)")
        if appendfsync == "always" {
            #expect(tally.lost == 0, "appendfsync always: nothing answered 202 is lost: \(tally) \(tally.lostIDs.prefix(10))")
        } else {
            #expect(tally.lost <= max(1, lastSecond), "appendfsync everysec: loss bounded by 1 s of accepted events (\(lastSecond)): \(tally)")
        }
    }

    // MARK: - Storage faults

    /// Phase 1: clients post until `count` events are answered, then every one is persisted.
    static func warmUp(_ stack: Stack, redis: OwnRedis, count: Int = 200) async throws -> [Answer] {
        let load = Load(base: stack.base, sites: Self.sites, lanes: 8)
        let clients = Task { await load.run(maxDuration: .seconds(20)) }
        try await eventually("\(count) answers", timeout: .seconds(20)) { load.count >= count }
        load.stop()
        let answers = await clients.value
        try await Faults.drained(Self.partitions, url: redis.url, worker: stack.worker)
        return answers
    }

    @Test(
        "disk full on the storage volume (a 16 MiB tmpfs filled up): the worker stops acknowledging, backs off, dead-letters nothing, resumes when space returns; nothing lost",
        .enabled(if: Faults.canMountTmpfs, "mounting a tmpfs needs root with CAP_SYS_ADMIN")
    )
    func diskFull() async throws {
        let redis = try await OwnRedis()
        let logs = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: logs) }
        let volume = try TmpfsMount(sizeMiB: 16)
        let storage = volume.path
        let stack = try await Stack(redis: redis, storage: storage, logs: logs)
        var answers = try await Self.warmUp(stack, redis: redis)

        let filesBefore = Faults.openFiles(stack.worker.pid)
        let filler = storage + "/filler"
        let filled = Faults.fill(filler)
        #expect(filled > 0)
        let failuresBefore = Self.occurrences("partition batch failed", in: stack.worker.log)
        let load = Load(base: stack.base, sites: Self.sites, lanes: 8, bodyBytes: 1024)
        let clients = Task { await load.run(maxDuration: .seconds(40)) }
        try await eventually("the worker hits the full disk", timeout: .seconds(20)) {
            Self.occurrences("partition batch failed", in: stack.worker.log) > failuresBefore
        }
        try await eventually("2,000 events posted", timeout: .seconds(30)) { load.count >= 2000 }
        load.stop()
        answers += await clients.value
        // Several retries later: still running, nothing acknowledged, nothing dead-lettered.
        try await Task.sleep(for: .seconds(2))
        #expect(stack.worker.isRunning, "\(stack.worker.log.suffix(3000))")
        let queue = try await RedisEventQueue.connect(url: redis.url, logger: E2E.logger)
        var queued = 0
        for partition in Self.partitions { queued += try await queue.length(of: "fi:events:\(partition)") }
        await queue.close()
        #expect(queued > 0, "entries stay queued while the disk is full")
        #expect(try await Faults.deadLetters(Self.partitions, url: redis.url) == 0, "no good event dead-lettered")
        let failures = Self.occurrences("partition batch failed", in: stack.worker.log) - failuresBefore

        try FileManager.default.removeItem(atPath: filler)
        let freedAt = ContinuousClock.now
        try await Faults.drained(Self.partitions, url: redis.url, worker: stack.worker)
        let recovery = ContinuousClock.now - freedAt
        let filesAfter = Faults.openFiles(stack.worker.pid)
        print("FAULT disk-full first error: \(Faults.firstLine(containing: "partition batch failed", in: stack.worker.log))")
        await stack.stop()
        let tally = Tally(answers: answers, rows: try await Faults.rows(Self.partitions, storage: storage))
        tally.report("disk-full", "queued_while_full=\(queued) failed_batches_logged=\(failures) drained_after_space_returned_in=\(recovery) worker_fds=\(filesBefore)→\(filesAfter)")
        #expect(filesAfter <= filesBefore + 2, "no descriptor leaked per failed batch: \(filesBefore) → \(filesAfter)")
        #expect(stack.worker.log.contains("No space left on device") || stack.worker.log.contains("ENOSPC"), "the cause is logged")
        #expect(tally.lost == 0 && tally.duplicated == 0 && tally.mismatched == 0 && tally.outOfOrder == 0 && tally.unknown == 0, "\(tally)")
        #expect(tally.accepted == tally.stored, "\(tally)")
    }

    @Test(
        "corpus file made read-only (chattr +i) under a running worker: that partition backs off without dead-lettering, the other keeps going, it resumes when permissions return; nothing lost",
        .enabled(if: Faults.canSetImmutable, "chattr +i needs root with CAP_LINUX_IMMUTABLE (and root ignores chmod)")
    )
    func readOnlyCorpus() async throws {
        let redis = try await OwnRedis()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let stack = try await Stack(redis: redis, storage: storage)
        var answers = try await Self.warmUp(stack, redis: redis)

        // The segment being written: the newest segment file of the partition.
        let partitionDirectory = try PartitionKey(validating: Self.partitions[0]).directory(storageRoot: storage)
        let newest = try #require(try FileManager.default.contentsOfDirectory(atPath: partitionDirectory)
            .filter { $0.hasPrefix("segment-") && $0.hasSuffix(".h5") }.max())
        let corpus = partitionDirectory + "/" + newest
        let filesBefore = Faults.openFiles(stack.worker.pid)
        try #require(Faults.setImmutable(corpus, true), "chattr +i \(corpus)")
        var immutable = true
        defer { if immutable { Faults.setImmutable(corpus, false) } }
        let failuresBefore = Self.occurrences("partition batch failed", in: stack.worker.log)
        let load = Load(base: stack.base, sites: Self.sites, lanes: 8)
        let clients = Task { await load.run(maxDuration: .seconds(40)) }
        try await eventually("the worker hits the read-only file", timeout: .seconds(20)) {
            Self.occurrences("partition batch failed", in: stack.worker.log) > failuresBefore
        }
        try await eventually("1,000 events posted", timeout: .seconds(30)) { load.count >= 1000 }
        load.stop()
        answers += await clients.value
        try await Task.sleep(for: .seconds(2))
        #expect(stack.worker.isRunning)
        let queue = try await RedisEventQueue.connect(url: redis.url, logger: E2E.logger)
        let blocked = try await queue.length(of: "fi:events:\(Self.partitions[0])")
        let other = try await queue.length(of: "fi:events:\(Self.partitions[1])")
        await queue.close()
        #expect(blocked > 0, "the read-only partition keeps its entries queued")
        #expect(other == 0, "the other partition is not held up")
        #expect(try await Faults.deadLetters(Self.partitions, url: redis.url) == 0, "no good event dead-lettered")
        let failures = Self.occurrences("partition batch failed", in: stack.worker.log) - failuresBefore

        try #require(Faults.setImmutable(corpus, false))
        immutable = false
        let restoredAt = ContinuousClock.now
        try await Faults.drained(Self.partitions, url: redis.url, worker: stack.worker)
        let recovery = ContinuousClock.now - restoredAt
        let filesAfter = Faults.openFiles(stack.worker.pid)
        print("FAULT read-only-corpus first error: \(Faults.firstLine(containing: "partition batch failed", in: stack.worker.log))")
        await stack.stop()
        let tally = Tally(answers: answers, rows: try await Faults.rows(Self.partitions, storage: storage))
        tally.report("read-only-corpus", "queued_while_read_only=\(blocked) failed_batches_logged=\(failures) drained_after_restore_in=\(recovery) worker_fds=\(filesBefore)→\(filesAfter)")
        #expect(filesAfter <= filesBefore + 2, "no descriptor leaked per failed batch: \(filesBefore) → \(filesAfter)")
        #expect(stack.worker.log.contains("Operation not permitted"), "the cause is logged")
        #expect(tally.lost == 0 && tally.duplicated == 0 && tally.mismatched == 0 && tally.outOfOrder == 0 && tally.unknown == 0, "\(tally)")
        #expect(tally.accepted == tally.stored, "\(tally)")
    }

    static func occurrences(_ needle: String, in text: String) -> Int {
        text.components(separatedBy: needle).count - 1
    }

    // MARK: - Clock jumps

    @Test("wall-clock steps (−2 h, +3 days, −30 days, back) in fi-server, fi-worker and Redis: rows stay in stream order, each once")
    func clockJumps() async throws {
        let dir = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let offsetFile = dir + "/offset-ms"
        try "0".write(toFile: offsetFile, atomically: true, encoding: .utf8)
        let environment = FakeClock.environment(library: try await FakeClock.build(in: dir), offsetFile: offsetFile)
        let redis = try await OwnRedis(environment: environment)
        let storage = dir + "/storage"
        let stack = try await Stack(redis: redis, storage: storage, environment: environment, logs: dir)

        let offsets: [(String, Int64)] = [("+0", 0), ("-2h", -7_200), ("+3d", 259_200), ("-30d", -2_592_000), ("+0", 0)]
        let queue = try await RedisEventQueue.connect(url: redis.url, logger: E2E.logger)
        var probes: [StreamEntryID] = []
        var answers: [Answer] = []
        var phaseOf: [String: Int] = [:]  // Load.run → phase
        for (phase, (_, seconds)) in offsets.enumerated() {
            try String(seconds * 1000).write(toFile: offsetFile, atomically: true, encoding: .utf8)
            // Redis' own clock, from a throwaway entry: it moved too.
            let probe = try await queue.append(to: "fi:probe", fields: [StreamField("p", "1")])
            probes.append(probe)
            let load = Load(base: stack.base, sites: Self.sites, lanes: 4)
            phaseOf[load.run] = phase
            let clients = Task { await load.run(perLane: 50, maxDuration: .seconds(20)) }
            answers += await clients.value
        }
        try await Faults.drained(Self.partitions, url: redis.url, timeout: .seconds(60), worker: stack.worker)
        await stack.stop()
        let rows = try await Faults.rows(Self.partitions, storage: storage)
        let tally = Tally(answers: answers, rows: rows)

        // Each partition's rows are exactly its accepted stream ids, in stream-id order.
        for partition in Self.partitions {
            let accepted = answers.filter { $0.status == 202 && $0.partition == partition }.compactMap { $0.messageID.flatMap(StreamEntryID.init) }.sorted()
            #expect(rows[partition, default: []].map(\.streamID) == accepted, "\(partition): rows follow stream ids")
        }
        // The jumps really happened: fi-server's received_at_ms moved with them.
        var received: [Int: [Int64]] = [:]
        for row in rows.values.joined() {
            guard let phase = phaseOf[String(Tally.eventID(of: row).prefix(8))] else { continue }
            received[phase, default: []].append(row.receivedAtMs)
        }
        let base = received[0]?.max() ?? 0
        var shifts: [String] = []
        for (phase, (offset, seconds)) in offsets.enumerated() where phase > 0 {
            let values = (received[phase] ?? [0]).sorted()
            let shift = Double(values[values.count / 2] - base) / 1000
            shifts.append("\(offset):\(Int(shift))s")
            #expect(abs(shift - Double(seconds)) < 120, "fi-server's clock moved by \(offset): received_at_ms shifted \(Int(shift)) s")
        }
        await queue.close()
        // XADD ids follow Redis' clock forward, and never go back with it.
        #expect(probes[2].ms - probes[0].ms > 259_000_000, "Redis' clock stepped +3 days: \(probes)")
        #expect(probes[2] < probes[3] && probes[3].ms - probes[2].ms < 60_000, "after −30 days Redis' ids keep growing from the last one: \(probes)")
        tally.report("clock-jumps", "received_at_ms_shift_by_phase=\(shifts.joined(separator: ",")) redis_probe_ids=\(probes.map(\.description).joined(separator: ","))")
        #expect(tally.sent == 5 * 4 * 50 && tally.accepted == tally.sent, "\(tally)")
        #expect(tally.lost == 0 && tally.duplicated == 0 && tally.mismatched == 0 && tally.outOfOrder == 0 && tally.unknown == 0, "\(tally)")
    }

    // MARK: - Backpressure

    @Test("a stalled worker (a disk that stops answering: SIGSTOP) turns into 429s with Retry-After at --max-backlog, not fi-server memory growth; after SIGCONT, 202s again and nothing lost")
    func stalledStorageBackpressure() async throws {
        let redis = try await OwnRedis()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let maxBacklog = 200
        let stack = try await Stack(redis: redis, storage: storage, serverArguments: ["--max-backlog", "\(maxBacklog)"])
        let load = Load(base: stack.base, sites: Self.sites, lanes: 16)
        let clients = Task { await load.run(maxDuration: .seconds(50)) }
        try await eventually("500 answers", timeout: .seconds(20)) { load.count >= 500 }
        let baseline = Faults.rss(stack.server.pid)

        kill(stack.worker.pid, SIGSTOP)
        var resumed = false
        defer { if !resumed { kill(stack.worker.pid, SIGCONT) } }
        let stalledAt = ContinuousClock.now
        let answeredAtStall = load.count
        var peak = baseline
        var longest = 0
        let queue = try await RedisEventQueue.connect(url: redis.url, logger: E2E.logger)
        // Stall for 8 s, sampling fi-server's RSS and the streams' length.
        while ContinuousClock.now < stalledAt + .seconds(8) {
            try await Task.sleep(for: .milliseconds(250))
            peak = max(peak, Faults.rss(stack.server.pid))
            var backlog = 0
            for partition in Self.partitions { backlog = max(backlog, try await queue.length(of: "fi:events:\(partition)")) }
            longest = max(longest, backlog)
        }
        let answeredDuringStall = load.count - answeredAtStall
        let tooManyDuringStall = load.tooManyCount
        kill(stack.worker.pid, SIGCONT)
        resumed = true
        let resumedAt = ContinuousClock.now
        let acceptedAtResume = load.acceptedCount
        try await eventually("202s again after the worker resumes", timeout: .seconds(30)) { load.acceptedCount >= acceptedAtResume + 300 }
        let recovery = ContinuousClock.now - resumedAt
        load.stop()
        let answers = await clients.value
        await queue.close()

        try await Faults.drained(Self.partitions, url: redis.url, worker: stack.worker)
        await stack.stop()
        let tally = Tally(answers: answers, rows: try await Faults.rows(Self.partitions, storage: storage))
        let tooMany = answers.filter { $0.status == 429 }
        tally.report(
            "stalled-storage",
            "answered_during_8s_stall=\(answeredDuringStall) max_backlog=\(maxBacklog) longest_stream=\(longest) "
                + "server_rss_before=\(baseline / 1_048_576)MiB server_rss_peak=\(peak / 1_048_576)MiB 202_again_after=\(recovery)")
        #expect(tooManyDuringStall > 0 && tooMany.count > 0, "backpressure reached the clients: \(tally)")
        #expect(tooMany.allSatisfy { $0.retryAfter }, "every 429 carries Retry-After")
        #expect(answeredDuringStall >= 100, "the server kept answering while storage stalled")
        #expect(longest <= maxBacklog + 2_000, "the queue stops growing near --max-backlog (longest stream \(longest))")
        #expect(peak - baseline < 32 * 1_048_576, "fi-server's memory stays flat: \(baseline / 1024) KiB → \(peak / 1024) KiB")
        #expect(tally.lost == 0 && tally.duplicated == 0 && tally.mismatched == 0 && tally.outOfOrder == 0 && tally.unknown == 0, "\(tally)")
        #expect(tally.accepted == tally.stored, "\(tally)")
    }
}
