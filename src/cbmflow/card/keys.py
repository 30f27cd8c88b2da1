"""Where CARD products live: one deterministic key per (card type, sensing day, product, band).

``<card_root>/<card_type>/<yyyy>/<mm>/<dd>/<product_id>_<BAND>.tif`` (sensing date, UTC), so a
retry or backfill overwrites the same objects instead of adding new ones.
"""

from __future__ import annotations

import os
from datetime import datetime

from cbmflow.core import storage

CARD_ROOT_ENV = "CBMFLOW_CARD_ROOT"
DEFAULT_CARD_ROOT = "s3://cbmflow-card"


def resolve_card_root(value: str | None = None) -> str:
    """The CARD root URI: the argument, else ``$CBMFLOW_CARD_ROOT``, else ``s3://cbmflow-card``."""
    return value or os.environ.get(CARD_ROOT_ENV) or DEFAULT_CARD_ROOT


def card_prefix(root: str, card_type: str, sensing_time: datetime) -> str:
    """``<root>/<card_type>/<yyyy>/<mm>/<dd>`` for a sensing time (UTC)."""
    from datetime import UTC

    t = sensing_time.astimezone(UTC)
    return storage.join(root, card_type, f"{t:%Y}", f"{t:%m}", f"{t:%d}")


def card_key(root: str, card_type: str, sensing_time: datetime, product_id: str, band: str) -> str:
    """The deterministic URI of one CARD band COG."""
    return storage.join(card_prefix(root, card_type, sensing_time), f"{product_id}_{band.upper()}.tif")




__all__ = ["CARD_ROOT_ENV", "DEFAULT_CARD_ROOT", "card_key", "card_prefix", "resolve_card_root"]
