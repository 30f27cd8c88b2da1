"""The small core every stage stands on: settings, the error family, the results database,
object storage, and shared helpers (UTM zones, UTC dates, band codes, crop groups, COG writing,
fault-test pause points). Nothing here imports a stage.
"""
