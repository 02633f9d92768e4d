"""One real-browser test: `streamlit run app.py` on the shipped demo workspace, driven in headless Chromium.

Moves a slider, clicks Evaluate, asserts a new point is plotted; clicks a front point and box-selects all points
on the chart and checks their detail views open; then opens every page of the navigation,
asserts none shows an exception, and saves a full-page screenshot of each under the test's tmp dir (also
copied to $MVA_SCREENSHOTS when set).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


PAGES = {  # URL path -> text the page shows once rendered
    "compare": "Compare methods", "sweep": "Sweep a weight grid", "responses": "Read the responses",
    "diagnostics": "Diagnose the value vectors", "export": "Export models",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    from mva_core.workspace import DEMO_WORKSPACE

    assert (DEMO_WORKSPACE / "workspace.json").is_file(), "the shipped demo workspace is missing: run `python -m mva_core demo build`"
    ws = tmp_path / "ws"
    shutil.copytree(DEMO_WORKSPACE, ws)
    port = free_port()
    env = {**os.environ, "MVA_WORKSPACE": str(ws), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=open(tmp_path / "server.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}", ws
    proc.terminate()
    proc.wait(timeout=20)


def your_point_count(page) -> int:
    """Number of 'your point' markers in the rendered Plotly figure (read from the live DOM)."""
    return page.evaluate("""() => {
        const plot = document.querySelector('.js-plotly-plot');
        if (!plot || !plot._fullData) return -1;
        const t = plot._fullData.find(d => d.name === 'your point');  // _fullData: arrays decoded
        return t ? t.x.length : 0;
    }""")


def test_slider_evaluate_in_real_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, ws = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, timeout=60_000)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        assert your_point_count(page) == 0
        # Move the first weight slider with the keyboard: focus the thumb, press Right 3 times (+0.15).
        thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
        before = float(thumb.input_value())
        thumb.focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(
            f"() => Math.abs(parseFloat(document.querySelector('[data-testid=\"stSlider\"] input[type=\"range\"]')"
            f".value) - {before}) > 0.1", timeout=20_000)
        page.wait_for_timeout(1500)  # let the rerun triggered by the slider settle before clicking
        try:
            page.get_by_role("button", name="Evaluate").click()
        except Exception:
            page.screenshot(path="/tmp/browser_fail.png", full_page=True)
            raise
        # A live evaluation of the 135M model on CPU: model load + generation + scoring.
        page.wait_for_function(
            """() => { const p = document.querySelector('.js-plotly-plot');
                       return p && p.data && p.data.some(d => d.name === 'your point'); }""", timeout=300_000)
        assert your_point_count(page) == 1
        page.wait_for_timeout(1000)

        # Click one Pareto-front point: Streamlit's selection event opens that candidate's details.
        target = page.evaluate("""() => {
            const p = document.querySelector('.js-plotly-plot');
            const i = p._fullData.findIndex(d => d.name === 'Pareto front');
            const t = p._fullData[i], xa = p._fullLayout.xaxis, ya = p._fullLayout.yaxis;
            const box = p.querySelector('.nsewdrag').getBoundingClientRect();
            return {id: t.customdata[0], x: box.left + xa.l2p(t.x[0]), y: box.top + ya.l2p(t.y[0])};
        }""")
        page.mouse.click(target["x"], target["y"])
        page.get_by_text(f"Candidate #{target['id']} ", exact=False).first.wait_for(timeout=60_000)

        # Box-select the whole plot area: every candidate of the method opens.
        page.locator('.js-plotly-plot [data-title="Box Select"]').first.click()
        box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
        page.mouse.move(box["x"] + 3, box["y"] + 3)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
        page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] - 3, steps=5)
        page.mouse.up()
        n_points = page.evaluate("""() => { const p = document.querySelector('.js-plotly-plot');
            return p._fullData.filter(d => d.name === 'dominated' || d.name === 'Pareto front')
                              .reduce((n, d) => n + d.x.length, 0); }""")
        page.wait_for_function(f"() => [...document.querySelectorAll('[data-testid=\"stExpander\"] summary')]"
                               f".filter(e => e.innerText.includes('Candidate #')).length === {n_points}", timeout=60_000)
        shots = tmp_path / "screenshots"
        shots.mkdir()
        page.screenshot(path=str(shots / "explore.png"), full_page=True)

        # Every page of the navigation, each in a fresh session by its URL path.
        for name, marker in PAGES.items():
            page.goto(f"{url}/{name}", timeout=60_000)
            page.get_by_text(marker, exact=False).first.wait_for(timeout=120_000)
            page.wait_for_timeout(2500)  # charts and tables finish rendering
            assert page.locator('[data-testid="stException"]').count() == 0, f"exception on page {name}"
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        browser.close()
    print(f"screenshots: {shots}")
    if os.environ.get("MVA_SCREENSHOTS"):
        shutil.copytree(shots, os.environ["MVA_SCREENSHOTS"], dirs_exist_ok=True)
    for png in ["explore", *PAGES]:
        assert (shots / f"{png}.png").stat().st_size > 10_000, png
