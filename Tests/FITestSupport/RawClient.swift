import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A raw, non-blocking TCP client on 127.0.0.1: sends exactly the bytes it is
/// given and polls with `Task.sleep`, never blocking a cooperative thread. Its
/// socket is a ``TCPSocket``, the descriptor's only owner.
public final class RawClient: @unchecked Sendable {
    private let socket: TCPSocket
    private var fd: Int32 { socket.descriptor }

    /// Connects to 127.0.0.1:`port`; throws `ECONNREFUSED` when nothing listens.
    public init(port: Int) throws {
        socket = try TCPSocket.connect(port: port)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Sends what the socket takes now: `false` once the peer has closed.
    public func trySend(_ bytes: [UInt8]) throws -> Bool {
        let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n >= 0 { return true }
        if errno == EAGAIN || errno == EWOULDBLOCK { return true }
        return false
    }

    /// Sends all of `bytes` (at most 5 s).
    public func send(_ bytes: [UInt8]) async throws {
        var offset = 0
        for _ in 0..<500 where offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                offset += n
            } else if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
                throw POSIXError(.EPIPE)
            } else {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        if offset < bytes.count { throw POSIXError(.ETIMEDOUT) }
    }

    /// Sends `head`, then `filler` bytes up to `limit` in all, until the peer
    /// closes or `within` passes.
    /// - Returns: how many bytes went out, and whether the peer closed.
    public func sendUntilClosed(_ head: [UInt8], then filler: UInt8, upTo limit: Int, within: Duration) async throws -> (sent: Int, closed: Bool) {
        try await send(head)
        var total = head.count
        let chunk = [UInt8](repeating: filler, count: 16 * 1024)
        let deadline = ContinuousClock.now + within
        while total < limit && ContinuousClock.now < deadline {
            let n = chunk.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, min($0.count, limit - total), Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                total += n
            } else if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
                return (total, true)  // reset / broken pipe: the server closed
            } else {
                if peerClosed() { return (total, true) }
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        return (total, peerClosed())
    }

    /// `true` when the peer has closed (EOF or reset); does not consume data.
    public func peerClosed() -> Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        if n == 0 { return true }
        if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
        return false
    }

    /// Reads one response (head + Content-Length body), at most 5 s.
    public func readResponse() async throws -> String {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<500 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                data.append(contentsOf: buffer[0..<n])
                let text = String(decoding: data, as: UTF8.self)
                if let split = text.range(of: "\r\n\r\n") {
                    let head = text[..<split.lowerBound].lowercased()
                    let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                        .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                    if text.utf8.distance(from: split.upperBound.samePosition(in: text.utf8)!, to: text.utf8.endIndex) >= length {
                        return text
                    }
                }
            } else if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) {
                return String(decoding: data, as: UTF8.self)
            } else {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        throw POSIXError(.ETIMEDOUT)
    }

    /// Everything the peer sends until it closes; "" on a reset.
    public func readUntilClosed(within: Duration) async throws -> String {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                data.append(contentsOf: buffer[0..<n])
            } else if n == 0 {
                return String(decoding: data, as: UTF8.self)
            } else if errno != EAGAIN && errno != EWOULDBLOCK {
                return ""
            } else {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        throw POSIXError(.ETIMEDOUT)
    }
}
