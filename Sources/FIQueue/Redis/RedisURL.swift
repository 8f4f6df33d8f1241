import Foundation

extension RedisEndpoint {
    /// Parses `redis://[[username]:password@]host[:port][/db]`, or the same with `rediss://` (TLS).
    init(url: String) throws {
        guard let scheme = ["redis://", "rediss://"].first(where: { url.hasPrefix($0) }) else {
            throw EventQueueError(.invalidArgument, "a Redis URL starts with redis:// or rediss://, got '\(url)'")
        }
        var rest = Substring(url.dropFirst(scheme.count))
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userinfo.firstIndex(of: ":") {
                let user = String(userinfo[..<colon])
                username = user.isEmpty ? nil : (user.removingPercentEncoding ?? user)
                let pass = String(userinfo[userinfo.index(after: colon)...])
                password = pass.removingPercentEncoding ?? pass
            } else if !userinfo.isEmpty {
                // redis://password@host is what many tools accept.
                password = String(userinfo).removingPercentEncoding ?? String(userinfo)
            }
        }
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
            rest = rest[..<slash]
            if !db.isEmpty {
                guard let n = Int(db), n >= 0 else {
                    throw EventQueueError(.invalidArgument, "bad database number '\(db)' in Redis URL")
                }
                database = n
            }
        }
        let (host, port) = try Self.hostPort(String(rest), defaultPort: 6379)
        self.init(host: host, port: port, username: username, password: password, database: database)
    }

    /// Parses `host[:port]` (IPv6 in brackets).
    static func hostPort(_ text: String, defaultPort: Int) throws -> (String, Int) {
        var host = text
        var port = defaultPort
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw EventQueueError(.invalidArgument, "bad address '\(text)'")
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            let after = text[text.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else {
                    throw EventQueueError(.invalidArgument, "bad port in '\(text)'")
                }
                port = p
            }
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            guard let p = Int(text[text.index(after: colon)...]), (1...65535).contains(p) else {
                throw EventQueueError(.invalidArgument, "bad port in '\(text)'")
            }
            port = p
        }
        if host.isEmpty { throw EventQueueError(.invalidArgument, "missing host in '\(text)'") }
        return (host, port)
    }
}
