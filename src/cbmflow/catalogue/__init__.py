"""Stage 1, find: STAC discovery (:mod:`.stac`) into the PostGIS scene catalogue and its status
queue, with the (scene, AOI) extraction ledger (:mod:`.store`).
"""
