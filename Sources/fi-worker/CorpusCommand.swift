import ArgumentParser
import FIWorkerKit
import Foundation
import Logging

/// `fi-worker corpus erase|verify`: upkeep of the corpus segments (Docs/storage.md).
/// Only parses flags; FIWorkerKit's CorpusTool does the work.
struct CorpusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "corpus",
        abstract: "Erase one consultation from the corpus, or verify closed segments against their manifest.",
        subcommands: [CorpusEraseCommand.self, CorpusVerifyCommand.self]
    )
}

struct CorpusEraseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "erase",
        abstract: "Remove every stored event of one consultation.",
        discussion: """
            Each closed segment holding the consultation's events is rewritten without them (new file, fsync, \
            atomic rename, directory fsync) and manifest.json updated; <partition>/audit.log gets a line (time, \
            segments, rows, the consultation id's SHA-256 — never the data). Safe while a worker writes the \
            partition: it is asked (roll.request) to close the segment it writes first. An erased event is not \
            stored again when its stream entry is redelivered. Events still queued are stored afterwards: run it \
            again once they are.
            """
    )

    @Option(help: "The consultation whose events are removed.")
    var consultation: String

    @Option(help: "Its site (metadata.site_id of its events); without it, its hash partition.")
    var siteId: String?

    // Not --partitions: fi-worker's own PARTITION_KEY arguments are named so.
    @Option(help: "Hash partitions N that fi-server runs with (its --partitions).")
    var partitionCount = 3

    @Option(help: "The partition key to erase from, instead of the one the consultation and site give.")
    var partition: String?

    @Option(help: .init(WorkerOptions.storage.help)) var storage: String?
    @Option(help: "Config file, JSON or YAML (.yaml/.yml), keys named like the long flags (env FI_CONFIG)") var config: String?

    @Option(help: "Seconds to wait for a running worker to close the segment it writes.")
    var waitSeconds = 60

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "warning"

    func validate() throws {
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("--log-level must be trace, debug, info, notice, warning, error or critical") }
        if partitionCount < 1 { throw ValidationError("--partition-count must be at least 1") }
        if waitSeconds < 0 { throw ValidationError("--wait-seconds must not be negative") }
    }

    func run() async throws {
        Observability.bootstrapLogging(level: Logger.Level(rawValue: logLevel) ?? .warning)
        let logger = Logger(label: "fi-worker")
        // --storage, else FI_STORAGE, else the config file's, else ./storage (as fi-worker serve).
        let storageRoot = try await WorkerFlags.options(given: storage.map { ["storage": $0] } ?? [:], config: config).string(WorkerOptions.storage.name)!
        do {
            let (key, report) = try await CorpusTool.erase(
                consultationID: consultation, siteID: siteId, partitionCount: partitionCount, partition: partition,
                storageRoot: storageRoot, rollWait: .seconds(waitSeconds), logger: logger)
            for line in CorpusTool.describe(key, report) { print(line) }
        } catch let error as CorpusTool.UsageError {
            FileHandle.standardError.write(Data("fi-worker corpus erase: error: \(error)\n".utf8))
            throw ExitCode(64)
        } catch {
            FileHandle.standardError.write(Data("fi-worker corpus erase: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct CorpusVerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every closed segment against manifest.json: checksum, row count, id range, whole rows.",
        discussion: """
            Reads every byte of every closed segment. Prints one line per segment, 'ok' or 'DAMAGED' with the \
            reasons; exits 1 if any segment is damaged. With --metrics-file, also writes \
            fi_corpus_verification_failures_total{partition} as Prometheus text (node_exporter's textfile collector).
            """
    )

    @Argument(help: "Partitions to verify, e.g. site_a partition_2 (default: every partition under --storage).")
    var partitionKeys: [String] = []

    @Option(help: .init(WorkerOptions.storage.help)) var storage: String?
    @Option(help: "Config file, JSON or YAML (.yaml/.yml), keys named like the long flags (env FI_CONFIG)") var config: String?

    @Option(help: "Write the verification metrics, Prometheus text, to this file.")
    var metricsFile: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "warning"

    func validate() throws {
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("--log-level must be trace, debug, info, notice, warning, error or critical") }
    }

    func run() async throws {
        Observability.bootstrapLogging(level: Logger.Level(rawValue: logLevel) ?? .warning)
        let registry = Observability.bootstrapPrometheus()
        let logger = Logger(label: "fi-worker")
        let storageRoot = try await WorkerFlags.options(given: storage.map { ["storage": $0] } ?? [:], config: config).string(WorkerOptions.storage.name)!
        let outcome: (lines: [String], ok: Bool)
        do {
            outcome = try await CorpusTool.verifyCommand(
                partitions: partitionKeys, storageRoot: storageRoot, metricsFile: metricsFile, registry: registry, logger: logger)
        } catch let error as CorpusTool.UsageError {
            FileHandle.standardError.write(Data("fi-worker corpus verify: error: \(error)\n".utf8))
            throw ExitCode(64)
        } catch {
            FileHandle.standardError.write(Data("fi-worker corpus verify: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
        for line in outcome.lines { print(line) }
        if !outcome.ok { throw ExitCode(1) }
    }
}
