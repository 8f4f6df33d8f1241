import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Synchronization
import Testing

/// A Redis Cluster master killed (`kill -9`) under load and failed over to its replica:
/// `deploy/local-cluster.sh` with `FI_LC_REPLICAS=1` (six nodes: 3 masters, 3 replicas) on
/// free loopback ports, one fi-server (`--redis-min-replicas N`) and two fi-worker `--all`.
/// Retrying clients post events, each with a unique `event_id`; a couple of seconds in one master
/// is killed, its replica takes over, the killed node is started again and rejoins as a replica,
/// the load goes on, and once the workers have stored everything every partition's corpus is
/// read back and tallied (Docs/reliability.md, Failover). One `failover N=…:` line per run.
/// Asserted for every N: no stream id stored twice in a partition, rows in stream order, the
/// rows' lease epochs never going down in stream order (never two writers at once); with N ≥ 1
/// also: nothing answered 202 is lost, and each 202's `message_id` is stored.
///
/// `FI_FAILOVER_RUNS` (default 1) repeats each N; `scripts/failover.sh [runs]` runs just this suite.
@Suite(
    "Redis Cluster failover under load", .serialized,
    .enabled(if: E2E.servicesRequired || (E2E.enabled && Deploy.installed("haproxy")), "needs haproxy and Redis (scripts/setup.sh)")
)
struct FailoverTests {
    static let lanes = 12
    static let nodeTimeoutMs = 1000
    /// Load before the kill, and after the killed node has rejoined.
    static let before: Duration = .seconds(3)
    static let after: Duration = .seconds(3)
    /// A client's retries of one event: at most this many attempts, this long apart, within this time.
    static let attempts = 120
    static let backoff: Duration = .milliseconds(50)
    static let perEvent: Duration = .seconds(30)

    static var runs: Int {
        max(1, min(100, Int(ProcessInfo.processInfo.environment["FI_FAILOVER_RUNS"] ?? "") ?? 1))
    }

    /// `deploy/local-cluster.sh` with six Redis nodes, one fi-server and two fi-workers.
    final class Cluster: @unchecked Sendable {
        let directory: String
        let base: Int
        let minReplicas: Int
        var redisPorts: [Int] { Array(base..<(base + 6)) }
        var serverPort: Int { base + 6 }
        var httpPort: Int { base + 7 }
        var url: String { "http://127.0.0.1:\(serverPort)" }
        var storage: String { directory + "/storage" }
        var seeds: [String] { redisPorts.map { "127.0.0.1:\($0)" } }

        init(minReplicas: Int) throws {
            self.minReplicas = minReplicas
            directory = try E2E.temporaryDirectory()
            base = try E2E.freeClusterPorts(count: 8, clusterNodes: 6)
        }

        /// `deploy/local-cluster.sh <arguments>` with this cluster's settings; nil status: it timed out (and was killed).
        func script(_ arguments: [String], timeout: Duration) async throws -> (status: Int32?, log: String) {
            let replicaFlag = " --redis-min-replicas \(minReplicas)"
            let child = try Child(
                "local-cluster-\(arguments[0])", "/bin/bash", [Deploy.directory + "/local-cluster.sh"] + arguments,
                environment: [
                    "FI_LC_DIR": directory, "FI_LC_BIN": E2E.productsDirectory,
                    "FI_LC_REPLICAS": "1", "FI_LC_NODE_TIMEOUT": "\(FailoverTests.nodeTimeoutMs)",
                    "FI_LC_SERVERS": "1", "FI_LC_WORKERS": "2",
                    "FI_LC_REDIS_BASE": "\(base)", "FI_LC_SERVER_BASE": "\(serverPort)", "FI_LC_HTTP_PORT": "\(httpPort)",
                    "FI_LC_SERVER_ARGS": "--log-level warning" + replicaFlag,
                    // Take a dead worker's partitions over within ~3 s, as LocalClusterTests.
                    "FI_LC_WORKER_ARGS": "--lease-ttl-ms 1500 --claim-idle-ms 1500" + replicaFlag,
                ],
                logDirectory: directory
            )
            let status = await child.waitForExit(timeout: timeout)
            if status == nil { kill(child.pid, SIGKILL) }  // the script itself, which this test started
            let log = child.log
            try? FileManager.default.removeItem(atPath: child.logPath)
            return (status, log)
        }

        /// Runs the script and requires exit 0.
        @discardableResult
        func must(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> String {
            let (status, log) = try await script(arguments, timeout: timeout)
            try #require(status == 0, "local-cluster.sh \(arguments.joined(separator: " ")) → \(String(describing: status)):\n\(log.suffix(3000))")
            return log
        }

        /// Each node's role, from `local-cluster.sh redis-nodes`: port → ("master" | "replica" | "down", master port, link up).
        func roles() async throws -> [Int: (role: String, master: Int?, linked: Bool)] {
            var out: [Int: (String, Int?, Bool)] = [:]
            for line in try await must(["redis-nodes"], timeout: .seconds(30)).split(separator: "\n") {
                let words = line.split(separator: " ").map(String.init)
                guard words.count >= 2, let port = Int(words[0]), redisPorts.contains(port) else { continue }
                out[port] = (words[1], words.count > 2 ? Int(words[2]) : nil, words.count > 3 && words[3] == "up")
            }
            return out
        }

        /// `redis-cli -p port args…` (bounded), its output.
        func cli(_ port: Int, _ arguments: [String]) async throws -> String {
            let child = try Child("redis-cli", "/usr/bin/redis-cli", ["-p", "\(port)"] + arguments, logDirectory: directory)
            let status = await child.waitForExit(timeout: .seconds(10))
            if status == nil { kill(child.pid, SIGKILL) }
            let log = child.log
            try? FileManager.default.removeItem(atPath: child.logPath)
            return log
        }

        func log(_ name: String) -> String {
            (try? String(contentsOfFile: "\(directory)/logs/\(name).log", encoding: .utf8)) ?? ""
        }
    }

    /// One attempt to post one event.
    struct Attempt: Sendable {
        let status: Int  // 0: no answer (connection refused or broken, timed out)
        let at: ContinuousClock.Instant
    }

    /// One event as its client saw it.
    struct Sent: Sendable {
        let eventID: String
        var attempts: [Attempt] = []
        /// From the 202: the stream entry id and partition.
        var messageID: String?
        var partition: String?
        var accepted: Bool { messageID != nil }
    }

    /// Retrying clients: `lanes` tasks, each posting its events one after the other until stopped.
    final class Clients: Sendable {
        let url: String
        let run = String(UUID().uuidString.prefix(8))
        private let stopped = Atomic<Bool>(false)
        private let accepted = Atomic<Int>(0)

        init(url: String) { self.url = url }

        func stop() { stopped.store(true, ordering: .relaxed) }
        var acceptedCount: Int { accepted.load(ordering: .relaxed) }

        /// Event `n` of `lane`: a third of each lane's events to each of two sites, the rest hashed.
        static func body(eventID: String, lane: Int, n: Int) -> (consultation: String, json: Data) {
            let site = ["fa", "fb", "fc", nil][(lane + n) % 4]
            let metadata = site.map { #","metadata":{"site_id":"\#($0)"}"# } ?? ""
            let json = #"{"event_id":"\#(eventID)","event_type":"TRANSCRIPTION_SEGMENT"\#(metadata),"payload":{"text":"failover test event \#(n) of lane \#(lane)"}}"#
            return ("fo-\(lane)", Data(json.utf8))
        }

        /// Posts until stopped or `maxDuration`; each event is retried on 503, 429 and no answer.
        func run(lanes: Int, maxDuration: Duration) async -> [Sent] {
            let deadline = ContinuousClock.now + maxDuration
            return await withTaskGroup(of: [Sent].self) { group in
                for lane in 0..<lanes {
                    group.addTask {
                        var sent: [Sent] = []
                        for n in 0..<1_000_000 {
                            if self.stopped.load(ordering: .relaxed) || ContinuousClock.now >= deadline { break }
                            sent.append(await self.post(lane: lane, n: n))
                        }
                        return sent
                    }
                }
                var all: [Sent] = []
                for await part in group { all += part }
                return all
            }
        }

        private func post(lane: Int, n: Int) async -> Sent {
            var sent = Sent(eventID: "\(run)-\(lane)-\(n)")
            let (consultation, json) = Self.body(eventID: sent.eventID, lane: lane, n: n)
            let giveUp = ContinuousClock.now + FailoverTests.perEvent
            for _ in 0..<FailoverTests.attempts where ContinuousClock.now < giveUp {
                let reply = try? await HTTP.request("POST", "\(url)/consultations/\(consultation)/events", body: json)
                sent.attempts.append(Attempt(status: reply?.status ?? 0, at: .now))
                guard let reply else {
                    try? await Task.sleep(for: FailoverTests.backoff)
                    continue
                }
                switch reply.status {
                case 202:
                    sent.messageID = reply.json?["message_id"] as? String ?? ""
                    sent.partition = reply.json?["partition"] as? String ?? ""
                    accepted.add(1, ordering: .relaxed)
                    return sent
                case 503, 429:
                    try? await Task.sleep(for: FailoverTests.backoff)
                default:
                    return sent  // counted as an unexpected answer below
                }
            }
            return sent
        }
    }

    /// What one run measured.
    struct Figures: CustomStringConvertible {
        let minReplicas: Int
        var sent = 0, accepted = 0, stored = 0, lost = 0, duplicated = 0, answers503 = 0
        /// Rows in all corpora (stored counts distinct events), and the most rows of one event.
        var rows = 0, mostCopies = 0
        var gap: Duration = .zero
        var noAnswer = 0, gaveUp = 0, unexpected = 0
        /// A 202's message_id that is not among its event's stored stream ids.
        var acceptedIDMissing = 0
        /// Stream ids stored twice in one partition; rows not in stream order; rows no client sent.
        var streamIDTwice = 0, outOfOrder = 0, unknown = 0
        /// Rows whose lease epoch is below the previous row's in the same partition (two writers at once).
        var epochDown = 0
        /// Per partition, the distinct lease epochs of its rows, in stream order ("1,3").
        var epochs: [String: [UInt64]] = [:]
        var lostIDs: [String] = []
        var notes = ""

        var description: String {
            "failover N=\(minReplicas): sent \(sent) accepted \(accepted) stored \(stored) lost \(lost) duplicated \(duplicated) "
                + "503s \(answers503) gap \(String(format: "%.1f", gap.inSeconds))s"
                + " (rows \(rows), most copies of one event \(mostCopies), no answer \(noAnswer), gave up \(gaveUp), 202 id not stored \(acceptedIDMissing), stream id twice \(streamIDTwice), "
                + "epoch down \(epochDown), epochs \(epochs.keys.sorted().map { "\($0)=\(epochs[$0]!.map(String.init).joined(separator: ","))" }.joined(separator: " "))\(notes))"
        }
    }

    @Test("kill -9 of a Redis master under load, its replica promoted, the node restarted as a replica: tally per N", arguments: [0, 1])
    func masterKilledUnderLoad(minReplicas: Int) async throws {
        for run in 1...Self.runs {
            try await once(minReplicas: minReplicas, run: run)
        }
    }

    func once(minReplicas: Int, run: Int) async throws {
        let cluster = try Cluster(minReplicas: minReplicas)
        defer {
            if ProcessInfo.processInfo.environment["FI_E2E_KEEP"] == "1" {
                print("failover: kept \(cluster.directory)")
            } else {
                try? FileManager.default.removeItem(atPath: cluster.directory)
            }
        }
        let started = ContinuousClock.now
        let up = try await cluster.script(["up"], timeout: .seconds(120))
        guard up.status == 0 else {
            Issue.record("local-cluster.sh up failed (\(String(describing: up.status))):\n\(up.log.suffix(3000))")
            _ = try? await cluster.script(["down"], timeout: .seconds(60))
            return
        }
        do {
            var figures = try await exercise(cluster)
            figures.notes += ", \(String(format: "%.0f", (ContinuousClock.now - started).inSeconds))s with start-up, run \(run)/\(Self.runs)"
            print(figures)
            check(figures)
        } catch {
            Issue.record("\(error)")
            for name in ["fi-server-1", "fi-worker-1", "fi-worker-2"] {
                Issue.record("\(name):\n\(cluster.log(name).suffix(2000))")
            }
        }
        let down = try await cluster.script(["down"], timeout: .seconds(60))
        #expect(down.status == 0, "\(down.log)")
    }

    func check(_ figures: Figures) {
        #expect(figures.sent > 0 && figures.accepted > 0, "the clients got 202s: \(figures)")
        #expect(figures.streamIDTwice == 0, "a stream id stored twice in a partition: \(figures)")
        #expect(figures.outOfOrder == 0, "rows in stream order: \(figures)")
        #expect(figures.epochDown == 0, "a row of an older lease epoch after a newer one: two writers at once: \(figures)")
        #expect(figures.unknown == 0, "rows that no client sent: \(figures)")
        #expect(figures.unexpected == 0, "answers other than 202, 429, 503: \(figures)")
        if figures.minReplicas >= 1 {
            #expect(figures.lost == 0, "N=\(figures.minReplicas): an event answered 202 was lost: \(figures) \(figures.lostIDs.prefix(10))")
            #expect(figures.acceptedIDMissing == 0, "N=\(figures.minReplicas): a 202's message_id is not stored: \(figures)")
        }
    }

    func exercise(_ cluster: Cluster) async throws -> Figures {
        let queue = try await RedisEventQueue.connect(clusterSeeds: cluster.seeds, logger: E2E.logger)
        defer { Task { await queue.close() } }

        let clients = Clients(url: cluster.url)
        let loadStarted = ContinuousClock.now
        let load = Task { await clients.run(lanes: Self.lanes, maxDuration: .seconds(90)) }
        // Whatever happens below, the clients stop.
        defer { clients.stop() }

        try await eventually("the first 202s", timeout: .seconds(30)) { clients.acceptedCount >= 50 }
        try await Task.sleep(until: loadStarted + Self.before)

        // The victim: the master holding the most event streams; its replica must take over.
        let roles = try await cluster.roles()
        let masters = roles.filter { $0.value.role == "master" }.map(\.key).sorted()
        try #require(masters.count == 3, "three masters before the kill: \(roles)")
        var streamsOn: [Int: Int] = [:]
        for port in masters {
            streamsOn[port] = try await cluster.cli(port, ["--scan", "--pattern", "fi:events:*"]).split(separator: "\n").count
        }
        let victim = try #require(masters.max { (streamsOn[$0] ?? 0, -$0) < (streamsOn[$1] ?? 0, -$1) })
        let heir = try #require(roles.first { $0.value.role == "replica" && $0.value.master == victim }?.key, "no replica of \(victim): \(roles)")
        let acceptedAtKill = clients.acceptedCount
        try await cluster.must(["kill-redis", "\(victim)"])
        let killedAt = ContinuousClock.now

        // Its replica is promoted (cluster-node-timeout, then the election), and the cluster is whole again.
        try await eventually("\(heir) promoted to master", timeout: .seconds(30), interval: .milliseconds(100)) {
            try await cluster.roles()[heir]?.role == "master"
        }
        try await cluster.must(["wait-ok", "30"])
        let promotedAt = ContinuousClock.now

        // The killed node comes back with its nodes.conf and AOF, and follows the new master.
        try await cluster.must(["start-redis", "\(victim)"])
        try await eventually("\(victim) a replica of \(heir) again, in sync", timeout: .seconds(30), interval: .milliseconds(100)) {
            let role = try await cluster.roles()[victim]
            return role?.role == "replica" && role?.master == heir && role?.linked == true
        }
        let rejoinedAt = ContinuousClock.now
        try await Task.sleep(for: Self.after)
        clients.stop()
        let sent = await load.value
        let loadTime = ContinuousClock.now - loadStarted
        #expect(clients.acceptedCount > acceptedAtKill, "202s again after the failover")

        // The workers store everything that was queued.
        try await eventually("every stream and pending list empty", timeout: .seconds(90), interval: .milliseconds(250)) {
            let streams = try await queue.streams(withPrefix: PartitionKey.streamPrefix)
            for stream in streams {
                if try await queue.length(of: stream) != 0 { return false }
                if try await queue.pending("fi-workers", on: stream).count != 0 { return false }
            }
            return !streams.isEmpty
        }
        for dead in try await queue.streams(withPrefix: PartitionKey.deadLetterPrefix) {
            #expect(try await queue.length(of: dead) == 0, "dead letters in \(dead)")
        }

        var rows: [String: [CorpusRecord]] = [:]
        for directory in try FileManager.default.contentsOfDirectory(atPath: cluster.storage) {
            rows[directory] = try await E2E.rows(try PartitionKey(validating: directory), storage: cluster.storage)
        }
        var figures = Self.tally(sent, rows: rows, minReplicas: cluster.minReplicas)
        figures.notes = ", killed \(victim), \(heir) promoted after \(String(format: "%.1f", (promotedAt - killedAt).inSeconds))s, "
            + "\(victim) a replica again after \(String(format: "%.1f", (rejoinedAt - promotedAt).inSeconds))s more, \(String(format: "%.0f", loadTime.inSeconds))s of load"
        return figures
    }

    static func tally(_ sent: [Sent], rows: [String: [CorpusRecord]], minReplicas: Int) -> Figures {
        var f = Figures(minReplicas: minReplicas)
        f.sent = sent.count
        var byID: [String: Sent] = [:]
        var accepts: [ContinuousClock.Instant] = []
        for event in sent {
            byID[event.eventID] = event
            if event.accepted { f.accepted += 1 }
            for attempt in event.attempts {
                switch attempt.status {
                case 202: accepts.append(attempt.at)
                case 503: f.answers503 += 1
                case 0: f.noAnswer += 1
                case 429: break
                default: f.unexpected += 1
                }
            }
            if !event.accepted, let last = event.attempts.last?.status, [0, 503, 429].contains(last) { f.gaveUp += 1 }
        }
        accepts.sort()
        for (a, b) in zip(accepts, accepts.dropFirst()) where b - a > f.gap { f.gap = b - a }

        var storedIDs: [String: [String]] = [:]  // event id → the stream ids it is stored under
        for (partition, partitionRows) in rows {
            var seen = Set<StreamEntryID>()
            var previous: StreamEntryID?
            var epochs: [UInt64] = []
            for row in partitionRows {
                if !seen.insert(row.streamID).inserted { f.streamIDTwice += 1 }
                if let previous, !(previous < row.streamID) { f.outOfOrder += 1 }
                previous = row.streamID
                // The writer's lease epoch: a takeover raises it, and a writer never writes under an
                // older one once a newer has written (FIStorage's fence), so in stream order it never goes down.
                if let last = epochs.last, row.epoch < last { f.epochDown += 1 }
                if epochs.last != row.epoch { epochs.append(row.epoch) }
                let eventID = Tally.eventID(of: row)
                if byID[eventID] == nil { f.unknown += 1 }
                storedIDs[eventID, default: []].append(row.streamID.description)
            }
            f.epochs[partition] = epochs
        }
        f.stored = storedIDs.count
        f.rows = storedIDs.values.reduce(0) { $0 + $1.count }
        f.mostCopies = storedIDs.values.map(\.count).max() ?? 0
        f.duplicated = storedIDs.values.filter { $0.count > 1 }.count
        for event in sent where event.accepted {
            guard let ids = storedIDs[event.eventID] else {
                f.lost += 1
                f.lostIDs.append(event.eventID)
                continue
            }
            if !ids.contains(event.messageID ?? "") { f.acceptedIDMissing += 1 }
        }
        return f
    }
}

extension Duration {
    /// As a floating-point number of seconds.
    var inSeconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
