# Source me: the Airflow environment of this checkout (AIRFLOW_HOME in .airflow/).
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export AIRFLOW_HOME=${AIRFLOW_HOME:-$_root/.airflow}
export AIRFLOW__CORE__DAGS_FOLDER=$_root/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$_root/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-postgresql+psycopg2://postgres@127.0.0.1:5432/cbmflow_airflow}
# The UI/API port: CBMFLOW_API_PORT or AIRFLOW__API__PORT (default 8080).
export AIRFLOW__API__PORT=${AIRFLOW__API__PORT:-${CBMFLOW_API_PORT:-8080}}
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://localhost:$AIRFLOW__API__PORT/execution/}
export CBMFLOW_HOME=$_root
# Extract tasks run two at a time on this machine (one per core): each decodes on one GDAL thread,
# ~17 % less CPU per band than ALL_CPUS (docs/performance.md, section 3).
export CBMFLOW_GDAL_THREADS=${CBMFLOW_GDAL_THREADS:-1}
export PATH=$_root/.venv/bin:$PATH
mkdir -p "$AIRFLOW_HOME"
