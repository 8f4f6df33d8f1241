"""``fi-corpus``: the corpus store from a shell.

    fi-corpus ls ROOT [--json]
    fi-corpus cat ROOT --consultation ID [--site-id S] [--partitions N]
    fi-corpus export ROOT [--partition P] --format jsonl|csv|parquet -o FILE
    fi-corpus follow ROOT PARTITION [--last N | --from-start] [--max-rows N] [--timeout S]

Rows are printed as JSON lines: ``{"partition", "consultation_id", "stream_id", "received_at_ms",
"epoch", "event"}`` with the stored event embedded as JSON. Errors are one line on stderr: exit status 1,
or 2 for a usage error.
"""
from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Iterable, List, Optional, TextIO

from ._version import __version__
from .corpus import Columns, Row
from .errors import CorpusError
from .store import Store, open_store

PROG = "fi-corpus"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the whole usage)
        raise UsageError(f"{message} (see {self.prog} --help)")


# -- one row as text ---------------------------------------------------------------------------
def event_json(payload: bytes) -> str:
    """The stored event as a JSON value for embedding in one line: verbatim when it is JSON on a
    single line, re-encoded compactly when it spans lines, else the text (or base64) wrapped."""
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        try:
            return json.dumps({"payload_text": payload.decode("utf-8")}, ensure_ascii=False)
        except UnicodeDecodeError:
            return json.dumps({"payload_base64": base64.b64encode(payload).decode("ascii")})
    if b"\n" in payload or b"\r" in payload:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return payload.decode("utf-8").strip(" \t")


def row_line(partition: str, row: Row) -> str:
    return ('{"partition":%s,"consultation_id":%s,"stream_id":%s,"received_at_ms":%d,"epoch":%d,"event":%s}'
            % (json.dumps(partition), json.dumps(row.consultation_id, ensure_ascii=False),
               json.dumps(row.stream_id), row.received_at_ms, row.epoch, event_json(row.payload)))


def _column_lines(key: str, cols: Columns) -> Iterable[str]:
    for r in cols.rows():
        yield row_line(key, r)


# -- progress ------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr, redrawn at most 5 times a second."""

    def __init__(self, total_rows: int, enabled: bool, stream: TextIO = sys.stderr):
        self.total = max(0, total_rows)
        self.enabled = enabled and self.total > 0
        self.stream = stream
        self.rows = 0
        self.bytes = 0
        self.t0 = time.monotonic()
        self._drawn = 0.0

    def add(self, rows: int, nbytes: int) -> None:
        self.rows += rows
        self.bytes += nbytes
        now = time.monotonic()
        if self.enabled and now - self._drawn >= 0.2:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._drawn_rows = self.rows
        frac = min(1.0, self.rows / self.total) if self.total else 1.0
        width = 30
        fill = int(frac * width)
        rate = self.rows / max(1e-9, now - self.t0)
        eta = (self.total - self.rows) / rate if rate > 0 else 0
        self.stream.write(f"\rexport {frac * 100:5.1f}% [{'#' * fill}{'.' * (width - fill)}] "
                          f"{self.rows:,}/{self.total:,} rows  {self.bytes / 1e6:,.0f} MB  "
                          f"{rate:,.0f} rows/s  eta {eta:4.0f}s ")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            if getattr(self, "_drawn_rows", None) != self.rows:
                self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


# -- commands --------------------------------------------------------------------------------
def _fmt_time(ms: Optional[int]) -> str:
    if ms is None:
        return "-"
    try:
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return str(ms)


def cmd_ls(args, out: TextIO) -> int:
    store = open_store(args.root, partitions=args.partitions)
    infos = store.info()
    if args.json:
        out.write(json.dumps([i.__dict__ for i in infos], indent=1) + "\n")
        return 0
    header = ("PARTITION", "ROWS", "PAYLOAD_MB", "FILE_MB", "FIRST_RECEIVED_UTC", "LAST_RECEIVED_UTC", "STATUS")
    lines = [header]
    for i in infos:
        lines.append((i.key, f"{i.rows:,}", f"{i.payload_bytes / 1e6:,.1f}", f"{i.file_bytes / 1e6:,.1f}",
                      _fmt_time(i.first_received_at_ms), _fmt_time(i.last_received_at_ms), i.status))
    lines.append(("total", f"{sum(i.rows for i in infos):,}",
                  f"{sum(i.payload_bytes for i in infos) / 1e6:,.1f}",
                  f"{sum(i.file_bytes for i in infos) / 1e6:,.1f}", "", "", ""))
    widths = [max(len(r[c]) for r in lines) for c in range(len(header))]
    for r in lines:
        cells = [r[0].ljust(widths[0])] + [r[c].rjust(widths[c]) for c in (1, 2, 3)] + \
                [r[c].ljust(widths[c]) for c in (4, 5, 6)]
        out.write("  ".join(cells).rstrip() + "\n")
    return 0


def cmd_cat(args, out: TextIO) -> int:
    store = open_store(args.root, partitions=args.partitions)
    key = store.partition_for(args.consultation, args.site_id, strict=not args.any_id)
    rows = store.consultation(args.consultation, args.site_id, strict=not args.any_id)
    if not rows:
        raise CorpusError(f"no events for consultation {args.consultation} in {key} "
                          f"({store.path(key)})")
    for r in rows:
        if args.payload_only:
            out.write(r.payload.decode("utf-8", "backslashreplace").replace("\n", " ") + "\n")
        else:
            out.write(row_line(key, r) + "\n")
    return 0


def _export_jsonl(store: Store, keys: List[str], path: str, progress: Progress, **window) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for key, cols in store.iter_columns(keys, **window):
            fh.write("\n".join(_column_lines(key, cols)) + "\n")
            n += len(cols)
            progress.add(len(cols), len(cols.payload))
    return n


def _export_csv(store: Store, keys: List[str], path: str, progress: Progress, **window) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["partition", "consultation_id", "stream_id", "received_at_ms", "epoch", "payload"])
        for key, cols in store.iter_columns(keys, **window):
            w.writerows((key, r.consultation_id, r.stream_id, r.received_at_ms, r.epoch,
                         r.payload.decode("utf-8", "backslashreplace")) for r in cols.rows())
            n += len(cols)
            progress.add(len(cols), len(cols.payload))
    return n


def _export_parquet(store: Store, keys: List[str], path: str, progress: Progress,
                    compression: str, payload_type: str, **window) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CorpusError("parquet export needs pyarrow: pip install 'fi-corpus[arrow]'") from None
    from .frames import columns_to_arrow
    schema = pa.schema([("partition", pa.string()), ("consultation_id", pa.string()),
                        ("stream_id", pa.string()), ("received_at_ms", pa.int64()), ("epoch", pa.uint64()),
                        ("payload", pa.large_string() if payload_type == "string" else pa.large_binary())])
    n = 0
    blocks = ((key, cols, columns_to_arrow(cols, payload=payload_type, partition=key))
              for key, cols in store.iter_columns(keys, block_rows=131072, block_bytes=128 << 20, **window))
    with pq.ParquetWriter(path, schema, compression=None if compression == "none" else compression) as w:
        # The next block is read and converted while this one is compressed and written (h5py and
        # pyarrow both release the GIL): about a fifth off the time, two blocks more in memory.
        for key, cols, table in prefetch(blocks, depth=2):
            w.write_table(table, row_group_size=len(cols) or 1)
            n += len(cols)
            progress.add(len(cols), len(cols.payload))
    return n


def prefetch(items: Iterable, depth: int = 2):
    """Iterate ``items`` in a background thread, up to ``depth`` ahead; errors are re-raised here."""
    import queue
    import threading
    q: "queue.Queue" = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():  # never blocks for good: the consumer may have gone
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run():
        try:
            for item in items:
                if not put((None, item)):
                    return
            put((None, done))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            put((err, None))

    t = threading.Thread(target=run, name="fi-corpus-prefetch", daemon=True)
    t.start()
    try:
        while True:
            err, item = q.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item
    finally:
        stop.set()
        t.join(timeout=30)


def cmd_export(args, out: TextIO) -> int:
    store = open_store(args.root, partitions=args.partitions)
    keys = [args.partition] if args.partition else store.partition_keys()
    for k in keys:
        store.path(k)  # a missing partition is an error before the output file is created
    window = {"start_ms": args.start_ms, "end_ms": args.end_ms}
    if args.format == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise CorpusError("parquet export needs pyarrow: pip install 'fi-corpus[arrow]'") from None
    # Totals for the progress bar, and every partition checked readable before writing.
    total = sum(i.rows for i in [store.info(k)[0] for k in keys] if i.status == "ok")
    for k in keys:
        with store.open(k):
            pass
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = Progress(total, show)
    tmp = args.output + ".partial"
    t0 = time.monotonic()
    try:
        if args.format == "jsonl":
            n = _export_jsonl(store, keys, tmp, progress, **window)
        elif args.format == "csv":
            n = _export_csv(store, keys, tmp, progress, **window)
        else:
            n = _export_parquet(store, keys, tmp, progress, args.compression, args.payload_type, **window)
        os.replace(tmp, args.output)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    progress.finish()
    if not args.quiet:
        print(f"{PROG}: exported {n:,} rows from {len(keys)} partition(s) to {args.output} "
              f"({os.path.getsize(args.output) / 1e6:,.1f} MB, {time.monotonic() - t0:.1f} s)",
              file=sys.stderr)
    return 0


def cmd_follow(args, out: TextIO) -> int:
    store = open_store(args.root, partitions=args.partitions)
    start = 0 if args.from_start else -args.last
    for r in store.follow(args.partition, start=start, poll_interval=args.poll,
                          timeout=args.timeout, idle_timeout=args.idle_timeout, max_rows=args.max_rows):
        out.write(row_line(args.partition, r) + "\n")
        out.flush()
    return 0


# -- parser ------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {v}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Read an FI Scale corpus store (the --storage directory).")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def common(sp):
        sp.add_argument("root", metavar="ROOT", help="the corpus store: fi-server/fi-worker --storage")
        sp.add_argument("--partitions", type=int, default=None, metavar="N",
                        help="hash partitions the server ran with (default: 3, or more if the store has them)")

    sp = sub.add_parser("ls", help="partitions, their rows, sizes and time range")
    common(sp)
    sp.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    sp.set_defaults(func=cmd_ls)

    sp = sub.add_parser("cat", help="one consultation's events, as JSON lines, in stream order")
    common(sp)
    sp.add_argument("--consultation", required=True, metavar="ID")
    sp.add_argument("--site-id", default=None, metavar="S", help="the site the events were sent with, if any")
    sp.add_argument("--payload-only", action="store_true", help="print only each stored event")
    sp.add_argument("--any-id", action="store_true",
                    help="accept an id the HTTP layer would refuse (events from other producers)")
    sp.set_defaults(func=cmd_cat)

    sp = sub.add_parser("export", help="a partition, or the whole store, to a JSON lines, CSV or Parquet file")
    common(sp)
    sp.add_argument("--partition", metavar="P", help="one partition (default: all)")
    sp.add_argument("--format", required=True, choices=("jsonl", "csv", "parquet"))
    sp.add_argument("-o", "--output", required=True, metavar="FILE")
    sp.add_argument("--start-ms", type=int, default=None, help="only rows with received_at_ms >= this")
    sp.add_argument("--end-ms", type=int, default=None, help="only rows with received_at_ms < this")
    sp.add_argument("--compression", default="zstd", choices=("zstd", "snappy", "gzip", "none"),
                    help="parquet compression (default zstd)")
    sp.add_argument("--payload-type", default="string", choices=("string", "binary"),
                    help="parquet type of the payload column (default string: the event JSON as text)")
    sp.add_argument("--progress", dest="progress", action="store_true", default=None,
                    help="show a progress bar (default: when stderr is a terminal)")
    sp.add_argument("--no-progress", dest="progress", action="store_false")
    sp.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("follow", help="print rows as a writer appends them (JSON lines)")
    common(sp)
    sp.add_argument("partition", metavar="PARTITION")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--last", type=_positive_int, default=10, metavar="N",
                   help="begin with the last N rows present (default 10)")
    g.add_argument("--from-start", action="store_true", help="begin with the first row")
    sp.add_argument("--poll", type=float, default=0.25, metavar="S", help="poll interval when idle (default 0.25 s)")
    sp.add_argument("--max-rows", type=_positive_int, default=None, metavar="N", help="stop after N rows")
    sp.add_argument("--timeout", type=_seconds, default=None, metavar="S", help="stop after S seconds")
    sp.add_argument("--idle-timeout", type=_seconds, default=None, metavar="S",
                    help="stop after S seconds without a new row")
    sp.set_defaults(func=cmd_follow)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    out = sys.stdout
    try:
        args = parser.parse_args(argv)
        if getattr(args, "poll", None) is not None and not 0.001 <= args.poll <= 60:
            raise UsageError("--poll must be from 0.001 to 60 seconds")
        return args.func(args, out)
    except UsageError as err:
        print(f"{PROG}: usage: {err}", file=sys.stderr)
        return 2
    except CorpusError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head): not an error; keep Python from complaining at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except OSError as err:
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"{PROG}: {where}{err.strerror or err}", file=sys.stderr)
        return 1


def entry_point() -> None:
    """The ``fi-corpus`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
