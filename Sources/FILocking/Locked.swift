// The lock every FI module guards shared state with.
//
// Normally `Locked` is the standard library's `Synchronization.Mutex`. Under
// Thread Sanitizer that `Mutex` is invisible: on Linux it locks with atomics
// and futexes inside the uninstrumented standard library, so TSan sees no
// happens-before edge and reports every guarded access as a race (a false
// positive, see Docs/reliability.md). `scripts/sanitizers.sh thread` builds
// with `-Xswiftc -DFI_TSAN`, which swaps in a pthread mutex TSan understands.

#if FI_TSAN
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pthread mutex guarding a value: `Mutex`'s API, visible to Thread Sanitizer.
public final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init(_ initialValue: Value) {
        value = initialValue
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
#else
import Synchronization

public typealias Locked<Value: ~Copyable> = Mutex<Value>
#endif
