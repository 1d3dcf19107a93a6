"""End to end in a real browser: the real server (uvicorn subprocess) driven through the web page by headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import lfw

from faceatlas.server.launcher import ServerProcess

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium")
# no name lookups except loopback, no sync, pings, crash reports or autofill server traffic
CHROMIUM_PRIVATE_ARGS = (
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-sync",
    "--no-pings",
    "--disable-crash-reporter",
    "--disable-features=AutofillServerCommunication",
)
BrowserEnv = dict[str, str | float | bool]  # what Playwright takes as a browser's environment


def _chromium() -> str | None:
    """The system Chromium (Debian package ``chromium``), or ``$FACEATLAS_CHROMIUM``."""
    env = os.environ.get("FACEATLAS_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for cand in CHROMIUM_CANDIDATES:
        if Path(cand).exists():
            return cand
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser_path() -> str:
    """Skip cleanly when Playwright or Chromium is missing."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    path = _chromium()
    if path is None:
        pytest.skip("no system Chromium (apt-get install -y chromium)")
    return path


@pytest.fixture()
def browser_env(tmp_path: Path) -> BrowserEnv:
    """Chromium's environment: a throwaway HOME and XDG folders, so nothing is written in the real home."""
    home = tmp_path / "browser-home"
    env: BrowserEnv = dict(os.environ)
    env["HOME"] = str(home)
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_STATE_HOME", ".local/state"), ("XDG_RUNTIME_DIR", "run")):
        (home / sub).mkdir(parents=True, mode=0o700)
        env[var] = str(home / sub)
    return env


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: ``$FACEATLAS_SCREENSHOTS`` when set, else the test's temporary folder."""
    env = os.environ.get("FACEATLAS_SCREENSHOTS")
    out = Path(env) if env else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture()
def server(tmp_path: Path, lfw_dir: Path) -> Iterator[ServerProcess]:
    """The real server on a free loopback port with a fresh FACEATLAS_HOME (so it prints a first-run admin key)."""
    with ServerProcess(tmp_path / "home") as srv:
        yield srv


def _expect() -> Any:
    """Playwright's ``expect`` (imported late: Playwright is optional)."""
    from playwright.sync_api import expect

    return expect


def _enrol(page: Any, person: str, name: str, photos: list[Path]) -> None:
    """Fill the enrolment form and wait for its result."""
    page.fill("#enrol-person", person)
    page.fill("#enrol-name", name)
    page.set_input_files("#enrol-files", [str(p) for p in photos])
    page.click("#enrol-btn")
    expect = _expect()
    expect(page.locator("#enrol-result")).to_have_text(re.compile("^Enrolled " + person), timeout=30_000)


def _identify(page: Any, photo: Path) -> str:
    """Identify one photo on the page; return the results list text."""
    page.set_input_files("#identify-file", str(photo))
    page.evaluate("document.querySelector('#identify-status').textContent = ''")
    page.click("#identify-btn")
    expect = _expect()
    expect(page.locator("#identify-status")).to_have_text(re.compile(r"face\(s\)|No face"), timeout=30_000)
    return str(page.inner_text("#identify-results"))


@pytest.mark.slow
def test_enrol_identify_delete_in_the_browser(server: ServerProcess, browser_path: str, browser_env: BrowserEnv,
                                              shots: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert server.admin_key is not None, server.logs()
    assert "shown only this once" in server.stdout_path.read_text()
    console_errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True, args=list(CHROMIUM_PRIVATE_ARGS),
                                     env=browser_env)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1300})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("dialog", lambda d: d.accept())
            page.goto(server.url + "/")
            assert page.title() == "faceatlas"
            page.screenshot(path=str(shots / "01-start.png"), full_page=True)

            # a wrong key is refused with the server's message
            page.fill("#api-key", "fak_000000000000_wrong")
            page.click("#connect")
            # (the page starts as "Not connected", so wait for the server's answer, not just the prefix)
            expect(page.locator("#connect-status")).to_contain_text("unauthorized")
            assert page.inner_text("#connect-status").startswith("Not connected")

            page.fill("#api-key", server.admin_key)
            page.fill("#collection", "e2e")
            page.click("#connect")
            expect(page.locator("#connect-status")).to_have_text(re.compile("^Connected"))
            assert server.admin_key not in page.content()  # the key is not left in the page

            _enrol(page, "Tony_Blair", "Tony Blair", [lfw("Tony_Blair", i) for i in (2, 3, 4)])
            assert "3 photo(s) accepted" in page.inner_text("#enrol-result")
            _enrol(page, "Colin_Powell", "Colin Powell", [lfw("Colin_Powell", i) for i in (1, 2, 3)])
            page.wait_for_selector("tr[data-person='Colin_Powell']")
            rows = page.inner_text("#people-body")
            assert "Tony_Blair" in rows and "Colin_Powell" in rows
            page.screenshot(path=str(shots / "02-enrolled.png"), full_page=True)

            text = _identify(page, lfw("Tony_Blair", 6))
            assert text.startswith("Tony Blair"), text
            assert "1 face(s), 1 recognised" in page.inner_text("#identify-status")
            canvas = page.locator("#identify-canvas")
            assert canvas.get_attribute("data-image-width") == "250" and canvas.get_attribute("data-image-height") == "250"
            page.screenshot(path=str(shots / "03-identified.png"), full_page=True)

            text = _identify(page, lfw("Colin_Powell", 4))
            assert text.startswith("Colin Powell"), text

            page.click("tr[data-person='Tony_Blair'] button")
            page.wait_for_selector("tr[data-person='Tony_Blair']", state="detached")
            assert "Deleted Tony_Blair (3 face(s))" in page.inner_text("#people-status")
            text = _identify(page, lfw("Tony_Blair", 6))
            assert text.startswith("unknown"), text
            assert "0 recognised" in page.inner_text("#identify-status")
            page.screenshot(path=str(shots / "04-deleted-unknown.png"), full_page=True)

            # phone-size screen: one column, nothing wider than the viewport
            phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
            phone.on("dialog", lambda d: d.accept())
            phone.goto(server.url + "/")
            phone.fill("#api-key", server.admin_key)
            phone.fill("#collection", "e2e")
            phone.click("#connect")
            expect(phone.locator("#connect-status")).to_have_text(re.compile("^Connected"))
            expect(phone.locator("tr[data-person='Colin_Powell']")).to_be_visible()
            assert _identify(phone, lfw("Colin_Powell", 5)).startswith("Colin Powell")
            overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0
            phone.screenshot(path=str(shots / "05-phone.png"), full_page=True)
        finally:
            browser.close()
    # script errors fail the test; refused requests (the wrong key's 401, an empty collection's 404) are expected
    assert not [e for e in console_errors if not e.startswith("Failed to load resource")], console_errors
    assert all((shots / f).stat().st_size > 5_000 for f in ("01-start.png", "03-identified.png", "05-phone.png"))


@pytest.mark.slow
def test_docs_render_without_network(server: ServerProcess, browser_path: str, browser_env: BrowserEnv,
                                     shots: Path) -> None:
    """/docs draws Swagger UI from the installed package: every request any other host than the server is blocked."""
    from playwright.sync_api import expect, sync_playwright

    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True, args=list(CHROMIUM_PRIVATE_ARGS),
                                     env=browser_env)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})

            def gate(route: Any) -> None:
                if route.request.url.startswith(server.url):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", gate)
            page.goto(server.url + "/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("faceatlas", timeout=20_000)
            expect(page.locator(".opblock-summary-path").first).to_be_visible()
            assert page.locator(".opblock").count() >= 10
            page.screenshot(path=str(shots / "docs-offline.png"))
        finally:
            browser.close()
    assert outside == [], outside


def _y4m_from_photo(photo: Path, out: Path, frames: int = 15) -> Path:
    """A short 640×480 Y4M clip of one photo (Chromium's fake camera plays it in a loop)."""
    import cv2
    import numpy as np

    img = cv2.imread(str(photo))
    canvas = np.full((480, 640, 3), 90, np.uint8)
    face = cv2.resize(img, (440, 440))
    canvas[20:460, 100:540] = face
    yuv = cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).tobytes()
    with out.open("wb") as fh:
        fh.write(b"YUV4MPEG2 W640 H480 F15:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            fh.write(b"FRAME\n" + yuv)
    return out


def _group_photo(out: Path) -> Path:
    """Tony Blair (left) and Colin Powell (right) side by side on one photo."""
    from PIL import Image

    canvas = Image.new("RGB", (500, 250))
    canvas.paste(Image.open(lfw("Tony_Blair", 1)), (0, 0))
    canvas.paste(Image.open(lfw("Colin_Powell", 1)), (250, 0))
    canvas.save(out, quality=95)
    return out


def _connect(page: Any, url: str, key: str, collection: str) -> None:
    """Open the page and connect with a key to a collection."""
    page.goto(url + "/")
    page.fill("#api-key", key)
    page.fill("#collection", collection)
    page.click("#connect")
    _expect()(page.locator("#connect-status")).to_have_text(re.compile("^Connected"))


@pytest.mark.slow
def test_web_tour_on_desktop_and_phone(server: ServerProcess, browser_path: str, browser_env: BrowserEnv,
                                       shots: Path, tmp_path: Path) -> None:
    """Face picking, identify (known, unknown, failed), 1:1 compare, why-this-result, camera and delete."""
    from playwright.sync_api import expect, sync_playwright

    clip = _y4m_from_photo(lfw("Colin_Powell", 6), tmp_path / "camera.y4m")
    group = _group_photo(tmp_path / "group.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not an image")
    camera_args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                   f"--use-file-for-fake-video-capture={clip}"]
    console_errors: list[str] = []
    assert server.admin_key is not None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True,
                                     args=[*CHROMIUM_PRIVATE_ARGS, *camera_args], env=browser_env)
        try:
            for tag, viewport, scale in (("desktop", {"width": 1280, "height": 800}, 1),
                                         ("phone", {"width": 390, "height": 844}, 2)):
                ctx = browser.new_context(viewport=viewport, device_scale_factor=scale, permissions=["camera"])
                page = ctx.new_page()
                page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
                page.on("dialog", lambda d: d.accept())
                _connect(page, server.url, server.admin_key, "tour-" + tag)
                if tag == "desktop":  # centred layout: equal margins left and right
                    box = page.locator("main").bounding_box()
                    assert box is not None and abs(box["x"] - (1280 - box["x"] - box["width"])) < 20, box

                _enrol(page, "Tony_Blair", "Tony Blair", [lfw("Tony_Blair", i) for i in (2, 3, 4)])

                # a group photo: the page asks which face, the click on the drawn box enrols that one
                page.fill("#enrol-person", "colin")
                page.fill("#enrol-name", "Colin Powell")
                page.set_input_files("#enrol-files", str(group))
                page.click("#enrol-btn")
                expect(page.locator("#enrol-picker")).to_be_visible(timeout=30_000)
                assert page.locator("#enrol-faces button").count() >= 2
                faces = page.evaluate("pickState.faces.map(f => f.box)")
                right = next(i for i, b in enumerate(faces) if (b[0] + b[2]) / 2 > 250 and b[2] - b[0] > 60)
                page.locator("#enrol-canvas").scroll_into_view_if_needed()
                page.screenshot(path=str(shots / f"{tag}-1-enrol-pick.png"), full_page=False)
                cbox = page.locator("#enrol-canvas").bounding_box()
                assert cbox is not None
                bx = faces[right]
                ratio = cbox["width"] / 500
                page.locator("#enrol-canvas").click(position={"x": (bx[0] + bx[2]) / 2 * ratio,
                                                              "y": (bx[1] + bx[3]) / 2 * ratio})
                expect(page.locator("#enrol-result")).to_have_text(re.compile(f"^Enrolled colin \\(face {right + 1} "),
                                                                   timeout=30_000)
                expect(page.locator("#enrol-picker")).to_be_hidden()

                # a photo with no usable face: refused in red with a sentence, not a code
                page.fill("#enrol-person", "nobody")
                page.set_input_files("#enrol-files", [str(lfw("Tony_Blair", 5)), str(broken)])
                page.click("#enrol-btn")
                expect(page.locator("#enrol-result")).to_contain_text("not used", timeout=30_000)
                assert page.locator("#enrol-result li.bad").count() == 1
                assert "the file is not an image the server can read" in page.inner_text("#enrol-result li.bad")
                red = page.eval_on_selector("#enrol-result li.bad", "e => getComputedStyle(e).color")
                assert red == "rgb(198, 40, 40)", red

                text = _identify(page, lfw("Colin_Powell", 4))
                assert text.startswith("Colin Powell"), text
                page.locator("#identify-card").scroll_into_view_if_needed()
                page.screenshot(path=str(shots / f"{tag}-2-identify.png"), full_page=False)

                text = _identify(page, lfw("Gerhard_Schroeder", 1))
                assert text.startswith("unknown — no enrolled person reaches the threshold"), text
                assert "Colin" not in text and "Tony" not in text
                page.locator("#identify-card").scroll_into_view_if_needed()
                page.screenshot(path=str(shots / f"{tag}-2b-unknown.png"), full_page=False)

                # a failed identification leaves no earlier photo behind
                page.set_input_files("#identify-file", str(broken))
                page.click("#identify-btn")
                expect(page.locator("#identify-status")).to_contain_text("Identification failed", timeout=30_000)
                assert page.evaluate("document.getElementById('identify-canvas').width") == 0
                assert page.inner_text("#identify-results") == ""

                # 1:1 compare, then why
                page.set_input_files("#verify-a", str(lfw("Tony_Blair", 1)))
                page.set_input_files("#verify-b", str(lfw("Tony_Blair", 6)))
                page.click("#verify-btn")
                expect(page.locator("#verify-result")).to_contain_text("Same person", timeout=30_000)
                assert "threshold" in page.inner_text("#verify-result")
                page.locator("#verify-card").scroll_into_view_if_needed()
                page.screenshot(path=str(shots / f"{tag}-3-verify.png"), full_page=False)
                page.click("#explain-btn")
                expect(page.locator("#explain-b")).to_have_attribute("data-painted", "1", timeout=60_000)
                assert "relies most on" in (page.get_attribute("#explain-a", "aria-label") or "")
                page.locator("#explain-view").scroll_into_view_if_needed()
                page.screenshot(path=str(shots / f"{tag}-4-explain.png"), full_page=False)

                # camera → identify
                page.locator("#identify-card .camera-btn").click()
                expect(page.locator("#camera")).to_be_visible()
                expect(page.locator("#camera-video")).to_have_attribute("data-playing", "1", timeout=20_000)
                page.wait_for_timeout(500)
                page.screenshot(path=str(shots / f"{tag}-5-camera.png"), full_page=False)
                page.evaluate("document.querySelector('#identify-status').textContent = ''")
                page.click("#camera-take")
                expect(page.locator("#identify-status")).to_have_text(re.compile(r"face\(s\)"), timeout=30_000)
                assert page.inner_text("#identify-results").startswith("Colin Powell")

                # delete: earlier results naming people disappear
                page.click("tr[data-person='colin'] button")
                page.wait_for_selector("tr[data-person='colin']", state="detached")
                assert page.inner_text("#identify-results") == ""
                assert "cleared" in page.inner_text("#identify-status")

                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, overflow
                page.screenshot(path=str(shots / f"{tag}-6-full.png"), full_page=True)
                ctx.close()
        finally:
            browser.close()
    assert not [e for e in console_errors if not e.startswith("Failed to load resource")], console_errors


@pytest.mark.slow
def test_thumbnails_of_kept_crops(server: ServerProcess, browser_path: str, browser_env: BrowserEnv,
                                  shots: Path) -> None:
    """Enrolled with "keep face crops": the person's faces appear as thumbnails; without it, none (privacy)."""
    from playwright.sync_api import expect, sync_playwright

    assert server.admin_key is not None
    console_errors: list[str] = []
    failed: list[str] = []  # only the first listing of a not-yet-created collection may 404
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True, args=list(CHROMIUM_PRIVATE_ARGS),
                                     env=browser_env)
        try:
            for tag, viewport, scale in (("desktop", {"width": 1280, "height": 800}, 1),
                                         ("phone", {"width": 390, "height": 844}, 2)):
                ctx = browser.new_context(viewport=viewport, device_scale_factor=scale)
                page = ctx.new_page()
                page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
                page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
                _connect(page, server.url, server.admin_key, "thumbs-" + tag)
                page.check("#enrol-keep")
                _enrol(page, "colin", "Colin Powell", [lfw("Colin_Powell", i) for i in (1, 2, 3)])
                expect(page.locator("#enrol-keep")).not_to_be_checked()  # the form resets: opt in each time
                _enrol(page, "tony", "Tony Blair", [lfw("Tony_Blair", 2)])
                # the result shows before the list reloads: wait for the listing that has tony, not colin's old one
                page.wait_for_selector("tr[data-person='tony']")
                thumbs = page.locator('tr.thumbs-row ul[aria-label="enrolled faces of colin"] img')
                expect(thumbs).to_have_count(3, timeout=15_000)
                expect(page.locator("tr.thumbs-row")).to_have_count(1)  # tony's face was not kept: no strip
                for i in range(3):
                    expect(thumbs.nth(i)).to_have_attribute("alt", f"Colin Powell, enrolled face {i + 1} of 3")
                    assert page.evaluate("(img) => img.complete && img.naturalWidth >= 64", thumbs.nth(i).element_handle())
                page.locator("#people-card").scroll_into_view_if_needed()
                page.screenshot(path=str(shots / f"thumbs-{tag}.png"), full_page=False)
                ctx.close()
        finally:
            browser.close()
    assert not [e for e in console_errors if not e.startswith("Failed to load resource")], console_errors
    assert all(u.endswith("/persons?limit=1000") for u in failed), failed


# Holds back the reply of the next people listing the page asks for until the test calls releaseListing(), so that a
# newer listing overtakes it.
_HOLD_NEXT_LISTING = """() => {
  const plain = window.fetch;
  let held = false;
  window.fetch = async (...args) => {
    if (held || !String(args[0]).includes("/persons?limit=")) return plain(...args);
    held = true;
    const reply = await plain(...args);
    await new Promise((release) => { window.releaseListing = release; });
    window.lateListing = "delivered";
    return reply;
  };
}"""


@pytest.mark.slow
def test_a_late_people_listing_does_not_overwrite_a_newer_one(server: ServerProcess, browser_path: str,
                                                              browser_env: BrowserEnv) -> None:
    """A refresh whose reply comes back after the next enrolment's listing: the table keeps the newer listing."""
    from playwright.sync_api import sync_playwright

    assert server.admin_key is not None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True, args=list(CHROMIUM_PRIVATE_ARGS),
                                     env=browser_env)
        try:
            page = browser.new_page()
            _connect(page, server.url, server.admin_key, "late")
            _enrol(page, "colin", "Colin Powell", [lfw("Colin_Powell", 1)])
            page.wait_for_selector("tr[data-person='colin']")
            page.evaluate(_HOLD_NEXT_LISTING)
            page.click("#refresh-people")  # this listing (colin only) is held back
            page.wait_for_function("() => window.releaseListing !== undefined")
            _enrol(page, "tony", "Tony Blair", [lfw("Tony_Blair", 2)])
            page.wait_for_selector("tr[data-person='tony']")  # the newer listing rendered first
            page.evaluate("() => window.releaseListing()")
            page.wait_for_function("() => window.lateListing === 'delivered'")
            page.wait_for_timeout(200)  # let the late reply's handler run
            assert page.locator("tr[data-person='tony']").count() == 1
            assert page.inner_text("#people-status").startswith("2 person(s)")
        finally:
            browser.close()
