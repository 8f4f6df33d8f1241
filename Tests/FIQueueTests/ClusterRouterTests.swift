import Testing

@testable import FIQueue

/// The cluster router on its own, without Redis: slots → master, MOVED/ASK/TRYAGAIN, refresh.
@Suite("Redis Cluster router")
struct ClusterRouterTests {
    private func threeMasters() -> RedisClusterRouter {
        var router = RedisClusterRouter(maxRedirects: 10)
        let got1 = router.master(ofSlot: 0)
        #expect(got1 == nil, "nothing known before the first map")
        let got2 = router.startRefresh()
        #expect(got2)
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
        let got3 = router.master(ofSlot: 0)
        #expect(got3 == "10.0.0.1:7000")
        let got4 = router.master(ofSlot: 5460)
        #expect(got4 == "10.0.0.1:7000")
        let got5 = router.master(ofSlot: 5461)
        #expect(got5 == "10.0.0.2:7000")
        let got6 = router.master(ofSlot: 16383)
        #expect(got6 == "10.0.0.9:7002")
        #expect(router.masters == ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.9:7002"])
        let got7 = router.startRefresh()
        #expect(!got7, "no refresh wanted once the map is read")
    }

    @Test("an unknown slot wants a refresh; only one refresh runs at a time")
    func unknownSlot() {
        var router = RedisClusterRouter(maxRedirects: 10)
        let got8 = router.master(ofSlot: 42)
        #expect(got8 == nil)
        let got9 = router.startRefresh()
        #expect(got9)
        let got10 = router.startRefresh()
        #expect(!got10, "already running")
        let got11 = router.master(ofSlot: 42)
        #expect(got11 == nil)
        router.refreshFailed()
        let got12 = router.startRefresh()
        #expect(got12, "wanted again after the failed one")
        router.refreshed([RedisReplies.SlotRange(slots: 0...16383, host: "h", port: 1)], answeredBy: "h")
        let got13 = router.master(ofSlot: 42)
        #expect(got13 == "h:1")
    }

    @Test("MOVED moves that slot at once and wants a refresh of the rest")
    func moved() {
        var router = threeMasters()
        let slot = ClusterSlot.of("fi:events:site_a")
        var redirects = 0
        let from = router.master(ofSlot: slot)!
        let got14 = router.next(afterReply: "MOVED \(slot) 10.0.0.3:7005", slot: slot, from: from, redirects: &redirects)
        #expect(got14 == .moved(to: "10.0.0.3:7005"))
        #expect(redirects == 1)
        let got15 = router.master(ofSlot: slot)
        #expect(got15 == "10.0.0.3:7005")
        let got16 = router.master(ofSlot: (slot + 1) % ClusterSlot.count)
        #expect(got16 != "10.0.0.3:7005", "only that slot")
        let got17 = router.startRefresh()
        #expect(got17)
        // An empty host in the redirect is the node that sent it.
        let got18 = router.next(afterReply: "MOVED 7 :7009", slot: 7, from: "10.0.0.1:7000", redirects: &redirects)
        #expect(got18 == .moved(to: "10.0.0.1:7009"))
        let got19 = router.master(ofSlot: 7)
        #expect(got19 == "10.0.0.1:7009")
    }

    @Test("ASK redirects one command and leaves the map alone")
    func ask() {
        var router = threeMasters()
        var redirects = 0
        let got20 = router.next(afterReply: "ASK 100 10.0.0.2:7000", slot: 100, from: "10.0.0.1:7000", redirects: &redirects)
        #expect(got20 == .ask(to: "10.0.0.2:7000"))
        let got21 = router.master(ofSlot: 100)
        #expect(got21 == "10.0.0.1:7000")
        let got22 = router.startRefresh()
        #expect(!got22)
    }

    @Test("TRYAGAIN and CLUSTERDOWN pause and retry, longer each time; other replies are the answer")
    func retryAndDone() {
        var router = threeMasters()
        var redirects = 0
        let got23 = router.next(afterReply: "TRYAGAIN Multiple keys request during rehashing of slot", slot: 1, from: "a:1", redirects: &redirects)
        #expect(got23 == .retry(after: .milliseconds(20)))
        let got24 = router.next(afterReply: "CLUSTERDOWN The cluster is down", slot: 1, from: "a:1", redirects: &redirects)
        #expect(got24 == .retry(after: .milliseconds(40)))
        for text in [nil, "WRONGTYPE Operation against a key", "NOGROUP No such key", "ERR MOVED is not a command", "MOVED garbage"] {
            var n = 0
            let got25 = router.next(afterReply: text, slot: 1, from: "a:1", redirects: &n)
            #expect(got25 == .done, "\(text ?? "success")")
        }
    }

    @Test("more than maxRedirects redirects for one command stop it")
    func redirectLimit() {
        var router = RedisClusterRouter(maxRedirects: 3)
        var redirects = 0
        for _ in 0..<3 {
            let got26 = router.next(afterReply: "ASK 5 b:2", slot: 5, from: "a:1", redirects: &redirects)
            #expect(got26 == .ask(to: "b:2"))
        }
        let got27 = router.next(afterReply: "ASK 5 b:2", slot: 5, from: "a:1", redirects: &redirects)
        #expect(got27 == .tooManyRedirects)
    }

    @Test("a node failure wants a refresh (failover)")
    func nodeFailure() {
        var router = threeMasters()
        router.nodeFailed()
        let got28 = router.startRefresh()
        #expect(got28)
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
