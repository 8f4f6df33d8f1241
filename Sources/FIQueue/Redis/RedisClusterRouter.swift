/// Redis Cluster routing as a plain state machine, with no I/O: which master serves a key's slot,
/// what a `MOVED`, `ASK`, `TRYAGAIN` or `CLUSTERDOWN` reply means for the command that got it, and
/// when the slot map should be read again (`CLUSTER SLOTS`). `RedisEventQueue` holds one behind a
/// lock and does what it says; `ClusterRouterTests` drive it without Redis.
///
/// Nodes are named by address (`host:port`).
struct RedisClusterRouter: Sendable {
    /// What to do with a reply to a command sent for a slot.
    enum Next: Equatable, Sendable {
        /// The reply is the command's answer (success or an ordinary error).
        case done
        /// The slot has moved for good: send the command again to the slot's new master.
        case moved(to: String)
        /// The slot is being migrated and the key is on the importing node: send `ASKING` and
        /// the command to it, once; the slot map stays as it is.
        case ask(to: String)
        /// The cluster is reconfiguring (`TRYAGAIN`, `CLUSTERDOWN`): send it again after a pause.
        case retry(after: Duration)
        /// More than `maxRedirects` redirects for one command.
        case tooManyRedirects
    }

    let maxRedirects: Int
    /// The master serving each slot, `nil` where not known.
    private var slots: [String?] = Array(repeating: nil, count: ClusterSlot.count)
    private var refreshWanted = false
    private var refreshing = false

    init(maxRedirects: Int) {
        self.maxRedirects = maxRedirects
    }

    /// The master serving `slot`, or `nil` if no map says (then a refresh is wanted, and any
    /// node will answer with a MOVED to the owner).
    mutating func master(ofSlot slot: Int) -> String? {
        if let node = slots[slot] { return node }
        refreshWanted = true
        return nil
    }

    /// Every master in the map, each once, in slot order (kept up to date as the map changes).
    private(set) var masters: [String] = []

    private mutating func mapChanged() {
        var seen = Set<String>()
        masters = slots.compactMap { node in
            guard let node, seen.insert(node).inserted else { return nil }
            return node
        }
    }

    /// After a reply to a command for `slot` sent to `node`: what next. `redirects` counts the
    /// command's redirects so far and is incremented for each one.
    mutating func next(afterReply errorText: String?, slot: Int, from node: String, redirects: inout Int) -> Next {
        guard let errorText else { return .done }
        let words = errorText.split(separator: " ")
        guard let kind = words.first, ["MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"].contains(kind) else { return .done }
        redirects += 1
        if redirects > maxRedirects { return .tooManyRedirects }
        switch kind {
        case "MOVED", "ASK":
            guard words.count >= 3, let target = Self.address(String(words[2]), answeredBy: node) else { return .done }
            if kind == "ASK" { return .ask(to: target) }
            // This slot at once; the rest of the map is probably stale too (a failover, a resharding).
            if slots[slot] != target {
                slots[slot] = target
                mapChanged()
            }
            refreshWanted = true
            return .moved(to: target)
        default:
            return .retry(after: .milliseconds(20 * redirects))
        }
    }

    /// A node could not be reached, or did not answer in time: its slots may have a new master.
    mutating func nodeFailed() {
        refreshWanted = true
    }

    /// Whether to read the slot map now: a refresh is wanted and none is running. When true, the
    /// caller reads `CLUSTER SLOTS` and reports with ``refreshed(_:answeredBy:)`` or ``refreshFailed()``.
    mutating func startRefresh() -> Bool {
        guard refreshWanted, !refreshing else { return false }
        refreshWanted = false
        refreshing = true
        return true
    }

    /// A `CLUSTER SLOTS` reply replaces the map. An empty or `?` host means the node that answered.
    mutating func refreshed(_ ranges: [RedisReplies.SlotRange], answeredBy host: String) {
        refreshing = false
        var map = [String?](repeating: nil, count: ClusterSlot.count)
        for range in ranges {
            let h = range.host.isEmpty || range.host == "?" ? host : range.host
            for s in range.slots { map[s] = "\(h):\(range.port)" }
        }
        slots = map
        mapChanged()
    }

    mutating func refreshFailed() {
        refreshing = false
    }

    /// `host:port` of a redirect; an empty host means the node that sent it (`node` is `host:port`).
    static func address(_ text: String, answeredBy node: String) -> String? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65_535).contains(port) else {
            return nil
        }
        var host = String(text[..<colon])
        if host.isEmpty || host == "?" {
            guard let nodeColon = node.lastIndex(of: ":") else { return nil }
            host = String(node[..<nodeColon])
        }
        return "\(host):\(port)"
    }
}
