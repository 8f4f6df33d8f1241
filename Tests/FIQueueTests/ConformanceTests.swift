import Foundation
import Synchronization
import Testing

@testable import FIQueue

/// The one suite every ``EventQueue`` backend must pass: in-memory, a single Redis, a Redis Cluster.
@Suite("EventQueue conformance")
struct ConformanceTests {
    @Test("append and read back in order, byte for byte", arguments: Backend.all)
    func appendAndReadInOrder(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):order"
            let binary: [UInt8] = [0, 1, 2, 0xFF, 0xFE, 13, 10, 0x22]
            var ids: [StreamEntryID] = []
            for i in 0..<10 {
                var f = fields(i, payload: "{\"n\":\(i)}")
                f.append(StreamField(name: "raw", value: binary))
                ids.append(try await q.append(to: stream, fields: f))
            }
            #expect(ids == ids.sorted())
            #expect(Set(ids).count == 10)
            #expect(try await q.length(of: stream) == 10)
            try await q.createGroup("g", on: stream)
            let read = try await q.readGroup("g", consumer: "c1", from: stream, count: 100)
            #expect(read.map(\.id) == ids)
            for (i, e) in read.enumerated() {
                #expect(e[field: "consultation_id"] == Array("c-\(i)".utf8))
                #expect(e[field: "event_json"] == Array("{\"n\":\(i)}".utf8))
                #expect(e[field: "raw"] == binary)
                #expect(e[field: "missing"] == nil)
                #expect(e.fields.map(\.name) == ["consultation_id", "event_json", "received_at_ms", "raw"])
            }
            // Nothing new: a non-blocking read returns at once with nothing.
            #expect(try await q.readGroup("g", consumer: "c1", from: stream, count: 100).isEmpty)
        }
    }

    @Test("range pages through a stream in id order; appendOnce appends once per token, also when retried, and records it in the ledger", arguments: Backend.all)
    func rangeAndAppendOnce(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):once"
            let ledger = "{\(stream)}:ledger"  // the stream's own Cluster slot
            var ids: [StreamEntryID] = []
            for i in 0..<5 { ids.append(try await q.append(to: stream, fields: fields(i, payload: "{}"))) }
            #expect(try await q.range(stream, after: nil, count: 2).map(\.id) == Array(ids[0..<2]))
            #expect(try await q.range(stream, after: ids[1], count: 10).map(\.id) == Array(ids[2...]))
            #expect(try await q.range(stream, after: ids[4], count: 10).isEmpty)
            #expect(try await q.range("\(prefix):nothing", after: nil, count: 10).isEmpty)

            let first = try await q.appendOnce(to: stream, fields: fields(9, payload: "{\"n\":9}"), token: "dead-1", ledger: ledger)
            #expect(first.appended && first.id > ids[4])
            let again = try await q.appendOnce(to: stream, fields: fields(9, payload: "{\"n\":9}"), token: "dead-1", ledger: ledger)
            #expect(again.id == first.id && !again.appended, "a retried appendOnce appends nothing")
            let other = try await q.appendOnce(to: stream, fields: fields(10, payload: "{}"), token: "dead-2", ledger: ledger)
            #expect(other.appended && other.id > first.id)
            #expect(try await q.length(of: stream) == 7)
            let last = try #require(try await q.range(stream, after: ids[4], count: 1).first)
            #expect(last.id == first.id && last[field: "event_json"] == Array("{\"n\":9}".utf8))
            #expect(try await q.ledger(ledger) == ["dead-1": first.id, "dead-2": other.id])
            #expect(try await q.ledger("{\(prefix)}:none").isEmpty)
        }
    }

    @Test("large replies: a 2 MB group read arrives whole, byte for byte, beside concurrent small commands", arguments: Backend.all)
    func largeReplies(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):large"
            try await q.createGroup("g", on: stream)
            // 2,000 entries of ~1 KB, each value distinct so a misplaced byte shows.
            var ids: [StreamEntryID] = []
            for i in 0..<2_000 {
                let value = (0..<1_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
                ids.append(try await q.append(to: stream, fields: [StreamField(name: "v", value: value), StreamField("i", String(i))]))
            }
            // The big read shares the pipelined connection with small commands sent meanwhile.
            async let lengths = withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<50 { group.addTask { try await q.length(of: stream) } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            let read = try await q.readGroup("g", consumer: "c", from: stream, count: 2_000)
            #expect(try await lengths.allSatisfy { $0 == 2_000 })
            #expect(read.map(\.id) == ids)
            for (i, e) in read.enumerated() {
                #expect(e[field: "v"] == (0..<1_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) })
                #expect(e[field: "i"] == Array(String(i).utf8))
            }
            #expect(try await q.ack("g", on: stream, ids: ids) == 2_000)
        }
    }

    @Test("count limits a read; reads continue where the group left off", arguments: Backend.all)
    func countAndContinuation(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):count"
            try await q.createGroup("g", on: stream)
            var ids: [StreamEntryID] = []
            for i in 0..<7 { ids.append(try await q.append(to: stream, fields: fields(i))) }
            var got: [StreamEntryID] = []
            for expected in [3, 3, 1, 0] {
                let batch = try await q.readGroup("g", consumer: expected % 2 == 0 ? "a" : "b", from: stream, count: 3)
                #expect(batch.count == expected)
                got += batch.map(\.id)
            }
            #expect(got == ids)
        }
    }

    @Test("createGroup is idempotent, creates the stream, and starts at the beginning", arguments: Backend.all)
    func createGroupIdempotent(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let empty = "\(prefix):empty"
            try await q.createGroup("g", on: empty)
            try await q.createGroup("g", on: empty)
            #expect(try await q.length(of: empty) == 0)
            #expect(try await q.streams(withPrefix: prefix) == [empty])

            let stream = "\(prefix):existing"
            let first = try await q.append(to: stream, fields: fields(1))
            try await q.createGroup("g", on: stream)
            _ = try await q.append(to: stream, fields: fields(2))
            try await q.createGroup("g", on: stream)  // must not reset the group
            let read = try await q.readGroup("g", consumer: "c", from: stream, count: 10)
            #expect(read.first?.id == first)
            #expect(read.count == 2)
            try await q.createGroup("g", on: stream)
            #expect(try await q.readGroup("g", consumer: "c", from: stream, count: 10).isEmpty)
        }
    }

    @Test("groups are independent: each sees every entry", arguments: Backend.all)
    func independentGroups(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):groups"
            try await q.createGroup("g1", on: stream)
            try await q.createGroup("g2", on: stream)
            var ids: [StreamEntryID] = []
            for i in 0..<4 { ids.append(try await q.append(to: stream, fields: fields(i))) }
            #expect(try await q.readGroup("g1", consumer: "x", from: stream, count: 10).map(\.id) == ids)
            #expect(try await q.readGroup("g2", consumer: "x", from: stream, count: 10).map(\.id) == ids)
            #expect(try await q.ack("g1", on: stream, ids: ids) == 4)
            #expect(try await q.pending("g1", on: stream).count == 0)
            #expect(try await q.pending("g2", on: stream).count == 4)
        }
    }

    @Test("ack and the pending summary", arguments: Backend.all)
    func ackAndPending(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):ack"
            try await q.createGroup("g", on: stream)
            var ids: [StreamEntryID] = []
            for i in 0..<5 { ids.append(try await q.append(to: stream, fields: fields(i))) }
            let none = try await q.pending("g", on: stream)
            #expect(none == PendingSummary(count: 0, lowest: nil, highest: nil, consumers: [:]))
            #expect(try await q.oldestPendingIdle("g", on: stream) == nil)

            _ = try await q.readGroup("g", consumer: "a", from: stream, count: 2)
            _ = try await q.readGroup("g", consumer: "b", from: stream, count: 3)
            let p = try await q.pending("g", on: stream)
            #expect(p == PendingSummary(count: 5, lowest: ids[0], highest: ids[4], consumers: ["a": 2, "b": 3]))

            try await Task.sleep(for: .milliseconds(120))
            let idle = try #require(try await q.oldestPendingIdle("g", on: stream))
            #expect(idle >= .milliseconds(100) && idle < .seconds(30))

            #expect(try await q.ack("g", on: stream, ids: [ids[0], ids[3]]) == 2)
            #expect(try await q.ack("g", on: stream, ids: [ids[0]]) == 0)  // already acknowledged
            #expect(try await q.ack("g", on: stream, ids: []) == 0)
            let after = try await q.pending("g", on: stream)
            #expect(after == PendingSummary(count: 3, lowest: ids[1], highest: ids[4], consumers: ["a": 1, "b": 2]))
            #expect(try await q.ack("g", on: stream, ids: [ids[1], ids[2], ids[4]]) == 3)
            #expect(try await q.pending("g", on: stream).count == 0)
            // Acknowledging on a stream that does not exist is not an error.
            #expect(try await q.ack("g", on: "\(prefix):nothing", ids: [ids[0]]) == 0)
        }
    }

    @Test("a consumer that dies: its entries come back to it on restart, or to another by claim", arguments: Backend.all)
    func redeliveryAfterConsumerDies(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):redeliver"
            try await q.createGroup("g", on: stream)
            var ids: [StreamEntryID] = []
            for i in 0..<5 { ids.append(try await q.append(to: stream, fields: fields(i))) }
            // Consumer A reads and dies before acknowledging.
            #expect(try await q.readGroup("g", consumer: "A", from: stream, count: 10).map(\.id) == ids)
            // New entries are not redelivered by ">"...
            #expect(try await q.readGroup("g", consumer: "A", from: stream, count: 10).isEmpty)
            // ...but A restarted reads its pending history.
            let history = try await q.readGroup("g", consumer: "A", from: stream, count: 3, block: .seconds(1), ownPending: true)
            #expect(history.map(\.id) == Array(ids.prefix(3)))
            #expect(history[0][field: "consultation_id"] == Array("c-0".utf8))
            // Another consumer cannot claim entries that are not idle long enough.
            let early = try await q.autoClaim("g", consumer: "B", on: stream, minIdle: .seconds(30), start: .zero, count: 10)
            #expect(early.entries.isEmpty)
            #expect(early.nextStart == nil)
            try await Task.sleep(for: .milliseconds(150))
            let claim = try await q.autoClaim("g", consumer: "B", on: stream, minIdle: .milliseconds(100), start: .zero, count: 10)
            #expect(claim.entries.map(\.entry.id) == ids)
            // Delivered once by ">", the first three again by the history read, then claimed.
            #expect(claim.entries.map(\.deliveryCount) == [3, 3, 3, 2, 2])
            #expect(claim.entries[4].entry[field: "consultation_id"] == Array("c-4".utf8))
            #expect(claim.deletedIDs.isEmpty)
            #expect(claim.nextStart == nil)
            #expect(try await q.pending("g", on: stream).consumers == ["B": 5])
            #expect(try await q.readGroup("g", consumer: "A", from: stream, count: 10, block: nil, ownPending: true).isEmpty)
            #expect(try await q.ack("g", on: stream, ids: ids) == 5)
            #expect(try await q.pending("g", on: stream).count == 0)
        }
    }

    @Test("claims page with a cursor and report deleted entries", arguments: Backend.all)
    func claimCursorAndDeleted(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):claim"
            try await q.createGroup("g", on: stream)
            var ids: [StreamEntryID] = []
            for i in 0..<6 { ids.append(try await q.append(to: stream, fields: fields(i))) }
            _ = try await q.readGroup("g", consumer: "A", from: stream, count: 10)
            #expect(try await q.delete(from: stream, ids: [ids[1]]) == 1)
            try await Task.sleep(for: .milliseconds(120))
            // The count limits the reply: a deleted id counts like a claimed entry.
            let first = try await q.autoClaim("g", consumer: "B", on: stream, minIdle: .milliseconds(100), start: .zero, count: 3)
            #expect(first.entries.map(\.entry.id) == [ids[0], ids[2]])
            #expect(first.entries.map(\.deliveryCount) == [2, 2])
            #expect(first.deletedIDs == [ids[1]])
            #expect(first.nextStart == ids[3])
            let second = try await q.autoClaim("g", consumer: "B", on: stream, minIdle: .milliseconds(100), start: try #require(first.nextStart), count: 10)
            #expect(second.entries.map(\.entry.id) == [ids[3], ids[4], ids[5]])
            #expect(second.deletedIDs.isEmpty)
            #expect(second.nextStart == nil)
            let p = try await q.pending("g", on: stream)
            #expect(p.count == 5)
            #expect(p.consumers == ["B": 5])
            // Just claimed: not idle any more.
            let again = try await q.autoClaim("g", consumer: "C", on: stream, minIdle: .milliseconds(100), start: .zero, count: 10)
            #expect(again.entries.isEmpty)
        }
    }

    @Test("a history read returns an entry deleted while pending with no fields", arguments: Backend.all)
    func historyWithDeletedEntry(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):history"
            try await q.createGroup("g", on: stream)
            var ids: [StreamEntryID] = []
            for i in 0..<3 { ids.append(try await q.append(to: stream, fields: fields(i))) }
            _ = try await q.readGroup("g", consumer: "A", from: stream, count: 10)
            #expect(try await q.delete(from: stream, ids: [ids[1]]) == 1)
            let history = try await q.readGroup("g", consumer: "A", from: stream, count: 10, block: nil, ownPending: true)
            #expect(history.map(\.id) == ids)
            #expect(history.map(\.fields.isEmpty) == [false, true, false])
            #expect(try await q.ack("g", on: stream, ids: [ids[1]]) == 1)
        }
    }

    @Test("a blocking read wakes when an entry is appended", arguments: Backend.all)
    func blockingReadWakes(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):wake"
            try await q.createGroup("g", on: stream)
            let start = ContinuousClock.now
            async let read = q.readGroup("g", consumer: "c", from: stream, count: 10, block: .seconds(8))
            try await Task.sleep(for: .milliseconds(300))
            let id = try await q.append(to: stream, fields: fields(1))
            let entries = try await read
            #expect(entries.map(\.id) == [id])
            #expect(elapsed(since: start) < .seconds(4))
        }
    }

    @Test("a blocking read times out with nothing", arguments: Backend.all)
    func blockingReadTimesOut(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):timeout"
            try await q.createGroup("g", on: stream)
            let start = ContinuousClock.now
            let entries = try await q.readGroup("g", consumer: "c", from: stream, count: 10, block: .milliseconds(300))
            let took = elapsed(since: start)
            #expect(entries.isEmpty)
            #expect(took >= .milliseconds(250) && took < .seconds(4), "took \(took)")
        }
    }

    @Test("blocked readers do not delay appends", arguments: Backend.all)
    func blockedReadersDoNotDelayAppends(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let idle = "\(prefix):idle"
            let busy = "\(prefix):busy"
            try await q.createGroup("g", on: idle)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<4 {
                    group.addTask { _ = try await q.readGroup("g", consumer: "r\(i)", from: idle, count: 1, block: .seconds(2)) }
                }
                try await Task.sleep(for: .milliseconds(100))
                let start = ContinuousClock.now
                for i in 0..<20 { _ = try await q.append(to: busy, fields: fields(i)) }
                #expect(elapsed(since: start) < .seconds(1))
                try await group.waitForAll()
            }
        }
    }

    @Test("concurrent appenders: no lost or duplicated ids", arguments: Backend.all)
    func concurrentAppenders(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):concurrent"
            let tasks = 16, perTask = 150
            let ids = try await withThrowingTaskGroup(of: [StreamEntryID].self) { group in
                for t in 0..<tasks {
                    group.addTask {
                        var mine: [StreamEntryID] = []
                        for i in 0..<perTask { mine.append(try await q.append(to: stream, fields: fields(t * perTask + i))) }
                        #expect(mine == mine.sorted(), "one appender's ids are increasing")
                        return mine
                    }
                }
                var all: [StreamEntryID] = []
                for try await m in group { all += m }
                return all
            }
            #expect(ids.count == tasks * perTask)
            #expect(Set(ids).count == ids.count)
            #expect(try await q.length(of: stream) == tasks * perTask)
            try await q.createGroup("g", on: stream)
            var read: [StreamEntry] = []
            for _ in 0..<20 {
                let batch = try await q.readGroup("g", consumer: "c", from: stream, count: 1000)
                if batch.isEmpty { break }
                read += batch
            }
            #expect(read.map(\.id) == ids.sorted())
            let names = Set(read.compactMap { $0[field: "consultation_id"].map { String(decoding: $0, as: UTF8.self) } })
            #expect(names.count == tasks * perTask)
        }
    }

    @Test("delete and length", arguments: Backend.all)
    func deleteAndLength(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):delete"
            #expect(try await q.length(of: stream) == 0)
            var ids: [StreamEntryID] = []
            for i in 0..<5 { ids.append(try await q.append(to: stream, fields: fields(i))) }
            #expect(try await q.delete(from: stream, ids: [ids[0], ids[2]]) == 2)
            #expect(try await q.delete(from: stream, ids: [ids[0], StreamEntryID(ms: 1, seq: 1)]) == 0)
            #expect(try await q.delete(from: stream, ids: []) == 0)
            #expect(try await q.length(of: stream) == 3)
            try await q.createGroup("g", on: stream)
            #expect(try await q.readGroup("g", consumer: "c", from: stream, count: 10).map(\.id) == [ids[1], ids[3], ids[4]])
            // Ids keep growing after deletes.
            let next = try await q.append(to: stream, fields: fields(9))
            #expect(next > ids[4])
            #expect(try await q.delete(from: stream, ids: [ids[1], ids[3], ids[4], next]) == 4)
            #expect(try await q.length(of: stream) == 0)
            #expect(try await q.streams(withPrefix: prefix) == [stream])  // an emptied stream stays
        }
    }

    @Test("trim deletes every entry up to and including an id", arguments: Backend.all)
    func trimThrough(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):trim"
            #expect(try await q.trim(stream, through: StreamEntryID(ms: 1, seq: 0)) == 0)  // no stream
            var ids: [StreamEntryID] = []
            for i in 0..<6 { ids.append(try await q.append(to: stream, fields: fields(i))) }
            try await q.createGroup("g", on: stream)
            #expect(try await q.readGroup("g", consumer: "c", from: stream, count: 10).count == 6)
            #expect(try await q.trim(stream, through: StreamEntryID(ms: 0, seq: 1)) == 0)  // below every entry
            #expect(try await q.trim(stream, through: ids[1]) == 2)
            #expect(try await q.trim(stream, through: ids[1]) == 0)
            #expect(try await q.length(of: stream) == 4)
            // Through the id just below ids[3] (ids[2] itself, or one between the two): ids[2] goes, ids[3] stays.
            let between = ids[3].seq > 0 ? StreamEntryID(ms: ids[3].ms, seq: ids[3].seq - 1) : StreamEntryID(ms: ids[3].ms - 1, seq: .max)
            #expect(try await q.trim(stream, through: between) == 1)
            #expect(try await q.length(of: stream) == 3)
            // Trimmed entries that were pending are reported as deleted by a claim.
            let claim = try await q.autoClaim("g", consumer: "c2", on: stream, minIdle: .zero, start: .zero, count: 10)
            #expect(claim.deletedIDs == Array(ids[0...2]))
            #expect(claim.entries.map(\.entry.id) == Array(ids[3...5]))
            #expect(try await q.readGroup("g", consumer: "c2", from: stream, count: 10, block: nil, ownPending: true).map(\.id) == Array(ids[3...5]))
            #expect(try await q.trim(stream, through: StreamEntryID(ms: .max, seq: .max)) == 3)
            #expect(try await q.length(of: stream) == 0)
            let next = try await q.append(to: stream, fields: fields(9))
            #expect(next > ids[5])
            #expect(try await q.length(of: stream) == 1)
            let leaseKey = "\(prefix):trim-lease"
            #expect(try await q.acquireLease(leaseKey, owner: "o", ttl: .seconds(30)))
            await expectQueueError(.wrongType) { try await q.trim(leaseKey, through: .zero) }
        }
    }

    @Test("streams are listed by prefix: only streams, on every master", arguments: Backend.all)
    func listStreams(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let base = "\(prefix):[list]*"  // glob characters in the prefix are literal
            var names: [String] = []
            for i in 0..<12 {
                let name = "\(base)site_\(i)"
                _ = try await q.append(to: name, fields: fields(i))
                names.append(name)
            }
            _ = try await q.acquireLease("\(base)lease", owner: "w", ttl: .seconds(30))
            _ = try await q.append(to: "\(prefix):[list]other", fields: fields(0))
            _ = try await q.append(to: "\(prefix):[list]Xsite", fields: fields(0))
            #expect(try await q.streams(withPrefix: base) == names.sorted())
            #expect(try await q.streams(withPrefix: "\(prefix):nothing:").isEmpty)
        }
    }

    @Test("bad input is rejected with a typed error", arguments: Backend.all)
    func badInput(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let stream = "\(prefix):bad"
            await expectQueueError(.invalidArgument) { try await q.append(to: stream, fields: []) }
            await expectQueueError(.invalidArgument) { try await q.append(to: "", fields: fields(1)) }
            #expect(try await q.length(of: stream) == 0)
            await expectQueueError(.noGroup) { try await q.readGroup("g", consumer: "c", from: stream, count: 1) }
            await expectQueueError(.noGroup) { try await q.pending("g", on: stream) }
            await expectQueueError(.noGroup) { try await q.autoClaim("g", consumer: "c", on: stream, minIdle: .zero, start: .zero, count: 1) }
            try await q.createGroup("g", on: stream)
            await expectQueueError(.noGroup) { try await q.readGroup("other", consumer: "c", from: stream, count: 1) }
            await expectQueueError(.invalidArgument) { try await q.readGroup("g", consumer: "c", from: stream, count: 0) }
            await expectQueueError(.invalidArgument) { try await q.readGroup("g", consumer: "", from: stream, count: 1) }
            await expectQueueError(.invalidArgument) { try await q.autoClaim("g", consumer: "c", on: stream, minIdle: .zero, start: .zero, count: 0) }
            await expectQueueError(.invalidArgument) { try await q.acquireLease("\(prefix):l", owner: "o", ttl: .zero) }

            // A key of another type.
            let leaseKey = "\(prefix):lease-key"
            #expect(try await q.acquireLease(leaseKey, owner: "o", ttl: .seconds(30)))
            await expectQueueError(.wrongType) { try await q.append(to: leaseKey, fields: fields(1)) }
            await expectQueueError(.wrongType) { try await q.createGroup("g", on: leaseKey) }
            await expectQueueError(.wrongType) { try await q.length(of: leaseKey) }
            await expectQueueError(.wrongType) { try await q.delete(from: leaseKey, ids: [.zero]) }
            await expectQueueError(.wrongType) { try await q.acquireLease(stream, owner: "o", ttl: .seconds(1)) }
            await expectQueueError(.wrongType) { try await q.renewLease(stream, owner: "o", ttl: .seconds(1)) }
        }
    }

    @Test("leases: acquire, extend, renew, release, expire", arguments: Backend.all)
    func leases(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let key = "\(prefix):lease:partition_0"
            #expect(try await q.acquireLease(key, owner: "w1", ttl: .seconds(30)))
            #expect(try await !q.acquireLease(key, owner: "w2", ttl: .seconds(30)))
            #expect(try await q.acquireLease(key, owner: "w1", ttl: .seconds(30)))
            #expect(try await q.renewLease(key, owner: "w1", ttl: .seconds(30)))
            #expect(try await !q.renewLease(key, owner: "w2", ttl: .seconds(30)))
            #expect(try await !q.releaseLease(key, owner: "w2"))
            #expect(try await q.releaseLease(key, owner: "w1"))
            #expect(try await !q.releaseLease(key, owner: "w1"))
            #expect(try await !q.renewLease(key, owner: "w1", ttl: .seconds(30)))
            #expect(try await q.acquireLease(key, owner: "w2", ttl: .seconds(30)))

            let short = "\(prefix):lease:partition_1"
            #expect(try await q.acquireLease(short, owner: "w1", ttl: .milliseconds(150)))
            #expect(try await q.renewLease(short, owner: "w1", ttl: .milliseconds(150)))
            try await Task.sleep(for: .milliseconds(350))
            #expect(try await !q.renewLease(short, owner: "w1", ttl: .seconds(30)))
            #expect(try await q.acquireLease(short, owner: "w2", ttl: .seconds(30)))
            #expect(try await !q.acquireLease(short, owner: "w1", ttl: .seconds(30)))
        }
    }

    @Test("fencing leases: the epoch grows by one each time the lease is newly taken, never otherwise", arguments: Backend.all)
    func fencingEpochs(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let key = "\(prefix):lease:partition_9"
            let epochKey = fencingEpochKey(for: key)
            #expect(try await q.acquireLease(key, owner: "w1", ttl: .seconds(30), epochKey: epochKey) == 1)
            #expect(try await q.acquireLease(key, owner: "w1", ttl: .seconds(30), epochKey: epochKey) == 1)  // held: same epoch
            #expect(try await q.acquireLease(key, owner: "w2", ttl: .seconds(30), epochKey: epochKey) == nil)
            #expect(try await q.renewLease(key, owner: "w1", ttl: .seconds(30)))
            #expect(try await q.releaseLease(key, owner: "w1"))
            #expect(try await q.acquireLease(key, owner: "w2", ttl: .milliseconds(150), epochKey: epochKey) == 2)
            try await Task.sleep(for: .milliseconds(350))  // expired: the next holder gets a higher epoch
            #expect(try await q.acquireLease(key, owner: "w1", ttl: .seconds(30), epochKey: epochKey) == 3)
            #expect(try await q.acquireLease(key, owner: "w2", ttl: .seconds(30), epochKey: epochKey) == nil)
            // The epoch counter is not a lease.
            #expect(try await q.leaseOwners(withPrefix: "\(prefix):lease:") == [key: "w1"])
            // Racing takers of a free lease: one winner, and it gets the next epoch.
            let race = "\(prefix):lease:race_fenced"
            let epochs = try await withThrowingTaskGroup(of: UInt64?.self) { group in
                for i in 0..<8 { group.addTask { try await q.acquireLease(race, owner: "w\(i)", ttl: .seconds(30), epochKey: fencingEpochKey(for: race)) } }
                var won: [UInt64] = []
                for try await e in group { if let e { won.append(e) } }
                return won
            }
            #expect(epochs == [1])
        }
    }

    @Test("a lease's epoch key hashes to the lease's cluster slot")
    func epochKeySlot() {
        for key in ["fi:lease:site_a", "fi:lease:partition_12", "{fi:events:x}:lease", "x{y}", "fi:member:3F2A"] {
            #expect(ClusterSlot.of(fencingEpochKey(for: key)) == ClusterSlot.of(key), "\(key)")
        }
        #expect(fencingEpochKey(for: "fi:lease:site_a") == "{fi:lease:site_a}:epoch")
        #expect(fencingEpochKey(for: "{fi:events:x}:lease") == "{fi:events:x}:lease:epoch")
    }

    @Test("concurrent lease acquisition has exactly one winner", arguments: Backend.all)
    func leaseRace(_ backend: Backend) async throws {
        try await withQueue(backend) { q, prefix in
            let key = "\(prefix):lease:race"
            let winners = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<16 { group.addTask { try await q.acquireLease(key, owner: "w\(i)", ttl: .seconds(30)) } }
                var n = 0
                for try await won in group where won { n += 1 }
                return n
            }
            #expect(winners == 1)
        }
    }

    @Test("ping, and a closed queue is unavailable", arguments: Backend.all)
    func pingAndClose(_ backend: Backend) async throws {
        let q = try await backend.makeQueue()
        try await q.ping()
        await q.close()
        await expectQueueError(.unavailable) { try await q.ping() }
        await expectQueueError(.unavailable) { try await q.append(to: "fi:test:closed", fields: fields(1)) }
    }
}

@Suite("StreamEntryID")
struct StreamEntryIDTests {
    @Test func parsing() {
        #expect(StreamEntryID("1700000000000-5") == StreamEntryID(ms: 1_700_000_000_000, seq: 5))
        #expect(StreamEntryID("0-0") == .zero)
        for bad in ["", "1", "-1", "1-", "a-1", "1-2-3", "1 -2", "99999999999999999999-0"] {
            #expect(StreamEntryID(bad) == nil, "\(bad)")
            #expect(StreamEntryID(bytes: Array(bad.utf8)) == nil, "\(bad)")
        }
        #expect(StreamEntryID(bytes: Array("18446744073709551615-18446744073709551615".utf8)) == StreamEntryID(ms: .max, seq: .max))
        #expect(StreamEntryID(ms: 5, seq: 9).description == "5-9")
    }

    @Test("formatting round-trips at every digit count, up to UInt64.max on both sides")
    func formatting() {
        var samples: [UInt64] = [0, 9, 10, 99, 100, .max, .max - 1]
        var power: UInt64 = 1
        for _ in 0..<19 {
            power *= 10
            samples += [power - 1, power, power + 7]
        }
        for ms in samples {
            for seq in samples.prefix(8) + [.max] {
                let id = StreamEntryID(ms: ms, seq: seq)
                #expect(id.description == "\(ms)-\(seq)")
                #expect(id.bytes == Array("\(ms)-\(seq)".utf8))
                #expect(StreamEntryID(id.description) == id)
            }
        }
    }

    @Test func ordering() {
        #expect(StreamEntryID(ms: 1, seq: 9) < StreamEntryID(ms: 2, seq: 0))
        #expect(StreamEntryID(ms: 2, seq: 0) < StreamEntryID(ms: 2, seq: 1))
        #expect(!(StreamEntryID(ms: 2, seq: 1) < StreamEntryID(ms: 2, seq: 1)))
    }
}
