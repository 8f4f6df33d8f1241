import FIPartitioning
import Testing

@Suite("Validation")
struct ValidationTests {
    @Test("valid site ids are accepted", arguments: ["a", "hospital_a", "C-3", String(repeating: "z", count: 64), "0", "_", "-"])
    func goodSites(site: String) throws {
        #expect(try SiteID(validating: site).rawValue == site)
        #expect(try Partitioner().key(consultationID: "x", siteID: site).rawValue == "site_" + site)
    }

    @Test(
        "invalid site ids are rejected with a site_id error",
        arguments: [
            " ", "a b", "a/b", "/", "..", "../etc", "a.b", "a\0b", "\0", "ñ", "a:b", "a%2Fb", "a\\b",
            "a\n", String(repeating: "z", count: 65), "🙂",
        ]
    )
    func badSites(site: String) {
        #expect(throws: PartitionError.self) { try SiteID(validating: site) }
        do {
            _ = try Partitioner().key(consultationID: "x", siteID: site)
            Issue.record("accepted site id \(site.debugDescription)")
        } catch {
            #expect(error.code == .invalidSiteID)
            #expect(error.code.field == "site_id")
            #expect(!error.message.isEmpty)
        }
    }

    @Test(
        "valid consultation ids are accepted",
        arguments: [
            "a", "4ba71ab7-ac05-44a5-acc6-be1805fdf179", "c.1:2_3-4", "Z", "9.", String(repeating: "x", count: 128),
        ]
    )
    func goodConsultations(id: String) throws {
        #expect(try ConsultationID(validating: id).rawValue == id)
    }

    @Test(
        "invalid consultation ids are rejected with a consultation_id error",
        arguments: [
            "", ".", "..", "../x", ".hidden", "-a", "_a", ":a", "a/b", "a%2Fb", "%2F", "a\0", "a b", "ñandú",
            "a\\b", "a?b", "a#b", "a\u{202E}", String(repeating: "x", count: 129),
        ]
    )
    func badConsultations(id: String) {
        do {
            _ = try ConsultationID(validating: id)
            Issue.record("accepted consultation id \(id.debugDescription)")
        } catch {
            #expect(error.code == .invalidConsultationID)
            #expect(error.code.field == "consultation_id")
        }
    }

    @Test("partition keys parse only as site_<site> or partition_<n>")
    func partitionKeys() throws {
        #expect(try PartitionKey(validating: "site_a") == .site(SiteID(validating: "a")))
        #expect(try PartitionKey(validating: "partition_0") == .hashPartition(0))
        #expect(try PartitionKey(validating: "partition_17").rawValue == "partition_17")
        for bad in [
            "", "site_", "site_..", "site_a/b", "site_a\0", "partition_", "partition_-1", "partition_01",
            "partition_x", "partition_99999999", "partition_1048576", "..", "/", "x", "fi:events:site_a",
            "site_" + String(repeating: "a", count: 65), "partition_ 1", "partition_+1",
        ] {
            do {
                _ = try PartitionKey(validating: bad)
                Issue.record("accepted partition key \(bad.debugDescription)")
            } catch {
                #expect(error.code == .invalidPartitionKey)
            }
        }
    }

    @Test("stream names and corpus paths are derived from the key and stay under the root")
    func derivedNames() throws {
        let key = try PartitionKey(validating: "site_hospital_a")
        #expect(key.streamName == "fi:events:site_hospital_a")
        #expect(key.deadLetterStreamName == "fi:dead:site_hospital_a")
        #expect(key.leaseKey == "fi:lease:site_hospital_a")
        #expect(key.corpusPath(storageRoot: "/data/storage") == "/data/storage/site_hospital_a/corpus.h5")
        #expect(key.corpusPath(storageRoot: "/data/storage/") == "/data/storage/site_hospital_a/corpus.h5")
        #expect(key.corpusPath(storageRoot: "./storage") == "./storage/site_hospital_a/corpus.h5")
        #expect(PartitionKey(streamName: "fi:events:partition_2") == .hashPartition(2))
        #expect(PartitionKey(streamName: "fi:events:../x") == nil)
        #expect(PartitionKey(streamName: "fi:dead:site_a") == nil)
        #expect(PartitionKey(streamName: "fi:events:") == nil)
        #expect(key.isSite)
        #expect(!PartitionKey.hashPartition(1).isSite)

        // Whatever the input, a key's path component is one plain name.
        let partitioner = try Partitioner(partitions: 16)
        for id in seededUUIDs(count: 200, seed: 7) + ["", "..", "/", "a/../../b", "\0"] {
            let component = partitioner.hashKey(consultationID: id).rawValue
            #expect(!component.contains("/") && !component.contains("..") && !component.contains("\0"))
        }
    }
}
