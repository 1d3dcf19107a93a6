"""The web page's "Analyse" toggle in a real browser: identify with face-analysis estimates shown per face."""

from __future__ import annotations

import re

import pytest
from conftest import lfw
from test_web_e2e import CHROMIUM_PRIVATE_ARGS, BrowserEnv, _enrol, _identify, browser_env, browser_path, server

from faceatlas.server.launcher import ServerProcess

__all__ = ["browser_env", "browser_path", "server"]  # fixtures shared with test_web_e2e.py


@pytest.mark.slow
def test_identify_with_analysis_in_the_browser(server: ServerProcess, browser_path: str,
                                               browser_env: BrowserEnv) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert server.admin_key is not None, server.logs()
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True, args=list(CHROMIUM_PRIVATE_ARGS),
                                     env=browser_env)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1300})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(server.url + "/")
            page.fill("#api-key", server.admin_key)
            page.fill("#collection", "analyse")
            page.click("#connect")
            expect(page.locator("#connect-status")).to_have_text(re.compile("^Connected"))
            _enrol(page, "Nicole_Kidman", "Nicole Kidman", [lfw("Nicole_Kidman", i) for i in (2, 3)])
            plain = _identify(page, lfw("Nicole_Kidman", 1))
            assert plain.startswith("Nicole Kidman") and "Estimates" not in plain  # off by default
            page.check("#identify-analyse")
            text = _identify(page, lfw("Nicole_Kidman", 1))
            assert text.startswith("Nicole Kidman"), text
            assert re.search(r"Estimates: age ≈ \d+ · female · neutral · yaw [+-]?\d+° · eyes open · live 0\.\d\d", text), text
            blair = _identify(page, lfw("Tony_Blair", 1))
            assert "happy" in blair and "male" in blair, blair
        finally:
            browser.close()
    assert not [e for e in errors if not e.startswith("Failed to load resource")], errors

