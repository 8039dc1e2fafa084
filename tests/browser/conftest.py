"""Real headless Chromium against the real platform: `manage.py serve` (daphne + a
qcluster) on the test database, Redis as the channel layer, Debian's Chromium driven
through its ChromeDriver with Selenium.

Skipped, saying why, where Chromium or ChromeDriver is missing (`apt-get install chromium
chromium-driver`; `.ci/run` installs them, so CI always runs these).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import database_url_for_subprocess

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PASSWORD = "browser-test-password-1"
START_TIMEOUT = 90.0

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        "Chromium or ChromeDriver is missing: apt-get install chromium chromium-driver (.ci/run does)",
        allow_module_level=True,
    )



def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Site:
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The platform served on a free loopback port, sharing the test database, training
    for real (TensorFlow in the slot process) on the bundled digits."""
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=database_url_for_subprocess(),
        HPO_VAR_DIR=str(tmp_path),
        REDIS_URL=os.environ.get("BROWSER_REDIS_URL", "redis://127.0.0.1:6379/6"),
        Q_WORKERS="2",
        HPO_HEARTBEAT_INTERVAL="2",
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as stream:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=stream, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Site(url=f"http://127.0.0.1:{port}", log=log, process=process)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(served.url + "/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the site did not start:\n{served.output()}")
            time.sleep(0.3)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        # WebGL without a GPU: SwiftShader, the software renderer Chromium ships.
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser: Any, condition: Callable[[Any], Any], what: str, timeout: float = 60.0) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        logs = ""
        try:
            logs = "\n".join(str(entry) for entry in browser.get_log("browser"))
        except Exception:  # noqa: BLE001 - a diagnostic only
            pass
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} at {browser.current_url}\n{logs}") from None


def log_in(browser: Any, site: Site, username: str, password: str = PASSWORD) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.url + "/accounts/login/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form [type=submit]").click()
    wait_for(browser, lambda b: "/accounts/login/" not in b.current_url, f"{username} to be logged in")


def with_password(user: Any) -> Any:
    """Give ``user`` the test password, hashed so the served site (default hashers, not the
    suite's fast MD5) can check it."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    user.save(update_fields=["password"])
    return user


SCREENSHOTS = ROOT / "docs" / "screenshots"


def screenshot(browser: Any, name: str) -> None:
    """Keep a screenshot of a main page in docs/screenshots/ (shown in the README) when
    KEEP_SCREENSHOTS is set; the suite itself writes nothing into the tree."""
    if os.environ.get("KEEP_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
