/// The identifier of a stream entry, `<ms>-<seq>`, ordered like Redis orders them.
///
/// The one stream-id type of FI Scale: FIQueue reads it from Redis, the worker
/// hands it to FIStorage, and the corpus stores it in its `stream_id` column
/// (Docs/contract.md §5) — never formatted to a `String` and parsed back on the way.
public struct StreamEntryID: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds part.
    public var ms: UInt64
    /// Sequence number within the millisecond.
    public var seq: UInt64

    /// The smallest id, `0-0`.
    public static let zero = StreamEntryID(ms: 0, seq: 0)

    /// The longest id: two 20-digit numbers and a dash, also the width of the
    /// corpus's fixed-length `stream_id` column.
    public static let maximumLength = 41

    public init(ms: UInt64, seq: UInt64) {
        self.ms = ms
        self.seq = seq
    }

    /// Parses `<ms>-<seq>`; returns `nil` for anything else.
    public init?(_ text: String) {
        var text = text
        guard let id = text.withUTF8({ StreamEntryID(bytes: UnsafeRawBufferPointer($0)) }) else { return nil }
        self = id
    }

    /// Parses `<ms>-<seq>` from raw bytes.
    public init?(bytes: [UInt8]) {
        guard let id = bytes.withUnsafeBytes({ StreamEntryID(bytes: $0) }) else { return nil }
        self = id
    }

    /// Parses `<ms>-<seq>` from raw bytes: two runs of ASCII digits, each fitting a
    /// `UInt64`, at most ``maximumLength`` bytes in all; `nil` for anything else.
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= 3, bytes.count <= Self.maximumLength else { return nil }
        var ms: UInt64 = 0
        var seq: UInt64 = 0
        var seenDash = false
        var digits = 0
        for b in bytes {
            if b == UInt8(ascii: "-") {
                if seenDash || digits == 0 { return nil }
                seenDash = true
                digits = 0
                continue
            }
            guard b >= 48, b <= 57 else { return nil }
            let d = UInt64(b - 48)
            if seenDash {
                let (m, o1) = seq.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(d)
                if o1 || o2 { return nil }
                seq = a
            } else {
                let (m, o1) = ms.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(d)
                if o1 || o2 { return nil }
                ms = a
            }
            digits += 1
        }
        guard seenDash, digits > 0 else { return nil }
        self.init(ms: ms, seq: seq)
    }

    public var description: String {
        String(unsafeUninitializedCapacity: Self.maximumLength) { write(into: $0) }
    }

    /// `<ms>-<seq>` as ASCII bytes.
    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.maximumLength) { buffer, count in count = write(into: buffer) }
    }

    /// Writes `<ms>-<seq>` at the start of `buffer` (room for ``maximumLength``); returns its length.
    /// Ids are formatted for every entry a worker stores and acknowledges, so this avoids
    /// string interpolation's generic integer formatting.
    public func write(into buffer: UnsafeMutableBufferPointer<UInt8>) -> Int {
        precondition(buffer.count >= Self.maximumLength, "a stream id needs \(Self.maximumLength) bytes")
        var end = 0
        func digits(_ value: UInt64) {
            var n = value
            let start = end
            repeat {
                buffer[end] = UInt8(truncatingIfNeeded: 48 &+ n % 10)
                n /= 10
                end += 1
            } while n > 0
            var (i, j) = (start, end - 1)
            while i < j {
                buffer.swapAt(i, j)
                i += 1
                j -= 1
            }
        }
        digits(ms)
        buffer[end] = UInt8(ascii: "-")
        end += 1
        digits(seq)
        return end
    }

    public static func < (lhs: StreamEntryID, rhs: StreamEntryID) -> Bool {
        lhs.ms != rhs.ms ? lhs.ms < rhs.ms : lhs.seq < rhs.seq
    }
}
