"""Scale benchmark: a Danish S1 season at >= 1/10 scale through the DAGs' code, projected to Denmark.

Usage (from the project root):

    nice -n 10 .venv/bin/python benchmarks/denmark.py               # 56,000 parcels x 200 dates x VV/VH (1/10 of DK)
    nice -n 10 .venv/bin/python benchmarks/denmark.py --dates 40    # the same parcels, fewer dates (projected in dates)
    .venv/bin/python benchmarks/denmark.py --quick                  # 2,800 parcels x 10 dates

What runs is the code the DAGs run: parcels and catalogue rows in a fresh PostGIS database;
``extract_signatures``' plan (``plan_units``) and its mapped ``extract`` task
(``extract_scenes``: claim each scene, every band with the cached pixel index, ``sink``, mark it
extracted), two units at a time in two processes (the DAG's ``max_active_tis_per_dag`` on 2 cores);
then ``archive_signatures``' tasks (``plan_archive``, ``archive_unit`` per band, two at a time,
``verify_units``) into a Parquet season archive. Finally one parcel's season is read from an
archive of Denmark's size (560,000 parcels x 200 dates, one band, written file by file with the
archive's own writer) and from the run's archive, cold (a fresh filesystem, manifest, footer and
row group per read; the OS page cache is not dropped), p50/p95. The rasters are float32 10 m
CARD-BS-like COGs on one UTM grid around the parcels, which are packed at Denmark's density
(~770 10 m pixels of land per parcel: 43,000 km² / 560,000); to keep the disk footprint small a pool of
distinct rasters is cycled through the dates (decode cost is real; the OS file cache is warm).
The projection scales the measured wall time linearly with the number of parcels (all costs -
index build, pixel gather, sort, COPY - are linear in parcel pixels or rows).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

FULL_PARCELS = 560_000
FULL_DATES = 200
BANDS = ("VV", "VH")


def main(argv: list[str] | None = None) -> int:
    """Run the scale benchmark and print the projection."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--parcels", type=int, default=None)
    ap.add_argument("--dates", type=int, default=None)
    ap.add_argument("--pool", type=int, default=None, help="distinct rasters cycled through the dates")
    ap.add_argument("--compress", choices=["deflate", "zstd"], default="zstd",
                    help="COG compression (cbmflow.core.cog writes ZSTD; DEFLATE for comparison)")
    ap.add_argument("--workers", type=int, default=2, help="extract units at once (the DAG: 2 on 2 cores)")
    ap.add_argument("--read-samples", type=int, default=200, help="parcels read from the archive (p50/p95)")
    ap.add_argument("--no-dk-archive", dest="dk_archive", action="store_false",
                    help="skip writing the Denmark-size archive for the read benchmark")
    ap.add_argument("--reference", help="another checkout's src folder: time only the extraction, this checkout and "
                    "the reference alternated on fresh databases (same schema), and print the ratio")
    ap.add_argument("--rounds", type=int, default=2, help="with --reference: alternated rounds (A B A B ...)")
    ap.add_argument("--px-per-parcel", type=float, default=800.0,
                    help="grid pixels per parcel (Denmark: ~770 px of land per parcel)")
    a = ap.parse_args(argv)
    # the deployment's setting (scripts/airflow-env.sh, docker-compose.yaml): one decode thread per
    # extract task, as many tasks as cores; the spawned workers inherit it
    os.environ.setdefault("CBMFLOW_GDAL_THREADS", "1")
    n = a.parcels or (2_800 if a.quick else 56_000)
    dates = a.dates or (10 if a.quick else 200)
    pool = a.pool or (2 if a.quick else 8)
    warnings.filterwarnings("ignore")

    import psycopg
    import rasterio
    from affine import Affine

    from cbmflow.core import cog
    from cbmflow.extract import archive

    work = C.workdir("denmark")
    gdf = C.packed_parcels(n, px_per_parcel=a.px_per_parcel)  # Danish parcel density on the grid
    x0, y0, x1, y1 = gdf.total_bounds
    ox, oy = np.floor(x0 / 10) * 10 - 200, np.ceil(y1 / 10) * 10 + 200
    w, h = int((x1 - ox) / 10) + 40, int((oy - y0) / 10) + 40
    rng = np.random.default_rng(1)
    files = []
    with C.Timer() as t_gen:
        for i in range(pool):
            data = rng.lognormal(-2.5 if i % 2 == 0 else -4.0, 0.6, size=(h, w)).astype(np.float32)
            data[rng.random((h, w)) < 0.01] = np.nan
            tmp = work / f"tmp_{i}.tif"
            with rasterio.open(tmp, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32", crs=C.CRS,
                               transform=Affine(10, 0, ox, 0, -10, oy), nodata=float("nan")) as dst:
                dst.write(data, 1)
                dst.update_tags(CBMFLOW_SIMULATED="true")
            files.append(cog.to_cog(tmp, str(work / f"SIM_pool_{i}.tif"), compress=a.compress.upper()))
            tmp.unlink()
    print(f"# {n:,} parcels (1-5 ha rectangles, {a.px_per_parcel:.0f} px of grid per parcel) on a {w}x{h} px grid, {dates} dates x {len(BANDS)} bands; "
          f"{pool} pooled {a.compress.upper()} COGs written in {t_gen.s:.1f} s ({work}); "
          f"GDAL threads per worker: {os.environ['CBMFLOW_GDAL_THREADS']}")

    if a.reference:
        return _alternate(a, gdf, files, dates, pool)
    with C.bench_db() as dsn:
        units, summary, t_run = _extract(dsn, gdf, files, dates, pool, a.workers)
        with psycopg.connect(dsn) as conn:
            stored = conn.execute("SELECT count(*) FROM signatures").fetchone()[0]
            size = conn.execute("SELECT pg_total_relation_size('signatures_2025')").fetchone()[0]
        # the archive_signatures DAG's tasks
        arc_root = str(work / "archive")
        os.environ["CBMFLOW_ARCHIVE_URI"] = arc_root
        with C.Timer() as t_arc:
            arc_units = archive.plan_archive([2025], ["dk_bench"], dsn=dsn)
            with ThreadPoolExecutor(max_workers=2) as pool:  # max_active_tis_per_dag=2
                arc_results = list(pool.map(lambda u: archive.archive_unit(u, dsn=dsn), arc_units))
        with C.Timer() as t_ver:
            reports = archive.verify_units(arc_results, dsn=dsn)
    rows = summary["rows"]
    assert not summary["failed"], summary["failed"]
    assert stored == rows
    assert all(r["ok"] for r in reports)
    arc_rows = sum(r["rows"] for r in arc_results)
    arc_bytes = sum(r["bytes"] for r in arc_results)
    scale = FULL_PARCELS / n
    full_rows = FULL_PARCELS * FULL_DATES * len(BANDS)
    per_date = FULL_DATES / dates
    proj_extract = t_run.s * scale * per_date / 3600
    proj_archive = t_arc.s * scale * per_date / 3600
    proj_verify = t_ver.s * scale * per_date / 3600
    print(C.table([
        ("extract (plan + mapped extract)", f"{n:,} x {dates}", f"{rows:,}", f"{t_run.s:.1f} s",
         f"{rows / t_run.s:,.0f}", f"{proj_extract:.2f} h"),
        ("archive (plan + 2 bands)", "", f"{arc_rows:,}", f"{t_arc.s:.1f} s", f"{arc_rows / t_arc.s:,.0f}",
         f"{proj_archive:.2f} h"),
        ("verify (SQL vs files)", "", f"{arc_rows:,}", f"{t_ver.s:.1f} s", f"{arc_rows / t_ver.s:,.0f}",
         f"{proj_verify:.2f} h"),
    ], ("step", "parcels x dates", "band-records", "wall time", "records/s",
        f"projected DK ({FULL_PARCELS:,} x {FULL_DATES}, {full_rows:,})")))
    total = proj_extract + proj_archive
    print(f"per scene: {t_run.s / dates:.3f} s (2 bands, {a.workers} worker process(es), {len(units)} unit(s)); PostGIS "
          f"{size / max(stored, 1):.0f} B/record incl. indexes; archive {arc_bytes / arc_rows:.1f} B/record "
          f"({arc_bytes / 2**20:.0f} MiB); season projected {total:.2f} h = {total * 60:.0f} min (extract + archive; "
          f"target <= 30 min: {'met' if total <= 0.5 else 'NOT met'}); load average {os.getloadavg()[0]:.1f}")
    _read_benchmark(work, arc_root, a.read_samples, a.dk_archive)
    return 0


def _load(dsn: str, gdf: Any, files: list[str], dates: int, pool: int) -> None:
    """The benchmark's AOI, parcels and catalogue of CARD scenes in a fresh database."""
    import psycopg
    import shapely

    from cbmflow.catalogue import store as catalogue
    from cbmflow.catalogue.store import Scene

    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO aois (name, epsg, parcels_version) VALUES ('dk_bench', 32632, 1)")
        with conn.cursor() as cur, cur.copy(
            "COPY parcels (pid, aoi, year, parcel_id, crop_code, area_m2, geom, source) FROM STDIN"
        ) as cp:
            for pid, pcode, crop, g in zip(gdf["pid"], gdf["parcel_id"], gdf["crop_code"], gdf.geometry, strict=True):
                cp.write_row((int(pid), "dk_bench", 2025, pcode, crop, float(g.area),
                              "SRID=32632;" + shapely.to_wkt(shapely.multipolygons([g])), "benchmark"))
        start = datetime(2025, 3, 1, 5, 30, tzinfo=UTC)
        scenes = []
        for d in range(dates):
            assets = {b: files[(2 * d + k) % pool] for k, b in enumerate(BANDS)}
            scenes.append(Scene(product_id=f"SIM_S1_CARD_BS_DK_{d:03d}", mission="S1A", product_type="CARD-BS",
                                card_type="bs", sensing_time=start + timedelta(days=d * 6 / 5),
                                tile="DK", assets=assets, simulated=True, status="ready"))
        catalogue.upsert(conn, scenes)
        conn.commit()



def _extract(dsn: str, gdf: Any, files: list[str], dates: int, pool: int, workers: int,
             pythonpath: str | None = None) -> tuple[list, dict, C.Timer]:  # type: ignore[type-arg]
    """Load the database, plan the units and time their extraction: (units, summary, timer)."""
    from cbmflow.extract import run as extract

    _load(dsn, gdf, files, dates, pool)
    units = extract.plan_units(card_type="bs", aoi="dk_bench", year=2025, dsn=dsn)
    with C.Timer() as t:
        summary = _run_units(units, dsn, workers, pythonpath=pythonpath)
    return units, summary, t

def _alternate(a: argparse.Namespace, gdf: Any, files: list[str], dates: int, pool: int) -> int:
    """Extraction only, this checkout and ``--reference`` alternated on fresh databases: per-scene times and ratio."""
    times: dict[str, list[float]] = {"this checkout": [], "reference": []}
    for r in range(a.rounds):
        for label, path in (("reference", a.reference), ("this checkout", None)):
            with C.bench_db() as dsn:
                _, summary, t = _extract(dsn, gdf, files, dates, pool, a.workers, pythonpath=path)
            assert not summary["failed"], summary["failed"]
            assert summary["extracted"] == dates, summary
            times[label].append(t.s / dates)
            print(f"round {r + 1} {label}: {t.s / dates:.3f} s per scene ({t.s:.1f} s, {summary['rows']:,} rows)", flush=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(C.table([(k, f"{med[k]:.3f}", ", ".join(f"{x:.3f}" for x in v)) for k, v in times.items()],
                  ("code", "median s per scene", "rounds")))
    print(f"this checkout / reference: {med['this checkout'] / med['reference']:.2f}x the time per scene "
          f"({a.rounds} alternated rounds, {a.workers} worker processes, {dates} dates); load average {os.getloadavg()[0]:.1f}")
    return 0


def _unit_worker(args: tuple) -> dict:  # type: ignore[type-arg]
    unit, dsn, run_id, src = args
    if src and src not in sys.path:  # a spawned worker gets the parent's sys.path: PYTHONPATH would not switch
        sys.path.insert(0, src)
    from cbmflow.extract import run as extract

    if src and not extract.__file__.startswith(src):
        raise RuntimeError(f"the reference worker imported {extract.__file__}, not the code under {src}")
    return extract.extract_scenes(unit["scene_ids"], aoi=unit["aoi"], year=int(unit["year"]), dsn=dsn,
                                  tile_bbox=unit["tile_bbox"], run_id=run_id)


def _run_units(units: list, dsn: str, workers: int, pythonpath: str | None = None) -> dict:  # type: ignore[type-arg]
    """The mapped extract task over the plan's units, ``workers`` at a time in separate processes.

    ``pythonpath``: the workers import cbmflow from there (another checkout's ``src``).
    """
    import multiprocessing as mp

    total = {"rows": 0, "failed": {}, "extracted": 0}
    src = str(Path(pythonpath).resolve()) if pythonpath else None
    jobs = [(u, dsn, "bench-run", src) for u in units]
    if workers <= 1 and not src:
        results = [_unit_worker(j) for j in jobs]
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_unit_worker, jobs, chunksize=1)
    for r in results:
        total["rows"] += r["rows"]
        total["failed"].update(r["failed"])
        total["extracted"] += len(r["extracted"])
    return total


def _read_benchmark(work: Path, run_root: str, samples: int, dk_archive: bool) -> None:
    """One parcel's season from the archive, cold: the run's archive and one of Denmark's size."""
    from cbmflow.extract import archive

    rng = np.random.default_rng(5)
    rows_out = []
    targets = [("run archive (VV)", run_root, "dk_bench")]
    if dk_archive:
        root = str(work / "dk_archive")
        with C.Timer() as t:
            n_rows, nbytes = _denmark_archive(root)
        print(f"# Denmark-size archive: {FULL_PARCELS:,} parcels x {FULL_DATES} dates, 1 band, {n_rows:,} records, "
              f"{nbytes / 2**30:.2f} GiB ({nbytes / n_rows:.1f} B/record), written in {t.s:.0f} s")
        targets.append(("Denmark-size archive (VV)", root, "dk_full"))
    for label, root, aoi in targets:
        m = archive.read_manifest(aoi, 2025, "VV", root=root)
        assert m is not None
        lo, hi = m["files"][0]["pid_min"], m["files"][-1]["pid_max"]
        times, sizes = [], []
        for pid in rng.integers(lo, hi + 1, samples).tolist():
            with C.Timer() as t:
                got, _ = archive.read_parcel(aoi, 2025, int(pid), "VV", root=root)
            times.append(t.s * 1000)
            sizes.append(got.size)
        ms = np.asarray(times)
        rows_out.append((label, f"{m['parcels']:,}", f"{len(m['files'])}", f"{np.median(sizes):.0f}",
                         f"{np.percentile(ms, 50):.1f}", f"{np.percentile(ms, 95):.1f}", f"{ms.max():.1f}"))
    print(C.table(rows_out, ("archive", "parcels", "files", "obs/parcel", "p50 ms", "p95 ms", "max ms")))
    print(f"one parcel's season cold = new filesystem + manifest + footer + one row group per read, {samples} random "
          "parcels; target p95 <= 20 ms")


def _denmark_archive(root: str) -> tuple[int, int]:
    """A Denmark-size season of one band (synthetic values), written file by file by the archive's own writer."""
    from cbmflow.extract import archive

    fs, base = archive.filesystem(root)
    aoi, year, band = "dk_full", 2025, "VV"
    rng = np.random.default_rng(9)
    obsids = np.arange(1, FULL_DATES + 1, dtype=np.int32)
    start = datetime(2025, 3, 1, 5, 30, tzinfo=UTC)
    info = {int(o): {"product_id": f"SIM_S1_CARD_BS_DK_{o:03d}", "card_type": "bs", "orbit": "44A",
                     "sensing_time": f"{start + timedelta(days=int(o) * 6 / 5):%Y-%m-%dT%H:%M:%SZ}"} for o in obsids}
    writer = archive._GenerationWriter(fs, f"{base}/{archive.season_prefix(aoi, year, band)}", "gen-denmark", info)
    per = archive.PARCELS_PER_FILE
    for p0 in range(1, FULL_PARCELS + 1, per):
        pids = np.arange(p0, min(p0 + per, FULL_PARCELS + 1), dtype=np.int32)
        keep = rng.random((pids.size, obsids.size)) > 0.02  # a few parcels miss a few scenes
        k = keep.sum(axis=1)
        rows = np.empty(int(k.sum()), dtype=archive._ROW_DTYPE)
        rows["pid"] = np.repeat(pids, k)
        rows["obsid"] = np.tile(obsids, pids.size)[keep.ravel()]
        rows["count"] = np.repeat(rng.integers(80, 500, pids.size), k) - rng.integers(0, 3, rows.size)
        level = np.repeat(rng.lognormal(-2.5, 0.3, pids.size), k)  # a parcel's level, noisy per date
        for j, c in enumerate(archive.FLOATS):
            rows[c] = (level * rng.lognormal(0.0, 0.25, rows.size) * (0.5 + 0.2 * j)).astype(np.float32)
        writer.add(rows)
    writer.publish(aoi, year, band, set())
    return writer.rows, writer.bytes


if __name__ == "__main__":
    raise SystemExit(main())
