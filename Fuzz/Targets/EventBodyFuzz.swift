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

    guard let object = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) else {
        preconditionFailure("EventBody accepted a body that JSONSerialization rejects: \(String(decoding: bytes.prefix(200), as: UTF8.self))")
    }
    guard let dictionary = object as? [String: Any] else {
        preconditionFailure("EventBody accepted a non-object")
    }
    let theirs = ((dictionary["metadata"] as? [String: Any])?["site_id"] as? String).flatMap { $0.isEmpty ? nil : $0 }
    if (dictionary["metadata"] as? [String: Any])?["site_id"] is NSNumber {
        preconditionFailure("EventBody accepted a number as site_id")
    }
    precondition(theirs == body.siteID, "site id \(String(describing: body.siteID)) vs JSONSerialization's \(String(describing: theirs))")
    return 0
}

private func isJSONWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
}
