import FIPartitioning
import FIStorage
import Foundation
import Logging
import Metrics
import Prometheus

/// What `fi-worker corpus erase|verify` do (Docs/contract.md §4), and the
/// parsing of the segment flags. The executable only parses.
public enum CorpusTool {
    /// A flag value that cannot be used.
    public struct UsageError: Error, CustomStringConvertible {
        public let description: String
    }

    // MARK: flag values

    /// A size in bytes: `1073741824`, or a number with `KiB`, `MiB`, `GiB`,
    /// `TiB` (also `K`, `M`, `G`, `T`; powers of 1024). `0` means no limit (`nil`).
    public static func parseBytes(_ text: String, flag: String) throws -> Int? {
        let units: [(String, Int)] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
                                      ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var number = Substring(trimmed), scale = 1
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            number = trimmed.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Int(number), value >= 0, value <= Int.max / scale else {
            throw UsageError(description: "\(flag) takes a size such as 1073741824, 512MiB or 1GiB (0: no limit), not '\(text)'")
        }
        return value == 0 ? nil : value * scale
    }

    /// An age: a number with `s`, `m`, `h`, `d`, `w` or `y` (365 days), e.g.
    /// `24h`, `7d`, `5y`; `0` or `off` means none (`nil`).
    public static func parseAge(_ text: String, flag: String) throws -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        if trimmed == "0" || trimmed == "off" { return nil }
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400, "y": 365 * 86_400]
        guard let unit = trimmed.last, let seconds = units[unit], let value = Int64(trimmed.dropLast()), value > 0,
              value <= Int64.max / seconds / 1000 else {
            throw UsageError(description: "\(flag) takes an age such as 90s, 30m, 24h, 7d, 2w or 5y (0 or off: none), not '\(text)'")
        }
        return .seconds(value * seconds)
    }

    /// What a valid value of a segment setting looks like, for error messages.
    static func valueHint(_ name: String) -> String {
        name == "segment-max-bytes" ? "a size such as 1073741824, 512MiB or 1GiB (0: no limit)"
            : "an age such as 90s, 30m, 24h, 7d, 2w or 5y (0 or off: none)"
    }

    // MARK: partitions

    /// The partitions under a storage root: directories named as partition keys
    /// that hold a segment (or layout 1's `corpus.h5`), sorted.
    public static func partitions(storageRoot: String) throws -> [PartitionKey] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: storageRoot)
        } catch {
            throw UsageError(description: "cannot list the storage root \(storageRoot): \(error.localizedDescription)")
        }
        return names.compactMap { name -> PartitionKey? in
            guard let key = try? PartitionKey(validating: name) else { return nil }
            let directory = key.directory(storageRoot: storageRoot)
            let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            return files.contains { $0 == "manifest.json" || $0 == PartitionKey.corpusFileName || ($0.hasPrefix("segment-") && $0.hasSuffix(".h5")) } ? key : nil
        }.sorted()
    }

    // MARK: erase

    /// Erases one consultation from the partition the contract routes it to
    /// (or from `partition`, when given), and reports what was removed.
    public static func erase(
        consultationID: String, siteID: String?, partitionCount: Int, partition: String?, storageRoot: String,
        rollWait: Duration, logger: Logger
    ) async throws -> (PartitionKey, CorpusMaintenance.ErasureReport) {
        let key: PartitionKey
        do {
            _ = try ConsultationID(validating: consultationID)
            if let partition {
                key = try PartitionKey(validating: partition)
            } else {
                key = try Partitioner(partitions: partitionCount).key(consultationID: consultationID, siteID: siteID.flatMap { $0.isEmpty ? nil : $0 })
            }
        } catch {
            throw UsageError(description: "\(error)")
        }
        guard FileManager.default.fileExists(atPath: key.directory(storageRoot: storageRoot)) else {
            throw UsageError(description: "no corpus for partition \(key) under \(storageRoot) (is --storage, --site-id or --partition-count right?)")
        }
        var options = CorpusMaintenance.ErasureOptions()
        options.rollWait = rollWait
        let report = try await CorpusMaintenance.erase(
            consultationID: consultationID, directory: key.directory(storageRoot: storageRoot), options: options, logger: logger)
        logger.notice("consultation erased", metadata: [
            "fi.partition": "\(key)", "fi.rows": "\(report.rowsRemoved)", "fi.segments": "\(report.segments.map(\.file).joined(separator: ","))",
            "fi.roll": "\(report.roll)"])
        return (key, report)
    }

    /// The lines `fi-worker corpus erase` prints.
    public static func describe(_ key: PartitionKey, _ report: CorpusMaintenance.ErasureReport) -> [String] {
        var lines = report.segments.map { "\(key)/\($0.file): \($0.rowsRemoved) rows removed, \($0.rowsLeft) left" }
        lines.append("erased \(report.rowsRemoved) rows of the consultation from \(key) (\(report.segments.count) segments; segment being written closed: \(report.roll)); audit line in \(key)/audit.log")
        return lines
    }

    // MARK: verify

    /// Verifies every closed segment of the given partitions (all when empty).
    /// Each damaged segment, and each problem of a partition as a whole, counts
    /// once in `fi_corpus_verification_failures_total{partition}`.
    public static func verify(partitions names: [String], storageRoot: String, logger: Logger) async throws -> [(PartitionKey, CorpusMaintenance.VerificationReport)] {
        let keys: [PartitionKey]
        if names.isEmpty {
            keys = try partitions(storageRoot: storageRoot)
        } else {
            keys = try names.map { name in
                do { return try PartitionKey(validating: name) } catch { throw UsageError(description: "\(error)") }
            }
        }
        var results: [(PartitionKey, CorpusMaintenance.VerificationReport)] = []
        for key in keys {
            let directory = key.directory(storageRoot: storageRoot)
            guard FileManager.default.fileExists(atPath: directory) else {
                throw UsageError(description: "no partition \(key) under \(storageRoot)")
            }
            let report = try await CorpusMaintenance.verify(directory: directory, logger: logger)
            let failures = report.damaged.count + report.problems.count
            Counter(label: "fi_corpus_verification_failures_total", dimensions: [("partition", key.rawValue)]).increment(by: failures)
            if failures > 0 {
                logger.error("corpus verification failed", metadata: ["fi.partition": "\(key)", "fi.damaged": "\(report.damaged.map(\.file))"])
            }
            results.append((key, report))
        }
        return results
    }

    /// The lines `fi-worker corpus verify` prints: one per closed segment, `ok`
    /// or `DAMAGED` with the reasons, then a summary per partition.
    public static func describe(_ results: [(PartitionKey, CorpusMaintenance.VerificationReport)]) -> [String] {
        if results.isEmpty { return ["no partitions to verify"] }
        var lines: [String] = []
        for (key, report) in results {
            for problem in report.problems { lines.append("DAMAGED \(key): \(problem)") }
            for segment in report.segments {
                lines.append(segment.ok
                    ? "ok      \(key)/\(segment.file) (\(segment.rows) rows)"
                    : "DAMAGED \(key)/\(segment.file): " + segment.problems.joined(separator: "; "))
            }
            for name in report.unchecked { lines.append("-       \(key)/\(name): not closed yet, not checked") }
            for note in report.notes { lines.append("note    \(key): \(note)") }
            lines.append("\(key): \(report.segments.count) closed segments, \(report.damaged.count) damaged")
        }
        return lines
    }

    /// `fi-worker corpus verify`: verifies, and writes the metrics to
    /// `metricsFile` (Prometheus text, atomically) when given.
    /// - Returns: the lines to print, and whether every checked segment is whole.
    public static func verifyCommand(partitions: [String], storageRoot: String, metricsFile: String?,
                                     registry: PrometheusCollectorRegistry, logger: Logger) async throws -> (lines: [String], ok: Bool) {
        let results = try await verify(partitions: partitions, storageRoot: storageRoot, logger: logger)
        if let metricsFile {
            let temporary = metricsFile + ".tmp"
            try Data(registry.emitToBuffer()).write(to: URL(fileURLWithPath: temporary))
            guard rename(temporary, metricsFile) == 0 else {
                throw UsageError(description: "cannot write \(metricsFile): \(String(cString: strerror(errno)))")
            }
        }
        return (describe(results), results.allSatisfy { $0.1.ok })
    }
}
