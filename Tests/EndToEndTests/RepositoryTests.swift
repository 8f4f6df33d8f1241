import FIBuildInfo
import FITestSupport
import Foundation
import Testing

/// The repository stands alone and says one version everywhere.
@Suite("Repository")
struct RepositoryTests {
    /// The checkout this test was built from.
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // EndToEndTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    /// Runs `executable` with `arguments` in the repository; its exit status and output.
    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = root
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    @Test("no file in the tree reads, links or names a path beside the repository")
    func selfContained() throws {
        // Every file git would commit: tracked, and new files not ignored.
        let listed = try Self.run("/usr/bin/git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        try #require(listed.status == 0, "git ls-files failed: \(listed.output.prefix(300))")
        let files = listed.output.split(separator: "\0").map(String.init)
        #expect(files.count > 100, "the tree has \(files.count) files")
        let needle = Array(("." + "./" + "shared").utf8)  // spelled apart so this file does not match itself
        var offenders: [String] = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: Self.root.appendingPathComponent(file).path) else { continue }
            if data.withUnsafeBytes({ bytes in
                bytes.count >= needle.count && (0...(bytes.count - needle.count)).contains { i in
                    bytes[i] == needle[0] && zip(needle.indices, needle).allSatisfy { bytes[i + $0.0] == $0.1 }
                }
            }) {
                offenders.append(file)
            }
        }
        #expect(offenders.isEmpty, "these files point outside the repository: \(offenders)")
    }

    @Test("the version is the same in the Swift code, the Python package and the changelog")
    func oneVersion() throws {
        // pyproject.toml takes the package's version from here.
        let versionFile = try String(contentsOf: Self.root.appendingPathComponent("python/fi_corpus/_version.py"), encoding: .utf8)
        let pythonVersion = versionFile.split(separator: "\n")
            .first { $0.hasPrefix("__version__") }
            .flatMap { $0.split(separator: "\"").dropFirst().first }
            .map(String.init)
        #expect(pythonVersion == BuildInfo.version, "python/fi_corpus/_version.py says \(pythonVersion ?? "nothing")")
        let changelog = try String(contentsOf: Self.root.appendingPathComponent("CHANGELOG.md"), encoding: .utf8)
        let newestRelease = changelog.split(separator: "\n")
            .first { $0.hasPrefix("## ") && $0.dropFirst(3).first?.isNumber == true }
        #expect(newestRelease?.hasPrefix("## \(BuildInfo.version) ") == true, "CHANGELOG.md's newest release: \(newestRelease ?? "none")")
    }

    @Test("fi-server --version and fi-worker --version print the version and the commit", arguments: ["fi-server", "fi-worker"])
    func versionFlag(binary: String) throws {
        let (status, output) = try Self.run(try E2E.binary(binary), ["--version"])
        #expect(status == 0)
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == BuildInfo.versionLine)
        #expect(BuildInfo.commit != "unknown" && BuildInfo.commit.count >= 12, "commit \(BuildInfo.commit)")
    }

    @Test("the reference vectors are what the plan's Python function computes")
    func vectorsRegenerate() throws {
        let (status, output) = try Self.run("/usr/bin/env", ["python3", "Benchmarks/reference/partition_vectors.py", "--check"])
        #expect(status == 0, "\(output.prefix(500))")
    }
}
