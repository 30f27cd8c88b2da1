"""A real browser against a real Airflow api-server: log in, open the flag list, click a red parcel.

The api-server runs as a process on a free port with SimpleAuthManager (a known user and password),
the session's PostgreSQL metadata database and this session's PostGIS results database filled with
demo-like data (tests/web_data.py), CARD COGs for the chips on the moto S3 server. Chromium is
Debian's (/usr/bin/chromium) driven by Playwright. The parcel view's screenshot is saved to
var/test-artefacts/parcel_view.png.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from web_data import (
    RED_PARCEL,
    XSS_ID,
    XSS_PARCEL,
    WebData,
    airflow_auth_env,
    build,
    empty_database,
)

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / "var" / "test-artefacts"
CHROMIUM = "/usr/bin/chromium"
USER, PASSWORD = "inspector", "cbm-inspector-pass"  # Airflow role viewer: reads only
EDITOR, EDITOR_PASSWORD = "ines", "cbm-editor-pass"  # Airflow role user: may record decisions
SECOND_RED = "P-10"  # made red below, so the queue of red parcels has a next and a previous
PORTS = range(8791, 8800)  # the ports this suite may use


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@pytest.fixture(scope="module")
def web_data(pg_dsn: str, s3_endpoint: str) -> WebData:
    empty_database(pg_dsn)
    t0 = time.monotonic()
    with psycopg.connect(pg_dsn) as conn:
        data = build(conn, s3_base=f"s3://webui-{uuid.uuid4().hex[:10]}")
        conn.execute("UPDATE parcel_flags SET flag = 'red', predicted = 'GL', probability = 0.83, "
                     "declared_probability = 0.12, agree_count = 5 WHERE pid = %s", (data.pids[SECOND_RED],))
        conn.commit()
    print(f"web test data built in {time.monotonic() - t0:.1f} s")
    return data


@pytest.fixture(scope="module")
def api_server(web_data: WebData, airflow_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`airflow api-server` on a free port, logged-in users from a known password file."""
    home = tmp_path_factory.mktemp("airflow-web")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD, EDITOR: EDITOR_PASSWORD}))
    port = _free_port()
    env = dict(os.environ)
    env.update(airflow_auth_env())
    env.update({
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer,{EDITOR}:user",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "CBMFLOW_CHIP_CACHE": str(home / "chips"),
    })
    env.pop("CBMFLOW_API_DSN", None)  # the default: the read-only role on CBMFLOW_DSN
    log = open(home / "api-server.log", "w")  # noqa: SIM115 - closed below
    airflow_bin = Path(sys.executable).parent / "airflow"
    proc = subprocess.Popen([str(airflow_bin), "api-server"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/api/v2/monitor/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"api-server did not come up: {(home / 'api-server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        print(f"api-server healthy after {time.monotonic() - started:.1f} s")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        if os.environ.get("CBMFLOW_KEEP_API_LOG"):
            ARTEFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(home / "api-server.log", ARTEFACTS / "api-server.log")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run `make setup` (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _wait(page, expression: str, timeout: float = 30.0) -> None:
    """Poll a JS expression until truthy (page.wait_for_function would need eval, which the CSP forbids)."""
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout
    while True:
        try:
            if page.evaluate(expression):
                return
        except PlaywrightError:  # the page is navigating: its document is not there yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.2)


def test_login_flag_list_red_parcel_view(api_server: str, browser, web_data: WebData) -> None:
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # 1. Without a session the plugin's page sends the user to Airflow's login.
    page.goto(api_server + "/cbmflow/flags")
    page.wait_for_selector("input[name=username]", timeout=30_000)
    assert "/auth/login" in page.url
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")

    # 2. Back on the flag list (Airflow's `_token` cookie is the only credential).
    page.wait_for_selector("table#flags tbody tr", timeout=30_000)
    assert "/cbmflow/flags" in page.url
    assert any(c["name"] == "_token" for c in page.context.cookies())
    flags = page.locator("table#flags tbody tr").evaluate_all("rows => rows.map(r => r.dataset.flag)")
    assert flags[0] == "red" and set(flags) == {"red", "yellow"}
    assert "flag=red" in page.url and "flag=yellow" in page.url  # the filters live in the URL
    # a parcel id with HTML in it is shown as text, not markup
    assert page.locator("table#flags a.parcel-link", has_text=XSS_PARCEL).count() == 1
    assert page.locator("b#xss").count() == 0
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "flag_list.png"), full_page=True)
    # sorting by a header re-orders the rows
    page.click("th[data-key=probability]")
    page.wait_for_selector("th[data-key=probability].sorted")

    # 3. One click on the red parcel opens its view.
    page.locator(f"tr[data-flag=red][data-pid='{web_data.red_pid}'] a.parcel-link").click()
    page.wait_for_url(f"**/cbmflow/parcel/{web_data.red_pid}?*", timeout=15_000)
    _wait(page, "document.body.dataset.ready !== undefined")
    assert page.evaluate("document.body.dataset.ready") == "1", page.locator(".error").all_inner_texts()
    assert f"/cbmflow/parcel/{web_data.red_pid}" in page.url
    assert page.inner_text("#parcel-id") == RED_PARCEL

    # map: the AOI's parcels coloured by flag, the selected one on top
    assert page.locator("#map path.parcel.red.selected").count() == 1
    assert page.locator("#map path.parcel.green").count() >= 5
    assert page.locator("#map path.parcel.yellow").count() >= 1
    # timeline: S1 by orbit, VH/VV, coherence, NDVI, 5-day means, peers, marker
    series = set(page.locator("#timeline [data-series]").evaluate_all("n => n.map(x => x.dataset.series)"))
    for s in ("VV_ascending", "VV_descending", "VH_ascending", "VH_descending", "ratio_ascending",
              "COH_VV", "ndvi", "per_VV", "peer_VV_ascending", "VV_ascending_band"):
        assert s in series, (s, sorted(series))
    assert "ndvi_cloudy" not in series  # cloudy S2 observations hidden by default ...
    page.locator(".series-legend label", has_text="NDVI cloudy").click()
    assert page.locator("#timeline [data-series=ndvi_cloudy]").count() > 0  # ... and shown on demand
    assert page.locator("#timeline text", has_text="harvest").count() == 1
    assert page.locator("#timeline text", has_text="S1 backscatter γ⁰ (dB)").count() == 1
    # the flag and why
    reason = page.inner_text("#reason")
    assert "5 of 5" in reason and "WW" in reason
    assert page.inner_text("#declared-prob") == "4 %"
    # chips: real PNGs decoded by the browser, the STAC id with HTML only as text
    _wait(page, "[...document.querySelectorAll('#chips img')].some(i => i.complete && i.naturalWidth > 0)")
    chip = page.locator(f"#chips .chip[data-obsid='{web_data.chip_obsid}'] img")
    assert chip.get_attribute("alt") == XSS_ID
    chip.scroll_into_view_if_needed()
    _wait(page, f"(() => {{ const i = document.querySelector(\"#chips .chip[data-obsid='{web_data.chip_obsid}'] img\");"
          " return i && i.complete && i.naturalWidth === 160; })()")
    page.locator(f"#chips .chip[data-obsid='{web_data.chip_obsid}']").click()
    assert page.locator("#timeline line.selected-date").count() == 1
    page.evaluate("document.querySelector('#chips').scrollLeft = 0")
    page.mouse.move(0, 0)
    page.screenshot(path=str(ARTEFACTS / "parcel_view.png"), full_page=True)

    # clicking another parcel on the map opens it (search by clicking the map)
    page.click("#zoom-parcel")
    target = page.evaluate("""(() => {
      const m = document.querySelector('#map').getBoundingClientRect();
      for (const p of document.querySelectorAll('#map path.parcel.green')) {
        const b = p.getBoundingClientRect(), x = b.x + b.width / 2, y = b.y + b.height / 2;
        if (x > m.left + 5 && x < m.right - 5 && y > m.top + 5 && y < m.bottom - 5
            && document.elementFromPoint(x, y) === p) return {pid: p.dataset.pid, x, y};
      }
      return null; })()""")
    assert target, "no green parcel visible on the map"
    page.mouse.click(target["x"], target["y"])
    page.wait_for_url(f"**/cbmflow/parcel/{target['pid']}?run={web_data.run_id}", timeout=15_000)
    _wait(page, "document.body.dataset.ready === '1'")
    assert page.locator("#map path.parcel.green.selected").count() == 1

    # search by declared id in the header
    page.fill("header input[name=q]", RED_PARCEL)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/cbmflow/parcel/{web_data.red_pid}", timeout=15_000)

    # the failed-scenes page lists the failed scene; its error's HTML stays text
    page.goto(api_server + "/cbmflow/scenes")
    page.wait_for_selector("tr[data-status=failed]", timeout=15_000)
    row = page.locator("tr[data-status=failed]", has_text="S1A_IW_GRDH_1SDV_20250614T050000_FAILED")
    assert "<script>alert(1)</script>" in row.inner_text()
    assert "airflow dags trigger card_s1_bs" in row.inner_text()

    # API docs work offline (rendered from openapi.json by a local script)
    page.goto(api_server + "/cbmflow/docs")
    page.wait_for_selector(".endpoint", timeout=15_000)
    assert page.locator(".endpoint").count() >= 10

    assert not dialogs and page.evaluate("window.__xss === undefined")
    assert not errors, errors
    page.close()


def test_airflow_menu_links_to_the_flag_list(api_server: str) -> None:
    import urllib.error

    # the plugin's API is behind the same login as Airflow's own API
    for path in ("/cbmflow/api/runs", "/api/v2/dags"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(api_server + path, timeout=10)
        assert e.value.code == 401, path
    req = urllib.request.Request(api_server + "/auth/token", method="POST",
                                 data=json.dumps({"username": USER, "password": PASSWORD}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        token = json.loads(r.read())["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    with urllib.request.urlopen(urllib.request.Request(api_server + "/api/v2/plugins", headers=auth), timeout=10) as r:
        plugins = json.loads(r.read())["plugins"]
    views = [v for p in plugins if p["name"] == "cbmflow_api" for v in p["external_views"]]
    assert any(v["href"] == "/cbmflow/flags" and v.get("nav_top_level") for v in views)
    # both pages open inside Airflow's own frame (url_route), not in a new tab
    assert {v["href"]: v.get("url_route") for v in views} == {"/cbmflow/flags": "cbm-flags",
                                                               "/cbmflow/scenes": "cbm-scenes"}
    with urllib.request.urlopen(urllib.request.Request(api_server + "/cbmflow/api/runs", headers=auth), timeout=10) as r:
        assert r.status == 200 and json.loads(r.read())


def _login(page, api_server: str, path: str, user: str, password: str) -> None:
    page.goto(api_server + path)
    page.wait_for_selector("input[name=username]", timeout=30_000)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.keyboard.press("Enter")


def test_the_inspector_loop_from_the_keyboard(api_server: str, browser, web_data: WebData) -> None:
    """Queue in rank order, next/previous by key, a decision recorded without the mouse, seen in the
    list and the export; a viewer cannot record."""
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None)
    red2 = web_data.pids[SECOND_RED]

    # 1. the queue of red parcels, in suspicion rank order, with rank and score columns
    _login(page, api_server, "/cbmflow/flags?flag=red", EDITOR, EDITOR_PASSWORD)
    page.wait_for_selector("table#flags tbody tr", timeout=30_000)
    _wait(page, "document.body.dataset.ready === '1'")
    pids = page.locator("table#flags tbody tr").evaluate_all("rows => rows.map(r => Number(r.dataset.pid))")
    assert pids == [web_data.red_pid, red2], pids
    ranks = page.locator("table#flags tbody tr td:first-child").all_inner_texts()
    assert ranks == ["1", "2"]
    assert page.locator("th[data-key=score]").count() == 1 and page.locator("th[data-key=decision]").count() == 1
    # the whole AOI on the map, coloured by flag; by decision on demand
    _wait(page, "document.querySelectorAll('#aoi-map path.parcel').length === 16")
    assert page.locator("#aoi-map path.parcel.red").count() == 2
    # sorting from the keyboard: the header is a button, the sort goes into the URL
    page.focus("th[data-key=probability] button")
    page.keyboard.press("Enter")
    page.wait_for_selector("th[data-key=probability].sorted")
    assert "sort=probability" in page.url
    page.focus("th[data-key=rank] button")
    page.keyboard.press("Enter")
    page.wait_for_selector("th[data-key=rank].sorted")

    # 2. open the first parcel from the keyboard
    page.focus(f"tr[data-pid='{web_data.red_pid}'] a.parcel-link")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/cbmflow/parcel/{web_data.red_pid}?*", timeout=15_000)
    _wait(page, "document.body.dataset.ready !== undefined")
    assert page.evaluate("document.body.dataset.ready") == "1", page.locator(".error").all_inner_texts()
    assert page.inner_text("#queue-pos").startswith("1 of 2 red")
    # declared and predicted crop's nearest peers side by side, named, in their own colours
    series = set(page.locator("#timeline [data-series]").evaluate_all("n => n.map(x => x.dataset.series)"))
    assert {"peer_VV_ascending", "ppeer_VV_ascending", "peer_ndvi_band", "ppeer_ndvi_band"} <= series, sorted(series)
    legend = page.inner_text("#legend")
    assert "declared crop peers: SILOMAIS" in legend and "predicted crop peers: WINTERWEICHWEIZEN" in legend
    colours = page.evaluate("""[...new Set(['peer_VV_ascending', 'ppeer_VV_ascending', 'VV_ascending', 'VH_ascending', 'ndvi',
        'COH_VV', 'COH_VH', 'per_VV'].map(id => document.querySelector(`#timeline path[data-series='${id}']`)?.getAttribute('stroke')))]""")
    assert len(colours) == 8 and None not in colours, colours
    assert "WINTERWEICHWEIZEN" in page.inner_text("#facts") and "SILOMAIS" in page.inner_text("#facts")

    # 3. next and previous by key
    page.keyboard.press("n")
    page.wait_for_url(f"**/cbmflow/parcel/{red2}?*", timeout=15_000)
    _wait(page, "document.body.dataset.ready === '1'")
    assert page.inner_text("#queue-pos").startswith("2 of 2")
    assert page.locator("#queue-next").is_disabled()
    page.keyboard.press("p")
    page.wait_for_url(f"**/cbmflow/parcel/{web_data.red_pid}?*", timeout=15_000)
    _wait(page, "document.body.dataset.ready === '1'")

    # 4. a decision without the mouse: d focuses the form, 2 = wrong declaration (crop found
    #    pre-filled with the predicted crop), a note, Ctrl+Enter records it
    page.keyboard.press("d")
    assert page.evaluate("document.activeElement.name") == "outcome"
    page.keyboard.press("2")
    assert page.evaluate("document.querySelector('#decide input[value=wrong_declaration]').checked")
    assert page.input_value("#decide input[name=corrected_crop]") == "WW"
    page.focus("#decide textarea[name=note]")
    page.keyboard.type("=cmd|' /C calc'!A0 winter wheat stubble on the chips")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#decision-status.ok", timeout=15_000)
    page.wait_for_selector("#history li[data-outcome=wrong_declaration]")
    assert EDITOR in page.inner_text("#history")
    page.screenshot(path=str(ARTEFACTS / "parcel_decision.png"), full_page=True)
    # the decision persists: a reload shows it in the history
    page.reload()
    _wait(page, "document.body.dataset.ready === '1'")
    assert page.locator("#history li.latest[data-outcome=wrong_declaration]").count() == 1

    # 5. back in the list: the decision shows, "undecided" hides it, the export carries it
    page.goto(api_server + "/cbmflow/flags?flag=red")
    _wait(page, "document.body.dataset.ready === '1'")
    row = page.locator(f"tr[data-pid='{web_data.red_pid}']")
    assert row.get_attribute("data-decision") == "wrong_declaration" and "wrong declaration" in row.inner_text()
    page.goto(api_server + "/cbmflow/flags?flag=red&decision=undecided")
    _wait(page, "document.body.dataset.ready === '1'")
    _wait(page, "document.querySelectorAll('table#flags tbody tr').length === 1")
    assert page.locator("table#flags tbody tr").first.get_attribute("data-pid") == str(red2)
    page.select_option("#colour-by", "decision")
    page.goto(api_server + "/cbmflow/flags?flag=red")
    _wait(page, "document.body.dataset.ready === '1'")
    href = page.get_attribute("#csv", "href")
    csv_text = page.request.get(api_server + href).text()
    import csv
    import io

    rows = {r["pid"]: r for r in csv.DictReader(io.StringIO(csv_text))}
    red = rows[str(web_data.red_pid)]
    assert red["decision"] == "wrong_declaration" and red["corrected_crop"] == "WW" and red["decided_by"] == EDITOR
    assert red["rank"] == "1" and red["decision_note"].startswith("'=cmd")  # formula-safe
    assert not errors, errors
    ctx.close()

    # 6. a viewer reads the decision but cannot record one (no form; the API refuses)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    _login(page, api_server, f"/cbmflow/parcel/{web_data.red_pid}", USER, PASSWORD)
    page.wait_for_url(f"**/cbmflow/parcel/{web_data.red_pid}", timeout=30_000)
    _wait(page, "document.body.dataset.ready === '1'")
    assert page.locator("#read-only").count() == 1 and page.locator("#decide").count() == 0
    assert page.locator("#history li[data-outcome=wrong_declaration]").count() == 1
    r = page.request.post(api_server + f"/cbmflow/api/parcels/{web_data.red_pid}/decisions",
                          data={"outcome": "confirmed"}, headers={"Content-Type": "application/json"})
    assert r.status == 403, r.status
    ctx.close()
