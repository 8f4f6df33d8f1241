import FILocking
import Synchronization

/// How long this worker may still act on a partition lease, by its own
/// monotonic clock.
///
/// The lease is taken as valid until `sent + ttl − ttl/4`, where `sent` is
/// when the SET/PEXPIRE that granted it was sent: Redis starts the TTL later
/// than that, so the worker always stops before any other worker can take the
/// lease over. A runner checks ``isValid`` before every write.
final class LeaseClock: Sendable {
    private let validUntil = Locked<ContinuousClock.Instant>(.now)
    let ttl: Duration

    init(ttl: Duration) { self.ttl = ttl }

    var isValid: Bool { ContinuousClock.now < validUntil.withLock { $0 } }

    func granted(sentAt: ContinuousClock.Instant) {
        validUntil.withLock { $0 = sentAt + ttl - ttl / 4 }
    }

    func revoke() {
        validUntil.withLock { $0 = .now - .seconds(1) }
    }
}
