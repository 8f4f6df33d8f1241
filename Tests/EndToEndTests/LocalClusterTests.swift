import FIPartitioning
import FIQueue
import FIStorage
import FITestSupport
import Foundation
import Testing

/// The phase-2 topology of `deploy/local-cluster.sh` — a 3-master Redis Cluster,
/// three fi-server behind HAProxy, three fi-worker `--all` — on 127.0.0.1, with
/// the built binaries, and a fi-server and a fi-worker killed with SIGKILL under load.
@Suite(
    "deploy/local-cluster.sh end to end", .serialized,
    .enabled(if: E2E.servicesRequired || (E2E.enabled && Deploy.installed("haproxy")), "needs haproxy and Redis (scripts/setup.sh)")
)
struct LocalClusterTests {
    static let events = 20_000
    static let lanes = 32

    /// The script, with this test's own ports and state directory.
    final class Topology: @unchecked Sendable {
        let directory: String
        let base: Int
        var redisPorts: [Int] { [base, base + 1, base + 2] }
        var serverPorts: [Int] { [base + 3, base + 4, base + 5] }
        var httpPort: Int { base + 6 }
        var url: String { "http://127.0.0.1:\(httpPort)" }
        var storage: String { directory + "/storage" }

        init() throws {
            directory = try E2E.temporaryDirectory()
            base = try E2E.freeClusterPorts(count: 7, clusterNodes: 3)
        }

        func run(_ command: String, timeout: Duration) async throws -> (status: Int32?, log: String) {
            let child = try Child(
                "local-cluster-\(command)", "/bin/bash", [Deploy.directory + "/local-cluster.sh", command],
                environment: [
                    "FI_LC_DIR": directory, "FI_LC_BIN": E2E.productsDirectory,
                    "FI_LC_REDIS_BASE": "\(base)", "FI_LC_SERVER_BASE": "\(base + 3)", "FI_LC_HTTP_PORT": "\(httpPort)",
                    // Take over a dead worker's partitions within ~3 s instead of the production 10 s + 30 s.
                    "FI_LC_WORKER_ARGS": "--lease-ttl-ms 1500 --claim-idle-ms 1500",
                ],
                logDirectory: directory
            )
            let status = await child.waitForExit(timeout: timeout)
            if status == nil { kill(child.pid, SIGKILL) }
            return (status, child.log)
        }

        func pid(_ name: String) throws -> Int32 {
            let text = try String(contentsOfFile: "\(directory)/pids/\(name).pid", encoding: .utf8)
            return try #require(Int32(text.split(separator: "\n").first ?? ""))
        }

        func log(_ name: String) -> String {
            (try? String(contentsOfFile: "\(directory)/logs/\(name).log", encoding: .utf8)) ?? ""
        }

        /// Whether `pid` is a live process (not gone, not a zombie nobody reaped).
        static func alive(_ pid: Int32) -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
            guard let close = stat.lastIndex(of: ")") else { return false }
            return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
        }

        func kill9(_ name: String) async throws {
            let pid = try pid(name)
            try #require(Self.alive(pid), "\(name) is not running before the kill")
            kill(pid, SIGKILL)
            try await eventually("\(name) gone after SIGKILL", timeout: .seconds(10)) { !Self.alive(pid) }
        }
    }

    /// What the clients saw.
    actor Ledger {
        var accepted: [Int: (partition: String, messageID: String)] = [:]
        /// Attempts whose event may have been queued although no 202 came back
        /// (connection lost after sending, 502/504 from HAProxy).
        var ambiguous = 0
        var retried = 0
        var failures: [String] = []

        func accept(_ n: Int, partition: String, messageID: String) { accepted[n] = (partition, messageID) }
        func retry(ambiguous isAmbiguous: Bool) {
            retried += 1
            if isAmbiguous { ambiguous += 1 }
        }
        func fail(_ text: String) { if failures.count < 20 { failures.append(text) } }
        var count: Int { accepted.count }
    }

    static func body(_ n: Int) -> (consultation: String, json: String) {
        let site = n % 5 == 0 ? #","metadata":{"site_id":"north"}"# : (n % 5 == 1 ? #","metadata":{"site_id":"south"}"# : "")
        return ("lc-\(n % 997)", #"{"n":\#(n),"event_type":"TRANSCRIPTION_SEGMENT"\#(site),"text":"segment \#(n)"}"#)
    }

    /// Posts event `n` until it is answered 202, retrying on connection errors, 502, 503, 504 and 429.
    static func post(_ n: Int, to url: String, ledger: Ledger, deadline: ContinuousClock.Instant) async {
        let (consultation, json) = body(n)
        for _ in 0..<200 where ContinuousClock.now < deadline {
            do {
                let reply = try await HTTP.request("POST", "\(url)/consultations/\(consultation)/events", body: Data(json.utf8))
                switch reply.status {
                case 202:
                    guard let partition = reply.json?["partition"] as? String, let id = reply.json?["message_id"] as? String else {
                        await ledger.fail("202 without partition/message_id: \(String(decoding: reply.body, as: UTF8.self))")
                        return
                    }
                    await ledger.accept(n, partition: partition, messageID: id)
                    return
                case 502, 504:
                    await ledger.retry(ambiguous: true)
                case 503:
                    // fi-server's 503 `queue_unavailable` may follow an XADD whose reply
                    // was lost (Docs/contract.md §3: "could not store the event (or may not have)");
                    // HAProxy's own 503 (no server up) never reached one.
                    let code = (reply.json?["error"] as? [String: Any])?["code"] as? String
                    await ledger.retry(ambiguous: code == "queue_unavailable")
                case 429:
                    await ledger.retry(ambiguous: false)
                default:
                    await ledger.fail("event \(n): \(reply.status) \(String(decoding: reply.body, as: UTF8.self))")
                    return
                }
            } catch {
                await ledger.retry(ambiguous: true)  // the request may have reached fi-server
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        await ledger.fail("event \(n): no 202 before the deadline")
    }

    @Test("20,000 events through HAProxy; kill -9 of one fi-server and one fi-worker midway; every 202 is stored exactly once")
    func killServerAndWorkerUnderLoad() async throws {
        let topology = try Topology()
        // FI_E2E_KEEP=1 keeps logs, corpora and the Redis AOFs for a post-mortem.
        defer {
            if ProcessInfo.processInfo.environment["FI_E2E_KEEP"] == "1" {
                print("local-cluster end to end: kept \(topology.directory)")
            } else {
                try? FileManager.default.removeItem(atPath: topology.directory)
            }
        }
        let started = ContinuousClock.now
        let up = try await topology.run("up", timeout: .seconds(120))
        guard up.status == 0 else {
            Issue.record("local-cluster.sh up failed (\(String(describing: up.status))):\n\(up.log.suffix(3000))")
            _ = try? await topology.run("down", timeout: .seconds(60))
            return
        }
        do {
            try await exercise(topology)
        } catch {
            Issue.record("\(error)")
        }
        let down = try await topology.run("down", timeout: .seconds(60))
        #expect(down.status == 0, "\(down.log)")
        #expect(!FileManager.default.fileExists(atPath: topology.directory + "/pids/fi-server-1.pid"), "pid files removed")
        print("local-cluster end to end: \(ContinuousClock.now - started) in all")
    }

    func exercise(_ topology: Topology) async throws {
        let seeds = topology.redisPorts.map { "127.0.0.1:\($0)" }
        let queue = try await RedisEventQueue.connect(clusterSeeds: seeds, logger: E2E.logger)
        defer { Task { await queue.close() } }
        let workerPIDs = try (1...3).map { try topology.pid("fi-worker-\($0)") }
        let serverPIDs = try (1...3).map { try topology.pid("fi-server-\($0)") }

        // Clients: 32 lanes, each posting its share of the events in order.
        let ledger = Ledger()
        let deadline = ContinuousClock.now + .seconds(150)
        let sending = ContinuousClock.now
        let clients = Task {
            await withTaskGroup(of: Void.self) { group in
                for lane in 0..<Self.lanes {
                    group.addTask {
                        for n in stride(from: lane, to: Self.events, by: Self.lanes) {
                            await Self.post(n, to: topology.url, ledger: ledger, deadline: deadline)
                        }
                    }
                }
            }
        }

        // Midway: kill fi-server-2 and a worker that holds at least one partition.
        try await eventually("half the events accepted", timeout: .seconds(120)) { await ledger.count >= Self.events / 2 }
        let owners = try await queue.leaseOwners(withPrefix: PartitionKey.leasePrefix)
        let victim = try #require((1...3).first { i in owners.values.contains { $0.hasPrefix("fi-worker-\(i):") } }, "no worker holds a lease: \(owners)")
        let victimPartitions = owners.filter { $0.value.hasPrefix("fi-worker-\(victim):") }.map(\.key)
        try await topology.kill9("fi-server-2")
        try await topology.kill9("fi-worker-\(victim)")
        let acceptedAtKill = await ledger.count

        await clients.value
        let sendTime = ContinuousClock.now - sending
        let failures = await ledger.failures
        #expect(failures.isEmpty, "\(failures)")
        let accepted = await ledger.accepted
        #expect(accepted.count == Self.events, "every event answered 202 in the end")
        #expect(accepted.count > acceptedAtKill, "HAProxy kept routing after fi-server-2 died")

        // The remaining workers take the victim's partitions over and drain every stream.
        var streams: [String] = []
        do {
            try await eventually("every stream and pending list empty", timeout: .seconds(90)) {
                streams = try await queue.streams(withPrefix: PartitionKey.streamPrefix)
                for stream in streams {
                    if try await queue.length(of: stream) != 0 { return false }
                    if try await queue.pending("fi-workers", on: stream).count != 0 { return false }
                }
                return !streams.isEmpty
            }
        } catch {
            for i in 1...3 where i != victim { Issue.record("fi-worker-\(i):\n\(topology.log("fi-worker-\(i)").suffix(3000))") }
            throw error
        }
        #expect(Set(streams) == Set(accepted.values.map { PartitionKey.streamPrefix + $0.partition }), "one stream per partition used")
        let ownersAfter = try await queue.leaseOwners(withPrefix: PartitionKey.leasePrefix)
        for key in victimPartitions {
            #expect(ownersAfter[key].map { !$0.hasPrefix("fi-worker-\(victim):") } ?? true, "\(key) still leased by the dead worker")
        }
        let tookOver = (1...3).filter { $0 != victim }.contains { topology.log("fi-worker-\($0)").contains("took over partition") }
        #expect(tookOver, "a surviving worker logged taking a partition over")
        for dead in try await queue.streams(withPrefix: PartitionKey.deadLetterPrefix) {
            #expect(try await queue.length(of: dead) == 0, "dead letters in \(dead)")
        }
        #expect(Topology.alive(serverPIDs[0]) && Topology.alive(serverPIDs[2]), "the other servers still run")
        #expect(workerPIDs.enumerated().filter { $0.offset + 1 != victim }.allSatisfy { Topology.alive($0.element) }, "the other workers still run")

        // The corpora: every 202 exactly once, in the partition it was routed to, and nowhere else.
        var rowsByPartition: [String: [CorpusRecord]] = [:]
        for directory in try FileManager.default.contentsOfDirectory(atPath: topology.storage) {
            let key = try PartitionKey(validating: directory)
            rowsByPartition[directory] = try await E2E.rows(key, storage: topology.storage)
        }
        var seen: [String: [String: Int]] = [:]       // partition → stream id → count
        var copies: [Int: [String]] = [:]             // event n → partitions of its rows
        for (partition, rows) in rowsByPartition {
            for row in rows {
                seen[partition, default: [:]][row.streamID.description, default: 0] += 1
                let object = try JSONSerialization.jsonObject(with: Data(row.payload)) as? [String: Any]
                let n = try #require(object?["n"] as? Int, "a row that no client sent: \(String(decoding: row.payload, as: UTF8.self))")
                copies[n, default: []].append(partition)
                #expect(row.payload == Array(Self.body(n).json.utf8), "payload byte for byte")
            }
        }
        var missing = 0, duplicated = 0, elsewhere = 0
        var missingDetails: [String] = []
        var rowOf: [String: (n: Int, streamID: String)] = [:]   // "partition stream id" → row
        for (partition, rows) in rowsByPartition {
            for row in rows {
                let object = try? JSONSerialization.jsonObject(with: Data(row.payload)) as? [String: Any]
                rowOf[partition + " " + row.streamID.description] = ((object?["n"] as? Int) ?? -1, row.streamID.description)
            }
        }
        for (n, reply) in accepted {
            let count = seen[reply.partition]?[reply.messageID] ?? 0
            if count == 0 {
                missing += 1
                // Stored under another id? Or is another event stored under this id?
                let storedAs = rowsByPartition[reply.partition, default: []].filter {
                    ((try? JSONSerialization.jsonObject(with: Data($0.payload)) as? [String: Any])?["n"] as? Int) == n
                }.map(\.streamID)
                if missingDetails.count < 10 {
                    missingDetails.append("event \(n): 202 said \(reply.partition) \(reply.messageID), stored as \(storedAs)")
                }
            } else if let row = rowOf[reply.partition + " " + reply.messageID], row.n != n {
                missingDetails.append("event \(n): 202 said \(reply.messageID), which holds event \(row.n)")
            }
            if count > 1 { duplicated += 1 }
            if copies[n, default: []].contains(where: { $0 != reply.partition }) { elsewhere += 1 }
        }
        #expect(missing == 0 && missingDetails.isEmpty, "\(missing) events answered 202 are not in the corpus under their message_id: \(missingDetails)")
        #expect(duplicated == 0, "\(duplicated) stream entries stored more than once")
        #expect(elsewhere == 0, "\(elsewhere) events stored in a partition they were not routed to")
        let rows = rowsByPartition.values.reduce(0) { $0 + $1.count }
        let extra = rows - accepted.count
        let ambiguous = await ledger.ambiguous
        // A retried request whose first attempt reached Redis before its
        // connection broke is a second, distinct event (HTTP gives the client no
        // way to know): at most one per ambiguous attempt.
        #expect(extra >= 0 && extra <= ambiguous, "\(rows) rows for \(accepted.count) accepted events and \(ambiguous) ambiguous attempts")
        print(
            "local-cluster end to end: \(Self.events) events in \(sendTime), retries \(await ledger.retried) (ambiguous \(ambiguous)), "
                + "rows \(rows) (\(extra) from ambiguous retries), killed fi-server-2 and fi-worker-\(victim) holding \(victimPartitions.map { $0.dropFirst(PartitionKey.leasePrefix.count) }.sorted())"
        )
    }
}
