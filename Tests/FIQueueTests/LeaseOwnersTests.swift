import Foundation
import Testing

@testable import FIQueue

@Suite("Lease listing")
struct LeaseOwnersTests {
    @Test("leaseOwners lists live leases under a prefix with their owners, and drops released and expired ones", arguments: Backend.all)
    func listing(backend: Backend) async throws {
        try await withQueue(backend) { queue, prefix in
            let a = "\(prefix):lease:a"
            let b = "\(prefix):lease:{b}"
            #expect(try await queue.acquireLease(a, owner: "w1", ttl: .seconds(10)))
            #expect(try await queue.acquireLease(b, owner: "w2", ttl: .seconds(1)))  // generous: the listing below must see it on a loaded machine
            _ = try await queue.append(to: "\(prefix):lease:stream", fields: [StreamField("f", "v")])
            #expect(try await queue.leaseOwners(withPrefix: "\(prefix):lease:") == [a: "w1", b: "w2"], "streams are not leases")
            #expect(try await queue.leaseOwners(withPrefix: "\(prefix):other:").isEmpty)
            #expect(try await queue.releaseLease(a, owner: "w1"))
            try await Task.sleep(for: .milliseconds(1300))
            #expect(try await queue.leaseOwners(withPrefix: "\(prefix):lease:").isEmpty)
            _ = try await queue.delete(from: "\(prefix):lease:stream", ids: [])
        }
    }
}
