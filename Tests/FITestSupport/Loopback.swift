import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// TCP on 127.0.0.1 for tests: free ports, probes, and a raw client.
///
/// Every descriptor here has exactly one owner: a ``TCPSocket`` closes its own
/// descriptor once, in `deinit`, and nothing else ever closes it. A socket that
/// fails to connect is closed before any object owns it. (A class whose `init`
/// closed its descriptor and then threw would have it closed a second time by
/// `deinit` — by then possibly a descriptor NIO had just accepted.)
public enum Loopback {
    /// A port on 127.0.0.1 that was free a moment ago (the kernel's choice).
    public static func freePort() throws -> Int {
        let socket = try TCPSocket()
        var address = sockaddr_in.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket.descriptor, $0, length) == 0 && getsockname(socket.descriptor, $0, &length) == 0
            }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A free port on 127.0.0.1 whose Redis Cluster bus port (+10000) is free too.
    public static func freePortWithBusPort() throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20000..<29000)
            if canBind(port: port) && canBind(port: port + 10000) { return port }
        }
        throw POSIXError(.EADDRINUSE)
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    public static func canConnect(port: Int) -> Bool {
        (try? TCPSocket.connect(port: port)) != nil
    }

    /// Whether a listener could bind 127.0.0.1:`port` now.
    public static func canBind(port: Int) -> Bool {
        guard let socket = try? TCPSocket() else { return false }
        var address = sockaddr_in.loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket.descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// Whether a Redis on 127.0.0.1:`port` answers PING with PONG (not LOADING), within a second.
    public static func answersPing(port: Int) -> Bool {
        guard let socket = try? TCPSocket.connect(port: port) else { return false }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(socket.descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let ping = Array("PING\r\n".utf8)
        guard write(socket.descriptor, ping, ping.count) == ping.count else { return false }
        var reply = [UInt8](repeating: 0, count: 64)
        let n = read(socket.descriptor, &reply, reply.count)
        return n > 0 && String(decoding: reply.prefix(n), as: UTF8.self).hasPrefix("+PONG")
    }
}

extension sockaddr_in {
    /// 127.0.0.1:`port`.
    public static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}

/// One TCP socket descriptor and its only owner: closed once, when this is dropped.
public final class TCPSocket: @unchecked Sendable {
    /// The descriptor; valid for this object's lifetime. Never close it yourself.
    public let descriptor: Int32

    /// A new, unconnected socket.
    public init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EMFILE) }
        descriptor = fd
    }

    /// A socket connected to 127.0.0.1:`port` (a loopback connect completes, or
    /// is refused, at once). Throws `ECONNREFUSED`; the failed socket is closed
    /// by its owner, like any other.
    public static func connect(port: Int) throws -> TCPSocket {
        let socket = try TCPSocket()
        var address = sockaddr_in.loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(socket.descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        return socket
    }

    deinit { Glibc.close(descriptor) }
}

/// Waits, bounded by `timeout`, until `condition` holds (checked every `interval`;
/// a throwing check counts as not yet). On timeout throws ``TimedOut``, naming
/// `what` and the last error the check threw, which the test then reports.
public func eventually(
    _ what: String,
    timeout: Duration = .seconds(20),
    interval: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    var lastError: (any Error)?
    while ContinuousClock.now < deadline {
        do {
            if try await condition() { return }
        } catch {
            lastError = error
        }
        try await Task.sleep(for: interval)
    }
    throw TimedOut(what: what, after: timeout, lastError: lastError.map { "\($0)" })
}

/// ``eventually(_:timeout:interval:_:)`` gave up.
public struct TimedOut: Error, CustomStringConvertible {
    public var what: String
    public var after: Duration
    /// The last error the check threw, if any.
    public var lastError: String?
    public var description: String {
        "timed out after \(after) waiting for: \(what)" + (lastError.map { " (last error: \($0))" } ?? "")
    }
}
