import Foundation

/// One setting of an executable. Its long flag is also its key in a config
/// file and, as `FI_` + the flag in upper case with `-` → `_`, its
/// environment variable: `--max-backlog`, `max-backlog:`, `FI_MAX_BACKLOG`.
public struct OptionSpec: Sendable, Hashable {
    /// The value's type.
    public enum Kind: String, Sendable, Hashable {
        case string, int, double, bool
    }

    /// The long flag without its dashes, e.g. `max-backlog`.
    public let name: String
    public let kind: Kind
    /// The default, as it would be written on the command line; `nil` when unset by default.
    public let defaultValue: String?
    /// One line: what it sets.
    public let summary: String
    /// Older environment variables still read after the `FI_` one (e.g. `REDIS_URL`).
    public let legacyEnvironment: [String]
    /// Shown redacted by `config` (URLs lose their password; other values are hidden).
    public let secret: Bool

    public init(
        _ name: String,
        _ kind: Kind,
        default defaultValue: String?,
        _ summary: String,
        legacyEnvironment: [String] = [],
        secret: Bool = false
    ) {
        self.name = name
        self.kind = kind
        self.defaultValue = defaultValue
        self.summary = summary
        self.legacyEnvironment = legacyEnvironment
        self.secret = secret
    }

    /// `FI_MAX_BACKLOG` for `max-backlog`.
    public var environmentVariable: String {
        "FI_" + String(name.uppercased().map { $0 == "-" ? "_" : $0 })
    }

    /// The `--help` text: the summary, the environment variable(s), the default.
    public var help: String {
        let variables = ([environmentVariable] + legacyEnvironment).joined(separator: ", ")
        let fallback = defaultValue.map { $0.isEmpty ? "" : ", default \($0)" } ?? ""
        return "\(summary) (env \(variables)\(fallback))"
    }
}

extension OptionSpec {
    /// For a command's `--help`: every setting as `--flag  FI_FLAG  default`, one per line.
    public static func helpTable(_ specs: [OptionSpec]) -> String {
        let rows = specs.map { spec in
            ["--" + spec.name, ([spec.environmentVariable] + spec.legacyEnvironment).joined(separator: ", "), spec.defaultValue ?? "-"]
        }
        let widths = (0..<2).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row[0].padding(toLength: widths[0] + 2, withPad: " ", startingAt: 0)
                + row[1].padding(toLength: widths[1] + 2, withPad: " ", startingAt: 0) + row[2]
        }.joined(separator: "\n")
    }
}

extension OptionSpec {
    /// The settings as a Markdown table (`config --reference`): Docs/operations.md
    /// carries this output, and a test keeps the two equal.
    public static func markdownReference(_ specs: [OptionSpec]) -> String {
        var out = "| flag | environment | default | what it sets |\n| --- | --- | --- | --- |\n"
        for spec in specs {
            let variables = ([spec.environmentVariable] + spec.legacyEnvironment).map { "`\($0)`" }.joined(separator: ", ")
            let fallback = spec.defaultValue.map { "`\($0)`" } ?? "—"
            // Markdown would take <storage> for an HTML tag.
            let summary = spec.summary.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;") + (spec.secret ? " (redacted by `config`)" : "")
            out += "| `--\(spec.name)` | \(variables) | \(fallback) | \(summary) |\n"
        }
        return out
    }
}
