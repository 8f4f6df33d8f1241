import ArgumentParser
import FIWorkerKit
import Foundation

/// `fi-worker dead-letters list|show|redrive|purge`: inspect and repair `fi:dead:<partition>`.
struct DeadLettersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters",
        abstract: "Inspect and repair dead letters: list, show, redrive back to their partition, purge.",
        subcommands: [List.self, Show.self, Redrive.self, Purge.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters per partition with reason and delivery count.")
        @Argument(help: "Partitions (default: every partition that has dead letters).") var partitions: [String] = []
        @Flag(help: "Print JSON instead of a table.") var json = false
        @OptionGroup var flags: ConnectionFlags

        func run() async throws {
            let entries = try await withDeadLetters(flags) { try await $0.list(try DeadLetters.partitions(partitions)) }
            print(json ? try DeadLetters.json(entries) : DeadLetters.table(entries), terminator: "")
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead letter whole: every field, and where it was redriven.")
        @Argument(help: "The partition, e.g. site_a.") var partition: String
        @Argument(help: "The dead letter's id in fi:dead:<partition>.") var id: String
        @OptionGroup var flags: ConnectionFlags

        func run() async throws {
            guard let entry = try await withDeadLetters(flags, {
                try await $0.show(try DeadLetters.partitions([partition])[0], id: try DeadLetters.ids([id])[0])
            }) else {
                fail("no dead letter \(id) in partition \(partition)", code: 1)
            }
            print(try DeadLetters.json(entry), terminator: "")
        }
    }

    struct Redrive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send dead letters back to fi:events:<partition>; redriving one twice stores it once.")
        @Argument(help: "The partition, e.g. site_a.") var partition: String
        @Argument(help: "Dead-letter ids to redrive.") var ids: [String] = []
        @Flag(help: "Redrive every dead letter of the partition.") var all = false
        @OptionGroup var flags: ConnectionFlags

        func run() async throws {
            guard all != !ids.isEmpty else { fail("give dead-letter ids or --all (not both)", code: 64) }
            let done = try await withDeadLetters(flags) {
                try await $0.redrive(try DeadLetters.partitions([partition])[0], ids: try DeadLetters.ids(ids))
            }
            for item in done {
                print("\(item.deadLetterID) -> fi:events:\(partition) \(item.streamID)\(item.appended ? "" : " (already redriven)")")
            }
            print("redriven: \(done.count)")
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters for good (needs --yes).")
        @Argument(help: "The partition, e.g. site_a.") var partition: String
        @Argument(help: "Dead-letter ids to delete.") var ids: [String] = []
        @Flag(help: "Delete every dead letter of the partition.") var all = false
        @Flag(help: "Confirm: the entries are deleted and cannot be redriven.") var yes = false
        @OptionGroup var flags: ConnectionFlags

        func run() async throws {
            guard all != !ids.isEmpty else { fail("give dead-letter ids or --all (not both)", code: 64) }
            guard yes else { fail("purge deletes dead letters for good: add --yes to confirm", code: 64) }
            let deleted = try await withDeadLetters(flags) {
                try await $0.purge(try DeadLetters.partitions([partition])[0], ids: try DeadLetters.ids(ids))
            }
            print("purged: \(deleted)")
        }
    }
}

/// Connects as the flags say, runs `body`, and turns a failure into one line and exit 1.
private func withDeadLetters<T: Sendable>(_ flags: ConnectionFlags, _ body: @Sendable (DeadLetters) async throws -> T) async throws -> T {
    let options = try await flags.options()
    let target: QueueTarget
    do {
        target = try WorkerOptions.queueTarget(from: options)
    } catch {
        fail("\(error)", code: 64)
    }
    do {
        return try await DeadLetters.with(target: target, body)
    } catch let error as DeadLetterError {
        fail("\(error)", code: error.isUsage ? 64 : 1)
    } catch {
        fail("\(error)", code: 1)
    }
}

private func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("fi-worker dead-letters: error: \(message)\n".utf8))
    exit(code)
}
