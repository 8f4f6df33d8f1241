import FITestSupport
import Foundation
import Testing

@testable import FIQueue

/// TLS to Redis through swift-nio-ssl, against `redis-server --tls-port` started by each test with
/// a CA and certificates the test makes (scripts/tls-certs.sh). The conformance suite also runs over
/// TLS (the `tls` backend) against the TLS Redis of scripts/services.sh.
@Suite(
    "Redis over TLS", .serialized,
    .disabled(if: !TestEnv.canSpawn || TestEnv.openssl == nil && !TestEnv.servicesRequired, "redis-server, redis-cli or openssl not installed"),
    .timeLimit(.minutes(2))
)
struct TLSTests {
    private func options(ca: String?, cert: String? = nil, key: String? = nil) -> RedisEventQueue.Options {
        var options = RedisEventQueue.Options()
        options.tls = .init(caFile: ca, certificateFile: cert, privateKeyFile: key)
        options.connectTimeout = .seconds(2)
        return options
    }

    @Test("rediss:// with the right CA: append, group read, ack, leases; the server's name is its IP address")
    func roundTrip() async throws {
        let certs = try TestCertificates()
        let server = try SpawnedRedis(port: try Loopback.freePortWithBusPort(), extra: ["--tls-auth-clients", "no"], tls: certs)
        defer { server.cleanup() }
        try server.start()
        let q = try await RedisEventQueue.connect(url: server.url, options: options(ca: certs.ca), logger: TestEnv.logger)
        let stream = "fi:events:tls"
        try await q.createGroup("g", on: stream)
        var ids: [StreamEntryID] = []
        try await withThrowingTaskGroup(of: StreamEntryID.self) { group in
            for i in 0..<200 { group.addTask { try await q.append(to: stream, fields: fields(i, payload: String(repeating: "x", count: 1_000))) } }
            for try await id in group { ids.append(id) }
        }
        let read = try await q.readGroup("g", consumer: "c", from: stream, count: 1_000)
        #expect(read.map(\.id) == ids.sorted())
        #expect(read.allSatisfy { $0[field: "event_json"]?.count == 1_000 })
        #expect(try await q.ack("g", on: stream, ids: ids) == 200)
        #expect(try await q.acquireLease("fi:lease:tls", owner: "w", ttl: .seconds(5)))
        // Plain text never reached the server: its only clients were TLS ones.
        #expect(try server.cli("INFO", "stats").contains("total_connections_received"))
        await q.close()
    }

    @Test("a wrong CA fails at connect with one clear line, .unavailable, and nothing is written")
    func wrongCA() async throws {
        let certs = try TestCertificates()
        let server = try SpawnedRedis(port: try Loopback.freePortWithBusPort(), extra: ["--tls-auth-clients", "no"], tls: certs)
        defer { server.cleanup() }
        try server.start()
        let start = ContinuousClock.now
        do {
            _ = try await RedisEventQueue.connect(url: server.url, options: options(ca: certs.otherCA), logger: TestEnv.logger)
            Issue.record("connected although the certificate is signed by another CA")
        } catch let error as EventQueueError {
            #expect(error.code == .unavailable, "\(error)")
            #expect(!error.message.contains("\n"))
            #expect(error.message.contains("TLS") && error.message.contains("127.0.0.1:\(server.port)"), "\(error.message)")
            #expect(error.message.lowercased().contains("certificate"), "\(error.message)")
        }
        #expect(elapsed(since: start) < .seconds(5))
        #expect(try server.cli("DBSIZE") == "0")
    }

    @Test("plain text to a TLS port, and TLS to a plain port, fail at connect with one clear line")
    func plainAndTLSMismatch() async throws {
        let certs = try TestCertificates()
        let tlsServer = try SpawnedRedis(port: try Loopback.freePortWithBusPort(), extra: ["--tls-auth-clients", "no"], tls: certs)
        defer { tlsServer.cleanup() }
        try tlsServer.start()
        let start = ContinuousClock.now
        do {
            _ = try await RedisEventQueue.connect(url: "redis://127.0.0.1:\(tlsServer.port)", logger: TestEnv.logger)
            Issue.record("a plain connection to a TLS port worked")
        } catch let error as EventQueueError {
            #expect(error.code == .unavailable || error.code == .timeout, "\(error)")
            #expect(!error.message.contains("\n") && error.message.contains("127.0.0.1:\(tlsServer.port)"), "\(error.message)")
        }
        #expect(elapsed(since: start) < .seconds(8))

        let plain = try SpawnedRedis(port: try Loopback.freePortWithBusPort())
        defer { plain.cleanup() }
        try plain.start()
        do {
            _ = try await RedisEventQueue.connect(url: "rediss://127.0.0.1:\(plain.port)", options: options(ca: certs.ca), logger: TestEnv.logger)
            Issue.record("TLS to a plain port worked")
        } catch let error as EventQueueError {
            #expect(error.code == .unavailable || error.code == .timeout, "\(error)")
            #expect(!error.message.contains("\n") && error.message.contains("127.0.0.1:\(plain.port)"), "\(error.message)")
        }
        #expect(try plain.cli("DBSIZE") == "0")
    }

    @Test("a server that verifies clients: refused without a client certificate, served with one")
    func clientCertificates() async throws {
        let certs = try TestCertificates()
        let server = try SpawnedRedis(port: try Loopback.freePortWithBusPort(), extra: ["--tls-auth-clients", "yes"], tls: certs)
        defer { server.cleanup() }
        try server.start()
        await expectQueueError(.unavailable, .timeout) {
            try await RedisEventQueue.connect(url: server.url, options: options(ca: certs.ca), logger: TestEnv.logger)
        }
        let q = try await RedisEventQueue.connect(
            url: server.url, options: options(ca: certs.ca, cert: certs.path("client.crt"), key: certs.path("client.key")), logger: TestEnv.logger
        )
        let id = try await q.append(to: "fi:events:mtls", fields: fields(1))
        #expect(try await q.length(of: "fi:events:mtls") == 1)
        #expect(id > .zero)
        await q.close()
    }

    @Test("bad TLS settings are rejected before connecting")
    func badSettings() async throws {
        await expectQueueError(.invalidArgument) {
            try await RedisEventQueue.connect(url: "redis://127.0.0.1:1", options: options(ca: "/nonexistent/ca.crt"), logger: TestEnv.logger)
        }
        await expectQueueError(.invalidArgument) {
            try await RedisEventQueue.connect(url: "rediss://127.0.0.1:1", options: options(ca: "/nonexistent/ca.crt"), logger: TestEnv.logger)
        }
        let certs = try TestCertificates()
        await expectQueueError(.invalidArgument) {
            try await RedisEventQueue.connect(url: "rediss://127.0.0.1:1", options: options(ca: certs.ca, cert: certs.path("client.crt")), logger: TestEnv.logger)
        }
        await expectQueueError(.invalidArgument) {
            try await RedisEventQueue.connect(url: "rediss://127.0.0.1:1", options: options(ca: certs.path("client.key")), logger: TestEnv.logger)
        }
    }

    @Test("a 3-master Redis Cluster over TLS (--tls-cluster yes): appends to many slots, redirects, listing")
    func cluster() async throws {
        let certs = try TestCertificates()
        var nodes: [SpawnedRedis] = []
        defer { for n in nodes { n.cleanup() } }
        for _ in 0..<3 {
            let n = try SpawnedRedis(port: try Loopback.freePortWithBusPort(), extra: [
                "--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--appendonly", "no",
                "--tls-cluster", "yes", "--tls-auth-clients", "no",
            ], tls: certs)
            nodes.append(n)
            try n.start()
        }
        try runCLI(certs.cliArguments + ["--cluster", "create"] + nodes.map(\.address) + ["--cluster-replicas", "0", "--cluster-yes"])
        try await eventually("the TLS cluster reaches cluster_state:ok", timeout: .seconds(20), interval: .milliseconds(100)) {
            try nodes.allSatisfy { try $0.cli("CLUSTER", "INFO").contains("cluster_state:ok") }
        }

        // Seeded with one node only: every other slot owner is found through the map and MOVED.
        let q = try await RedisEventQueue.connect(clusterSeeds: [nodes[1].address], options: options(ca: certs.ca), logger: TestEnv.logger)
        let streams = (0..<24).map { "fi:events:tls-site_\($0)" }
        for (i, s) in streams.enumerated() { _ = try await q.append(to: s, fields: fields(i)) }
        #expect(try await q.streams(withPrefix: "fi:events:tls-") == streams.sorted())
        var owners = Set<Int>()
        for (i, n) in nodes.enumerated() where Int(try n.cli("DBSIZE")) ?? 0 > 0 { owners.insert(i) }
        #expect(owners.count == 3, "the streams are spread over every master")
        try await q.ping()
        await q.close()

        // The wrong CA fails for a cluster too, with one line.
        do {
            _ = try await RedisEventQueue.connect(clusterSeeds: [nodes[0].address], options: options(ca: certs.otherCA), logger: TestEnv.logger)
            Issue.record("connected to the cluster with the wrong CA")
        } catch let error as EventQueueError {
            #expect(error.code == .unavailable && !error.message.contains("\n") && error.message.contains("TLS"), "\(error.message)")
        }
    }
}
