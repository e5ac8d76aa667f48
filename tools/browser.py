"""A headless browser for the dashboard tests and screenshots: Debian's ``chromium`` and
``chromium-driver``, installed with apt-get when missing (``apt-get update`` once if the
install needs it), driven through selenium.

    python tools/browser.py          install what is missing, print the two paths

``ensure()`` returns (chromium, chromedriver) or raises :class:`Unavailable` saying why;
``open_browser()`` starts a headless session (1280x800) with its own profile directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

PACKAGES = ("chromium", "chromium-driver")
BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVERS = ("/usr/bin/chromedriver",)


class Unavailable(RuntimeError):
    """No browser can be had here (the message says what is missing and how to get it)."""


def _found() -> tuple[str, str] | None:
    browser = next((p for p in BROWSERS if os.path.exists(p)), None) or shutil.which("chromium")
    driver = next((p for p in DRIVERS if os.path.exists(p)), None) or shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _apt_install() -> None:
    if shutil.which("apt-get") is None:
        raise Unavailable("no chromium/chromedriver and no apt-get: install chromium and its driver")
    if os.geteuid() != 0:
        raise Unavailable("chromium and chromium-driver are missing and installing them needs root: "
                          "sudo apt-get install chromium chromium-driver")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    if subprocess.run(cmd, env=env, capture_output=True).returncode == 0:
        return
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
    done = subprocess.run(cmd, env=env, capture_output=True)
    if done.returncode != 0:
        raise Unavailable(f"cannot apt-get install {' '.join(PACKAGES)}: "
                          f"{done.stderr.decode(errors='replace').strip()[-400:]}")


def ensure() -> tuple[str, str]:
    """(chromium, chromedriver) paths, installing the Debian packages when missing."""
    found = _found()
    if found is None:
        _apt_install()
        found = _found()
    if found is None:
        raise Unavailable("chromium or chromedriver is still missing after apt-get install")
    return found


class Browser:
    """A headless chromium session and its profile directory; ``close()`` ends both."""

    def __init__(self, width: int = 1280, height: int = 800) -> None:
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError as exc:
            raise Unavailable("selenium is not installed: pip install -e '.[dev]'") from exc
        browser, driver = ensure()
        self.profile = tempfile.mkdtemp(prefix="ember-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = browser
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--window-size={width},{height}", f"--user-data-dir={self.profile}",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking"):
            opts.add_argument(arg)
        try:
            self.driver: Any = webdriver.Chrome(service=Service(driver), options=opts)
        except Exception:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def open_browser(width: int = 1280, height: int = 800) -> Browser:
    """A new headless session (raises Unavailable when there can be none)."""
    return Browser(width, height)


if __name__ == "__main__":
    try:
        print(*ensure())
    except Unavailable as exc:
        print(f"tools/browser.py: {exc}", file=sys.stderr)
        sys.exit(1)
