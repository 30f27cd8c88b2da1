"""Development tools beside the production package: the demo and the local-cluster client.

* :mod:`.demo` - ``cbmflow demo``, the pipeline end to end on a simulated season;
* :mod:`.cluster` - the REST client and health check of the local Celery cluster (``scripts/cluster.sh``).
"""
