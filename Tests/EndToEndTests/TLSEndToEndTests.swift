import FITestSupport
import Foundation
import Testing

/// fi-server and fi-worker against a TLS-only redis-server (`--tls-port`, certificates made by the
/// test): with the right CA they serve; with a wrong CA, or plain text to the TLS port, they stop
/// at start-up with one clear line and exit 1 — no 202 is ever answered.
@Suite("TLS to Redis end to end", .serialized)
struct TLSEndToEndTests {
    static var available: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server") && FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")
    }

    /// A TLS-only redis-server on a free port.
    private func tlsRedis(_ certs: TestCertificates, directory: String) async throws -> (Child, Int) {
        let port = try Loopback.freePort()
        let redis = try Child(
            "redis-tls", "/usr/bin/redis-server",
            ["--bind", "127.0.0.1", "--port", "0", "--tls-port", "\(port)", "--tls-auth-clients", "no", "--dir", directory, "--save", "", "--appendonly", "no"]
                + certs.serverArguments,
            logDirectory: directory
        )
        try await eventually("redis-server listening on TLS port \(port)", timeout: .seconds(10)) { Loopback.canConnect(port: port) }
        return (redis, port)
    }

    @Test("fi-server with rediss:// and the right CA: 202, and fi-worker persists over TLS", .enabled(if: available))
    func serves() async throws {
        let certs = try TestCertificates()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let (redis, redisPort) = try await tlsRedis(certs, directory: storage)
        defer { redis.terminate() }
        let port = try Loopback.freePort()
        let url = "rediss://127.0.0.1:\(redisPort)"
        let server = try Child("server", try E2E.binary("fi-server"), ["--port", "\(port)", "--redis-url", url, "--redis-tls-ca", certs.ca, "--storage", storage], logDirectory: storage)
        let worker = try Child("worker", try E2E.binary("fi-worker"), ["site_tls", "--redis-url", url, "--redis-tls-ca", certs.ca, "--storage", storage], logDirectory: storage)
        let base = "http://127.0.0.1:\(port)"
        try await HTTP.waitHealthy(base, process: server)
        let reply = try await HTTP.request("POST", "\(base)/consultations/c-tls/events", body: Data(#"{"metadata":{"site_id":"tls"},"n":1}"#.utf8))
        #expect(reply.status == 202, "\(String(decoding: reply.body, as: UTF8.self))")
        try await eventually("the event is persisted through TLS", timeout: .seconds(30)) {
            let got = try await HTTP.request("GET", "\(base)/consultations/c-tls/events?site_id=tls")
            return (got.json?["events"] as? [Any])?.count == 1
        }
        server.terminate()
        worker.terminate()
        #expect(await server.waitForExit(timeout: .seconds(10)) == 0, "\(server.log.suffix(1000))")
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0, "\(worker.log.suffix(1000))")
    }

    @Test(
        "a wrong CA, or plain text to a TLS port: exit 1 at start-up with one clear line, never a 202",
        .enabled(if: available),
        arguments: ["wrong-ca", "plain-text"]
    )
    func refusesAtStartup(_ mistake: String) async throws {
        let certs = try TestCertificates()
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let (redis, redisPort) = try await tlsRedis(certs, directory: storage)
        defer { redis.terminate() }
        let redisArgs = mistake == "wrong-ca"
            ? ["--redis-url", "rediss://127.0.0.1:\(redisPort)", "--redis-tls-ca", certs.otherCA]
            : ["--redis-url", "redis://127.0.0.1:\(redisPort)"]
        for binary in ["fi-server", "fi-worker"] {
            let port = try Loopback.freePort()
            let args = binary == "fi-server" ? ["--port", "\(port)", "--storage", storage] : ["--all", "--storage", storage]
            let child = try Child(binary, try E2E.binary(binary), args + redisArgs, logDirectory: storage)
            let status = await child.waitForExit(timeout: .seconds(15))
            #expect(status == 1, "\(binary) \(mistake): exit \(status.map(String.init) ?? "none")\n\(child.log)")
            let lines = child.log.split(separator: "\n").filter { $0.hasPrefix("\(binary): error:") }
            #expect(lines.count == 1, "\(child.log)")
            let line = lines.first.map(String.init) ?? ""
            #expect(line.contains("cannot reach") && line.contains("127.0.0.1:\(redisPort)"), "\(line)")
            if mistake == "wrong-ca" { #expect(line.contains("TLS") && line.lowercased().contains("certificate"), "\(line)") }
            if binary == "fi-server" {
                #expect(!Loopback.canConnect(port: port), "fi-server never listened, so never answered 202")
            }
        }
    }

    @Test("TLS flags without a rediss:// URL are a usage error (exit 64)", .enabled(if: available))
    func usage() async throws {
        let storage = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: storage) }
        for args in [
            ["--redis-url", "redis://127.0.0.1:6379", "--redis-tls-ca", "/tmp/ca.crt"],
            ["--redis-url", "rediss://127.0.0.1:6379", "--redis-tls-cert", "/tmp/c.crt"],
        ] {
            let child = try Child("server", try E2E.binary("fi-server"), args, logDirectory: storage)
            #expect(await child.waitForExit(timeout: .seconds(10)) == 64, "\(args): \(child.log)")
            #expect(child.log.contains("--redis-tls"), "\(child.log)")
        }
    }
}
