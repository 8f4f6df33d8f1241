"""The installed package: one version, the same as the Swift package's, and the console script."""
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import fi_corpus

from conftest import REPO


def test_version_is_the_distribution_version():
    assert fi_corpus.__version__ == metadata.version("fi-corpus")


def test_version_matches_the_swift_package():
    source = REPO / "Sources" / "FIBuildInfo" / "BuildInfo.swift"
    m = re.search(r'static let version = "([^"]+)"', source.read_text(encoding="utf-8"))
    assert m, f"no version in {source}"
    assert fi_corpus.__version__ == m.group(1)


def test_console_script_and_module_entry_point():
    script = Path(sys.executable).with_name("fi-corpus")
    exe = str(script) if script.exists() else shutil.which("fi-corpus")
    assert exe, "the fi-corpus console script is not installed"
    for cmd in ([exe, "--version"], [sys.executable, "-m", "fi_corpus", "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
        assert out.strip() == f"fi-corpus {fi_corpus.__version__}"


def test_core_imports_without_pandas_or_pyarrow():
    code = ("import sys; sys.modules['pandas'] = None; sys.modules['pyarrow'] = None\n"
            "import fi_corpus; print(sorted(fi_corpus.__all__)[:1])")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, capture_output=True)
