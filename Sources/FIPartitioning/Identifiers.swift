/// A hospital site identifier: 1–64 characters of `A–Z a–z 0–9 _ -`.
///
/// A valid site id can be embedded in a partition key, a Redis key and a file
/// path without escaping: it never contains a separator, a dot or a NUL.
public struct SiteID: Sendable, Hashable, CustomStringConvertible {
    /// The longest accepted site id, in characters.
    public static let maximumLength = 64

    /// The validated text.
    public let rawValue: String

    /// Validates a site id.
    /// - Parameter rawValue: the site id as received.
    /// - Throws: ``PartitionError`` with code ``PartitionError/Code/invalidSiteID``
    ///   naming what is wrong with it.
    public init(validating rawValue: String) throws(PartitionError) {
        let utf8 = rawValue.utf8
        guard !utf8.isEmpty else {
            throw PartitionError(.invalidSiteID, "site_id must not be empty")
        }
        guard utf8.count <= Self.maximumLength else {
            throw PartitionError(
                .invalidSiteID,
                "site_id is \(utf8.count) bytes long; at most \(Self.maximumLength) characters are allowed"
            )
        }
        if let bad = utf8.firstIndex(where: { !ASCII.isSiteCharacter($0) }) {
            let offset = utf8.distance(from: utf8.startIndex, to: bad)
            throw PartitionError(
                .invalidSiteID,
                "site_id has a character other than A-Z a-z 0-9 _ - at byte \(offset)"
            )
        }
        self.rawValue = rawValue
    }

    public var description: String { rawValue }
}

/// A consultation identifier as accepted over HTTP: 1–128 characters of
/// `A–Z a–z 0–9 . _ - :`, the first one alphanumeric.
///
/// The partitioner hashes any string (the reference vectors include empty and
/// non-ASCII ids); this type is the gate in front of it for untrusted input.
public struct ConsultationID: Sendable, Hashable, CustomStringConvertible {
    /// The longest accepted consultation id, in characters (also the width of
    /// the corpus's fixed-size `consultation_id` column).
    public static let maximumLength = 128

    /// The validated text.
    public let rawValue: String

    /// Validates a consultation id.
    /// - Parameter rawValue: the id as received (already percent-decoded).
    /// - Throws: ``PartitionError`` with code ``PartitionError/Code/invalidConsultationID``.
    public init(validating rawValue: String) throws(PartitionError) {
        let utf8 = rawValue.utf8
        guard let first = utf8.first else {
            throw PartitionError(.invalidConsultationID, "consultation_id must not be empty")
        }
        guard utf8.count <= Self.maximumLength else {
            throw PartitionError(
                .invalidConsultationID,
                "consultation_id is \(utf8.count) bytes long; at most \(Self.maximumLength) characters are allowed"
            )
        }
        guard ASCII.isAlphanumeric(first) else {
            throw PartitionError(.invalidConsultationID, "consultation_id must start with a letter or digit")
        }
        if let bad = utf8.firstIndex(where: { !ASCII.isConsultationCharacter($0) }) {
            let offset = utf8.distance(from: utf8.startIndex, to: bad)
            throw PartitionError(
                .invalidConsultationID,
                "consultation_id has a character other than A-Z a-z 0-9 . _ - : at byte \(offset)"
            )
        }
        self.rawValue = rawValue
    }

    public var description: String { rawValue }
}

enum ASCII {
    @inline(__always)
    static func isAlphanumeric(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "a")...UInt8(ascii: "z"):
            return true
        default:
            return false
        }
    }

    @inline(__always)
    static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    @inline(__always)
    static func isSiteCharacter(_ byte: UInt8) -> Bool {
        isAlphanumeric(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }

    @inline(__always)
    static func isConsultationCharacter(_ byte: UInt8) -> Bool {
        isSiteCharacter(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":")
    }
}
