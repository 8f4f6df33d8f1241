"""Read FI Scale corpus stores and files (Docs/contract.md §1, §5) with h5py.

::

    import fi_corpus
    store = fi_corpus.open_store("storage")          # the --storage directory
    store.row_counts()                               # {"partition_0": 812, "site_a": 5400, ...}
    df = store.to_pandas("site_a")                   # pandas (extra [pandas]); to_arrow: [arrow]
    events = store.consultation("c-42", site_id="a")
    for row in store.follow("site_a"): ...           # rows as a writer appends them

    with fi_corpus.open("storage/site_a") as partition:   # one partition: every segment file
        rows = list(partition)
    with fi_corpus.open("storage/site_a/segment-…h5") as corpus:   # one file
        rows = list(corpus)

Only h5py and numpy are required; pandas and pyarrow are imported when used.
"""
from ._version import __version__
from .corpus import Columns, Corpus, Row, open  # noqa: A004 - fi_corpus.open(path) is the public name
from .errors import (CorpusBeingCreatedError, CorpusError, InvalidIdentifierError,
                     NotACorpusError, PartitionNotFoundError)
from .partition import (DEFAULT_PARTITIONS, partition_key, partition_number,
                        validate_consultation_id, validate_site_id)
from .segments import Partition, SegmentInfo
from .store import PartitionInfo, Store, open_store

__all__ = [
    "__version__",
    "open_store", "Store", "PartitionInfo",
    "open", "Corpus", "Partition", "SegmentInfo", "Row", "Columns",
    "partition_key", "partition_number", "validate_site_id", "validate_consultation_id",
    "DEFAULT_PARTITIONS",
    "CorpusError", "NotACorpusError", "PartitionNotFoundError", "CorpusBeingCreatedError",
    "InvalidIdentifierError",
]
