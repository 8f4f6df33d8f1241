import FILocking
import FITestSupport
import Foundation
import Synchronization
import Testing

@testable import FIQueue

/// Sends one command on a fresh connection (test administration: CLUSTER SETSLOT, MIGRATE, …).
func raw(_ address: String, _ args: String...) async throws -> RESPValue {
    let (host, port) = try RedisEndpoint.hostPort(address, defaultPort: 6379)
    let settings = ConnectionSettings(
        connectTimeout: .seconds(2), commandTimeout: .seconds(10), minBackoff: .milliseconds(10), maxBackoff: .milliseconds(100)
    )
    let c = RedisConnection(endpoint: RedisEndpoint(host: host, port: port), settings: settings, logger: TestEnv.logger)
    defer { c.close() }
    let reply = try await c.send(args.map { Array($0.utf8) }, sideEffects: false)
    if case .error(let text) = reply { throw EventQueueError(.server, "\(args.joined(separator: " ")) on \(address): \(text)") }
    return reply
}

/// Collects what concurrent appenders got back.
final class AppendLog: Sendable {
    private let state = Locked<(ids: [StreamEntryID], errors: [EventQueueError])>(([], []))
    let stop = Atomic<Bool>(false)

    func record(_ id: StreamEntryID) { state.withLock { $0.ids.append(id) } }
    func record(_ error: EventQueueError) { state.withLock { $0.errors.append(error) } }
    var ids: [StreamEntryID] { state.withLock { $0.ids } }
    var errors: [EventQueueError] { state.withLock { $0.errors } }

    /// Appends from `tasks` tasks until `stop` is set (at most `limit` appends each).
    func run(_ q: any EventQueue, stream: String, tasks: Int, limit: Int, pause: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            for t in 0..<tasks {
                group.addTask {
                    for i in 0..<limit {
                        if self.stop.load(ordering: .relaxed) { return }
                        do {
                            self.record(try await q.append(to: stream, fields: fields(t * limit + i)))
                        } catch let error as EventQueueError {
                            self.record(error)
                            try? await Task.sleep(for: .milliseconds(10))
                        } catch {
                            return
                        }
                        if pause > .zero { try? await Task.sleep(for: pause) }
                    }
                }
            }
        }
    }
}

/// Reads every entry of `stream` through a fresh group.
func readAll(_ q: any EventQueue, _ stream: String) async throws -> [StreamEntryID] {
    let group = "check-\(UUID().uuidString.prefix(6))"
    try await q.createGroup(group, on: stream)
    var ids: [StreamEntryID] = []
    for _ in 0..<1000 {
        let batch = try await q.readGroup(group, consumer: "checker", from: stream, count: 1000)
        if batch.isEmpty { break }
        ids += batch.map(\.id)
    }
    return ids
}

@Suite("RedisEventQueue")
struct RedisBackendTests {
    @Test func urlParsing() throws {
        let plain = try RedisEndpoint(url: "redis://127.0.0.1")
        #expect(plain == RedisEndpoint(host: "127.0.0.1", port: 6379))
        let full = try RedisEndpoint(url: "redis://:s%40cret@redis.internal:6380/2")
        #expect(full == RedisEndpoint(host: "redis.internal", port: 6380, username: nil, password: "s@cret", database: 2))
        let user = try RedisEndpoint(url: "redis://app:pw@[::1]:7000/")
        #expect(user == RedisEndpoint(host: "::1", port: 7000, username: "app", password: "pw", database: 0))
        for bad in ["http://x", "redis://", "redis://host:0", "redis://host:99999", "redis://host/x", "rediss://host"] {
            #expect(throws: EventQueueError.self, "\(bad)") { try RedisEndpoint(url: bad) }
        }
    }

    @Test func clusterSlots() {
        #expect(ClusterSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(ClusterSlot.of("foo") == 12182)
        #expect(ClusterSlot.of("{user1000}.following") == ClusterSlot.of("{user1000}.followers"))
        #expect(ClusterSlot.of("{user1000}.following") == ClusterSlot.of("user1000"))
        #expect(ClusterSlot.of("foo{}{bar}") == Int(ClusterSlot.crc16(Array("foo{}{bar}".utf8))) % 16384)
        #expect(ClusterSlot.of("foo{{bar}}zap") == ClusterSlot.of("{bar"))
        #expect(ClusterSlot.of("foo{bar}{zap}") == ClusterSlot.of("bar"))
    }

    @Test func unreachableServerFailsAtOnce() async throws {
        let port = try Loopback.freePortWithBusPort()
        let start = ContinuousClock.now
        await expectQueueError(.unavailable) {
            try await RedisEventQueue.connect(url: "redis://127.0.0.1:\(port)", logger: TestEnv.logger)
        }
        await expectQueueError(.unavailable) {
            try await RedisEventQueue.connect(clusterSeeds: ["127.0.0.1:\(port)"], logger: TestEnv.logger)
        }
        #expect(elapsed(since: start) < .seconds(5))
        await expectQueueError(.invalidArgument) { try await RedisEventQueue.connect(url: "nope", logger: TestEnv.logger) }
    }

    @Test(
        "key slots agree with the cluster's CLUSTER KEYSLOT",
        .disabled(if: TestEnv.clusterSeeds == nil && !TestEnv.servicesRequired, "FI_TEST_REDIS_CLUSTER not set")
    )
    func slotsAgreeWithCluster() async throws {
        let seed = try #require(TestEnv.clusterSeeds?.first, "FI_REQUIRE_SERVICES=1 but FI_TEST_REDIS_CLUSTER is not set")
        for key in ["fi:events:site_a", "fi:events:partition_0", "{x}y", "a{b}c", "é{}", "fi:lease:partition_2"] + (0..<40).map({ "k\($0 * 7919)" }) {
            let reply = try await raw(seed, "CLUSTER", "KEYSLOT", key)
            #expect(reply.int.map(Int.init) == ClusterSlot.of(key), "\(key)")
        }
    }

    @Test(
        "Redis stopped and restarted mid-test: errors, then recovery with the same queue object",
        .disabled(if: !TestEnv.canSpawn, "redis-server / redis-cli not installed"),
        .timeLimit(.minutes(1))
    )
    func restartRecovery() async throws {
        let server = try SpawnedRedis(port: try Loopback.freePortWithBusPort(), extra: ["--appendonly", "yes", "--appendfsync", "always"])
        defer { server.cleanup() }
        try server.start()
        var options = RedisEventQueue.Options()
        options.commandTimeout = .seconds(2)
        options.reconnectBackoff = (.milliseconds(20), .milliseconds(500))
        let q = try await RedisEventQueue.connect(url: server.url, options: options, logger: TestEnv.logger)
        let stream = "fi:events:restart"
        try await q.createGroup("g", on: stream)
        let first = try await q.append(to: stream, fields: fields(0))
        #expect(try await q.readGroup("g", consumer: "c", from: stream, count: 10, block: .milliseconds(100)).map(\.id) == [first])

        // The server drops idle connections (as with `timeout`): the next append must not be lost
        // in an unknown result — the dead connection is noticed before anything is sent.
        _ = try? server.cli("CLIENT", "KILL", "TYPE", "normal")
        try await Task.sleep(for: .milliseconds(1200))
        let afterKill = try await q.append(to: stream, fields: fields(0))
        #expect(afterKill > first)

        // Appends go on while the server stops.
        let log = AppendLog()
        async let appending: Void = log.run(q, stream: stream, tasks: 4, limit: 2000, pause: .milliseconds(2))
        try await Task.sleep(for: .milliseconds(150))
        server.stop()
        await expectQueueError(.unavailable) { try await q.ping() }
        await expectQueueError(.unavailable, .unknownResult) { try await q.append(to: stream, fields: fields(1)) }
        await expectQueueError(.unavailable, .timeout) { try await q.readGroup("g", consumer: "c", from: stream, count: 10, block: .milliseconds(200)) }
        await expectQueueError(.unavailable) { try await q.length(of: stream) }
        try await Task.sleep(for: .milliseconds(200))
        log.stop.store(true, ordering: .relaxed)
        await appending
        #expect(log.ids.count > 0)
        #expect(!log.errors.isEmpty)
        for e in log.errors { #expect([.unavailable, .unknownResult].contains(e.code), "\(e)") }

        // Same port, same data directory: the AOF brings the stream back.
        try server.start()
        var recovered = false
        for _ in 0..<100 {
            if (try? await q.ping()) != nil { recovered = true; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(recovered)
        let after = try await q.append(to: stream, fields: fields(2))
        let all = Set(try await readAll(q, stream))
        #expect(all.contains(first) && all.contains(afterKill) && all.contains(after))
        // Every append answered with an id is stored.
        let missing = log.ids.filter { !all.contains($0) }
        #expect(missing.isEmpty, "answered but not stored: \(missing.prefix(5))")
        // Blocking reads recover too.
        async let woken = q.readGroup("g", consumer: "c", from: stream, count: 100_000, block: .seconds(3))
        let read = try await woken
        #expect(read.contains { $0.id == after })
        await q.close()
    }

    @Test(
        "Cluster: a live stream's slot migrates to another master while appends go on",
        .disabled(if: !TestEnv.canSpawn, "redis-server / redis-cli not installed"),
        .timeLimit(.minutes(1))
    )
    func slotMigrationUnderLoad() async throws {
        var nodes: [SpawnedRedis] = []
        defer { for n in nodes { n.cleanup() } }
        for _ in 0..<3 {
            let port = try Loopback.freePortWithBusPort()
            let n = try SpawnedRedis(port: port, extra: [
                "--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--appendonly", "no",
            ])
            nodes.append(n)
            try n.start()
        }
        try runCLI(["--cluster", "create"] + nodes.map(\.address) + ["--cluster-replicas", "0", "--cluster-yes"])
        var ok = false
        for _ in 0..<100 {
            var all = true
            for n in nodes where !(try n.cli("CLUSTER", "INFO")).contains("cluster_state:ok") { all = false }
            if all { ok = true; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        try #require(ok, "spawned cluster did not reach cluster_state:ok")

        let q = try await RedisEventQueue.connect(clusterSeeds: [nodes[0].address], logger: TestEnv.logger)
        let stream = "fi:events:migrate-\(UUID().uuidString.prefix(6))"
        let slot = ClusterSlot.of(stream)
        #expect(try await raw(nodes[0].address, "CLUSTER", "KEYSLOT", stream).int == Int64(slot))
        let first = try await q.append(to: stream, fields: fields(0))

        // Who owns the slot now, and where it goes.
        var source: SpawnedRedis?
        for n in nodes where try await raw(n.address, "CLUSTER", "COUNTKEYSINSLOT", String(slot)).int == 1 { source = n }
        let src = try #require(source)
        let dst = nodes.first { $0.port != src.port }!
        let other = nodes.first { $0.port != src.port && $0.port != dst.port }!
        let srcID = try #require(try await raw(src.address, "CLUSTER", "MYID").string)
        let dstID = try #require(try await raw(dst.address, "CLUSTER", "MYID").string)

        let log = AppendLog()
        async let appending: Void = log.run(q, stream: stream, tasks: 4, limit: 3000, pause: .milliseconds(1))
        try await Task.sleep(for: .milliseconds(200))
        _ = try await raw(dst.address, "CLUSTER", "SETSLOT", String(slot), "IMPORTING", srcID)
        _ = try await raw(src.address, "CLUSTER", "SETSLOT", String(slot), "MIGRATING", dstID)
        try await Task.sleep(for: .milliseconds(100))
        let beforeMove = log.ids.count
        for _ in 0..<20 {
            let keys = try await raw(src.address, "CLUSTER", "GETKEYSINSLOT", String(slot), "100").array ?? []
            if keys.isEmpty { break }
            for k in keys {
                _ = try await raw(src.address, "MIGRATE", "127.0.0.1", String(dst.port), k.string!, "0", "5000")
            }
        }
        try await Task.sleep(for: .milliseconds(150))  // appends now go through ASK redirects
        let duringAsk = log.ids.count
        _ = try await raw(dst.address, "CLUSTER", "SETSLOT", String(slot), "NODE", dstID)
        _ = try await raw(src.address, "CLUSTER", "SETSLOT", String(slot), "NODE", dstID)
        _ = try await raw(other.address, "CLUSTER", "SETSLOT", String(slot), "NODE", dstID)
        try await Task.sleep(for: .milliseconds(300))  // and now through MOVED and a new slot map
        log.stop.store(true, ordering: .relaxed)
        await appending

        let answered = log.ids
        #expect(log.errors.isEmpty, "\(log.errors.prefix(3))")
        #expect(duringAsk > beforeMove, "appends went on while the slot was migrating")
        #expect(answered.count > duringAsk)
        // Everything is on the new master, every answered id exactly once.
        #expect(try await raw(dst.address, "XLEN", stream).int == Int64(answered.count + 1))
        #expect(try await q.length(of: stream) == answered.count + 1)
        let stored = try await readAll(q, stream)
        #expect(stored.count == answered.count + 1)
        #expect(Set(stored) == Set(answered + [first]))
        await q.close()
    }
}
