import FITestSupport
import Foundation
import Testing

@testable import FIQueue

/// `RedisEventQueue.Options.minReplicas`: writes that must survive a failover wait for replicas
/// (`WAIT`), one `WAIT` per connection and event-loop tick. Against a master and a replica this
/// suite starts itself.
@Suite(
    "Replica acknowledgement", .serialized,
    .disabled(if: !TestEnv.canSpawn, "redis-server / redis-cli not installed"),
    .timeLimit(.minutes(2))
)
struct ReplicaTests {
    /// A master and one replica of it, both on 127.0.0.1, the replica in sync.
    static func pair() throws -> (master: SpawnedRedis, replica: SpawnedRedis) {
        let master = try SpawnedRedis(port: try Loopback.freePortWithBusPort())
        try master.start()
        let replica = try SpawnedRedis(port: try Loopback.freePortWithBusPort(), extra: ["--replicaof", "127.0.0.1", String(master.port)])
        do {
            try replica.start()
            for _ in 0..<100 {
                if try master.cli("INFO", "replication").contains("connected_slaves:1"),
                    try replica.cli("INFO", "replication").contains("master_link_status:up")
                { return (master, replica) }
                usleep(50_000)
            }
        } catch {
            replica.cleanup()
            master.cleanup()
            throw error
        }
        replica.cleanup()
        master.cleanup()
        throw EventQueueError(.unavailable, "the replica did not come in sync within 5 s")
    }

    static func queue(_ master: SpawnedRedis, replicas: Int, timeout: Duration) async throws -> RedisEventQueue {
        var options = RedisEventQueue.Options()
        options.minReplicas = replicas
        options.replicaTimeout = timeout
        return try await RedisEventQueue.connect(url: master.url, options: options, logger: TestEnv.logger)
    }

    static let fields = [StreamField("event_json", "{}")]

    @Test("with enough replicas a write returns once the replica has it; with too few it is .notReplicated, yet applied on the master")
    func acknowledged() async throws {
        let (master, replica) = try Self.pair()
        defer {
            replica.cleanup()
            master.cleanup()
        }
        let one = try await Self.queue(master, replicas: 1, timeout: .seconds(5))
        let id = try await one.append(to: "fi:events:site_a", fields: Self.fields)
        // No wait: WAIT returned, so the replica has the entry already.
        #expect(try replica.cli("XLEN", "fi:events:site_a") == "1")
        #expect(try replica.cli("XRANGE", "fi:events:site_a", "-", "+").contains(id.description))
        let epoch = try await one.acquireLease("fi:lease:site_a", owner: "w1", ttl: .seconds(30), epochKey: fencingEpochKey(for: "fi:lease:site_a"))
        #expect(epoch == 1)
        #expect(try replica.cli("GET", "{fi:lease:site_a}:epoch") == "1")
        #expect(try replica.cli("GET", "fi:lease:site_a") == "w1")
        #expect(try await one.renewLease("fi:lease:site_a", owner: "w1", ttl: .seconds(30)))
        let once = try await one.appendOnce(to: "fi:events:site_a", fields: Self.fields, token: "t1", ledger: "{fi:events:site_a}:redriven")
        #expect(once.appended)
        #expect(try replica.cli("HGET", "{fi:events:site_a}:redriven", "t1") == once.id.description)
        await one.close()

        // Two replicas asked for, one there: each write fails after the timeout, but happened on the master.
        let two = try await Self.queue(master, replicas: 2, timeout: .milliseconds(200))
        let started = ContinuousClock.now
        await expectQueueError(.notReplicated) { try await two.append(to: "fi:events:site_a", fields: Self.fields) }
        #expect(ContinuousClock.now - started >= .milliseconds(180))
        #expect(try master.cli("XLEN", "fi:events:site_a") == "3")
        await expectQueueError(.notReplicated) {
            try await two.acquireLease("fi:lease:site_b", owner: "w1", ttl: .seconds(30), epochKey: fencingEpochKey(for: "fi:lease:site_b"))
        }
        await expectQueueError(.notReplicated) { try await two.renewLease("fi:lease:site_a", owner: "w1", ttl: .seconds(30)) }
        // Reads and acknowledgements do not wait.
        #expect(try await two.length(of: "fi:events:site_a") == 3)
        try await two.createGroup("g", on: "fi:events:site_a")
        #expect(try await two.readGroup("g", consumer: "c", from: "fi:events:site_a", count: 10).count == 3)
        await two.close()

        // Without replicas asked for, nothing waits.
        let none = try await Self.queue(master, replicas: 0, timeout: .milliseconds(200))
        _ = try await none.append(to: "fi:events:site_a", fields: Self.fields)
        await none.close()
        // One WAIT per write that asked for replicas (each awaited alone, so each in its own tick):
        // four with one replica, three with two; none without, and none for reads.
        #expect(try Self.waitCalls(master) == 7)
    }

    @Test("one WAIT covers every append written in the same event-loop tick")
    func oneWaitPerTick() async throws {
        let (master, replica) = try Self.pair()
        defer {
            replica.cleanup()
            master.cleanup()
        }
        let q = try await Self.queue(master, replicas: 1, timeout: .seconds(5))
        try master.cli("CONFIG", "RESETSTAT")
        let appends = 400
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<appends {
                group.addTask { _ = try await q.append(to: "fi:events:partition_\(i % 4)", fields: Self.fields) }
            }
            try await group.waitForAll()
        }
        await q.close()
        let waits = try Self.waitCalls(master)
        #expect(waits >= 1)
        #expect(waits < appends, "one WAIT per append: \(waits)")
        let onReplica = try (0..<4).map { Int(try replica.cli("XLEN", "fi:events:partition_\($0)")) ?? 0 }.reduce(0, +)
        #expect(onReplica == appends)
    }

    static let clusterNode = ["--cluster-enabled", "yes", "--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0"]

    @Test("a write that waits for replicas follows a MOVED: after a failover the old master, now a replica, redirects it to the new master")
    func redirectUnderWait() async throws {
        // A one-master cluster (every slot on `a`) with `b` its replica; the queue learns the slot map.
        let a = try SpawnedRedis(port: try Loopback.freePortWithBusPort(), extra: Self.clusterNode)
        let b = try SpawnedRedis(port: try Loopback.freePortWithBusPort(), extra: Self.clusterNode)
        defer {
            b.cleanup()
            a.cleanup()
        }
        try a.start()
        try b.start()
        try a.cli("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        try b.cli("CLUSTER", "MEET", "127.0.0.1", String(a.port))
        let aID = try a.cli("CLUSTER", "MYID")
        try await eventually("b knows a", timeout: .seconds(10)) { try b.cli("CLUSTER", "NODES").contains(aID) }
        try await eventually("b a replica of a", timeout: .seconds(10), interval: .milliseconds(100)) {
            try b.cli("CLUSTER", "REPLICATE", aID) == "OK"
        }
        try await eventually("b in sync with a", timeout: .seconds(20), interval: .milliseconds(100)) {
            try b.cli("INFO", "replication").contains("master_link_status:up") && a.cli("CLUSTER", "INFO").contains("cluster_state:ok")
        }
        var options = RedisEventQueue.Options()
        options.minReplicas = 1
        options.replicaTimeout = .seconds(2)
        let queue = try await RedisEventQueue.connect(clusterSeeds: [a.address], options: options, logger: TestEnv.logger)
        defer { Task { await queue.close() } }
        _ = try await queue.append(to: "fi:events:site_a", fields: Self.fields)

        // b takes over; a becomes its replica and answers writes with MOVED. The queue's map still says a.
        try b.cli("CLUSTER", "FAILOVER")
        try await eventually("a a replica of b, in sync", timeout: .seconds(20), interval: .milliseconds(100)) {
            try b.cli("ROLE").hasPrefix("master") && a.cli("ROLE").hasPrefix("slave")
                && a.cli("INFO", "replication").contains("master_link_status:up")
        }
        let id = try await queue.append(to: "fi:events:site_a", fields: Self.fields)
        #expect(try b.cli("XRANGE", "fi:events:site_a", "-", "+").contains(id.description), "stored on the new master")
        let epoch = try await queue.acquireLease("fi:lease:site_a", owner: "w1", ttl: .seconds(30), epochKey: fencingEpochKey(for: "fi:lease:site_a"))
        #expect(epoch == 1)
        #expect(try await queue.renewLease("fi:lease:site_a", owner: "w1", ttl: .seconds(30)))
    }

    /// How many WAIT commands the server has run since its statistics were reset.
    static func waitCalls(_ server: SpawnedRedis) throws -> Int {
        let stats = try server.cli("INFO", "commandstats")
        guard let line = stats.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_wait:") }),
            let calls = line.split(separator: ",").first?.split(separator: "=").last, let n = Int(calls)
        else { return 0 }
        return n
    }
}
