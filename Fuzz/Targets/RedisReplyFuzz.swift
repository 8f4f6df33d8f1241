// libFuzzer target: Redis replies as fi-server and fi-worker receive them.
// The bytes go through hiredis' own reply parser with CHiredis' flat reply
// builder (RedisReplyDecoder: redisReaderCreate / redisReaderFeed /
// redisReaderGetReply), then FlatReply's walk into RESPValue (both shapes)
// and every decoder of RedisReplies (FIQueue/Redis/RedisReplies.swift).
// Compiled into this executable together with FIQueue's sources.
//
// Checks, besides "no crash, no memory error":
// - feeding the bytes in chunks gives the same replies as feeding them at once;
// - the XREADGROUP fast path (ReplyShape.streamEntries) decodes exactly what
//   the generic path decodes whenever it takes the fast path;
// - stream ids that parse print back to themselves.

/// Every reply in `chunks` (fed one after another), and whether hiredis
/// reported a protocol error (after which it parses nothing more).
func replies(_ chunks: [[UInt8]], shape: ReplyShape) -> (values: [RESPValue], protocolError: Bool) {
    let reader = RedisReplyDecoder()
    var values: [RESPValue] = []
    for chunk in chunks {
        reader.feed(chunk)
        while true {
            do {
                guard let value = try reader.next(shape: shape) else { break }
                values.append(value)
            } catch {
                return (values, true)
            }
        }
    }
    return (values, false)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRedisReply(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let chunkSize = Int(data[0] % 16) + 1
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    var chunks: [[UInt8]] = []
    var i = 0
    while i < bytes.count {
        chunks.append(Array(bytes[i..<min(bytes.count, i + chunkSize)]))
        i += chunkSize
    }

    let whole = replies([bytes], shape: .generic)
    let chunked = replies(chunks, shape: .generic)
    precondition(whole.values == chunked.values && whole.protocolError == chunked.protocolError, "chunking changed the replies")
    let fast = replies([bytes], shape: .streamEntries)
    precondition(fast.values.count == whole.values.count)

    for (generic, streamShaped) in zip(whole.values, fast.values) {
        let viaGeneric = try? RedisReplies.decodeReadGroup(generic)
        if case .entries(let entries) = streamShaped {
            precondition(viaGeneric == entries, "the XREADGROUP fast path disagrees with the generic decoding")
        } else {
            precondition(streamShaped == generic, "a reply the fast path does not take is converted generically")
        }
        for entry in viaGeneric ?? [] {
            precondition(StreamEntryID(entry.id.description) == entry.id)
        }
        _ = try? RedisReplies.decodeEntry(generic)
        _ = try? RedisReplies.decodeClaim(generic)
        _ = try? RedisReplies.decodePending(generic)
        _ = try? RedisReplies.decodeOldestPendingIdle(generic)
        if let ranges = try? RedisReplies.decodeSlotRanges(generic, defaultHost: "seed") {
            for range in ranges {
                precondition(range.slots.lowerBound >= 0 && range.slots.upperBound < ClusterSlot.count)
                precondition((1...65_535).contains(range.port) && !range.host.isEmpty)
            }
        }
        if let text = generic.errorText {
            _ = RedisReplies.serverError(text)
            // A cluster redirect: "MOVED <slot> <host:port>".
            let parts = text.split(separator: " ")
            if parts.count >= 3, let address = RedisClusterRouter.address(String(parts[2]), answeredBy: "seed:7000") {
                precondition(address.contains(":"))
            }
            // The router's state machine on the same text: whatever it says, it never traps.
            var router = RedisClusterRouter(maxRedirects: 3)
            var redirects = 0
            _ = router.next(afterReply: text, slot: 0, from: "seed:7000", redirects: &redirects)
        }
        if let raw = generic.bytes, let id = StreamEntryID(bytes: raw) {
            precondition(StreamEntryID(id.description) == id)
        }
    }
    return 0
}
