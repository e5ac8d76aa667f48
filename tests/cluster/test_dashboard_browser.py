"""Every dashboard page in a real browser (Debian's headless chromium through selenium,
``tools/browser.py``) during a real workload on a real head (``dashboard_cluster.dash``):
login, overview, tasks (filter and search), actors, objects, jobs and a worker's log
growing live. One browser session for the module; every wait is on the condition checked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .dashboard_cluster import ACTOR_NAME

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import browser as browser_tool  # noqa: E402 - tools/ is not a package

WAIT_S = 30


@pytest.fixture(scope="module")
def web():
    try:
        b = browser_tool.open_browser()
    except browser_tool.Unavailable as exc:  # the dashboard must be tested in a browser: no skip
        pytest.fail(f"no headless browser for the dashboard tests: {exc}", pytrace=False)
    yield b.driver
    b.close()


def _wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: condition(d), what)


def _text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    els = driver.find_elements(By.CSS_SELECTOR, css)
    return els[0].text if els else ""


def _login(web, dash):
    web.get(dash.url + "?token=" + dash.head.token)
    _wait(web, lambda d: d.current_url == dash.url and _text(d, "#nodes-alive"), "the overview after ?token=")


def test_login_page_refuses_a_wrong_token_and_takes_the_right_one(web, dash):
    from selenium.webdriver.common.by import By

    web.delete_all_cookies()
    web.get(dash.url + "tasks")
    _wait(web, lambda d: "/login" in d.current_url and d.find_elements(By.ID, "token"), "the login page")
    web.find_element(By.ID, "token").send_keys("wrong-token")
    web.find_element(By.ID, "login").click()
    _wait(web, lambda d: "not this cluster" in _text(d, ".error"), "the refusal")
    web.find_element(By.ID, "token").send_keys(dash.head.token)
    web.find_element(By.ID, "login").click()
    _wait(web, lambda d: d.current_url == dash.url + "tasks" and _text(d, "#tasks"), "the tasks page")
    cookie = web.get_cookie("ember_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_token_link_logs_in_and_leaves_the_address_bar(web, dash):
    web.delete_all_cookies()
    _login(web, dash)
    assert "token" not in web.current_url
    assert web.get_cookie("ember_dashboard")["httpOnly"]


def test_overview_shows_nodes_resources_and_live_charts(web, dash):
    _login(web, dash)
    assert _text(web, "#nodes-alive") == "1"
    _wait(web, lambda d: int(_text(d, "#tasks-running") or 0) >= 2, "two running tasks")
    assert "CPU" in _text(web, "#resources")
    assert "head" in _text(web, "#nodes") and "ALIVE" in _text(web, "#nodes")
    # the charts are drawn from /api/overview samples as the page polls it
    _wait(web, lambda d: int(d.find_element("id", "chart-throughput").get_attribute("data-samples") or 0) >= 2,
          "two throughput samples")
    assert web.find_element("css selector", "#chart-store polyline").get_attribute("points")


def test_tasks_page_filters_and_searches(web, dash):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _login(web, dash)
    web.get(dash.url + "tasks")
    _wait(web, lambda d: "slow_task" in _text(d, "#tasks"), "slow_task in the table")
    Select(web.find_element(By.ID, "filter-state")).select_by_value("FAILED")
    web.find_element(By.CSS_SELECTOR, "form.filters button").click()
    _wait(web, lambda d: "state=FAILED" in d.current_url and "broken" in _text(d, "#tasks"), "the failed task")
    assert "slow_task" not in _text(web, "#tasks")
    web.find_element(By.CSS_SELECTOR, "#tasks details summary").click()
    _wait(web, lambda d: "broken on purpose" in _text(d, "#tasks"), "its error")
    web.get(dash.url + "tasks?q=quick")
    _wait(web, lambda d: _text(d, "#count").startswith("20 tasks"), "20 quick tasks")
    assert "slow_task" not in _text(web, "#tasks")


def test_actors_page(web, dash):
    _login(web, dash)
    web.get(dash.url + "actors")
    _wait(web, lambda d: ACTOR_NAME in _text(d, "#actors"), "the named actor")  # shown as text, not markup
    row = next(r for r in _text(web, "#actors").splitlines() if ACTOR_NAME in r)
    assert "Ticker" in row and "ALIVE" in row and str(dash.actor_pid) in row


def test_objects_page(web, dash):
    _login(web, dash)
    web.get(dash.url + "objects")
    _wait(web, lambda d: "3.0 MiB" in _text(d, "#objects"), "the 3 MiB object")
    row = next(r for r in _text(web, "#objects").splitlines() if "3.0 MiB" in r)
    assert "READY" in row and "head" in row


def test_jobs_page(web, dash):
    _login(web, dash)
    web.get(dash.url + "jobs")
    _wait(web, lambda d: dash.job_id in _text(d, "#jobs"), "the submitted job")
    assert "SUCCEEDED" in _text(web, "#jobs")


def test_log_view_tails_the_actor_worker_live(web, dash):
    from selenium.webdriver.common.by import By

    _login(web, dash)
    web.get(dash.url + "actors")
    _wait(web, lambda d: ACTOR_NAME in _text(d, "#actors"), "the actor")
    web.find_element(By.LINK_TEXT, str(dash.actor_pid)).click()
    _wait(web, lambda d: "tick" in _text(d, "#log-view"), "its printed lines")

    def last_tick(d) -> int:
        ticks = [int(w.split()[1]) for w in _text(d, "#log-view").splitlines() if w.startswith("tick ")]
        return ticks[-1] if ticks else 0

    first = last_tick(web)
    _wait(web, lambda d: last_tick(d) > first, "a line printed after the page opened")
