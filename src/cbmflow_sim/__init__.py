"""SIMULATED inputs for tests, benchmarks and the demo; never imported by the production package.

* :mod:`.archive` - a season of SIMULATED CARD COGs (S1 BS/COH6, S2 L2A) for an AOI's parcels;
* :mod:`.crops` - a harder SIMULATED crop season as wide per-parcel features;
* :mod:`.events` - simulated activity events (ploughing) and the truth table of events;
* :mod:`.marker_signals` - per-parcel marker input series with recorded truth.

Everything written is labelled simulated (``SIM`` in product ids, GDAL tags, STAC properties).
"""
