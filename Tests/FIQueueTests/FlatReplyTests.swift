import Testing

@testable import FIQueue

/// The reply decoding of the hiredis backend, fed raw RESP bytes: hiredis'
/// reader builds each reply into one flat buffer and ``FlatReply`` walks it.
@Suite("Redis reply decoding")
struct FlatReplyTests {
    private func decode(_ resp: String, shape: ReplyShape = .generic) throws -> [RESPValue] {
        let reader = RedisReplyDecoder()
        reader.feed(Array(resp.utf8))
        var out: [RESPValue] = []
        for _ in 0..<100 {
            guard let value = try reader.next(shape: shape) else { break }
            out.append(value)
        }
        return out
    }

    @Test("every RESP2 kind, nested arrays and empty values")
    func kinds() throws {
        let values = try decode(
            "+OK\r\n-ERR wrong type\r\n:-42\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
                + "*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+QUEUED\r\n"
        )
        #expect(values == [
            .simple("OK"), .error("ERR wrong type"), .integer(-42), .bulk(Array("hello".utf8)), .bulk([]),
            .null, .null, .array([]),
            .array([.integer(1), .array([.bulk([97]), .null]), .simple("QUEUED")]),
        ])
    }

    @Test("binary-safe bulk strings: CR, LF and NUL bytes come through unchanged")
    func binary() throws {
        let payload: [UInt8] = [0, 13, 10, 255, 36, 42, 13, 10]
        let reader = RedisReplyDecoder()
        reader.feed(Array("$8\r\n".utf8) + payload + Array("\r\n".utf8))
        #expect(try reader.next() == .bulk(payload))
    }

    @Test("a reply split at every byte is the same reply")
    func partialFeeds() throws {
        let resp = Array("*1\r\n*2\r\n$12\r\nfi:events:s1\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$2\r\nv1\r\n*2\r\n$3\r\n2-5\r\n*-1\r\n:7\r\n".utf8)
        let reader = RedisReplyDecoder()
        var got: [RESPValue] = []
        for byte in resp {
            reader.feed([byte])
            while let value = try reader.next(shape: .streamEntries) { got.append(value) }
        }
        #expect(got == [
            .entries([
                StreamEntry(id: StreamEntryID(ms: 1, seq: 0), fields: [StreamField(name: "f", value: Array("v1".utf8))]),
                StreamEntry(id: StreamEntryID(ms: 2, seq: 5), fields: []),
            ]),
            .integer(7),
        ])
    }

    @Test("an XREADGROUP reply over several streams decodes to entries in order")
    func streamEntries() throws {
        let resp = "*2\r\n"
            + "*2\r\n$1\r\na\r\n*1\r\n*2\r\n$5\r\n10-20\r\n*4\r\n$15\r\nconsultation_id\r\n$2\r\nc1\r\n$10\r\nevent_json\r\n$2\r\n{}\r\n"
            + "*2\r\n$1\r\nb\r\n*0\r\n"
        let values = try decode(resp, shape: .streamEntries)
        #expect(values == [
            .entries([
                StreamEntry(id: StreamEntryID(ms: 10, seq: 20), fields: [
                    StreamField(name: "consultation_id", value: Array("c1".utf8)),
                    StreamField(name: "event_json", value: Array("{}".utf8)),
                ])
            ])
        ])
    }

    @Test("a stream read that is not the expected shape comes back as the generic tree")
    func unexpectedShapes() throws {
        // A timed-out BLOCK read, an error, an odd field list and a bad id.
        #expect(try decode("*-1\r\n", shape: .streamEntries) == [.null])
        #expect(try decode("-NOGROUP no such group\r\n", shape: .streamEntries) == [.error("NOGROUP no such group")])
        #expect(try decode("*1\r\n*2\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\nf\r\n", shape: .streamEntries) == [
            .array([.array([.bulk([97]), .array([.array([.bulk(Array("1-0".utf8)), .array([.bulk([102])])])])])])
        ])
        #expect(try decode("*1\r\n*2\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\nx-0\r\n*-1\r\n", shape: .streamEntries) == [
            .array([.array([.bulk([97]), .array([.array([.bulk(Array("x-0".utf8)), .null])])])])
        ])
    }

    @Test("a protocol error is an error, not a crash or a made-up reply")
    func protocolError() {
        let reader = RedisReplyDecoder()
        reader.feed(Array("?what\r\n".utf8))
        #expect(throws: RedisReplyDecoder.ReadError.self) { try reader.next() }
    }

    @Test("a large reply after a small one, and a small one after, decode independently")
    func bufferReuse() throws {
        let big = String(repeating: "x", count: 300_000)
        let values = try decode("$\(big.utf8.count)\r\n\(big)\r\n:5\r\n*1\r\n$1\r\nq\r\n")
        #expect(values == [.bulk(Array(big.utf8)), .integer(5), .array([.bulk([113])])])
    }
}

/// Command encoding: what the hiredis backend writes to the socket.
@Suite("Redis command encoding")
struct CommandEncodingTests {
    @Test("stream ids parse strictly: two runs of decimal digits that fit UInt64, at most 41 bytes")
    func streamIDParsing() {
        let bad = ["", "1700000000010", "1700000000010-", "-1", "a-1", "1-2-3", "+1-2", " 1-2", "1-2 ",
                   "99999999999999999999-0", "1-18446744073709551616", String(repeating: "1", count: 42), "٣-1"]
        for text in bad { #expect(StreamEntryID(text) == nil, "\(text.debugDescription)") }
        #expect(StreamEntryID("0-0") == .zero)
        #expect(StreamEntryID("18446744073709551615-18446744073709551615") == StreamEntryID(ms: .max, seq: .max))
        #expect(StreamEntryID(ms: .max, seq: .max).description.utf8.count == StreamEntryID.maximumLength)
        #expect(StreamEntryID("1700000000000-7")?.bytes == Array("1700000000000-7".utf8))
        #expect(StreamEntryID("10-0")! > StreamEntryID("9-5")!)
    }

    @Test("lengths and ids are written in decimal, whatever their number of digits")
    func decimals() {
        for n in [0, 1, 9, 10, 99, 100, 1024, 65_535, 1_000_000_007, Int.max] {
            var command = RedisCommand()
            command.begin(arguments: 1)
            command.argument(n)
            #expect(text(command) == "*1\r\n$\(String(n).utf8.count)\r\n\(n)\r\n")
            let long = String(repeating: "x", count: n % 100_000)
            #expect(text(RedisCommand(long)) == "*1\r\n$\(long.utf8.count)\r\n\(long)\r\n")
        }
        var command = RedisCommand()
        command.begin(arguments: 3)
        command.argument(Array("XACK".utf8))
        command.argument("s")
        command.argument(StreamEntryID(ms: 1_764_400_000_000, seq: 12))
        #expect(command.count == 1)
        #expect(text(command) == "*3\r\n$4\r\nXACK\r\n$1\r\ns\r\n$16\r\n1764400000000-12\r\n")
        #expect(text(command) == text(RedisCommand("XACK", "s", "1764400000000-12")))
    }

    @Test("binary arguments, empty arguments and commands back to back")
    func binaryAndConcatenation() {
        var command = RedisCommand()
        command.begin(arguments: 3)
        command.argument("XADD")
        command.argument([UInt8]([0, 13, 10, 255]))
        command.argument("")
        let both = RedisCommand("ASKING") + command
        #expect(both.count == 2)
        #expect(both.bytes == Array("*1\r\n$6\r\nASKING\r\n*3\r\n$4\r\nXADD\r\n$4\r\n".utf8) + [0, 13, 10, 255] + Array("\r\n$0\r\n\r\n".utf8))
    }

    @Test("what the encoder writes, hiredis' reader reads back as the same arguments")
    func roundTrip() throws {
        let arguments = ["XADD", "fi:events:site_a", "*", "event_json", #"{"a":"\r\n$3"}"#, "", String(repeating: "é", count: 5_000)]
        let decoder = RedisReplyDecoder()
        let command = RedisCommand(arguments)
        command.bytes.withUnsafeBytes { decoder.feed($0) }
        // A command is an array of bulk strings: the same grammar as a reply.
        #expect(try decoder.next() == .array(arguments.map { .bulk(Array($0.utf8)) }))
    }

    private func text(_ command: RedisCommand) -> String {
        String(decoding: command.bytes, as: UTF8.self)
    }
}
