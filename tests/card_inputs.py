"""Real Sentinel-2 L2A test inputs shared by the CARD integration and system tests."""

from __future__ import annotations

from pathlib import Path

from cbmflow.core import storage

R60, C60, N60 = 240, 1288, 16  # a 16x16 window at 60 m with no-data, dark and bright pixels
IRELAND = "POLYGON((-9.01 53.2, -8.99 53.2, -8.99 53.22, -9.01 53.22, -9.01 53.2))"
AUSTRIA = "POLYGON((15.0 48.3, 15.1 48.3, 15.1 48.4, 15.0 48.4, 15.0 48.3))"


def s2_l2a_inputs(shared: Path, dest_uri: str, tmp: Path) -> dict[str, str]:
    """Real L2A pieces: B04 (60 m) and SCL (20 m) windows of T29UNU, uploaded as GeoTIFF assets."""
    import rasterio
    from rasterio.windows import Window

    assets: dict[str, str] = {}
    for band, name, scale in (("B04", "B04_60m", 1), ("SCL", "SCL_20m", 3)):
        with rasterio.open(shared / "s2" / f"T29UNU_20221005T115411_{name}.jp2") as src:
            win = Window(C60 * scale, R60 * scale, N60 * scale, N60 * scale)
            data = src.read(1, window=win)
            profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1,
                       "dtype": data.dtype.name, "crs": src.crs, "transform": src.window_transform(win)}
        local = tmp / f"{band}.tif"
        with rasterio.open(local, "w", **profile) as dst:
            dst.write(data, 1)
        assets[band] = storage.upload(local, storage.join(dest_uri, "source", f"T29UNU_{band}.tif"))
    assets["MTD"] = storage.upload(shared / "s2" / "T29UNU_MTD_MSIL2A.xml",
                                   storage.join(dest_uri, "source", "MTD_MSIL2A.xml"))
    return assets
