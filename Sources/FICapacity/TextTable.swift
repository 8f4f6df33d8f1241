import Foundation

/// A three-column text table (quantity, value, unit) in titled sections.
struct TextTable {
    private var sections: [(title: String, rows: [(String, String, String)])] = []

    mutating func section(_ title: String) { sections.append((title, [])) }

    mutating func row(_ quantity: String, _ value: String, _ unit: String = "") {
        if sections.isEmpty { section("") }
        sections[sections.count - 1].rows.append((quantity, value, unit))
    }

    func render() -> String {
        let all = sections.flatMap(\.rows)
        let w0 = max(8, all.map { $0.0.count }.max() ?? 0)
        let w1 = max(5, all.map { $0.1.count }.max() ?? 0)
        var out = ""
        for (i, s) in sections.enumerated() {
            if i > 0 { out += "\n" }
            if !s.title.isEmpty { out += s.title + "\n" }
            for r in s.rows {
                let line = "  " + r.0.padding(toLength: w0, withPad: " ", startingAt: 0)
                    + "  " + String(repeating: " ", count: max(0, w1 - r.1.count)) + r.1
                    + (r.2.isEmpty ? "" : "  " + r.2)
                out += line + "\n"
            }
        }
        return out
    }
}

enum Format {
    /// Fixed decimals with thousands separators: 5184000 → "5,184,000".
    static func number(_ x: Double, decimals: Int = 0) -> String {
        guard x.isFinite else { return x.isNaN ? "n/a" : (x > 0 ? "∞" : "-∞") }
        let text = String(format: "%.\(decimals)f", abs(x))
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        var integer = String(parts[0])
        var grouped = ""
        while integer.count > 3 {
            grouped = "," + integer.suffix(3) + grouped
            integer.removeLast(3)
        }
        grouped = integer + grouped
        let sign = x < 0 && text.contains(where: { $0 != "0" && $0 != "." }) ? "-" : ""
        return sign + grouped + (parts.count > 1 ? "." + parts[1] : "")
    }

    /// A "Notes" block, one bullet per note, or "" when there are none.
    static func notes(_ notes: [String]) -> String {
        notes.isEmpty ? "" : "\nNotes\n" + notes.map { "  - " + $0 + "\n" }.joined()
    }

    /// Seconds shown as milliseconds with 2 decimals.
    static func ms(_ seconds: Double) -> String { number(seconds * 1000, decimals: 2) }

    /// A fraction shown as a percentage: 1 decimal, 2 below 1 %.
    static func percent(_ fraction: Double) -> String {
        number(fraction * 100, decimals: abs(fraction) < 0.01 ? 2 : 1)
    }

    static func json<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return try encoder.encode(value)
    }
}
