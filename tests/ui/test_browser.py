"""The web UI in a real browser: headless Chromium from the Debian packages (/usr/bin/chromium),
driven by Playwright, against the UI served by uvicorn on loopback.

Playwright's own browser download is never used (``executable_path``). Set
``MEMKERN_UI_SHOTS`` to a folder to keep screenshots of the main pages there.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Debian Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
uvicorn = pytest.importorskip("uvicorn")

#: Flags for Chromium on a machine with no network and no screen (the first-run and background
#: fetches would be refused, many at a time).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def server(world) -> Iterator[str]:
    """The UI on a free loopback port, for the length of one test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(world.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the UI server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)  # a fresh profile
        try:
            yield launched
        finally:
            launched.close()


def shoot(page, name: str) -> None:
    folder = os.environ.get("MEMKERN_UI_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def sign_in(browser, base: str, key: str):
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    page = context.new_page()
    page.goto(f"{base}/ui/")
    assert "/ui/signin" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/ui/cubes")
    return page


def test_owner_browses_searches_edits_releases_and_sees_the_audit(world, server, browser):
    page = sign_in(browser, server, world.keys["owner"])
    # The key is in no URL, no page and no script-readable storage.
    key = world.keys["owner"]
    assert key not in page.url and key not in page.content()
    assert page.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"
    sync_api.expect(page.get_by_role("heading", name="demo")).to_be_visible()
    shoot(page, "01-cubes")

    # Browse: the cube, then its timeline, with the fact beside the turn it came from.
    page.get_by_role("link", name="demo").click()
    sync_api.expect(page.get_by_role("heading", name="Policy and retention")).to_be_visible()
    shoot(page, "02-cube")
    page.get_by_role("navigation", name="Cube").get_by_role("link", name="Timeline").click()
    row = page.locator("li.row", has=page.locator(f"#m-{world.turn.id}"))
    sync_api.expect(row.locator(f"#m-{world.fact.id}")).to_be_visible()
    shoot(page, "03-timeline")
    page.get_by_label("Speaker").fill("Melanie")
    page.get_by_role("button", name="Apply").click()
    sync_api.expect(page.locator(".mem")).to_have_count(1)
    sync_api.expect(page.locator(".mem .text")).to_contain_text("Lovely! What breed is Biscuit?")

    # Search: score bars, provenance, and the way to the source turn in context.
    page.get_by_role("navigation", name="Cube").get_by_role("link", name="Search").click()
    page.get_by_label("Query").fill("What breed is the dog Biscuit?")
    page.get_by_role("button", name="Search").click()
    first = page.locator("li.hit").first
    sync_api.expect(first.locator("svg.bars rect")).to_have_count(7)
    shoot(page, "04-search")
    hit = page.locator(f"li.hit#m-{world.fact.id}")
    hit.get_by_role("link", name="Source turn in context").click()
    assert f"#m-{world.turn.id}" in page.url
    sync_api.expect(page.locator(f"#m-{world.turn.id}")).to_be_visible()

    # History, then an edit: a second version, drawn on the time chart.
    page.goto(f"{server}/ui/cubes/{world.cube_id}/memories/{world.fact.id}")
    page.get_by_label("New text").fill("Caroline has a beagle called Biscuit.")
    page.get_by_label("Reason").fill("breed learnt in session 2")
    page.get_by_role("button", name="Save new version").click()
    sync_api.expect(page.locator("blockquote.current")).to_have_text("Caroline has a beagle called Biscuit.")
    sync_api.expect(page.locator("figure.chart rect")).to_have_count(4)  # two versions x (valid, recorded)
    shoot(page, "05-history")

    # Quarantine review: why it was held back, then release it.
    page.get_by_role("navigation", name="Cube").get_by_role("link", name="Quarantine").click()
    held = page.locator(f"li.hit#m-{world.held.id}")
    sync_api.expect(held.locator(".warn")).to_contain_text("Why:")
    shoot(page, "06-quarantine")
    held.get_by_role("button", name="Release").click()
    sync_api.expect(page.get_by_text("Nothing is held back.")).to_be_visible()

    # The audit log has the release, allowed, by this user.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.get_by_label("Operation").select_option("release")
    page.get_by_role("button", name="Apply").click()
    entry = page.locator("table.grid tbody tr").first
    sync_api.expect(entry).to_contain_text("release")
    sync_api.expect(entry).to_contain_text("allowed")
    shoot(page, "07-audit")

    # Delete, through its confirmation page.
    page.goto(f"{server}/ui/cubes/{world.cube_id}/memories/{world.fact.id}")
    page.get_by_role("link", name="Delete…").click()
    sync_api.expect(page.get_by_role("heading", name="Delete this memory?")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete for good").click()
    page.wait_for_url("**/timeline")
    sync_api.expect(page.locator(f"#m-{world.fact.id}")).to_have_count(0)


def test_reader_sees_no_write_controls_and_a_forged_post_is_refused(world, server, browser):
    page = sign_in(browser, server, world.keys["reader"])
    page.goto(f"{server}/ui/cubes/{world.cube_id}/memories/{world.turn.id}")
    sync_api.expect(page.locator("blockquote.current")).to_be_visible()
    for control in ("Save new version", "Archive", "Restore", "Release"):
        sync_api.expect(page.get_by_role("button", name=control)).to_have_count(0)
    sync_api.expect(page.get_by_role("link", name="Delete…")).to_have_count(0)
    sync_api.expect(page.get_by_role("link", name="Quarantine")).to_have_count(0)
    shoot(page, "08-reader-memory")

    # Forge the edit form, with the session's own CSRF token: the governed operation refuses it.
    with page.expect_navigation() as navigation:
        page.evaluate("""([action, text]) => {
            const form = document.createElement('form');
            form.method = 'post'; form.action = action;
            const token = document.querySelector('input[name=csrf]').cloneNode();
            const field = document.createElement('input'); field.name = 'text'; field.value = text;
            form.append(token, field); document.body.append(form); form.submit();
        }""", [f"/ui/cubes/{world.cube_id}/memories/{world.turn.id}/edit", "forged"])
    assert navigation.value.status == 403
    sync_api.expect(page.get_by_role("alert")).to_contain_text("may not update")
    shoot(page, "09-reader-forged-403")
    owner = world.mos.as_user(world.keys["owner"])
    assert owner.get_cube("demo").get(world.turn.id).text == world.turn.text


def test_reading_works_with_javascript_off_and_from_the_keyboard(world, server, browser):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{server}/ui/signin")
    page.get_by_label("API key").fill(world.keys["reader"])  # focused on arrival (autofocus)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server}/ui/cubes")
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.goto(f"{server}/ui/cubes/{world.cube_id}/search")
    page.get_by_label("Query").fill("beagle")
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("li.hit").first).to_contain_text("beagle")
    page.goto(f"{server}/ui/cubes/{world.cube_id}/timeline?limit=2")
    page.get_by_role("link", name="Later →").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**offset=2**")
    sync_api.expect(page.locator(".mem")).to_have_count(2)
    context.close()
