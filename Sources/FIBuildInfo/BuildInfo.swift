/// What was built: the release version and the git commit.
///
/// The version is kept in step with `python/pyproject.toml` and the newest
/// release in `CHANGELOG.md` (a test compares them); the commit is recorded at
/// build time by `Plugins/BuildInfoPlugin`.
public enum BuildInfo {
    /// The FI Scale release, semantic versioning.
    public static let version = "0.1.0"

    /// `0.1.0 (commit 1a2b3c4d5e6f)`, as `--version` prints it.
    public static var versionLine: String { "\(version) (commit \(commit))" }
}
