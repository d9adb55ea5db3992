"""/docs in Debian's headless Chromium with every host but 127.0.0.1 unreachable: Swagger UI
renders from the gateway's own files, "Authorize" takes a key, and "Execute" on the
prefilled example of every POST operation answers 2xx against `make run`'s models.

Screenshots go to .screenshots/test_docs_browser/ in the checkout (SCREENSHOTS_DIR
overrides the parent folder): docs.png after Authorize, then one per executed operation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import running_gateway
from tests.support.browser import chromium

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("SCREENSHOTS_DIR", ROOT / ".screenshots")) / "test_docs_browser"
# Nothing but the gateway resolves: a page that needs a CDN stays blank.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


def _wait(driver: Any, css: str, timeout: float = 30) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    condition = expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))
    return WebDriverWait(driver, timeout).until(condition)


def test_docs_render_authorize_and_execute_every_post_offline(
    dynamodb: str, tokenizers_dir: Path, sim_url: str
) -> None:
    from devstack.tokenizers import from_folder
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    SHOTS.mkdir(parents=True, exist_ok=True)
    config = from_folder(tokenizers_dir).models_config(sim_url)
    with running_gateway(tokenizers_dir, sim_url, models_config=config) as gw:
        key = gw.new_key()
        spec = httpx.get(gw.url + "/openapi.json", timeout=10).json()
        posts = sorted(p for p, item in spec["paths"].items() if "post" in item)
        assert posts, "no POST operation in the description"
        with chromium(extra_flags=(OFFLINE,)) as driver:
            driver.get(gw.url + "/docs")
            _wait(driver, ".swagger-ui .information-container .title")
            assert spec["info"]["title"] in driver.find_element(By.CSS_SELECTOR, ".title").text

            driver.find_element(By.CSS_SELECTOR, ".btn.authorize").click()
            field = _wait(driver, ".modal-ux input[type=text], .modal-ux input[type=password]")
            field.send_keys(key)
            driver.find_element(By.CSS_SELECTOR, ".modal-ux .auth-btn-wrapper .authorize").click()
            _wait(driver, ".modal-ux .auth-btn-wrapper .btn-done").click()
            locked = driver.find_elements(By.CSS_SELECTOR, ".btn.authorize.locked")
            assert locked, "Authorize did not take the key"
            assert driver.save_screenshot(str(SHOTS / "docs.png"))

            for path in posts:
                [block] = [
                    b
                    for b in driver.find_elements(By.CSS_SELECTOR, ".opblock-post")
                    if b.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute(
                        "data-path"
                    )
                    == path
                ]
                driver.execute_script("arguments[0].scrollIntoView();", block)
                block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
                execute = WebDriverWait(driver, 10).until(
                    lambda d, b=block: b.find_element(By.CSS_SELECTOR, "button.execute")
                )
                execute.click()
                status = WebDriverWait(driver, 60).until(
                    lambda d, b=block: b.find_element(
                        By.CSS_SELECTOR, ".live-responses-table .response .response-col_status"
                    )
                )
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", status)
                name = path.strip("/").replace("/", "_")
                assert driver.save_screenshot(str(SHOTS / f"{name}.png"))
                code = status.text.split()[0]
                assert code.startswith("2"), (path, status.text)
                block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()  # fold it
