// libFuzzer target: identifier and partition-key validation (FIPartitioning),
// compiled into this executable together with that module's sources.
//
// Whatever a validator accepts must be safe to embed in a Redis key and a file
// path: only its documented characters, no separator, no `..`, and every name
// derived from it parses back to the same key.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPartitioning(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let selector = data[0]
    let rest = UnsafeBufferPointer(start: data + 1, count: size - 1)
    // Split the rest at the first 0xFF into a consultation id and a site id.
    let cut = rest.firstIndex(of: 0xFF) ?? rest.count
    let first = String(decoding: rest[..<cut], as: UTF8.self)
    let second = cut < rest.count ? String(decoding: rest[(cut + 1)...], as: UTF8.self) : nil

    if let site = try? SiteID(validating: first) {
        let utf8 = Array(site.rawValue.utf8)
        precondition((1...SiteID.maximumLength).contains(utf8.count))
        precondition(utf8.allSatisfy(ASCII.isSiteCharacter))
        checkKey(.site(site))
    }
    if let id = try? ConsultationID(validating: first) {
        let utf8 = Array(id.rawValue.utf8)
        precondition((1...ConsultationID.maximumLength).contains(utf8.count))
        precondition(ASCII.isAlphanumeric(utf8[0]) && utf8.allSatisfy(ASCII.isConsultationCharacter))
        precondition(id.rawValue != "." && id.rawValue != "..")
    }
    if let key = try? PartitionKey(validating: first) {
        precondition(key.rawValue == first, "a key is accepted only as written")
        checkKey(key)
    }
    if let key = PartitionKey(streamName: first) {
        precondition(key.streamName == first)
        checkKey(key)
    }

    // Routing: any consultation id, any site.
    let partitions = [1, 2, 3, 7, 64, 4097, Partitioner.maximumPartitions][Int(selector) % 7]
    let strategy: Partitioner.Strategy = selector & 0x80 == 0 ? .modulo : .jumpConsistentHash
    let partitioner = try! Partitioner(partitions: partitions, strategy: strategy)
    do {
        let key = try partitioner.key(consultationID: first, siteID: second)
        if let second, !second.isEmpty {
            precondition(key.rawValue == "site_" + second, "a valid site routes to its own partition")
        } else {
            let n = partitioner.partitionNumber(consultationID: first)
            precondition((0..<partitions).contains(n))
            precondition(key == .hashPartition(n))
            precondition(partitioner.partitionNumber(consultationID: first) == n, "routing is deterministic")
        }
        checkKey(key)
    } catch {
        precondition(second.map { !$0.isEmpty && (try? SiteID(validating: $0)) == nil } ?? false, "only a bad site id fails routing")
    }
    return 0
}

private func checkKey(_ key: PartitionKey) {
    let raw = key.rawValue
    precondition(!raw.isEmpty && !raw.contains("/") && !raw.contains("..") && !raw.contains(":"))
    precondition(raw.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }, "no space, control or non-ASCII character in a key")
    precondition(PartitionKey(streamName: key.streamName) == key, "stream names parse back")
    precondition(key.streamName == "fi:events:" + raw && key.deadLetterStreamName == "fi:dead:" + raw && key.leaseKey == "fi:lease:" + raw)
    let path = key.corpusPath(storageRoot: "/srv/storage")
    precondition(path == "/srv/storage/" + raw + "/corpus.h5", "the corpus stays one directory under the root: \(path)")
    precondition(try! PartitionKey(validating: raw) == key)
}
