/// One sample of Prometheus text exposition: `name{label="value",…} value [timestamp]`.
public struct PrometheusSample: Sendable, Hashable {
    /// The sample's metric name, e.g. `fi_http_request_duration_seconds_bucket`.
    public let name: String
    /// Its labels, unescaped.
    public let labels: [String: String]
    /// Its value (may be NaN or ±infinity, as the format allows).
    public let value: Double
    /// Its timestamp in milliseconds since the Unix epoch, if the line had one.
    public let timestampMilliseconds: Int64?

    /// Creates a sample.
    public init(name: String, labels: [String: String], value: Double, timestampMilliseconds: Int64? = nil) {
        self.name = name
        self.labels = labels
        self.value = value
        self.timestampMilliseconds = timestampMilliseconds
    }
}

/// A parsed Prometheus text exposition (format 0.0.4, as served by `GET /metrics`).
///
/// Reads `# TYPE` lines and sample lines; `# HELP`, other comments, blank lines and an
/// OpenMetrics `# EOF` are skipped. Label values may contain any character with the format's
/// escapes `\\`, `\"` and `\n`, including `{`, `}`, `,` and `=` (route templates do).
public struct PrometheusExposition: Sendable, Hashable {
    /// Every sample, in text order.
    public let samples: [PrometheusSample]
    /// Declared family types by family name (`counter`, `gauge`, `histogram`, `summary`, `untyped`).
    public let types: [String: String]

    /// Parses exposition text.
    /// - Parameter text: The body of a `/metrics` response.
    /// - Throws: ``CapacityError`` with code ``CapacityError/Code/malformedMetrics`` and the line number.
    public init(parsing text: String) throws(CapacityError) {
        var samples: [PrometheusSample] = []
        var types: [String: String] = [:]
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = Array(rawLine.utf8)
            var p = Parser(bytes: line, lineNumber: lineNumber)
            p.skipSpaces()
            if p.atEnd { continue }
            if p.peek == UInt8(ascii: "#") {
                p.index += 1
                p.skipSpaces()
                let word = p.word()
                if word == "TYPE" {
                    p.skipSpaces()
                    let family = p.word()
                    p.skipSpaces()
                    let kind = p.word()
                    guard !family.isEmpty, !kind.isEmpty else { throw p.error("a # TYPE line needs a metric name and a type") }
                    types[family] = kind
                }
                continue
            }
            samples.append(try p.sample())
        }
        self.samples = samples
        self.types = types
    }

    /// A sample value: a decimal float, `+Inf`, `-Inf` or `NaN`.
    static func number(_ text: String) -> Double? {
        switch text.lowercased() {
        case "+inf", "inf": return .infinity
        case "-inf": return -.infinity
        case "nan": return .nan
        case "": return nil
        default: return Double(text)
        }
    }

    /// The samples with exactly this name.
    /// - Parameter name: A sample name, e.g. `fi_events_accepted_total`.
    public func samples(named name: String) -> [PrometheusSample] {
        samples.filter { $0.name == name }
    }
}

private struct Parser {
    let bytes: [UInt8]
    let lineNumber: Int
    var index = 0

    init(bytes: [UInt8], lineNumber: Int) {
        // Tolerate CRLF line endings.
        var b = bytes
        if b.last == UInt8(ascii: "\r") { b.removeLast() }
        self.bytes = b
        self.lineNumber = lineNumber
    }

    var atEnd: Bool { index >= bytes.count }
    var peek: UInt8? { atEnd ? nil : bytes[index] }

    func error(_ why: String) -> CapacityError {
        CapacityError(code: .malformedMetrics, input: "metrics", message: "line \(lineNumber): \(why)")
    }

    mutating func skipSpaces() {
        while let c = peek, c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") { index += 1 }
    }

    /// Up to the next space or tab.
    mutating func word() -> String {
        let start = index
        while let c = peek, c != UInt8(ascii: " "), c != UInt8(ascii: "\t") { index += 1 }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    static func isNameStart(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_") || c == UInt8(ascii: ":")
    }

    static func isNameChar(_ c: UInt8) -> Bool { isNameStart(c) || (c >= 0x30 && c <= 0x39) }

    mutating func name(_ what: String) throws(CapacityError) -> String {
        let start = index
        guard let c = peek, Self.isNameStart(c) else { throw error("expected a \(what)") }
        index += 1
        while let c = peek, Self.isNameChar(c) { index += 1 }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    mutating func expect(_ ch: Character) throws(CapacityError) {
        guard peek == ch.asciiValue else { throw error("expected '\(ch)'") }
        index += 1
    }

    mutating func quoted() throws(CapacityError) -> String {
        try expect("\"")
        var out: [UInt8] = []
        while true {
            guard let c = peek else { throw error("unterminated label value") }
            index += 1
            if c == UInt8(ascii: "\"") { break }
            if c == UInt8(ascii: "\\") {
                guard let e = peek else { throw error("unterminated escape in label value") }
                index += 1
                switch e {
                case UInt8(ascii: "n"): out.append(UInt8(ascii: "\n"))
                case UInt8(ascii: "\\"), UInt8(ascii: "\""): out.append(e)
                default: out.append(UInt8(ascii: "\\")); out.append(e)
                }
            } else {
                out.append(c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    mutating func sample() throws(CapacityError) -> PrometheusSample {
        let metric = try name("metric name")
        var labels: [String: String] = [:]
        skipSpaces()
        if peek == UInt8(ascii: "{") {
            index += 1
            while true {
                skipSpaces()
                if peek == UInt8(ascii: "}") { index += 1; break }
                let label = try name("label name")
                skipSpaces()
                try expect("=")
                skipSpaces()
                let value = try quoted()
                guard labels.updateValue(value, forKey: label) == nil else { throw error("label \(label) repeated") }
                skipSpaces()
                if peek == UInt8(ascii: ",") { index += 1; continue }
                if peek == UInt8(ascii: "}") { index += 1; break }
                throw error("expected ',' or '}' in the label set")
            }
        }
        skipSpaces()
        let valueText = word()
        guard let value = PrometheusExposition.number(valueText) else { throw error("\(metric) has no valid value") }
        skipSpaces()
        var timestamp: Int64?
        if !atEnd {
            let t = word()
            guard let ms = Int64(t) else { throw error("\(metric) has an invalid timestamp") }
            timestamp = ms
            skipSpaces()
            guard atEnd else { throw error("unexpected text after the timestamp") }
        }
        return PrometheusSample(name: metric, labels: labels, value: value, timestampMilliseconds: timestamp)
    }

}
