"""The partition function (Docs/contract.md §1) against the reference vectors, and its validation."""
import json

import pytest

import fi_corpus
from fi_corpus.partition import (parse_partition_key, partition_key, partition_number,
                                 validate_consultation_id, validate_partition_key, validate_site_id)

from conftest import REPO

VECTORS = REPO / "Tests" / "FIPartitioningTests" / "Resources" / "partition_vectors.json"


def load_cases():
    if not VECTORS.exists():
        pytest.fail(f"reference vectors missing: {VECTORS}")
    return json.loads(VECTORS.read_text(encoding="utf-8"))["cases"]


def test_reference_vectors_all_reproduced():
    cases = load_cases()
    assert len(cases) == 1659
    wrong = [c for c in cases
             if partition_key(c["consultation_id"], c.get("site_id"), c["partitions"]) != c["partition"]]
    assert wrong == [], wrong[:5]
    print(f"partition vectors: {len(cases)} of {len(cases)} reproduced")


def test_hash_is_md5_big_endian_mod_n():
    import hashlib
    cid = "0f0e0d0c-0b0a-4908-8706-050403020100"
    n = int(hashlib.md5(cid.encode()).hexdigest(), 16)
    for parts in (1, 2, 3, 7, 1000, 1 << 20):
        assert partition_number(cid, parts) == n % parts
    assert partition_key(cid) == f"partition_{n % 3}"
    assert partition_key(cid, "") == partition_key(cid, None)
    assert partition_key(cid, "a-B_9") == "site_a-B_9"
    assert fi_corpus.partition_key is partition_key


@pytest.mark.parametrize("site", ["", "a" * 65, "a.b", "a/b", "..", "é", "a b", "a\x00"])
def test_bad_site_ids_are_refused_with_a_reason(site):
    with pytest.raises(fi_corpus.InvalidIdentifierError) as err:
        validate_site_id(site)
    assert "site_id" in str(err.value) and "\n" not in str(err.value)
    if site:  # "" means "no site" for partition_key
        with pytest.raises(fi_corpus.InvalidIdentifierError):
            partition_key("c-1", site)


def test_site_id_messages():
    with pytest.raises(fi_corpus.InvalidIdentifierError, match="at byte 1"):
        validate_site_id("a.b")
    with pytest.raises(fi_corpus.InvalidIdentifierError, match="65 bytes long; at most 64"):
        validate_site_id("a" * 65)
    assert validate_site_id("a" * 64) == "a" * 64


@pytest.mark.parametrize("cid", ["c-1", "0f0e0d0c-0b0a-4908-8706-050403020100", "A.b_c-d:e", "9" * 128])
def test_good_consultation_ids(cid):
    assert validate_consultation_id(cid) == cid


@pytest.mark.parametrize("cid,why", [
    ("", "must not be empty"), ("-c", "start with a letter or digit"), (".c", "start with"),
    ("c/1", "at byte 1"), ("c 1", "at byte 1"), ("cé", "at byte 1"), ("c" * 129, "129 bytes long"),
    ("é", "start with"),
])
def test_bad_consultation_ids(cid, why):
    with pytest.raises(fi_corpus.InvalidIdentifierError, match=why):
        validate_consultation_id(cid)


def test_non_strings_and_partition_counts():
    with pytest.raises(fi_corpus.InvalidIdentifierError):
        validate_site_id(3)
    with pytest.raises(fi_corpus.InvalidIdentifierError):
        partition_number("c", 0)
    with pytest.raises(fi_corpus.InvalidIdentifierError):
        partition_number("c", (1 << 20) + 1)
    with pytest.raises(fi_corpus.InvalidIdentifierError):
        partition_number("c", True)


def test_partition_keys_parse():
    assert parse_partition_key("site_a") == ("site", "a")
    assert parse_partition_key("partition_12") == ("partition", 12)
    for bad in ("partition_", "partition_01", "site_", "site_a.b", "p0007", "site_a/..", "../x"):
        assert parse_partition_key(bad) is None
        with pytest.raises(fi_corpus.InvalidIdentifierError):
            validate_partition_key(bad)
