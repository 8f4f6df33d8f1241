import NIOSSL

extension RedisEventQueue {
    /// TLS to Redis (`rediss://`, or a Redis Cluster started with `--tls-cluster yes`), through
    /// swift-nio-ssl. The server's certificate is always verified — against `caFile`, or the
    /// system's trust store — and so is its name: the URL's host name, or for an IP address the
    /// certificate's IP address entries.
    public struct TLS: Sendable, Equatable {
        /// PEM file of the certificate authorities to trust; `nil`: the system's trust store.
        public var caFile: String?
        /// PEM certificate (chain) and private key presented to a server that verifies clients
        /// (`tls-auth-clients yes`); both or neither.
        public var certificateFile: String?
        public var privateKeyFile: String?

        public init(caFile: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.privateKeyFile = privateKeyFile
        }

        /// The client context: files read once, at connect.
        /// - Throws: `.invalidArgument` naming the file that cannot be used.
        func makeContext() throws -> NIOSSLContext {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.minimumTLSVersion = .tlsv12
            configuration.certificateVerification = .fullVerification
            if let caFile {
                configuration.trustRoots = .certificates(try Self.load("TLS CA file", caFile) { try NIOSSLCertificate.fromPEMFile($0) })
            }
            switch (certificateFile, privateKeyFile) {
            case (nil, nil):
                break
            case (let cert?, let key?):
                let chain = try Self.load("TLS certificate file", cert) { try NIOSSLCertificate.fromPEMFile($0) }
                configuration.certificateChain = chain.map { .certificate($0) }
                configuration.privateKey = .privateKey(try Self.load("TLS key file", key) { try NIOSSLPrivateKey(file: $0, format: .pem) })
            default:
                throw EventQueueError(.invalidArgument, "a TLS client certificate needs both a certificate file and a key file")
            }
            do {
                return try NIOSSLContext(configuration: configuration)
            } catch {
                throw EventQueueError(.invalidArgument, "cannot set up TLS: \(error)")
            }
        }

        private static func load<T>(_ what: String, _ path: String, _ body: (String) throws -> T) throws -> T {
            do {
                let value = try body(path)
                if let list = value as? [NIOSSLCertificate], list.isEmpty {
                    throw EventQueueError(.invalidArgument, "\(what) \(path): no PEM certificate in the file")
                }
                return value
            } catch let error as EventQueueError {
                throw error
            } catch {
                throw EventQueueError(.invalidArgument, "\(what) \(path): cannot be read as PEM (\(error))")
            }
        }
    }
}
