/// Commands RESP-encoded back to back (arrays of bulk strings), ready for the socket: the one
/// encoder of the Redis backend.
///
/// A command is written into its bytes as it is built — no array per argument — and the channel
/// handler copies them into the channel's outbound buffer, flushed at the end of the event-loop
/// tick. The bytes are kept (copy-on-write) so the router can resend them after a cluster redirect.
/// (A `[UInt8]`, not a `ByteBuffer`: the standard library's appends are optimized even in a debug
/// build, where SwiftNIO's are not — the tests run debug builds under load.)
struct RedisCommand: Sendable {
    private(set) var bytes: [UInt8] = []
    /// How many commands, so how many replies.
    private(set) var count = 0

    init(reserving capacity: Int = 64) {
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
        if capacity > 0 { bytes.reserveCapacity(bytes.count + capacity + 16) }
        bytes.append(UInt8(ascii: "*"))
        writeDecimal(arguments)
        bytes.append(13)
        bytes.append(10)
        count += 1
    }

    mutating func argument(_ value: some Collection<UInt8>) {
        bytes.append(UInt8(ascii: "$"))
        writeDecimal(value.count)
        bytes.append(13)
        bytes.append(10)
        bytes.append(contentsOf: value)
        bytes.append(13)
        bytes.append(10)
    }

    mutating func argument(_ value: String) {
        var value = value
        value.withUTF8 { argument($0) }
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
        out.bytes += rhs.bytes
        out.count += rhs.count
        return out
    }

    /// A non-negative `n` in decimal (every length goes through here).
    private mutating func writeDecimal(_ n: Int) {
        if n < 10 {
            bytes.append(UInt8(truncatingIfNeeded: 48 &+ n))
            return
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            let start = Self.format(UInt(n), into: digits)
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start...]))
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
