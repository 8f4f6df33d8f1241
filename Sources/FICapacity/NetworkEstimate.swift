/// A network link's capacity.
public struct NetworkLink: Sendable, Hashable, Codable {
    /// A label, e.g. `1 GbE`.
    public let name: String
    /// Line rate, bits per second.
    public let bitsPerSecond: Double

    /// Creates a link.
    /// - Parameters:
    ///   - name: A label for tables.
    ///   - bitsPerSecond: Line rate in bits per second, > 0.
    /// - Throws: ``CapacityError`` if the rate is not positive and finite.
    public init(name: String, bitsPerSecond: Double) throws(CapacityError) {
        try Check.positive(bitsPerSecond, "bits_per_second")
        self.name = name
        self.bitsPerSecond = bitsPerSecond
    }

    private init(uncheckedName name: String, bitsPerSecond: Double) {
        self.name = name
        self.bitsPerSecond = bitsPerSecond
    }

    /// 1 Gigabit Ethernet: 10⁹ bit/s = 125 MB/s.
    public static let gigabitEthernet = NetworkLink(uncheckedName: "1 GbE", bitsPerSecond: 1e9)
    /// 10 Gigabit Ethernet: 10¹⁰ bit/s = 1,250 MB/s.
    public static let tenGigabitEthernet = NetworkLink(uncheckedName: "10 GbE", bitsPerSecond: 1e10)

    /// Line rate, megabytes (10⁶ B) per second.
    public var megabytesPerSecond: Double { bitsPerSecond / 8 / 1e6 }
}

/// Network traffic of the event path against link capacities.
///
/// One event crosses the network ``traversals`` times: by default 3 — client → fi-server,
/// fi-server → Redis (`XADD`), Redis → worker (`XREADGROUP`). Add one per Redis replica.
/// ``bytesPerEvent`` should include protocol framing (HTTP headers, RESP) if you know it;
/// the figures are payload rates, before TCP/IP and Ethernet framing (about 5 % more on the wire).
public struct NetworkEstimate: Sendable, Hashable, Codable {
    /// One link's load.
    public struct LinkLoad: Sendable, Hashable, Codable {
        /// The link's label.
        public let link: String
        /// The link's line rate, MB/s.
        public let capacityMegabytesPerSecond: Double
        /// Traffic / line rate, a fraction (above 1: the link cannot carry it).
        public let utilisation: Double
    }

    /// The default number of times an event crosses the network: 3.
    public static let defaultTraversals = 3

    /// Events per second.
    public let eventsPerSecond: Double
    /// Bytes per event on each traversal.
    public let bytesPerEvent: Double
    /// Times each event crosses the network.
    public let traversals: Int
    /// Traffic, megabytes (10⁶ B) per second, over all traversals.
    public let megabytesPerSecond: Double
    /// Traffic, megabits (10⁶ bit) per second, over all traversals.
    public let megabitsPerSecond: Double
    /// Load on each link considered.
    public let links: [LinkLoad]

    /// Computes traffic and link utilisation.
    /// - Parameters:
    ///   - eventsPerSecond: Events per second, ≥ 0.
    ///   - bytesPerEvent: Bytes per event per traversal, > 0.
    ///   - traversals: Times each event crosses the network, > 0 (default 3).
    ///   - links: Links to compare against (default 1 GbE and 10 GbE).
    /// - Throws: ``CapacityError`` naming the first invalid input.
    public init(
        eventsPerSecond: Double,
        bytesPerEvent: Double,
        traversals: Int = NetworkEstimate.defaultTraversals,
        links: [NetworkLink] = [.gigabitEthernet, .tenGigabitEthernet]
    ) throws(CapacityError) {
        try Check.nonNegative(eventsPerSecond, "events_per_second")
        try Check.positive(bytesPerEvent, "bytes_per_event")
        try Check.positive(traversals, "traversals")
        let bytesPerSecond = eventsPerSecond * bytesPerEvent * Double(traversals)
        try Check.finite(bytesPerSecond, "events_per_second")
        self.eventsPerSecond = eventsPerSecond
        self.bytesPerEvent = bytesPerEvent
        self.traversals = traversals
        self.megabytesPerSecond = bytesPerSecond / 1e6
        self.megabitsPerSecond = bytesPerSecond * 8 / 1e6
        self.links = links.map {
            LinkLoad(link: $0.name, capacityMegabytesPerSecond: $0.megabytesPerSecond, utilisation: bytesPerSecond * 8 / $0.bitsPerSecond)
        }
    }
}
