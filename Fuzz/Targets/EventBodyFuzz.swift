import Foundation

// libFuzzer target: fi-server's request body validation (FIServerKit/EventBody.swift),
// compiled into this executable together with that file.
//
// Checks, besides "no crash, no memory error":
// - the raw-pointer and [UInt8] entry points agree;
// - an accepted body is UTF-8 and one JSON object (starts with `{`, ends with `}`);
// - an accepted body is also accepted by Foundation's JSONSerialization, as a
//   dictionary whose metadata.site_id is the site we found (differential check).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEventBody(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(start: data, count: size)
    let bytes = Array(raw)
    let viaPointer = Result { () throws(EventBody.Problem) in try EventBody.parse(raw) }
    let viaArray = Result { () throws(EventBody.Problem) in try EventBody.parse(bytes) }
    switch (viaPointer, viaArray) {
    case (.success(let a), .success(let b)):
        precondition(a.siteID == b.siteID, "entry points disagree on the site")
    case (.failure(let a), .failure(let b)):
        precondition(a == b, "entry points disagree on the problem")
        precondition(!a.message.isEmpty)
        return 0
    default:
        preconditionFailure("entry points disagree on validity")
    }
    guard case .success(let body) = viaPointer else { return 0 }

    precondition(String(validating: bytes, as: UTF8.self) != nil, "accepted a body that is not UTF-8")
    let trimmed = bytes.drop(while: isJSONWhitespace).reversed().drop(while: isJSONWhitespace)
    precondition(bytes.drop(while: isJSONWhitespace).first == UInt8(ascii: "{") && trimmed.first == UInt8(ascii: "}"),
                 "accepted something that is not an object")
    if let site = body.siteID { precondition(!site.isEmpty, "an empty site id is no site") }

    // JSONSerialization is stricter than RFC 8259 in two ways that are not
    // errors in a body we store byte for byte: numbers beyond Double's range
    // (`1e99999`) and escaped lone surrogates (`\ud800`). Compare on a copy
    // with those neutralised; any other disagreement is a bug.
    let original = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
    guard let object = original ?? (try? JSONSerialization.jsonObject(with: Data(neutralised(bytes)), options: [.fragmentsAllowed]))
    else {
        preconditionFailure("EventBody accepted a body that JSONSerialization rejects: \(String(decoding: bytes.prefix(200), as: UTF8.self))")
    }
    guard let dictionary = object as? [String: Any] else {
        preconditionFailure("EventBody accepted a non-object")
    }
    let theirs = ((dictionary["metadata"] as? [String: Any])?["site_id"] as? String).flatMap { $0.isEmpty ? nil : $0 }
    if (dictionary["metadata"] as? [String: Any])?["site_id"] is NSNumber {
        preconditionFailure("EventBody accepted a number as site_id")
    }
    // (A neutralised copy may have changed the site's text: compare only the original.)
    precondition(original == nil || theirs == body.siteID, "site id \(String(describing: body.siteID)) vs JSONSerialization's \(String(describing: theirs))")
    return 0
}

private func isJSONWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
}

/// The UTF-16 unit of a `\uXXXX` escape starting at `i`, if there is one.
private func escapedUnit(_ bytes: [UInt8], at i: Int) -> UInt16? {
    guard i + 5 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else { return nil }
    return UInt16(String(decoding: bytes[(i + 2)...(i + 5)], as: UTF8.self), radix: 16)
}

/// `bytes` with every number outside strings replaced by `0` and every lone
/// surrogate escape (`\uD800`–`\uDFFF` not in a valid pair) by `\u0041`.
private func neutralised(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var i = 0
    var inString = false
    func isNumberByte(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "-") || b == UInt8(ascii: "+")
            || b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E")
    }
    while i < bytes.count {
        let b = bytes[i]
        if inString {
            if b == UInt8(ascii: "\\"), i + 1 < bytes.count {
                if let value = escapedUnit(bytes, at: i), (0xD800...0xDFFF).contains(value) {
                    if value < 0xDC00, let low = escapedUnit(bytes, at: i + 6), (0xDC00...0xDFFF).contains(low) {
                        out += bytes[i..<(i + 12)]  // a valid pair
                        i += 12
                    } else {
                        out += Array("\\u0041".utf8)  // a lone surrogate
                        i += 6
                    }
                    continue
                }
                out += [b, bytes[i + 1]]
                i += 2
                continue
            }
            if b == UInt8(ascii: "\"") { inString = false }
            out.append(b)
            i += 1
        } else if b == UInt8(ascii: "\"") {
            inString = true
            out.append(b)
            i += 1
        } else if b == UInt8(ascii: "-") || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) {
            // A number starts with `-` or a digit (`e` also appears in true/false).
            while i < bytes.count, isNumberByte(bytes[i]) { i += 1 }
            out.append(UInt8(ascii: "0"))
        } else {
            out.append(b)
            i += 1
        }
    }
    return out
}
