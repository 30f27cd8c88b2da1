"""Stage 0, declared parcels: read parcel files (GPKG, SHP, GeoParquet/fiboa, GeoJSON), check and
repair them (:mod:`.checks`), store and load them in PostGIS (:mod:`.store`).
"""
