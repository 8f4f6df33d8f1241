import Testing

@testable import FIQueue

/// The cluster router on its own, without Redis: slots → master, MOVED/ASK/TRYAGAIN, refresh.
@Suite("Redis Cluster router")
struct ClusterRouterTests {
    private func threeMasters() -> RedisClusterRouter {
        var router = RedisClusterRouter(maxRedirects: 10)
        #expect(router.master(ofSlot: 0) == nil, "nothing known before the first map")
        #expect(router.startRefresh())
        router.refreshed([
            RedisReplies.SlotRange(slots: 0...5460, host: "10.0.0.1", port: 7000),
            RedisReplies.SlotRange(slots: 5461...10922, host: "10.0.0.2", port: 7000),
            RedisReplies.SlotRange(slots: 10923...16383, host: "", port: 7002),  // the node that answered
        ], answeredBy: "10.0.0.9")
        return router
    }

    @Test("a CLUSTER SLOTS map routes every slot to its master; an empty host is the node that answered")
    func slotMap() {
        var router = threeMasters()
        #expect(router.master(ofSlot: 0) == "10.0.0.1:7000")
        #expect(router.master(ofSlot: 5460) == "10.0.0.1:7000")
        #expect(router.master(ofSlot: 5461) == "10.0.0.2:7000")
        #expect(router.master(ofSlot: 16383) == "10.0.0.9:7002")
        #expect(router.masters == ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.9:7002"])
        #expect(!router.startRefresh(), "no refresh wanted once the map is read")
    }

    @Test("an unknown slot wants a refresh; only one refresh runs at a time")
    func unknownSlot() {
        var router = RedisClusterRouter(maxRedirects: 10)
        #expect(router.master(ofSlot: 42) == nil)
        #expect(router.startRefresh())
        #expect(!router.startRefresh(), "already running")
        #expect(router.master(ofSlot: 42) == nil)
        router.refreshFailed()
        #expect(router.startRefresh(), "wanted again after the failed one")
        router.refreshed([RedisReplies.SlotRange(slots: 0...16383, host: "h", port: 1)], answeredBy: "h")
        #expect(router.master(ofSlot: 42) == "h:1")
    }

    @Test("MOVED moves that slot at once and wants a refresh of the rest")
    func moved() {
        var router = threeMasters()
        let slot = ClusterSlot.of("fi:events:site_a")
        var redirects = 0
        let from = router.master(ofSlot: slot)!
        #expect(router.next(afterReply: "MOVED \(slot) 10.0.0.3:7005", slot: slot, from: from, redirects: &redirects) == .moved(to: "10.0.0.3:7005"))
        #expect(redirects == 1)
        #expect(router.master(ofSlot: slot) == "10.0.0.3:7005")
        #expect(router.master(ofSlot: (slot + 1) % ClusterSlot.count) != "10.0.0.3:7005", "only that slot")
        #expect(router.startRefresh())
        // An empty host in the redirect is the node that sent it.
        #expect(router.next(afterReply: "MOVED 7 :7009", slot: 7, from: "10.0.0.1:7000", redirects: &redirects) == .moved(to: "10.0.0.1:7009"))
        #expect(router.master(ofSlot: 7) == "10.0.0.1:7009")
    }

    @Test("ASK redirects one command and leaves the map alone")
    func ask() {
        var router = threeMasters()
        var redirects = 0
        #expect(router.next(afterReply: "ASK 100 10.0.0.2:7000", slot: 100, from: "10.0.0.1:7000", redirects: &redirects) == .ask(to: "10.0.0.2:7000"))
        #expect(router.master(ofSlot: 100) == "10.0.0.1:7000")
        #expect(!router.startRefresh())
    }

    @Test("TRYAGAIN and CLUSTERDOWN pause and retry, longer each time; other replies are the answer")
    func retryAndDone() {
        var router = threeMasters()
        var redirects = 0
        #expect(router.next(afterReply: "TRYAGAIN Multiple keys request during rehashing of slot", slot: 1, from: "a:1", redirects: &redirects) == .retry(after: .milliseconds(20)))
        #expect(router.next(afterReply: "CLUSTERDOWN The cluster is down", slot: 1, from: "a:1", redirects: &redirects) == .retry(after: .milliseconds(40)))
        for text in [nil, "WRONGTYPE Operation against a key", "NOGROUP No such key", "ERR MOVED is not a command", "MOVED garbage"] {
            var n = 0
            #expect(router.next(afterReply: text, slot: 1, from: "a:1", redirects: &n) == .done, "\(text ?? "success")")
        }
    }

    @Test("more than maxRedirects redirects for one command stop it")
    func redirectLimit() {
        var router = RedisClusterRouter(maxRedirects: 3)
        var redirects = 0
        for _ in 0..<3 {
            #expect(router.next(afterReply: "ASK 5 b:2", slot: 5, from: "a:1", redirects: &redirects) == .ask(to: "b:2"))
        }
        #expect(router.next(afterReply: "ASK 5 b:2", slot: 5, from: "a:1", redirects: &redirects) == .tooManyRedirects)
    }

    @Test("a node failure wants a refresh (failover)")
    func nodeFailure() {
        var router = threeMasters()
        router.nodeFailed()
        #expect(router.startRefresh())
        router.refreshed([RedisReplies.SlotRange(slots: 0...16383, host: "10.0.0.4", port: 7000)], answeredBy: "x")
        #expect(router.masters == ["10.0.0.4:7000"])
    }

    @Test("redirect addresses: IPv4, IPv6 without brackets, host names, bad ports")
    func addresses() {
        #expect(RedisClusterRouter.address("127.0.0.1:6381", answeredBy: "a:1") == "127.0.0.1:6381")
        #expect(RedisClusterRouter.address("::1:7000", answeredBy: "a:1") == "::1:7000")
        #expect(RedisClusterRouter.address("redis-2.internal:6379", answeredBy: "a:1") == "redis-2.internal:6379")
        #expect(RedisClusterRouter.address(":7001", answeredBy: "10.1.1.1:7000") == "10.1.1.1:7001")
        #expect(RedisClusterRouter.address("host:0", answeredBy: "a:1") == nil)
        #expect(RedisClusterRouter.address("host", answeredBy: "a:1") == nil)
    }
}
