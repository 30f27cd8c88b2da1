"""The season archive: per AOI, year and band, a season's signatures as Parquet on object storage.

Layout under the archive root (``$CBMFLOW_ARCHIVE_URI``: a local folder or ``s3://bucket/prefix``)::

    signatures/aoi=<aoi>/year=<year>/band=<band>/manifest.json
    signatures/aoi=<aoi>/year=<year>/band=<band>/gen-<id>/part-00000.parquet ...

One **generation** is the whole season of one band: rows sorted by (parcel, sensing time), cut
into files of :data:`PARCELS_PER_FILE` parcels, each file into row groups of
:data:`PARCELS_PER_ROW_GROUP` parcels with statistics, ``pid`` delta-encoded, ``obsid`` and ``count``
dictionary-encoded, the statistics byte-stream-split, ZSTD. The manifest lists the files with their
parcel ranges and the first parcel of every row group, so one parcel's season is the manifest, one
footer and one row group (a few hundred kB); one scene is one column-projected pass that keeps the
scene's rows (the manifest says which files hold it).

**Exactly once.** Files are written under a fresh generation id (locally to a temporary name, then
renamed; on S3 an object appears only when its upload completes), then the manifest is published
with one atomic replace (local: ``os.replace``; S3: one PUT). Readers trust only the manifest, so a
writer killed at any point leaves the previous season visible and no half file. A run whose
source rows equal the published ones (per scene: rows and checksum) writes nothing; generations no
longer referenced are deleted after a publish. Writers of one (AOI, year, band) serialise on a
PostgreSQL advisory lock.

**Recent window.** Scenes in the manifest that PostGIS no longer holds (pruned to the recent window)
are carried over from the previous generation; scenes PostGIS holds always come from PostGIS.

**Checksum** (identical in SQL and numpy): per row ``(pid * 65599 + obsid * 31 + count) XOR
bits(mean) XOR bits(std) << 1 XOR ... XOR bits(p75) << 6`` (float32 bit patterns as unsigned),
summed modulo 2**64 per scene.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from cbmflow.core import bands as bands_mod
from cbmflow.core.errors import ConfigError, NotFound, ProcessingError

log = logging.getLogger(__name__)

PARCELS_PER_FILE = 8192
PARCELS_PER_ROW_GROUP = 64
ARCHIVE_LOCK = 0x61726368  # advisory lock namespace ("arch")
COLUMNS: tuple[str, ...] = ("pid", "obsid", "count", "mean", "std", "min", "max", "p25", "p50", "p75")
FLOATS: tuple[str, ...] = ("mean", "std", "min", "max", "p25", "p50", "p75")
MANIFEST = "manifest.json"
_ROW_DTYPE = np.dtype([("pid", "<i4"), ("obsid", "<i4"), ("count", "<i4")] + [(c, "<f4") for c in FLOATS])


def archive_root(root: str | None = None) -> str:
    """The archive root: ``root`` or ``$CBMFLOW_ARCHIVE_URI``; ConfigError when neither is set."""
    value = root or os.environ.get("CBMFLOW_ARCHIVE_URI")
    if not value:
        raise ConfigError("no season archive configured: set CBMFLOW_ARCHIVE_URI (a folder or s3://bucket/prefix)")
    return str(value).rstrip("/")


def configured() -> bool:
    """Whether a season archive is configured (``$CBMFLOW_ARCHIVE_URI``)."""
    return bool(os.environ.get("CBMFLOW_ARCHIVE_URI"))


def filesystem(root: str) -> tuple[Any, str]:
    """A pyarrow filesystem and base path for a local folder or an ``s3://`` prefix (the configured endpoint)."""
    from pyarrow import fs as pafs

    if root.startswith("s3://"):
        from cbmflow.core.config import s3_settings

        s = s3_settings()
        kwargs: dict[str, Any] = {"region": s.region}
        if s.endpoint_url:
            kwargs["endpoint_override"] = s.host
            kwargs["scheme"] = "https" if s.https else "http"
        if s.access_key:
            kwargs.update(access_key=s.access_key, secret_key=s.secret_key, session_token=s.session_token)
        return pafs.S3FileSystem(**kwargs), root[len("s3://"):]
    path = os.path.abspath(root[len("file://"):] if root.startswith("file://") else root)
    return pafs.LocalFileSystem(), path


def season_prefix(aoi: str, year: int, band: str) -> str:
    """The relative folder of one AOI, year and band."""
    return f"signatures/aoi={aoi}/year={int(year)}/band={band}"


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


def row_hashes(rows: np.ndarray) -> np.ndarray:
    """Per-row uint64 hashes of signature rows (the module's checksum definition)."""
    h = rows["pid"].astype(np.int64) * 65599 + rows["obsid"].astype(np.int64) * 31 + rows["count"].astype(np.int64)
    h = h.astype(np.uint64)
    for k, col in enumerate(FLOATS):
        v = np.ascontiguousarray(rows[col], dtype=np.float32)
        bits = v.view(np.uint32).astype(np.uint64)
        bits[np.isnan(v)] = np.uint64(0x7FC00000)  # PostgreSQL's canonical NaN
        h ^= bits << np.uint64(k)
    return h


def per_scene(rows: np.ndarray) -> dict[int, tuple[int, int]]:
    """{obsid: (rows, checksum mod 2**64)} of signature rows."""
    if rows.size == 0:
        return {}
    h = row_hashes(rows)
    ob = rows["obsid"]
    uniq, inv = np.unique(ob, return_inverse=True)
    counts = np.bincount(inv)
    sums: dict[int, tuple[int, int]] = {}
    order = np.argsort(inv, kind="stable")
    hs = h[order]
    ends = np.cumsum(counts)
    starts = ends - counts
    with np.errstate(over="ignore"):
        totals = np.add.reduceat(hs, starts) if hs.size else hs
    for o, c, s in zip(uniq.tolist(), counts.tolist(), totals.tolist(), strict=True):
        sums[int(o)] = (int(c), int(s))
    return sums


_FB = "(('x' || encode(float4send(s.{c}), 'hex'))::bit(32)::bigint << {k})"
SQL_ROW_HASH = ("((s.pid::int8 * 65599 + s.obsid::int8 * 31 + s.count::int8) # "
                + " # ".join(_FB.format(c=c, k=k) for k, c in enumerate(FLOATS)) + ")")


def db_per_scene(conn: Any, aoi: str, year: int, band: str) -> dict[int, tuple[int, int]]:
    """{obsid: (rows, checksum)} of an AOI season's band, computed by PostgreSQL itself."""
    rows = conn.execute(
        f"SELECT s.obsid, count(*), (sum({SQL_ROW_HASH}::numeric) %% 18446744073709551616)::text "
        "FROM signatures s JOIN parcels p ON p.pid = s.pid "
        "WHERE p.aoi = %s AND p.year = %s AND s.year = %s AND s.band = %s GROUP BY s.obsid",
        (aoi, int(year), int(year), bands_mod.code(band))).fetchall()
    return {int(o): (int(n), int(c)) for o, n, c in rows}


# --------------------------------------------------------------------------------------------
# Reading PostGIS
# --------------------------------------------------------------------------------------------


def fetch_rows(conn: Any, aoi: str, year: int, band: str, pid_range: tuple[int, int] | None = None) -> np.ndarray:
    """An AOI season's rows of one band from PostGIS, as numpy (no Python object per row).

    The server packs each column into one ``bytea`` (``string_agg`` of ``int4send``/``float4send``,
    big-endian): one result row whatever the number of records (a COPY stream costs a Python
    iteration per record). ``pid_range`` (inclusive) restricts to those parcels (a key range scan).
    """
    send = {c: ("int4send" if c in ("pid", "obsid", "count") else "float4send") for c in COLUMNS}
    cols = ", ".join(f"string_agg({send[c]}(s.{c}), ''::bytea)" for c in COLUMNS)
    where = "" if pid_range is None else " AND s.pid BETWEEN %s AND %s"
    args: tuple[Any, ...] = (aoi, int(year), int(year), bands_mod.code(band))
    if pid_range is not None:
        args += (int(pid_range[0]), int(pid_range[1]))
    row = conn.execute(
        f"SELECT count(*), {cols} FROM signatures s JOIN parcels p ON p.pid = s.pid "
        "WHERE p.aoi = %s AND p.year = %s AND s.year = %s AND s.band = %s" + where, args).fetchone()
    n = int(row[0]) if row else 0
    out = np.empty(n, dtype=_ROW_DTYPE)
    if n == 0:
        return out
    for c, buf in zip(COLUMNS, row[1:], strict=True):
        out[c] = np.frombuffer(bytes(buf), dtype=">i4" if send[c] == "int4send" else ">f4")
    return out


def _parcel_chunks(conn: Any, aoi: str, year: int) -> list[tuple[int, int]]:
    """The AOI season's parcel ids cut into file ranges of PARCELS_PER_FILE parcels (inclusive bounds)."""
    pids = np.asarray([r[0] for r in conn.execute(
        "SELECT pid FROM parcels WHERE aoi = %s AND year = %s ORDER BY pid", (aoi, int(year)))], dtype=np.int64)
    return [(int(pids[i]), int(pids[min(i + PARCELS_PER_FILE, pids.size) - 1]))
            for i in range(0, pids.size, PARCELS_PER_FILE)]


def still_in_db(conn: Any, aoi: str, year: int, band: str, obsids: Iterable[int]) -> set[int]:
    """Which of these scenes PostGIS still holds rows of for the AOI season's band (one EXISTS per scene)."""
    ids = sorted({int(o) for o in obsids})
    if not ids:
        return set()
    rows = conn.execute(
        "SELECT o FROM unnest(%s::int[]) AS o WHERE EXISTS (SELECT 1 FROM signatures s JOIN parcels p "
        "ON p.pid = s.pid WHERE s.obsid = o AND s.year = %s AND s.band = %s AND p.aoi = %s AND p.year = %s)",
        (ids, int(year), bands_mod.code(band), aoi, int(year))).fetchall()
    return {int(r[0]) for r in rows}


def scene_info(conn: Any, obsids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Catalogue facts the readers need per scene (product id, sensing time, CARD type, orbit)."""
    ids = sorted({int(o) for o in obsids})
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT id, product_id, to_char(sensing_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
        "card_type, coalesce(relative_orbit::text, '') || coalesce(left(orbit_direction, 1), '') "
        "FROM catalogue WHERE id = ANY(%s)", (ids,)).fetchall()
    return {int(r[0]): {"product_id": r[1], "sensing_time": r[2], "card_type": r[3], "orbit": r[4]} for r in rows}


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([("pid", pa.int32()), ("obsid", pa.int32()), ("count", pa.int32())]
                     + [(c, pa.float32()) for c in FLOATS])


def _table(rows: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.Table.from_arrays([pa.array(np.ascontiguousarray(rows[c])) for c in COLUMNS], schema=_schema())


def _writer_options() -> dict[str, Any]:
    enc = {"pid": "DELTA_BINARY_PACKED"}
    enc.update({c: "BYTE_STREAM_SPLIT" for c in FLOATS})
    return {"compression": "zstd", "compression_level": 6, "use_dictionary": ["obsid", "count"],
            "column_encoding": enc, "write_statistics": ["pid", "obsid"], "data_page_size": 64 * 1024}


def _atomic_write(fs: Any, path: str, data_writer: Any) -> int:
    """Write a file so that it is either complete or absent; returns its size in bytes."""
    from pyarrow import fs as pafs

    if isinstance(fs, pafs.LocalFileSystem):
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                data_writer(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return os.path.getsize(path)
    # S3: the object exists only once its upload completes (a killed writer leaves nothing visible)
    with fs.open_output_stream(path) as out:
        data_writer(out)
    return int(fs.get_file_info(path).size)


def _write_parquet(fs: Any, path: str, rows: np.ndarray, rg_first: list[int]) -> int:
    import pyarrow.parquet as pq

    bounds = np.searchsorted(rows["pid"], np.asarray(rg_first[1:], dtype=np.int64)).tolist() + [rows.size]

    def write(f: Any) -> None:
        with pq.ParquetWriter(f, _schema(), **_writer_options()) as w:
            a = 0
            for b in bounds:
                w.write_table(_table(rows[a:b]), row_group_size=max(1, b - a))
                a = b

    return _atomic_write(fs, path, write)


@dataclass(frozen=True)
class ArchiveResult:
    """What one archive run of an AOI season's band did."""

    aoi: str
    year: int
    band: str
    status: str  # "written", "unchanged" or "empty"
    rows: int
    scenes: int
    files: int
    bytes: int
    carried: int  # scenes kept from the previous generation (no longer in PostGIS)
    seconds: float

    @property
    def bytes_per_record(self) -> float:
        """Stored bytes per band-record (data files only)."""
        return self.bytes / self.rows if self.rows else 0.0


def read_manifest(aoi: str, year: int, band: str, root: str | None = None) -> dict[str, Any] | None:
    """The published manifest of an AOI season's band, or None when nothing is archived."""
    fs, base = filesystem(archive_root(root))
    return _read_manifest(fs, base, aoi, year, band)


def _read_manifest(fs: Any, base: str, aoi: str, year: int, band: str) -> dict[str, Any] | None:
    path = f"{base}/{season_prefix(aoi, year, band)}/{MANIFEST}"
    try:
        with fs.open_input_stream(path) as f:
            data = f.read()
    except (FileNotFoundError, OSError) as exc:
        if isinstance(exc, FileNotFoundError) or "NoSuchKey" in str(exc) or "not found" in str(exc).lower() \
                or "does not exist" in str(exc):
            return None
        raise
    return json.loads(data)  # type: ignore[no-any-return]


def _generation_stats(fs: Any, base: str, manifest: dict[str, Any]) -> dict[int, tuple[int, int]]:
    """{obsid: (rows, checksum)} of a generation's files, read back file by file."""
    import pyarrow.parquet as pq

    prefix = f"{base}/{season_prefix(manifest['aoi'], manifest['year'], manifest['band'])}"
    acc: dict[int, list[int]] = {}
    for item in manifest["files"]:
        with fs.open_input_file(f"{prefix}/{item['path']}") as f:
            rows = _to_rows(pq.read_table(f))
        for o, (n, c) in per_scene(rows).items():
            a = acc.setdefault(o, [0, 0])
            a[0] += n
            a[1] = (a[1] + c) % 2**64
    return {o: (v[0], v[1]) for o, v in acc.items()}


def _to_rows(table: Any) -> np.ndarray:
    out = np.empty(table.num_rows, dtype=_ROW_DTYPE)
    for c in COLUMNS:
        out[c] = table.column(c).to_numpy()
    return out


def archive_band(conn: Any, aoi: str, year: int, band: str, *, root: str | None = None,
                 pause_after_file: float = 0.0) -> ArchiveResult:
    """Archive one AOI season's band from PostGIS (plus scenes only the previous generation has); exactly once."""
    t0 = time.perf_counter()
    fs, base = filesystem(archive_root(root))
    prefix = f"{base}/{season_prefix(aoi, year, band)}"
    key = zlib.crc32(f"{aoi}|{year}|{band}".encode()) & 0x7FFFFFFF
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (ARCHIVE_LOCK, key))
    try:
        return _archive_locked(conn, fs, base, prefix, aoi, int(year), band, t0, pause_after_file)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (ARCHIVE_LOCK, key))
        conn.commit()


def _archive_locked(conn: Any, fs: Any, base: str, prefix: str, aoi: str, year: int, band: str, t0: float,
                    pause_after_file: float) -> ArchiveResult:
    old = _read_manifest(fs, base, aoi, year, band)
    old_ids = {int(o) for o in old["scenes"]} if old is not None else set()
    carried_ids = old_ids - still_in_db(conn, aoi, year, band, old_ids)
    chunks = _parcel_chunks(conn, aoi, year)
    conn.commit()
    carry = np.asarray(sorted(carried_ids), dtype=np.int32)
    info: dict[int, dict[str, Any]] = {}
    if old is not None:  # scenes carried over keep their catalogue facts even if the catalogue lost them
        for o in carried_ids:
            info[o] = old["scenes"][str(o)]["info"]

    def lookup(obsids: list[int]) -> dict[int, dict[str, Any]]:
        found = scene_info(conn, obsids)
        conn.commit()
        return found

    gen = f"gen-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    writer = _GenerationWriter(fs, prefix, gen, info, lookup)
    for lo, hi in chunks:  # one file per parcel range: memory stays one file's rows
        rows = fetch_rows(conn, aoi, year, band, (lo, hi))
        conn.commit()
        if carry.size and old is not None:
            kept = _read_old_range(fs, base, old, lo, hi)
            rows = np.concatenate([rows, kept[np.isin(kept["obsid"], carry)]])
        writer.add(rows)
        if pause_after_file and rows.size:
            time.sleep(pause_after_file)  # fault tests: a kill lands between files
    if writer.rows == 0:
        writer.discard()
        return ArchiveResult(aoi, year, band, "empty", 0, 0, 0, 0, 0, time.perf_counter() - t0)
    stats = writer.stats()
    if old is not None and {int(o): (int(v["rows"]), int(v["checksum"])) for o, v in old["scenes"].items()} == stats:
        writer.discard()  # the same season: nothing new becomes visible
        _sweep(fs, prefix, old)
        return ArchiveResult(aoi, year, band, "unchanged", int(old["rows"]), len(stats), len(old["files"]),
                             int(old["bytes"]), len(carried_ids), time.perf_counter() - t0)
    manifest = writer.publish(aoi, year, band, carried_ids)
    log.info("archived AOI %s %s band %s: %s rows of %d scenes in %d file(s), %.1f B/record (%s)", aoi, year, band,
             f"{writer.rows:,}", len(stats), len(manifest["files"]), writer.bytes / writer.rows, gen)
    return ArchiveResult(aoi, year, band, "written", writer.rows, len(stats), len(manifest["files"]), writer.bytes,
                         len(carried_ids), time.perf_counter() - t0)


def _read_old_range(fs: Any, base: str, manifest: dict[str, Any], lo: int, hi: int) -> np.ndarray:
    """The previous generation's rows of parcels lo..hi."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    prefix = f"{base}/{season_prefix(manifest['aoi'], manifest['year'], manifest['band'])}"
    parts = []
    for item in manifest["files"]:
        if item["pid_max"] < lo or item["pid_min"] > hi:
            continue
        with fs.open_input_file(f"{prefix}/{item['path']}") as f:
            t = pq.read_table(f, filters=(pc.field("pid") >= lo) & (pc.field("pid") <= hi))
        parts.append(_to_rows(t))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=_ROW_DTYPE)


class _GenerationWriter:
    """Writes one generation file by file (rows of consecutive parcel ranges), then publishes its manifest."""

    def __init__(self, fs: Any, prefix: str, gen: str, info: dict[int, dict[str, Any]],
                 lookup: Any = None) -> None:
        self.fs, self.prefix, self.gen, self.info, self.lookup = fs, prefix, gen, dict(info), lookup
        self.files: list[dict[str, Any]] = []
        self.rows = 0
        self.bytes = 0
        self.parcels = 0
        self._stats: dict[int, list[int]] = {}

    @property
    def order(self) -> list[int]:
        """The scenes seen so far, by sensing time."""
        return sorted(self.info, key=lambda o: (self.info[o]["sensing_time"], o))

    def add(self, rows: np.ndarray) -> None:
        """Sort one parcel range's rows by (parcel, sensing time) and write them as the next file."""
        if rows.size == 0:
            return
        present = np.unique(rows["obsid"]).tolist()
        new = [o for o in present if o not in self.info]
        if new and self.lookup is not None:
            self.info.update(self.lookup(new))
        unknown = [o for o in present if o not in self.info]
        if unknown:
            raise ProcessingError(f"signatures name scenes missing from the catalogue: {unknown[:10]}")
        order_ids = self.order
        rank = np.zeros(max(order_ids) + 1, dtype=np.int64)
        rank[np.asarray(order_ids)] = np.arange(len(order_ids))
        order = np.argsort(rows["pid"].astype(np.int64) * len(order_ids) + rank[rows["obsid"]], kind="stable")
        rows = rows[order]
        pids = np.unique(rows["pid"])
        rg_first = pids[::PARCELS_PER_ROW_GROUP].tolist()
        name = f"{self.gen}/part-{len(self.files):05d}.parquet"
        size = _write_parquet(self.fs, f"{self.prefix}/{name}", rows, rg_first)
        self.files.append({"path": name, "pid_min": int(pids[0]), "pid_max": int(pids[-1]), "rows": int(rows.size),
                           "bytes": size, "row_groups": rg_first})
        self.rows += int(rows.size)
        self.bytes += size
        self.parcels += int(pids.size)
        for o, (n, c) in per_scene(rows).items():
            acc = self._stats.setdefault(o, [0, 0])
            acc[0] += n
            acc[1] = (acc[1] + c) % 2**64

    def stats(self) -> dict[int, tuple[int, int]]:
        """{obsid: (rows, checksum)} of everything written so far."""
        return {o: (v[0], v[1]) for o, v in self._stats.items()}

    def discard(self) -> None:
        """Delete this generation's files (never published)."""
        try:
            self.fs.delete_dir(f"{self.prefix}/{self.gen}")
        except (OSError, FileNotFoundError):
            pass

    def publish(self, aoi: str, year: int, band: str, carried: set[int]) -> dict[str, Any]:
        """Write the manifest atomically (the generation becomes the season), then sweep older generations."""
        stats = self.stats()
        manifest = {
            "version": 1, "aoi": aoi, "year": int(year), "band": band, "generation": self.gen,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "rows": self.rows,
            "bytes": self.bytes, "parcels": self.parcels,
            "layout": {"sort": ["pid", "sensing_time"], "parcels_per_file": PARCELS_PER_FILE,
                       "parcels_per_row_group": PARCELS_PER_ROW_GROUP},
            "scenes": {str(o): {"rows": stats[o][0], "checksum": str(stats[o][1]), "info": self.info[o],
                                "from": "archive" if o in carried else "postgis"} for o in self.order if o in stats},
            "files": self.files,
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        _atomic_write(self.fs, f"{self.prefix}/{MANIFEST}", lambda f: f.write(body))
        _sweep(self.fs, self.prefix, manifest)
        return manifest


def publish(fs: Any, base: str, aoi: str, year: int, band: str, rows: np.ndarray, info: dict[int, dict[str, Any]],
            *, carried: set[int] | None = None) -> ArchiveResult:
    """Write rows (any order) as a new generation and publish it: the writer behind :func:`archive_band`."""
    t0 = time.perf_counter()
    prefix = f"{base}/{season_prefix(aoi, year, band)}"
    gen = f"gen-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    writer = _GenerationWriter(fs, prefix, gen, info)
    pids = np.unique(rows["pid"])
    order = np.argsort(rows["pid"], kind="stable")
    rows = rows[order]
    for f0 in range(0, pids.size, PARCELS_PER_FILE):
        fp = pids[f0: f0 + PARCELS_PER_FILE]
        a, b = np.searchsorted(rows["pid"], [fp[0], fp[-1] + 1])
        writer.add(rows[a:b])
    manifest = writer.publish(aoi, year, band, carried or set())
    return ArchiveResult(aoi, year, band, "written", writer.rows, len(manifest["scenes"]), len(writer.files),
                         writer.bytes, len(carried or ()), time.perf_counter() - t0)


def _sweep(fs: Any, prefix: str, manifest: dict[str, Any]) -> None:
    """Delete generations the manifest does not reference (older ones, or a killed writer's leftovers)."""
    from pyarrow import fs as pafs

    try:
        entries = fs.get_file_info(pafs.FileSelector(prefix, allow_not_found=True))
    except OSError:
        return
    keep = manifest["generation"]
    for e in entries:
        name = e.path.rstrip("/").rsplit("/", 1)[-1]
        if e.type == pafs.FileType.Directory and name.startswith("gen-") and name != keep:
            try:
                fs.delete_dir(e.path)
            except OSError as exc:  # best effort: an unreferenced generation is invisible anyway
                log.warning("could not delete old archive generation %s: %s", e.path, exc)
        elif e.type == pafs.FileType.File and name.startswith(".") and name.endswith(".tmp"):
            try:
                fs.delete_file(e.path)
            except OSError:
                pass


def season_bands(conn: Any, aoi: str, year: int) -> list[str]:
    """The bands with signatures in an AOI season (PostGIS)."""
    rows = conn.execute(
        "SELECT DISTINCT s.band FROM signatures s JOIN parcels p ON p.pid = s.pid "
        "WHERE p.aoi = %s AND p.year = %s AND s.year = %s ORDER BY 1", (aoi, int(year), int(year))).fetchall()
    return [bands_mod.name(int(r[0])) for r in rows]


def archive_season(aoi: str, year: int, *, bands: Sequence[str] | None = None, root: str | None = None,
                   dsn: str | None = None) -> list[ArchiveResult]:
    """Archive every band (or the given ones) of an AOI season; returns one result per band."""
    from cbmflow.core import db

    out = []
    with db.connect(dsn) as conn:
        todo = list(bands) if bands else season_bands(conn, aoi, year)
        conn.commit()
        for band in todo:
            out.append(archive_band(conn, aoi, year, band, root=root))
    return out


def plan_archive(years: Sequence[int], aois: Sequence[str] | None, source: str = "the params",
                 dsn: str | None = None) -> list[dict[str, Any]]:
    """The DAG's work: one unit per (AOI, season, band) with signatures; NothingToDo when there is none."""
    from cbmflow.core import db
    from cbmflow.core.errors import NothingToDo

    if not configured():
        raise NothingToDo("no season archive configured (CBMFLOW_ARCHIVE_URI is empty): nothing to archive")
    root = archive_root()
    units = []
    with db.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT DISTINCT aoi, year FROM parcels WHERE year = ANY(%s)" + (" AND aoi = ANY(%s)" if aois else "")
            + " ORDER BY 2, 1", (list(years), list(aois)) if aois else (list(years),)).fetchall()
        for aoi, year in rows:
            for band in season_bands(conn, aoi, int(year)):
                units.append({"aoi": aoi, "year": int(year), "band": band, "root": root,
                              "label": f"{aoi} {year} {band}"})
    if not units:
        raise NothingToDo(f"no signatures for {', '.join(aois) if aois else 'any AOI'} in season(s) "
                          f"{', '.join(map(str, years))} (from {source}): nothing to archive")
    log.info("archiving %d (AOI, season, band) triple(s) to %s", len(units), root)
    return units


def archive_unit(unit: dict[str, Any], dsn: str | None = None) -> dict[str, Any]:
    """Archive one DAG unit (AOI, year, band); returns the result as a dict."""
    from dataclasses import asdict

    from cbmflow.core import db

    with db.connect(dsn) as conn:
        res = archive_band(conn, unit["aoi"], int(unit["year"]), unit["band"], root=unit.get("root"))
    log.info("%s %s %s: %s, %s rows, %d scene(s) (%d kept from the archive), %.1f B/record, %.1f s", res.aoi,
             res.year, res.band, res.status, f"{res.rows:,}", res.scenes, res.carried, res.bytes_per_record,
             res.seconds)
    return dict(asdict(res), root=unit.get("root"))


def verify_units(results: Sequence[dict[str, Any]], dsn: str | None = None) -> list[dict[str, Any]]:
    """Verify every archived unit against PostGIS; ProcessingError naming the bands and scenes that differ."""
    from cbmflow.core import db

    reports = []
    with db.connect(dsn) as conn:
        for r in results:
            if r.get("status") == "empty":
                continue
            reports.append(verify_band(conn, r["aoi"], int(r["year"]), r["band"], root=r.get("root")))
    bad = [r for r in reports if not r["ok"]]
    for r in reports:
        log.info("verify %s %s %s: %s (PostGIS %s rows, archive %s rows)", r["aoi"], r["year"], r["band"],
                 "OK" if r["ok"] else "MISMATCH", f"{r['db_rows']:,}", f"{r['archive_rows']:,}")
    if bad:
        raise ProcessingError("archive differs from PostGIS: " + "; ".join(
            f"{r['aoi']} {r['year']} {r['band']}: {len(r['mismatched'])} scene(s) differ, "
            f"{len(r['missing_in_archive'])} missing" for r in bad))
    return reports


# --------------------------------------------------------------------------------------------
# Verifying
# --------------------------------------------------------------------------------------------


def verify_band(conn: Any, aoi: str, year: int, band: str, *, root: str | None = None) -> dict[str, Any]:
    """PostGIS (checksums computed by SQL) against the archive files (read back): per-scene rows and checksums."""
    fs, base = filesystem(archive_root(root))
    manifest = _read_manifest(fs, base, aoi, year, band)
    db_stats = db_per_scene(conn, aoi, year, band)
    conn.commit()
    report: dict[str, Any] = {"aoi": aoi, "year": int(year), "band": band, "db_scenes": len(db_stats),
                              "db_rows": sum(v[0] for v in db_stats.values()), "archive_rows": 0,
                              "mismatched": [], "missing_in_archive": sorted(db_stats), "archive_only": [],
                              "manifest_mismatch": [], "ok": False}
    if manifest is None:
        report["ok"] = not db_stats
        return report
    arc = _generation_stats(fs, base, manifest)
    report["archive_rows"] = sum(v[0] for v in arc.values())
    report["generation"] = manifest["generation"]
    report["missing_in_archive"] = sorted(set(db_stats) - set(arc))
    report["archive_only"] = sorted(set(arc) - set(db_stats))
    report["mismatched"] = sorted(o for o in set(db_stats) & set(arc) if db_stats[o] != arc[o])
    report["manifest_mismatch"] = sorted(
        int(o) for o, v in manifest["scenes"].items()
        if arc.get(int(o)) != (int(v["rows"]), int(v["checksum"])))
    report["ok"] = not (report["missing_in_archive"] or report["mismatched"] or report["manifest_mismatch"])
    return report


def verify_season(aoi: str, year: int, *, bands: Sequence[str] | None = None, root: str | None = None,
                  dsn: str | None = None) -> list[dict[str, Any]]:
    """:func:`verify_band` for every band of an AOI season (PostGIS's bands and the archived ones)."""
    from cbmflow.core import db

    fs, base = filesystem(archive_root(root))
    with db.connect(dsn) as conn:
        todo = list(bands) if bands else season_bands(conn, aoi, year)
        if not bands:
            for b in bands_mod.BAND_CODES:
                if b not in todo and _read_manifest(fs, base, aoi, year, b) is not None:
                    todo.append(b)
        conn.commit()
        return [verify_band(conn, aoi, year, b, root=root) for b in todo]


# --------------------------------------------------------------------------------------------
# Reading the archive
# --------------------------------------------------------------------------------------------


def read_parcel(aoi: str, year: int, pid: int, band: str, *, root: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """One parcel's season of one band: (rows sorted by sensing time, the manifest's scene facts).

    Reads the manifest, one footer and the one row group holding the parcel (nothing is cached).
    """
    import pyarrow.parquet as pq

    fs, base = filesystem(archive_root(root))
    manifest = _read_manifest(fs, base, aoi, year, band)
    if manifest is None:
        return np.zeros(0, dtype=_ROW_DTYPE), {}
    files = manifest["files"]
    k = bisect_right([f["pid_min"] for f in files], int(pid)) - 1
    if k < 0 or int(pid) > files[k]["pid_max"]:
        return np.zeros(0, dtype=_ROW_DTYPE), manifest["scenes"]
    item = files[k]
    g = bisect_right(item["row_groups"], int(pid)) - 1
    prefix = f"{base}/{season_prefix(aoi, year, band)}"
    with fs.open_input_file(f"{prefix}/{item['path']}") as f:
        t = pq.ParquetFile(f).read_row_group(g)
    rows = _to_rows(t)
    return rows[rows["pid"] == int(pid)], manifest["scenes"]


def read_scene(aoi: str, year: int, obsid: int, band: str, *, root: str | None = None) -> np.ndarray:
    """Every parcel's row of one scene and band (column ``obsid`` read first, the scene's rows kept)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    fs, base = filesystem(archive_root(root))
    manifest = _read_manifest(fs, base, aoi, year, band)
    if manifest is None or str(int(obsid)) not in manifest["scenes"]:
        return np.zeros(0, dtype=_ROW_DTYPE)
    prefix = f"{base}/{season_prefix(aoi, year, band)}"
    parts = []
    for item in manifest["files"]:
        with fs.open_input_file(f"{prefix}/{item['path']}") as f:
            t = pq.read_table(f, filters=pc.field("obsid") == int(obsid))
        parts.append(_to_rows(t))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=_ROW_DTYPE)


def read_season(aoi: str, year: int, bands: Sequence[str], *, pids: Sequence[int] | None = None,
                root: str | None = None) -> list[tuple[int, str, str, str, str, np.ndarray]]:
    """An AOI season from the archive, as (obsid, band, card_type, sensing_time, orbit, rows) per scene and band.

    ``pids`` restricts to those parcels (only the files holding them are read).
    """
    import pyarrow.parquet as pq

    fs, base = filesystem(archive_root(root))
    want = None if pids is None else np.unique(np.asarray(list(pids), dtype=np.int64))
    out = []
    for band in bands:
        manifest = _read_manifest(fs, base, aoi, year, band)
        if manifest is None:
            continue
        prefix = f"{base}/{season_prefix(aoi, year, band)}"
        parts = []
        for item in manifest["files"]:
            if want is not None and not np.any((want >= item["pid_min"]) & (want <= item["pid_max"])):
                continue
            with fs.open_input_file(f"{prefix}/{item['path']}") as f:
                rows = _to_rows(pq.read_table(f))
            if want is not None:
                rows = rows[np.isin(rows["pid"], want)]
            parts.append(rows)
        if not parts:
            continue
        rows = np.concatenate(parts)
        order = np.argsort(rows["obsid"], kind="stable")
        rows = rows[order]
        uniq, starts = np.unique(rows["obsid"], return_index=True)
        ends = list(starts[1:]) + [rows.size]
        for o, a, b in zip(uniq.tolist(), starts.tolist(), ends, strict=True):
            inf = manifest["scenes"][str(o)]["info"]
            out.append((int(o), band, inf["card_type"], inf["sensing_time"], inf["orbit"], rows[a:b]))
    return out


def parcel_observations(aoi: str, year: int, pid: int, bands: Sequence[str] | None = None, *,
                        card_type: str | None = None, root: str | None = None) -> list[tuple[Any, ...]]:
    """One parcel's observations from the archive as the web's time-series rows.

    (sensing_time, obsid, product_id, card_type, band, count, mean, std, min, max, p25, p50, p75),
    ordered by sensing time then band code.
    """
    out = []
    for band in bands or list(bands_mod.BAND_CODES):
        try:
            rows, scenes = read_parcel(aoi, year, pid, band, root=root)
        except NotFound:
            continue
        for r in rows:
            inf = scenes[str(int(r["obsid"]))]["info"]
            if card_type and inf["card_type"] != card_type:
                continue
            # float4 as PostgreSQL's text output gives it (the shortest decimal that round-trips)
            out.append((inf["sensing_time"], int(r["obsid"]), inf["product_id"], inf["card_type"], band,
                        int(r["count"]), *(float(str(r[c])) for c in FLOATS)))
    out.sort(key=lambda t: (t[0], bands_mod.code(t[4])))
    return out


def load_into_temp_table(conn: Any, aoi: str, year: int, bands: Sequence[str] | None = None, *,
                         root: str | None = None, table: str = "archived_signatures") -> int:
    """Copy an AOI season from the archive into a session TEMP table shaped like ``signatures``; returns rows.

    For readers that are SQL (period means for ``classify``) when PostGIS has pruned the season.
    """
    from psycopg import sql

    from cbmflow.extract import sink

    conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE signatures) ON COMMIT PRESERVE ROWS")
                 .format(sql.Identifier(table)))
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
    n = 0
    for obsid, band, _ct, _t, _o, rows in read_season(aoi, year, list(bands or bands_mod.BAND_CODES), root=root):
        stats = {band: {c: rows[c] for c in COLUMNS if c != "obsid"}}
        payload, k = sink.signature_buffer(obsid, int(year), stats)
        if not k:
            continue
        cols = ", ".join(sink.SIGNATURE_COLUMNS)
        with conn.cursor() as cur, cur.copy(
                sql.SQL("COPY {} (" + cols + ") FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table))) as cp:
            cp.write(sink.COPY_HEADER)
            cp.write(payload)
            cp.write(sink.COPY_TRAILER)
        n += k
    return n
