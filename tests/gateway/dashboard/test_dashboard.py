"""The usage dashboard in a real headless Chromium, served by the real `gateway dashboard`
command, after a scripted run of requests through the gateway: the chart shows the same
totals as `gateway usage`, split by key and by model, with errors, rate-limited counts,
each key's budget and a CSV download that adds up to the same figures."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway.cli import main

from tests.conftest import Gateway
from tests.support.browser import chromium
from tests.support.minute import within_one_minute
from tests.support.processes import stop
from tests.support.records import usage_record
from tests.support.servers import free_port
from tests.support.usage import drain

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOT = ROOT / "docs" / "dashboard.png"
# Where the test leaves its screenshots (SCREENSHOTS_DIR overrides the parent folder).
SHOTS = Path(os.environ.get("SCREENSHOTS_DIR", ROOT / ".screenshots")) / "test_dashboard"
HI = [{"role": "user", "content": "Say hello in a few words."}]


def chat(gateway: Gateway, key: str, **body: Any) -> int:
    response = httpx.post(
        gateway.base_url + "/chat/completions",
        json={"model": "qwen3", "messages": HI, "max_tokens": 8, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    return response.status_code


@pytest.fixture(scope="module")
def scripted_run(gateway: Gateway) -> dict[str, Any]:
    """Three keys of one new owner, a few days of history, then real requests today: some
    fail upstream (502) and some are refused by an rpm limit (429). The rpm refusals count
    in one minute window: a run that straddles two is run again, for a new owner."""
    return within_one_minute(lambda: _script(gateway))


def _script(gateway: Gateway) -> dict[str, Any]:
    owner = f"dash-{uuid.uuid4().hex[:6]}"
    keys = {
        "research": gateway.new_key(name="research", owner=owner, monthly_tokens=50_000),
        "chatbot": gateway.new_key(name="chatbot", owner=owner, rpm=3),
        "batch": gateway.new_key(name="batch", owner=owner, tpm=20_000),
    }
    today = datetime.now(UTC).replace(hour=0, minute=5)
    for back in range(1, 7):  # history, as the request path records it
        for name, model in (("research", "qwen3"), ("batch", "llama3"), ("batch", "qwen3")):
            record = usage_record(
                key_id=gateway.key_id(keys[name]),
                model=model,
                created_at=today - timedelta(days=back),
                prompt_tokens=40 * back + 7 * len(name),
                completion_tokens=25 * back,
            )
            gateway.resources.usage.write(record)
    statuses: Counter[int] = Counter()
    for model in ("qwen3", "llama3", "qwen3"):
        statuses[chat(gateway, keys["research"], model=model)] += 1
    for _ in range(5):  # rpm 3: the last two are refused
        statuses[chat(gateway, keys["chatbot"])] += 1
    statuses[chat(gateway, keys["batch"], model="llama3")] += 1
    statuses[chat(gateway, keys["batch"], sim={"fail_status": 500})] += 1
    assert statuses == {200: 7, 429: 2, 502: 1}, statuses
    drain(gateway.resources.aws.dynamodb)  # rollups come from the aggregator, seconds later
    start = (today - timedelta(days=13)).date().isoformat()
    return {"owner": owner, "keys": keys, "start": start, "end": today.date().isoformat()}


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(list(argv)) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope="module")
def dashboard(scripted_run: dict[str, Any]) -> Iterator[str]:
    """`gateway dashboard` itself, in its own process, on the test's DynamoDB."""
    port = free_port()
    command = [sys.executable, "-m", "gateway.cli", "dashboard", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--owner", scripted_run["owner"]],
        env=os.environ.copy(),
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dashboard did not start: {process.stderr}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            _, err = process.communicate(timeout=20)  # read to its end, pipe closed
        finally:
            stop(process)  # killed, if SIGTERM was not enough
        assert f"gateway dashboard: {url}" in err


def wait_loaded(driver: Any) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    def state(d: Any) -> str | None:
        value = d.find_element("id", "status").get_attribute("data-state")
        return str(value) if value in ("loaded", "error") else None

    result = WebDriverWait(driver, 30).until(state)
    assert result == "loaded", driver.find_element("id", "status").text
    return str(driver.find_element("id", "status").text)


def chart_totals(driver: Any, canvas: str) -> dict[str, int]:
    """Each dataset's sum, as the Chart.js instance on the page holds it."""
    sums = driver.execute_script(
        "const c = Chart.getChart(arguments[0]);"
        "return Object.fromEntries(c.data.datasets.map("
        "  d => [d.label, d.data.reduce((a, b) => a + b, 0)]));",
        canvas,
    )
    return {str(k): int(v) for k, v in sums.items()}


def number(driver: Any, element_id: str) -> int:
    return int(driver.find_element("id", element_id).text.replace(",", ""))


def test_dashboard_shows_what_the_cli_shows(
    capsys: pytest.CaptureFixture[str],
    gateway: Gateway,
    scripted_run: dict[str, Any],
    dashboard: str,
    tmp_path: Path,
) -> None:
    owner, start, end = scripted_run["owner"], scripted_run["start"], scripted_run["end"]
    ids = {name: gateway.key_id(secret) for name, secret in scripted_run["keys"].items()}
    rows = cli_json(
        capsys, "usage", "--owner", owner, "--daily", "--since", start, "--until", end, "--json"
    )
    per_key: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    for row in rows:
        per_key[row["key_id"]] += row["total_tokens"]
        requests[row["key_id"]] += row["requests"]
    total_errors = sum(row["errors"] for row in rows)
    assert sum(requests.values()) == 10 + 18 and total_errors == 3

    with chromium() as driver:
        driver.get(dashboard)
        wait_loaded(driver)  # the last 30 days by default
        # Every day with traffic keeps its date label on the 30-day axis (auto-skip dropped
        # them), and the other labels are thinned.
        labels = driver.execute_script(
            "const c = Chart.getChart('chart-tokens');"
            "return c.scales.x.ticks.map((t) => [c.data.labels[t.value], t.label]);"
        )
        busy = {row["date"] for row in rows if row["requests"]}
        shown = {day for day, label in labels if label}
        assert busy <= shown, (busy - shown, labels)
        assert len(labels) == 30 and len(shown) < 30
        driver.execute_script(
            "document.getElementById('start').value = arguments[0];"
            "document.getElementById('end').value = arguments[1];"
            "document.getElementById('controls').requestSubmit();",
            start,
            end,
        )
        status = wait_loaded(driver)
        assert f"{start} to {end}, by key" in status

        # Split by key: one dataset per key, each summing to the CLI's figure.
        by_key = chart_totals(driver, "chart-tokens")
        assert by_key == {f"{name} ({ids[name]})": per_key[ids[name]] for name in ids}
        assert chart_totals(driver, "chart-requests") == {
            f"{name} ({ids[name]})": requests[ids[name]] for name in ids
        }
        assert number(driver, "total-tokens") == sum(per_key.values())
        assert number(driver, "total-requests") == sum(requests.values())
        assert number(driver, "total-errors") == total_errors
        assert number(driver, "total-rate-limited") == 2
        keys_table = driver.find_element("id", "keys").text
        assert "50,000" in keys_table and "20,000" in keys_table  # budget, tpm
        # The budget bar says what it shows: "N left", a bar filled with what is used, "P% used"
        [row] = [
            r
            for r in driver.find_elements("css selector", "#keys tr")
            if r.text.startswith("research")
        ]
        meter = row.find_element("css selector", "[role=meter]")
        research = row.text
        caption = meter.get_attribute("aria-label")
        assert re.fullmatch(r"[\d,]+ of 50,000 used \(\d+%\)", caption), caption
        assert " left" in research and "% used" in research, research
        filled = driver.execute_script(
            "return arguments[0].firstChild.getBoundingClientRect().width /"
            " arguments[0].getBoundingClientRect().width;",
            meter,
        )
        used = int(caption.split(" of ")[0].replace(",", ""))
        assert abs(filled - used / 50_000) < 0.02, (filled, caption)
        assert keys_table.splitlines()[0].count("bar: used") == 1  # the column header
        top_keys = driver.find_element("id", "top-keys").text.splitlines()
        assert top_keys[1].startswith("batch (") or top_keys[1].startswith("research (")
        if SCREENSHOT.parent.is_dir() and os.environ.get("UPDATE_DOCS_SCREENSHOT"):
            driver.save_screenshot(str(SCREENSHOT))
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / "dashboard.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # Split by model: the same total, over the models the requests used.
        driver.execute_script(
            "const s = document.getElementById('split'); s.value = 'model';"
            "s.dispatchEvent(new Event('change'));"
        )
        wait_loaded(driver)
        assert "by model" in driver.find_element("id", "status").text
        by_model = chart_totals(driver, "chart-tokens")
        assert set(by_model) == {"qwen3", "llama3"}
        assert sum(by_model.values()) == sum(per_key.values())

    # The CSV download holds the same figures, one row per day, key and model.
    csv_url = f"{dashboard}api/usage.csv?start={start}&end={end}"
    download = httpx.get(csv_url, timeout=30)
    assert download.headers["content-disposition"].startswith("attachment;")
    table = list(csv.DictReader(io.StringIO(download.text)))
    assert sum(int(r["total_tokens"]) for r in table) == sum(per_key.values())
    assert sum(int(r["rate_limited"]) for r in table) == 2
    assert {r["key_name"] for r in table} == set(ids)


def test_report_without_a_browser_matches_the_cli(
    capsys: pytest.CaptureFixture[str],
    gateway: Gateway,
    scripted_run: dict[str, Any],
    dashboard: str,
) -> None:
    """The page's data route alone (runs where Chromium is missing, too)."""
    owner, start, end = scripted_run["owner"], scripted_run["start"], scripted_run["end"]
    rows = cli_json(capsys, "usage", "--owner", owner, "--daily", "--since", start, "--json")
    report = httpx.get(
        dashboard + "api/report", params={"start": start, "end": end}, timeout=30
    ).json()
    assert report["days"][0] == start and report["days"][-1] == end and len(report["days"]) == 14
    for name in ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors"):
        assert report["totals"][name] == sum(row[name] for row in rows), name
    assert report["totals"]["rate_limited"] == 2
    keys = {row["name"]: row for row in report["keys"]}
    assert keys["research"]["monthly_tokens"] == 50_000
    assert keys["research"]["remaining_tokens"] == 50_000 - keys["research"]["used_tokens"]
    assert keys["chatbot"]["rpm"] == 3 and keys["chatbot"]["remaining_tokens"] is None
    assert [top["name"] for top in report["top_models"]] == ["qwen3", "llama3"]


def test_dashboard_refuses_bad_ranges_and_other_hosts(dashboard: str) -> None:
    inverted = httpx.get(dashboard + "api/report?start=2026-11-20&end=2026-11-01", timeout=30)
    assert inverted.status_code == 400
    assert "after" in inverted.json()["error"]["message"]
    split = httpx.get(dashboard + "api/report?split=owner", timeout=30)
    assert split.status_code == 400
    # Another host name (a DNS-rebinding page) does not get the operator's data.
    rebound = httpx.get(dashboard + "api/report", headers={"Host": "evil.example"}, timeout=30)
    assert rebound.status_code == 400
    assert httpx.get(dashboard + "static/vendor/chart.js.LICENSE.md").status_code == 200
