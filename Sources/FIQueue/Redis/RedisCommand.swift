import NIOCore

/// Commands RESP-encoded back to back (arrays of bulk strings), ready for the socket: the one
/// encoder of the Redis backend.
///
/// A command is written straight into its byte buffer as it is built — no array per argument —
/// and the channel handler appends that buffer to what it flushes at the end of the event-loop
/// tick. The buffer is kept (copy-on-write) so the router can resend it after a cluster redirect.
struct RedisCommand: Sendable {
    private(set) var bytes: ByteBuffer
    /// How many commands, so how many replies.
    private(set) var count = 0

    init(reserving capacity: Int = 64) {
        bytes = ByteBuffer()
        bytes.reserveCapacity(capacity)
    }

    /// One command of text arguments, e.g. `RedisCommand("XLEN", stream)`.
    init(_ arguments: String...) {
        self.init(arguments)
    }

    init(_ arguments: [String]) {
        self.init(reserving: arguments.reduce(16) { $0 + $1.utf8.count + 16 })
        begin(arguments: arguments.count)
        for a in arguments { argument(a) }
    }

    /// Starts a command of `arguments` arguments; append exactly that many next.
    mutating func begin(arguments: Int, reserving capacity: Int = 0) {
        if capacity > 0 { bytes.reserveCapacity(minimumWritableBytes: capacity + 16) }
        bytes.writeInteger(UInt8(ascii: "*"))
        writeDecimal(arguments)
        bytes.writeStaticString("\r\n")
        count += 1
    }

    mutating func argument(_ value: some Collection<UInt8>) {
        bytes.writeInteger(UInt8(ascii: "$"))
        writeDecimal(value.count)
        bytes.writeStaticString("\r\n")
        bytes.writeBytes(value)
        bytes.writeStaticString("\r\n")
    }

    mutating func argument(_ value: String) {
        bytes.writeInteger(UInt8(ascii: "$"))
        writeDecimal(value.utf8.count)
        bytes.writeStaticString("\r\n")
        bytes.writeString(value)
        bytes.writeStaticString("\r\n")
    }

    /// An entry id as `<ms>-<seq>`, formatted in place.
    mutating func argument(_ id: StreamEntryID) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: StreamEntryID.maximumLength) { buffer in
            let n = id.write(into: buffer)
            argument(UnsafeBufferPointer(rebasing: buffer[..<n]))
        }
    }

    mutating func argument(_ n: Int) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            let start = Self.format(UInt(n), into: digits)
            argument(UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }

    /// The commands of `other` after these (ASKING + the command of an ASK redirect).
    static func + (lhs: RedisCommand, rhs: RedisCommand) -> RedisCommand {
        var out = lhs
        var more = rhs.bytes
        out.bytes.writeBuffer(&more)
        out.count += rhs.count
        return out
    }

    /// A non-negative `n` in decimal (every length goes through here).
    private mutating func writeDecimal(_ n: Int) {
        if n < 10 {
            bytes.writeInteger(UInt8(truncatingIfNeeded: 48 &+ n))
            return
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            let start = Self.format(UInt(n), into: digits)
            bytes.writeBytes(UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }

    /// Writes `value`'s digits at the end of `digits` (20 bytes); returns where they start.
    private static func format(_ value: UInt, into digits: UnsafeMutableBufferPointer<UInt8>) -> Int {
        var value = value
        var start = 20
        repeat {
            start -= 1
            digits[start] = UInt8(truncatingIfNeeded: 48 &+ value % 10)
            value /= 10
        } while value > 0
        return start
    }
}
