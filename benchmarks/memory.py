"""Memory ceiling benchmark: peak RSS of ``cbmflow extract`` measured with ``/usr/bin/time -v``.

Cases (the two of issue 9):

* ``tile``: one polygon covering a full Sentinel-2 tile (10980 x 10980 px, uint16 COG-like GeoTIFF,
  120.6 M pixels). Under the default ceiling it must stop early with the one-line error; under a
  ceiling large enough for its estimated need (48 B per pixel) it must finish below that ceiling.
* ``wide``: a raster 500,000 px wide (x 1,024 rows, uint16, striped GeoTIFF) with 4,000 small
  parcels spread over its whole width; it must finish below the default ceiling.

Each case runs in a fresh process (``python -m cbmflow.cli.parser extract``) under ``/usr/bin/time -v``;
``--reference SRC`` also runs every case with another checkout's ``src`` (e.g. /work/main/src,
the code before the guard) and prints both side by side.

    .venv/bin/python benchmarks/memory.py [--workdir /tmp/cbm-mem] [--reference /work/main/src]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

X0, Y0 = 500000.0, 6200000.0
TILE = 10_980
WIDE = (500_000, 1_024)  # width, height


def _make_tile(path: Path) -> None:
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=TILE, height=TILE, count=1, dtype="uint16",
                       crs="EPSG:32632", transform=Affine(10, 0, X0, 0, -10, Y0), tiled=True, blockxsize=512,
                       blockysize=512, compress="deflate", nodata=0) as dst:
        cols = np.arange(TILE, dtype=np.uint32)
        for r0 in range(0, TILE, 512):
            r1 = min(TILE, r0 + 512)
            rows = np.arange(r0, r1, dtype=np.uint32)[:, None]
            block = ((rows * 7 + cols[None, :] * 3) % 4000 + 1).astype(np.uint16)
            dst.write(block[None], window=((r0, r1), (0, TILE)))


def _make_wide(path: Path) -> None:
    import rasterio
    from affine import Affine

    width, height = WIDE
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint16",
                       crs="EPSG:32632", transform=Affine(10, 0, X0, 0, -10, Y0), blockysize=16,
                       compress="deflate", nodata=0) as dst:
        cols = np.arange(width, dtype=np.uint32)
        for r0 in range(0, height, 64):
            rows = np.arange(r0, r0 + 64, dtype=np.uint32)[:, None]
            dst.write((((rows + cols[None, :]) % 3000) + 1).astype(np.uint16)[None], window=((r0, r0 + 64), (0, width)))


def _make_parcels(workdir: Path) -> tuple[Path, Path]:
    import geopandas as gpd
    from shapely.geometry import box

    tile = workdir / "tile_polygon_v2.gpkg"
    if not tile.exists():
        gpd.GeoDataFrame({"pid": [1], "code": ["all"]}, geometry=[box(X0, Y0 - 10 * TILE, X0 + 10 * TILE, Y0)],
                         crs=32632).to_file(tile)
    wide = workdir / "wide_parcels_v2.gpkg"
    if not wide.exists():
        rng = np.random.default_rng(9)
        n = 4_000
        c = rng.integers(0, WIDE[0] - 40, n)
        r = rng.integers(0, WIDE[1] - 40, n)
        size = rng.integers(10, 40, n)
        geoms = [box(X0 + 10 * ci, Y0 - 10 * (ri + si), X0 + 10 * (ci + si), Y0 - 10 * ri)
                 for ci, ri, si in zip(c.tolist(), r.tolist(), size.tolist(), strict=True)]
        gpd.GeoDataFrame({"pid": np.arange(1, n + 1), "code": ["x"] * n}, geometry=geoms, crs=32632).to_file(wide)
    return tile, wide


def _run(raster: Path, parcels: Path, out: Path, ceiling_mb: int | None, src: str | None) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if ceiling_mb is not None:
        env["CBMFLOW_EXTRACT_MEMORY_MB"] = str(ceiling_mb)
    if src:
        env["PYTHONPATH"] = src
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "cbmflow.cli.parser", "extract", "--raster", str(raster),
           "--parcels", str(parcels), "--id-col", "pid", "--out", str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", res.stderr)
    status = re.search(r"Exit status: (\d+)", res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("cbmflow:")] or [res.stdout.strip()]
    seconds = 0.0
    if wall:
        for part in wall.group(1).split(":"):
            seconds = seconds * 60 + float(part)
    return {"rss_mb": int(rss.group(1)) / 1024 if rss else float("nan"), "wall_s": seconds,
            "exit": int(status.group(1)) if status else res.returncode, "said": lines[-1][:160]}


def main() -> int:
    """Build the inputs (once), run every case under /usr/bin/time -v and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "cbmflow-memory-bench"))
    ap.add_argument("--ceiling-mb", type=int, default=1536, help="the default ceiling to test against")
    ap.add_argument("--big-ceiling-mb", type=int, default=6400,
                    help="a ceiling the full-tile polygon fits (48 B/px x 120.6 M px + the interpreter)")
    ap.add_argument("--reference", default=None, help="another checkout's src/ to run side by side")
    ap.add_argument("--cases", default="tile,tile-big,wide")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    tile_tif, wide_tif = work / "tile.tif", work / "wide.tif"
    if not tile_tif.exists():
        _make_tile(tile_tif)
    if not wide_tif.exists():
        _make_wide(wide_tif)
    tile_gpkg, wide_gpkg = _make_parcels(work)
    cases = {
        "tile": (tile_tif, tile_gpkg, args.ceiling_mb),
        "tile-big": (tile_tif, tile_gpkg, args.big_ceiling_mb),
        "wide": (wide_tif, wide_gpkg, args.ceiling_mb),
    }
    print(f"{'case':<9} {'ceiling MB':>10} {'exit':>4} {'peak RSS MB':>11} {'RSS/ceiling':>11} {'wall s':>7}"
          + (f" | {'reference RSS MB':>16} {'ref wall s':>10} {'ref exit':>8}" if args.reference else ""))
    for name in args.cases.split(","):
        raster, parcels, ceiling = cases[name]
        got = _run(raster, parcels, work / f"{name}.parquet", ceiling, None)
        line = (f"{name:<9} {ceiling:>10} {got['exit']:>4} {got['rss_mb']:>11.0f} "
                f"{float(got['rss_mb']) / ceiling:>11.2f} {got['wall_s']:>7.1f}")  # type: ignore[arg-type]
        if args.reference and name != "tile-big":
            ref = _run(raster, parcels, work / f"{name}-ref.parquet", ceiling, args.reference)
            line += f" | {ref['rss_mb']:>16.0f} {ref['wall_s']:>10.1f} {ref['exit']:>8}"
        print(line)
        print(f"          -> {got['said']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
