import Configuration
import FILocking
import Foundation
import Synchronization
import SystemPackage
import Yams

/// The settings of an executable, resolved in the order the operator expects:
/// the flag; the environment variable (`FI_…`, then any legacy name); the
/// config file given by `--config` (JSON or YAML, keys named like the long
/// flags); the default. swift-configuration's `ConfigReader` does the
/// precedence; an access reporter records which provider answered, so
/// `fi-server config` / `fi-worker config` can say where each value came from.
public struct ResolvedOptions: Sendable {
    /// Where a value came from.
    public enum Source: Sendable, Equatable, CustomStringConvertible {
        case flag
        case environment(String)
        case file(String)
        case defaultValue
        case unset

        public var description: String {
            switch self {
            case .flag: "flag"
            case .environment(let name): "env \(name)"
            case .file(let path): "file \(path)"
            case .defaultValue: "default"
            case .unset: "-"
            }
        }
    }

    /// One resolved setting.
    public struct Entry: Sendable {
        public let spec: OptionSpec
        public let value: String?
        public let source: Source

        /// The value as `config` shows it: secrets redacted.
        public var displayValue: String {
            guard let value else { return "-" }
            guard spec.secret else { return value }
            // A URL keeps all but its credentials; anything else is hidden.
            return value.contains("://") ? QueueTarget.redacted(value) : "***"
        }
    }

    /// The settings, in the order of their specs.
    public let entries: [Entry]
    private let byName: [String: Entry]

    init(entries: [Entry]) {
        self.entries = entries
        self.byName = Dictionary(uniqueKeysWithValues: entries.map { ($0.spec.name, $0) })
    }

    /// The resolved entry of a setting.
    public subscript(_ name: String) -> Entry {
        guard let entry = byName[name] else { preconditionFailure("no option named \(name)") }
        return entry
    }

    public func string(_ name: String) -> String? { self[name].value }
    public func int(_ name: String) -> Int? { self[name].value.flatMap { Int($0) } }
    public func double(_ name: String) -> Double? { self[name].value.flatMap { Double($0) } }
    public func bool(_ name: String) -> Bool { self[name].value.flatMap(Self.parseBool) ?? false }

    /// Checks a resolved value; a failure names the setting and where its value came from.
    public func check(_ name: String, _ valid: Bool, _ requirement: String) throws(OptionError) {
        if !valid { throw OptionError(entry: self[name], problem: requirement) }
    }

    /// The effective configuration as a table: setting, value (secrets redacted), source.
    public func table() -> String {
        OperatorOutput.table(header: ["setting", "value", "source"], rows: entries.map { ["--" + $0.spec.name, $0.displayValue, $0.source.description] })
    }

    static func parseBool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "true", "yes", "1": true
        case "false", "no", "0": false
        default: nil
        }
    }
}

/// A setting with a bad value: names the setting and its source. The executables exit 64 (usage).
public struct OptionError: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(entry: ResolvedOptions.Entry, problem: String) {
        let value = entry.value.map { " = \(entry.spec.secret ? entry.displayValue : $0.debugDescription)" } ?? ""
        description = "--\(entry.spec.name) (from \(entry.source))\(value): \(problem)"
    }

    public init(_ description: String) {
        self.description = description
    }
}

extension ResolvedOptions {
    /// Resolves `specs` from flags, environment, config file and defaults.
    ///
    /// - Parameters:
    ///   - specs: The executable's settings.
    ///   - flags: The flags given on the command line, by name, as typed.
    ///   - environment: The process environment.
    ///   - configFile: The `--config` file (JSON, or YAML for `.yaml`/`.yml`), if any.
    ///   - computedDefaults: Defaults known only at run time (the host name), by setting name;
    ///     they replace the spec's descriptive default.
    /// - Throws: ``OptionError`` for an unreadable config file, a key in it that is no
    ///   setting, or a value of the wrong type — naming the setting and its source.
    public static func resolve(
        _ specs: [OptionSpec],
        flags: [String: String],
        environment: [String: String],
        configFile: String?,
        computedDefaults: [String: String] = [:]
    ) async throws(OptionError) -> ResolvedOptions {
        var providers: [any ConfigProvider] = []
        var sources: [(OptionSpec) -> Source] = []

        // 1. Flags, typed as the setting is.
        var flagValues: [AbsoluteConfigKey: ConfigValue] = [:]
        for spec in specs {
            guard let text = flags[spec.name] else { continue }
            guard let content = content(text, as: spec.kind) else {
                throw OptionError("--\(spec.name) (from flag) = \(text.debugDescription): not a valid \(spec.kind.rawValue)")
            }
            flagValues[AbsoluteConfigKey([spec.name])] = ConfigValue(content, isSecret: spec.secret)
        }
        providers.append(InMemoryProvider(name: "flag", values: flagValues))
        sources.append { _ in .flag }

        // 2. FI_<FLAG>: the key `max-backlog` read as `fi.max-backlog` is FI_MAX_BACKLOG.
        let fiVariables = environment.filter { $0.key.hasPrefix("FI_") }
        providers.append(EnvironmentVariablesProvider(environmentVariables: fiVariables).prefixKeys(with: ["fi"]))
        sources.append { .environment($0.environmentVariable) }

        // 3. Legacy names (REDIS_URL), each only for its own setting.
        for spec in specs where !spec.legacyEnvironment.isEmpty {
            for variable in spec.legacyEnvironment {
                guard let value = environment[variable] else { continue }
                providers.append(InMemoryProvider(
                    name: variable,
                    values: [AbsoluteConfigKey([spec.name]): ConfigValue(.string(value), isSecret: spec.secret)]))
                sources.append { _ in .environment(variable) }
            }
        }

        // 4. The config file.
        if let configFile {
            let known = Set(specs.map(\.name))
            try checkKeys(of: configFile, known: known)
            do {
                let path = FilePath(configFile)
                if configFile.hasSuffix(".yaml") || configFile.hasSuffix(".yml") {
                    providers.append(try await FileProvider<YAMLSnapshot>(filePath: path))
                } else {
                    providers.append(try await FileProvider<JSONSnapshot>(filePath: path))
                }
            } catch {
                throw OptionError("--config \(configFile): \(oneLine(error))")
            }
            sources.append { _ in .file(configFile) }
        }

        // 5. Defaults.
        var defaults: [AbsoluteConfigKey: ConfigValue] = [:]
        for spec in specs {
            guard let text = computedDefaults[spec.name] ?? spec.defaultValue, let content = content(text, as: spec.kind) else { continue }
            defaults[AbsoluteConfigKey([spec.name])] = ConfigValue(content, isSecret: spec.secret)
        }
        providers.append(InMemoryProvider(name: "default", values: defaults))
        sources.append { _ in .defaultValue }

        let reporter = LastAccess()
        let reader = ConfigReader(providers: providers, accessReporter: reporter)
        var entries: [Entry] = []
        for spec in specs {
            let key = ConfigKey([spec.name])
            let value: String?
            switch spec.kind {
            case .string: value = reader.string(forKey: key, isSecret: spec.secret)
            case .int: value = reader.int(forKey: key, isSecret: spec.secret).map(String.init)
            case .double: value = reader.double(forKey: key, isSecret: spec.secret).map { $0 == $0.rounded() && abs($0) < 1e15 ? String(Int($0)) : String($0) }
            case .bool: value = reader.bool(forKey: key, isSecret: spec.secret).map(String.init)
            }
            guard let event = reporter.take() else {
                entries.append(Entry(spec: spec, value: value, source: value == nil ? .unset : .defaultValue))
                continue
            }
            // The first provider that answered, with a value or an error, is the source.
            var source = Source.unset
            for (index, result) in event.providerResults.enumerated() {
                switch result.result {
                case .success(let lookup) where lookup.value == nil:
                    continue
                case .success:
                    source = sources[index](spec)
                case .failure(let error):
                    let from = sources[index](spec)
                    throw OptionError("--\(spec.name) (from \(from)): not a valid \(spec.kind.rawValue): \(oneLine(error))")
                }
                break
            }
            if event.conversionError != nil || (value == nil && source != .unset) {
                throw OptionError("--\(spec.name) (from \(source)): not a valid \(spec.kind.rawValue)")
            }
            entries.append(Entry(spec: spec, value: value, source: value == nil ? .unset : source))
        }
        return ResolvedOptions(entries: entries)
    }

    /// A typed value from command-line text, or `nil` if it does not parse.
    static func content(_ text: String, as kind: OptionSpec.Kind) -> ConfigContent? {
        switch kind {
        case .string: .string(text)
        case .int: Int(text).map(ConfigContent.int)
        case .double: Double(text).map(ConfigContent.double)
        case .bool: parseBool(text).map(ConfigContent.bool)
        }
    }

    /// Every top-level key of the config file must be a setting: a typo is an error, not a silent default.
    private static func checkKeys(of path: String, known: Set<String>) throws(OptionError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw OptionError("--config \(path): cannot read it: \(oneLine(error))")
        }
        let parsed: Any?
        do {
            parsed = try Yams.load(yaml: text)  // YAML is a superset of JSON
        } catch {
            throw OptionError("--config \(path): not valid JSON or YAML: \(oneLine(error))")
        }
        guard let map = parsed as? [String: Any] else {
            if parsed == nil { return }
            throw OptionError("--config \(path): expected a mapping of settings (keys named like the long flags)")
        }
        let unknown = map.keys.filter { !known.contains($0) }.sorted()
        if !unknown.isEmpty {
            throw OptionError("--config \(path): unknown setting\(unknown.count > 1 ? "s" : "") \(unknown.joined(separator: ", "))")
        }
    }

    static func oneLine(_ error: any Error) -> String {
        "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}

/// Keeps the last access event, so the resolver can see which provider answered.
private final class LastAccess: AccessReporter, Sendable {
    private let last = Locked<AccessEvent?>(nil)
    func report(_ event: AccessEvent) { last.withLock { $0 = event } }
    func take() -> AccessEvent? { last.withLock { event in defer { event = nil }; return event } }
}
