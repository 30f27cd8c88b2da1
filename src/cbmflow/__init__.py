"""cbmflow: Copernicus Sentinel archive to per-parcel evidence for CAP Checks by Monitoring."""

from __future__ import annotations

__version__ = "0.1.0"
