import Foundation
import Testing

/// The deployment files under `deploy/`, checked by the real tools through
/// `deploy/check-configs.sh`: `nginx -t`, `haproxy -c`, `promtool`, a
/// redis-server started with `deploy/redis.conf`, and the compose files parsed.
@Suite("deploy/ configuration", .serialized, .enabled(if: Deploy.enabled, "needs nginx, haproxy, promtool (scripts/setup.sh)"))
struct DeployConfigTests {
    static func runCheck(_ deployDirectory: String) async throws -> (status: Int32?, output: String) {
        let logs = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: logs) }
        let child = try Child("check-configs", "/bin/bash", [Deploy.directory + "/check-configs.sh", deployDirectory], logDirectory: logs)
        let status = await child.waitForExit(timeout: .seconds(60))
        return (status, child.log)
    }

    @Test("every file passes its tool")
    func shippedFilesPass() async throws {
        let (status, output) = try await Self.runCheck(Deploy.directory)
        #expect(status == 0, "\(output)")
        for tool in ["nginx -t", "haproxy -c", "promtool check config prometheus/prometheus.yml",
                     "promtool check config prometheus/prometheus.cluster.yml", "promtool check rules",
                     "redis-server deploy/redis.conf", "compose files"] {
            #expect(output.contains("ok: \(tool)"), "\(tool) did not run:\n\(output)")
        }
    }

    @Test("a broken copy fails each check that covers the break")
    func brokenCopyFails() async throws {
        let copy = try E2E.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: copy) }
        try FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: Deploy.directory, toPath: copy)
        func edit(_ file: String, _ old: String, _ new: String) throws {
            let path = copy + "/" + file
            let text = try String(contentsOfFile: path, encoding: .utf8)
            try #require(text.contains(old), "\(file) no longer contains \(old)")
            try text.replacingOccurrences(of: old, with: new).write(toFile: path, atomically: true, encoding: .utf8)
        }
        try edit("nginx.conf", "least_conn;", "least_conn")                        // a syntax error
        try edit("haproxy.cfg", "balance roundrobin", "balance round-robin")       // an unknown algorithm
        try edit("prometheus/prometheus.cluster.yml", "scrape_interval: 5s", "scrape_interval: 5 parsecs")
        try edit("prometheus/alerts.yml", "> 0\n", "> \n")                         // an incomplete PromQL expression
        try edit("redis.conf", "maxmemory-policy noeviction", "maxmemory-policy allkeys-lru")
        try edit("docker-compose.yml", #""--maxmemory-policy", "noeviction""#, #""--maxmemory-policy", "allkeys-lru""#)
        try edit("docker-compose.cluster.yml", "--cluster-replicas 1", "--cluster-replicas 0")   // masters without replicas

        let (status, output) = try await Self.runCheck(copy)
        #expect(status == 1, "\(output)")
        for failure in ["FAIL: nginx -t", "FAIL: haproxy -c", "FAIL: promtool check config prometheus/prometheus.cluster.yml",
                        "FAIL: promtool check rules", "FAIL: redis-server deploy/redis.conf", "allkeys-lru can evict",
                        "--cluster-replicas 1 (a replica for every master)"] {
            #expect(output.contains(failure), "expected \(failure):\n\(output)")
        }
    }
}

enum Deploy {
    /// `deploy/` of this package, found from this source file.
    static var directory: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy").path
    }

    static func installed(_ tool: String) -> Bool {
        ["/usr/sbin/", "/usr/bin/"].contains { FileManager.default.isExecutableFile(atPath: $0 + tool) }
    }

    /// In CI (`FI_REQUIRE_SERVICES=1`) always: a missing tool is then a failure, not a skip.
    static var enabled: Bool {
        E2E.servicesRequired || ["nginx", "haproxy", "promtool", "redis-server"].allSatisfy(installed)
    }
}
