import Foundation

/// A throwaway CA and certificates made by `scripts/tls-certs.sh` (openssl) in a temporary
/// directory: `ca`, `server` (127.0.0.1, ::1, localhost), `client`, and an unrelated `other-ca`;
/// removed when dropped.
public final class TestCertificates: Sendable {
    public let dir: String

    public struct Failed: Error, CustomStringConvertible {
        public var description: String { "scripts/tls-certs.sh failed (is openssl installed?)" }
    }

    public init() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../scripts/tls-certs.sh").standardized.path
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fi-tls-\(UUID().uuidString.prefix(8))").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [script, dir]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw Failed() }
    }

    public func path(_ name: String) -> String { "\(dir)/\(name)" }
    /// The CA that signed `server` and `client`.
    public var ca: String { path("ca.crt") }
    /// A CA that signed neither.
    public var otherCA: String { path("other-ca.crt") }

    /// redis-server TLS options: its certificate, and the CA it checks client certificates against.
    public var serverArguments: [String] {
        ["--tls-cert-file", path("server.crt"), "--tls-key-file", path("server.key"), "--tls-ca-cert-file", ca]
    }

    /// redis-cli over TLS, with the client certificate (fine whether the server asks for one or not).
    public var cliArguments: [String] {
        ["--tls", "--cacert", ca, "--cert", path("client.crt"), "--key", path("client.key")]
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }
}
