/// What the ingestion API needs to know about a request body: that it is one
/// valid JSON object (RFC 8259, UTF-8), and its `metadata.site_id`.
///
/// A single pass over the bytes, without building a document: the body is
/// queued byte for byte, so only validity and one field matter. Nesting is
/// limited to ``maximumDepth`` so hostile input cannot exhaust the stack.
struct EventBody {
    /// The site, if `metadata.site_id` is a non-empty string. (`null`, `""`
    /// and an absent field all mean no site.)
    var siteID: String?

    static let maximumDepth = 64

    /// Why a body was rejected, in words fit for an API client.
    struct Problem: Error, Equatable {
        enum Kind: Equatable {
            case invalidJSON
            case notAnObject
            case siteNotAString
        }
        let kind: Kind
        let message: String
    }

    static func parse(_ bytes: UnsafeRawBufferPointer) throws(Problem) -> EventBody {
        var parser = Parser(bytes: bytes)
        return try parser.document()
    }

    static func parse(_ bytes: [UInt8]) throws(Problem) -> EventBody {
        try bytes.withUnsafeBytes { raw in Result { () throws(Problem) in try parse(raw) } }.get()
    }
}

private struct Parser {
    let bytes: UnsafeRawBufferPointer
    var index = 0
    var depth = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private func fail(_ message: String) -> EventBody.Problem {
        EventBody.Problem(kind: .invalidJSON, message: "body is not valid JSON: \(message) at byte \(index)")
    }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func document() throws(EventBody.Problem) -> EventBody {
        // A UTF-8 byte-order mark is not JSON (RFC 8259 §8.1).
        skipWhitespace()
        guard let first = current else { throw fail("the body is empty") }
        guard first == UInt8(ascii: "{") else {
            // Still tell "valid JSON, wrong type" from "not JSON at all".
            try value()
            skipWhitespace()
            guard index == bytes.count else { throw fail("unexpected data after the value") }
            throw EventBody.Problem(kind: .notAnObject, message: "body must be a JSON object")
        }
        var body = EventBody()
        try object(top: true, metadata: false, into: &body)
        skipWhitespace()
        guard index == bytes.count else { throw fail("unexpected data after the object") }
        return body
    }

    /// Parses an object; at the top level it looks for `metadata`, inside
    /// `metadata` for `site_id`. Duplicate keys: the last one wins, as in most
    /// JSON parsers (and Python's json, which the reference service uses).
    private mutating func object(top: Bool, metadata: Bool, into body: inout EventBody) throws(EventBody.Problem) {
        depth += 1
        guard depth <= EventBody.maximumDepth else { throw fail("nesting deeper than \(EventBody.maximumDepth)") }
        index += 1  // {
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return
        }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try string()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            skipWhitespace()
            if top && key.isLiteral("metadata") {
                if current == UInt8(ascii: "{") {
                    body.siteID = nil
                    try object(top: false, metadata: true, into: &body)
                } else {
                    // metadata that is not an object carries no site id.
                    body.siteID = nil
                    try value()
                }
            } else if metadata && key.isLiteral("site_id") {
                switch current {
                case UInt8(ascii: "\""):
                    let site = try string()
                    body.siteID = site.text.isEmpty ? nil : site.text
                case UInt8(ascii: "n"):
                    try literal("null")
                    body.siteID = nil
                default:
                    try value()
                    throw EventBody.Problem(kind: .siteNotAString, message: "metadata.site_id must be a string")
                }
            } else {
                try value()
            }
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","):
                index += 1
            case UInt8(ascii: "}"):
                index += 1
                depth -= 1
                return
            default:
                throw fail("expected ',' or '}'")
            }
        }
    }

    private mutating func value() throws(EventBody.Problem) {
        skipWhitespace()
        guard let byte = current else { throw fail("unexpected end of input") }
        switch byte {
        case UInt8(ascii: "{"):
            var ignored = EventBody()
            try object(top: false, metadata: false, into: &ignored)
        case UInt8(ascii: "["):
            try array()
        case UInt8(ascii: "\""):
            _ = try string()
        case UInt8(ascii: "t"):
            try literal("true")
        case UInt8(ascii: "f"):
            try literal("false")
        case UInt8(ascii: "n"):
            try literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try number()
        default:
            throw fail("unexpected character")
        }
    }

    private mutating func array() throws(EventBody.Problem) {
        depth += 1
        guard depth <= EventBody.maximumDepth else { throw fail("nesting deeper than \(EventBody.maximumDepth)") }
        index += 1  // [
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return
        }
        while true {
            try value()
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","):
                index += 1
            case UInt8(ascii: "]"):
                index += 1
                depth -= 1
                return
            default:
                throw fail("expected ',' or ']'")
            }
        }
    }

    private mutating func literal(_ word: StaticString) throws(EventBody.Problem) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw fail("unexpected end of input") }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] {
            throw fail("invalid literal")
        }
        index += count
    }

    private mutating func number() throws(EventBody.Problem) {
        if current == UInt8(ascii: "-") { index += 1 }
        guard let first = current, isDigit(first) else { throw fail("invalid number") }
        index += 1
        if first != UInt8(ascii: "0") {
            while let c = current, isDigit(c) { index += 1 }
        }
        if current == UInt8(ascii: ".") {
            index += 1
            guard let c = current, isDigit(c) else { throw fail("invalid number") }
            while let c = current, isDigit(c) { index += 1 }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard let c = current, isDigit(c) else { throw fail("invalid number") }
            while let c = current, isDigit(c) { index += 1 }
        }
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    /// A parsed string: its raw span, and its decoded text when it was needed.
    struct ParsedString {
        let start: Int
        let end: Int
        let bytes: UnsafeRawBufferPointer
        let hasEscapes: Bool
        let decoded: String?

        var text: String {
            decoded ?? String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
        }

        func isLiteral(_ word: StaticString) -> Bool {
            if hasEscapes { return text == word.description }
            guard end - start == word.utf8CodeUnitCount else { return false }
            for offset in 0..<(end - start) where bytes[start + offset] != word.utf8Start[offset] { return false }
            return true
        }
    }

    /// Validates a string (escapes, control characters, UTF-8) and returns
    /// its span; escaped strings are decoded (only keys and site ids are read).
    private mutating func string() throws(EventBody.Problem) -> ParsedString {
        index += 1  // opening quote
        let start = index
        var hasEscapes = false
        while true {
            skipPlainASCII()
            guard index < bytes.count else { throw fail("unterminated string") }
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                let end = index
                index += 1
                var decoded: String?
                if hasEscapes { decoded = try unescape(start, end) }
                return ParsedString(start: start, end: end, bytes: bytes, hasEscapes: hasEscapes, decoded: decoded)
            case UInt8(ascii: "\\"):
                hasEscapes = true
                index += 1
                guard let escaped = current else { throw fail("unterminated escape") }
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                    UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 1
                case UInt8(ascii: "u"):
                    index += 1
                    _ = try hex4()
                default:
                    throw fail("invalid escape")
                }
            case 0x00..<0x20:
                throw fail("control character in string")
            case 0x20..<0x80:
                index += 1
            default:
                try utf8Sequence()
            }
        }
    }

    /// Skips 8 bytes at a time while none of them needs a look: printable
    /// ASCII other than `"` and `\\` (most of a typical payload's text).
    @inline(__always)
    private mutating func skipPlainASCII() {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        while bytes.count - index >= 8 {
            let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let quote = word ^ (ones &* 0x22)
            let backslash = word ^ (ones &* 0x5C)
            let special = (word | ((word &- ones &* 0x20) & ~word))  // high bit: ≥ 0x80, or < 0x20
                | ((quote &- ones) & ~quote)  // a `"`
                | ((backslash &- ones) & ~backslash)  // a `\`
            if special & highs != 0 { return }
            index += 8
        }
    }

    private mutating func hex4() throws(EventBody.Problem) -> UInt16 {
        guard index + 4 <= bytes.count else { throw fail("invalid \\u escape") }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
            default: throw fail("invalid \\u escape")
            }
            value = value << 4 | UInt16(digit)
            index += 1
        }
        return value
    }

    /// One multi-byte UTF-8 sequence (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF).
    private mutating func utf8Sequence() throws(EventBody.Problem) {
        let lead = bytes[index]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: throw fail("invalid UTF-8")
        }
        guard index + length <= bytes.count else { throw fail("invalid UTF-8") }
        let second = bytes[index + 1]
        guard second >= low && second <= high else { throw fail("invalid UTF-8") }
        for offset in 2..<max(2, length) {
            let c = bytes[index + offset]
            guard c >= 0x80 && c <= 0xBF else { throw fail("invalid UTF-8") }
        }
        index += length
    }

    /// Decodes an escaped string; lone surrogates are rejected as in strict parsers.
    private func unescape(_ start: Int, _ end: Int) throws(EventBody.Problem) -> String {
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        var i = start
        func flush() {
            if !raw.isEmpty {
                scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars)
                raw.removeAll()
            }
        }
        func hex(at position: Int) -> UInt32 {
            var value: UInt32 = 0
            for k in 0..<4 {
                let c = bytes[position + k]
                let digit: UInt8 =
                    c <= UInt8(ascii: "9") ? c - UInt8(ascii: "0") : (c | 0x20) - UInt8(ascii: "a") + 10
                value = value << 4 | UInt32(digit)
            }
            return value
        }
        while i < end {
            let byte = bytes[i]
            guard byte == UInt8(ascii: "\\") else {
                raw.append(byte)
                i += 1
                continue
            }
            flush()
            let escaped = bytes[i + 1]
            i += 2
            switch escaped {
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var code = hex(at: i)
                i += 4
                if (0xD800...0xDBFF).contains(code) {
                    guard i + 6 <= end, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        throw EventBody.Problem(kind: .invalidJSON, message: "body is not valid JSON: unpaired surrogate escape")
                    }
                    let low = hex(at: i + 2)
                    guard (0xDC00...0xDFFF).contains(low) else {
                        throw EventBody.Problem(kind: .invalidJSON, message: "body is not valid JSON: unpaired surrogate escape")
                    }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                } else if (0xDC00...0xDFFF).contains(code) {
                    throw EventBody.Problem(kind: .invalidJSON, message: "body is not valid JSON: unpaired surrogate escape")
                }
                scalars.append(Unicode.Scalar(code)!)
            default: scalars.append(Unicode.Scalar(escaped))
            }
        }
        flush()
        return String(scalars)
    }
}
