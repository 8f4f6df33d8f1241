import Testing

@testable import FIServerKit

/// The body validator's string scanning, at every alignment: it skips plain
/// ASCII 8 bytes at a time, so a byte that needs a look must be found
/// wherever it falls within a word.
@Suite("EventBody strings")
struct EventBodyTests {
    private func isValid(_ bytes: [UInt8]) -> Bool {
        (try? EventBody.parse(bytes)) != nil
    }

    /// `{"k":"<prefix><inserted><suffix>"}` with the inserted bytes at `offset`.
    private func body(_ inserted: [UInt8], at offset: Int, length: Int = 40) -> [UInt8] {
        var text = Array(repeating: UInt8(ascii: "a"), count: length)
        text.replaceSubrange(offset..<offset, with: inserted)
        return Array(#"{"k":""#.utf8) + text + Array(#""}"#.utf8)
    }

    @Test("a byte that needs a look is found at every offset", arguments: 0..<24)
    func everyOffset(offset: Int) {
        #expect(isValid(body([], at: offset)))
        #expect(isValid(body([0x7F], at: offset)), "DEL is allowed in JSON strings")
        #expect(isValid(body([0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7E], at: offset)))
        #expect(!isValid(body([0x00], at: offset)), "NUL")
        #expect(!isValid(body([0x1F], at: offset)), "a control character")
        #expect(!isValid(body([0x0A], at: offset)), "a raw newline")
        #expect(!isValid(body([UInt8(ascii: "\"")], at: offset)), "an unescaped quote ends the string early")
        #expect(!isValid(body(Array(#"\q"#.utf8), at: offset)), "an invalid escape")
        #expect(isValid(body(Array(#"\"\\\/\n\u00e9"#.utf8), at: offset)), "valid escapes")
        #expect(!isValid(body([0x80], at: offset)), "a lone continuation byte")
        #expect(!isValid(body([0xC3], at: offset)), "a truncated UTF-8 sequence")
        #expect(!isValid(body([0xC0, 0xAF], at: offset)), "an overlong encoding")
        #expect(!isValid(body([0xED, 0xA0, 0x80], at: offset)), "a UTF-16 surrogate")
        #expect(isValid(body(Array("é€😀".utf8), at: offset)))
    }

    @Test("an unterminated string is invalid however long it is", arguments: [0, 1, 7, 8, 9, 64, 1_000])
    func unterminated(length: Int) {
        let bytes = Array(#"{"k":""#.utf8) + Array(repeating: UInt8(ascii: "x"), count: length)
        #expect(!isValid(bytes))
    }

    @Test("numbers follow RFC 8259's grammar, not Double's range: a huge exponent is valid JSON (found by the differential fuzzer)")
    func hugeNumbers() {
        #expect(isValid(Array(#"{"a":[1,-2.5e99999999999999999999999999,1E-400,123456789012345678901234567890]}"#.utf8)))
        #expect(!isValid(Array(#"{"a":1e}"#.utf8)))
        #expect(!isValid(Array(#"{"a":-}"#.utf8)))
        #expect(!isValid(Array(#"{"a":1.e5}"#.utf8)))
    }

    @Test("metadata.site_id is read after long plain text")
    func siteAfterLongText() throws {
        let text = String(repeating: "plain text 0123456789 ", count: 50)
        let parsed = try EventBody.parse(Array(#"{"payload":{"text":"\#(text)"},"metadata":{"site_id":"site_7"}}"#.utf8))
        #expect(parsed.siteID == "site_7")
    }
}
