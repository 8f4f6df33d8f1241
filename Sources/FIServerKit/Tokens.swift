import Crypto
import FIPartitioning
import Foundation

/// API tokens from a tokens file (Docs/contract.md §3): each non-comment line is
/// `<token> <site>[,<site>…]` or `<token> *`.
///
/// Only SHA-256 digests of the tokens are kept. A presented token is hashed
/// and compared with every stored digest in constant time, without stopping
/// at a match, so timing tells nothing about which token or how much of it
/// matched. Tokens are never logged; errors name line numbers only.
struct TokenStore: Sendable {
    /// What a token may do.
    struct Grant: Sendable, Equatable {
        /// `*`: every site and the hash partitions.
        var allSites: Bool
        var sites: Set<String>

        func allows(site: String?) -> Bool {
            if allSites { return true }
            guard let site else { return false }  // only a `*` token may use hash partitions
            return sites.contains(site)
        }
    }

    private let entries: [(digest: [UInt8], grant: Grant)]

    struct LoadError: Error, CustomStringConvertible {
        let description: String
    }

    /// Parses the text of a tokens file.
    init(text: String) throws {
        var entries: [([UInt8], Grant)] = []
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2 else {
                throw LoadError(description: "tokens file line \(number + 1): expected '<token> <site>[,<site>…]' or '<token> *'")
            }
            let token = parts[0]
            guard token.utf8.count >= 8 else {
                throw LoadError(description: "tokens file line \(number + 1): tokens must be at least 8 characters")
            }
            let grant: Grant
            if parts[1] == "*" {
                grant = Grant(allSites: true, sites: [])
            } else {
                var sites = Set<String>()
                for site in parts[1].split(separator: ",") {
                    do {
                        sites.insert(try SiteID(validating: String(site)).rawValue)
                    } catch {
                        throw LoadError(description: "tokens file line \(number + 1): \(error.message)")
                    }
                }
                grant = Grant(allSites: false, sites: sites)
            }
            entries.append((Self.digest(token), grant))
        }
        guard !entries.isEmpty else {
            throw LoadError(description: "tokens file has no tokens")
        }
        self.entries = entries
    }

    /// Loads a tokens file; `warning` is set when the file is readable by others.
    static func load(path: String) throws -> (store: TokenStore, warning: String?) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw LoadError(description: "cannot read tokens file \(path): \(error.localizedDescription)")
        }
        var warning: String?
        if let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let mode = attributes[.posixPermissions] as? NSNumber, mode.intValue & 0o004 != 0
        {
            warning = "tokens file \(path) is world-readable; chmod 600 it"
        }
        return (try TokenStore(text: text), warning)
    }

    /// The grant of a bearer token, or `nil` when it is unknown.
    func grant(forToken token: Substring) -> Grant? {
        let digest = Self.digest(token)
        var found: Grant?
        for entry in entries where Self.constantTimeEqual(entry.digest, digest) {
            found = found ?? entry.grant
        }
        return found
    }

    private static func digest(_ token: Substring) -> [UInt8] {
        Array(SHA256.hash(data: Array(token.utf8)))
    }

    /// Compares two 32-byte digests, always looking at every byte.
    private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    /// The grant for an `Authorization` header value, or `nil` when it is
    /// missing, not `Bearer`, or unknown.
    func grant(authorization: String?) -> Grant? {
        guard let authorization else { return nil }
        let prefix = "Bearer "
        guard authorization.count > prefix.count,
            authorization.prefix(prefix.count).lowercased() == prefix.lowercased()
        else { return nil }
        return grant(forToken: authorization.dropFirst(prefix.count).drop(while: { $0 == " " }))
    }
}
