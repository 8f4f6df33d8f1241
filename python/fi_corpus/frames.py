"""Columns → Arrow tables and pandas DataFrames (the optional extras ``[arrow]`` and ``[pandas]``).

The fast path (pyarrow installed) builds every column without a Python object per row:
``payload`` is an Arrow ``large_binary`` array over the very buffer h5py read (offsets are the
file's ``payload_end``, shifted to 0), and the fixed-width id columns become Arrow strings in C.
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

import numpy as np

from .corpus import Columns
from .errors import CorpusError

__all__ = ["columns_to_arrow", "columns_to_pandas", "arrow_id_columns", "have_pyarrow"]


def have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _need(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise CorpusError(f"this needs {module}: pip install 'fi-corpus[{extra}]'") from None


def _fixed_to_arrow_string(values: np.ndarray):
    import pyarrow as pa
    # numpy "S" → Arrow binary strips the NUL padding (in C); then a UTF-8 checked cast.
    return pa.array(values, type=pa.binary()).cast(pa.string())


def arrow_id_columns(cols: Columns):
    """``{"consultation_id": …, "stream_id": …}`` as Arrow string arrays."""
    return {"consultation_id": _fixed_to_arrow_string(cols.consultation_id),
            "stream_id": _fixed_to_arrow_string(cols.stream_id)}


def _payload_array(cols: Columns, payload: str):
    import pyarrow as pa
    n = len(cols)
    offsets = np.ascontiguousarray(cols.payload_offsets, dtype=np.int64)
    data = np.ascontiguousarray(cols.payload)
    arr = pa.LargeBinaryArray.from_buffers(pa.large_binary(), n,
                                           [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    if payload == "binary":
        return arr
    if payload == "string":
        try:
            return arr.cast(pa.large_string())
        except pa.ArrowInvalid as err:
            raise CorpusError(f"a payload is not valid UTF-8 ({err}); read it as binary") from None
    raise ValueError(f"payload must be 'binary' or 'string', not {payload!r}")


def columns_to_arrow(cols: Columns, *, payload: str = "binary", partition: Optional[str] = None,
                     ids=None):
    """A ``pyarrow.Table`` with columns [partition,] consultation_id, stream_id, received_at_ms, epoch,
    payload.

    ``ids``: the id columns already converted (:func:`arrow_id_columns`)."""
    pa = _need("pyarrow", "arrow")
    ids = ids or arrow_id_columns(cols)
    arrays, names = [], []
    if partition is not None:
        arrays.append(pa.array([partition], pa.string()).take(pa.array(np.zeros(len(cols), np.int32))))
        names.append("partition")
    arrays += [ids["consultation_id"], ids["stream_id"],
               pa.array(np.ascontiguousarray(cols.received_at_ms, dtype=np.int64)),
               pa.array(np.ascontiguousarray(cols.epoch, dtype=np.uint64)),
               _payload_array(cols, payload)]
    names += ["consultation_id", "stream_id", "received_at_ms", "epoch", "payload"]
    return pa.Table.from_arrays(arrays, names=names)


def _decode_fixed(values: np.ndarray, encoding: str) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [v.decode(encoding) for v in values.tolist()]
    return out


def _payload_objects(cols: Columns) -> np.ndarray:
    data = cols.payload.tobytes()
    offs = cols.payload_offsets.tolist()
    out = np.empty(len(cols), dtype=object)
    out[:] = [data[offs[i]:offs[i + 1]] for i in range(len(cols))]
    return out


def _parse_json(cols: Columns, json_fields: Optional[Sequence[str]]):
    import pandas as pd
    data = cols.payload.tobytes()
    offs = cols.payload_offsets.tolist()
    events = []
    for i in range(len(cols)):
        try:
            value = json.loads(data[offs[i]:offs[i + 1]])
        except ValueError as err:
            raise CorpusError(f"row {int(cols.row_index[i])}: payload is not JSON ({err})") from None
        events.append(value if isinstance(value, dict) else {"value": value})
    frame = pd.json_normalize(events, sep=".")
    if json_fields is not None:
        frame = frame.reindex(columns=list(json_fields))
    return frame


def columns_to_pandas(cols: Columns, *, payload: str = "bytes", json_fields: Optional[Sequence[str]] = None,
                      dtype_backend: Optional[str] = None, partition: Optional[str] = None, ids=None):
    """A ``pandas.DataFrame``: [partition,] consultation_id, stream_id, received_at_ms, epoch (uint64),
    payload.

    - ``payload="bytes"``: each cell is the event's bytes, exactly as stored (default);
      ``"text"``: decoded UTF-8; ``"json"``: no payload column, the events parsed and flattened
      into columns (``text``, ``metadata.site_id``, …; ``json_fields`` picks and orders them; a
      field named like a row column gets an ``event.`` prefix); ``"none"``: no payload.
    - ``dtype_backend="pyarrow"`` (default when pyarrow is installed): Arrow-backed columns
      (``pd.ArrowDtype``), no Python object per row until a cell is used — the fast path;
      ``"numpy"``: object columns of ``str`` and ``bytes``.
    - ``ids``: the id columns already converted to Arrow (:func:`arrow_id_columns`).
    """
    pd = _need("pandas", "pandas")
    if payload not in ("bytes", "text", "json", "none"):
        raise ValueError(f"payload must be 'bytes', 'text', 'json' or 'none', not {payload!r}")
    if dtype_backend is None:
        dtype_backend = "pyarrow" if have_pyarrow() else "numpy"
    if dtype_backend not in ("pyarrow", "numpy"):
        raise ValueError(f"dtype_backend must be 'pyarrow' or 'numpy', not {dtype_backend!r}")
    data = {}
    if dtype_backend == "pyarrow":
        _need("pyarrow", "arrow")
        ext = pd.arrays.ArrowExtensionArray
        if partition is not None:
            data["partition"] = pd.Categorical.from_codes(np.zeros(len(cols), np.int8), [partition])
        ids = ids or arrow_id_columns(cols)
        data["consultation_id"] = ext(ids["consultation_id"])
        data["stream_id"] = ext(ids["stream_id"])
        data["received_at_ms"] = np.asarray(cols.received_at_ms, dtype=np.int64)
        data["epoch"] = np.asarray(cols.epoch, dtype=np.uint64)
        if payload in ("bytes", "text"):
            data["payload"] = ext(_payload_array(cols, "binary" if payload == "bytes" else "string"))
    else:
        if partition is not None:
            data["partition"] = pd.Categorical.from_codes(np.zeros(len(cols), np.int8), [partition])
        data["consultation_id"] = _decode_fixed(cols.consultation_id, "utf-8")
        data["stream_id"] = _decode_fixed(cols.stream_id, "ascii")
        data["received_at_ms"] = np.asarray(cols.received_at_ms, dtype=np.int64)
        data["epoch"] = np.asarray(cols.epoch, dtype=np.uint64)
        if payload == "bytes":
            data["payload"] = _payload_objects(cols)
        elif payload == "text":
            objs = _payload_objects(cols)
            objs[:] = [b.decode("utf-8") for b in objs]
            data["payload"] = objs
    frame = pd.DataFrame(data, copy=False)
    if payload == "json":
        parsed = _parse_json(cols, json_fields)
        parsed.columns = [f"event.{c}" if c in frame.columns else c for c in parsed.columns]
        parsed.index = frame.index
        frame = pd.concat([frame, parsed], axis=1)
    return frame
