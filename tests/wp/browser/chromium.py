"""Headless Debian Chromium driven by selenium + chromedriver, for the wp-admin browser tests.

    chromium.ensure_packages()          # apt-get install chromium chromium-driver when missing
    b = chromium.Chrome(profile_dir)    # fresh user-data-dir, headless, no network side traffic
    b.login(url, "admin", password); b.get(url + "/wp-admin/..."); b.screenshot(path); b.quit()

Every wait has a timeout; quit() stops chromedriver and Chromium (and kills their process groups
if they linger).
"""
from __future__ import annotations

import os
import urllib.parse
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
PACKAGES = ["chromium", "chromium-driver"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US"]


def ensure_packages() -> None:
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args, timeout in ((["apt-get", "update"], 600),
                          (["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], 1200)):
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"{args} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")


class Chrome:
    def __init__(self, width: int = 1400, height: int = 1000):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
        self.profile = Path(tempfile.mkdtemp(prefix="woosync-chromium-"))
        self.width, self.height = width, height
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={self.profile}")
        opts.add_argument(f"--window-size={width},{height}")
        self.log = self.profile / "chromedriver.log"  # removed with the profile by quit()
        self.service = Service(executable_path=CHROMEDRIVER, log_output=str(self.log))
        self.driver = webdriver.Chrome(service=self.service, options=opts)
        self.driver.set_page_load_timeout(60)
        self.driver.set_script_timeout(30)

    # ---- navigation ------------------------------------------------------------------------------
    def get(self, url: str) -> None:
        self.driver.get(url)
        self.wait(lambda d: d.execute_script("return document.readyState") == "complete", 30)

    def login(self, base: str, user: str, password: str) -> None:
        # Land on the light profile page, not the dashboard and its widgets. One more try if the
        # browser did not get there (a stalled navigation in headless Chromium was seen under load);
        # a wrong password still fails both times.
        for attempt in (1, 2):
            self.driver.delete_all_cookies()
            self.get(base + "/wp-login.php?redirect_to=" + urllib.parse.quote(base + "/wp-admin/profile.php", safe=""))
            self.fill("#user_login", user)
            self.fill("#user_pass", password)
            self.click("#wp-submit")
            try:
                self.wait(lambda d: "/wp-admin/" in d.current_url and d.find_elements("css selector", "#wpadminbar"), 30)
                return
            except Exception:
                print(f"login attempt {attempt} as {user} stalled at {self.driver.current_url} "
                      f"(title {self.driver.title!r}) at {time.strftime('%H:%M:%S')}", flush=True)
                if attempt == 2:
                    raise AssertionError(f"login as {user} failed; browser at {self.driver.current_url}")

    # ---- finding ---------------------------------------------------------------------------------
    def wait(self, cond: Callable, timeout: float = 15):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(cond)

    def wait_for(self, css: str, timeout: float = 15):
        def visible(d):
            els = [e for e in d.find_elements("css selector", css) if e.is_displayed()]
            return els[0] if els else False

        try:
            return self.wait(visible, timeout)
        except Exception as e:
            raise AssertionError(f"{css!r} did not appear within {timeout}s on {self.driver.current_url}\n"
                                 f"{self.driver.find_element('css selector', 'body').text[:3000]}") from e

    def wait_url(self, cond: Callable[[str], bool], timeout: float = 30) -> str:
        self.wait(lambda d: cond(d.current_url) and d.execute_script("return document.readyState") == "complete",
                  timeout)
        return self.driver.current_url

    def wait_text(self, css: str, text: str, timeout: float = 10) -> None:
        self.wait(lambda d: text in d.find_element("css selector", css).text, timeout)

    def one(self, css: str):
        return self.driver.find_element("css selector", css)

    def all(self, css: str) -> list:
        return self.driver.find_elements("css selector", css)

    def text(self, css: str) -> str:
        return self.one(css).text.strip()

    def prop(self, css: str, name: str):
        return self.one(css).get_property(name)

    def rows(self) -> list[dict]:
        """Rows of the WooSync log table: event id, endpoint, state."""
        return [{"event": r.get_attribute("data-event"), "endpoint": r.get_attribute("data-endpoint"),
                 "state": r.get_attribute("data-state")} for r in self.all("tr.woosync-row")]

    # ---- acting ----------------------------------------------------------------------------------
    def click(self, css: str) -> None:
        el = self.wait_for(css)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        el.click()

    def fill(self, css: str, value: str) -> None:
        el = self.wait_for(css)
        el.clear()
        el.send_keys(value)

    def select(self, css: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.wait_for(css)).select_by_value(value)

    def accept_alert(self, timeout: float = 10) -> str:
        from selenium.webdriver.support import expected_conditions as ec

        alert = self.wait(ec.alert_is_present(), timeout)
        text = alert.text
        alert.accept()
        return text

    def screenshot(self, path: Path) -> Path:
        """Whole page (the window grows to the document height for the shot)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        d = self.driver
        # An open modal: grow the window until the modal shows all of its content.
        height = d.execute_script(
            "var c = document.querySelector('.woosync-modal:not([hidden]) .woosync-modal-content');"
            "if (c) { c.scrollTop = 0; return c.scrollHeight + 220; }"
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight);")
        d.set_window_size(self.width, min(max(int(height) + 20, self.height), 6000))
        time.sleep(0.2)
        d.save_screenshot(str(path))
        d.set_window_size(self.width, self.height)
        return path

    def quit(self) -> None:
        proc = getattr(self.service, "process", None)
        try:
            self.driver.quit()
        except Exception:
            pass
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        # Chromium children of a killed chromedriver: find them by our unique profile dir.
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                cmd = (pid_dir / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(self.profile) in cmd:
                try:
                    os.kill(int(pid_dir.name), signal.SIGKILL)
                except OSError:
                    pass
        shutil.rmtree(self.profile, ignore_errors=True)
