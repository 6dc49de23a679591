"""The web console in a real browser (Debian's Chromium, driven by Playwright) against a real
control plane: the admin makes a tenant, the tenant signs in with the token the page showed
once, makes a cluster, resizes it, makes an API key (a description that is HTML stays text),
deletes the key and the cluster; the API confirms each step. A wrong token is refused."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.controlplane.platform import Platform

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (.ci/run installs Debian's)", allow_module_level=True)
pytest.importorskip("playwright.sync_api")

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

# Each step waits on a write to the state topics of a Python broker, on a loaded CI machine.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, platform: Platform) -> Iterator[Page]:
    context = browser.new_context(base_url=str(platform.api.base_url))
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    def dialog(d: Any) -> None:  # an alert() from injected markup: noted, and out of the way
        errors.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    try:
        yield page
    finally:
        context.close()
    assert errors == [], errors  # no script error, no alert() from injected markup


def _sign_in(page: Page, token: str) -> None:
    page.goto("/")
    page.fill("#token", token)
    page.click("#sign-in-form button")


def _row(page: Page, text: str) -> Any:
    return page.locator("#clusters tbody tr", has_text=text)


def test_a_tenant_is_served_end_to_end_through_the_console(page: Page, platform: Platform) -> None:
    _sign_in(page, platform.admin_token())
    expect(page.locator("#who")).to_have_text("signed in as the admin")
    page.fill("#tenant-name", "acme")
    page.fill("#tenant-clusters", "2")
    page.click("#create-tenant button")
    expect(page.locator("#new-token")).to_be_visible()
    shown = page.locator("#new-token").inner_text()
    tenant_id = re.search(r"tenant (t-[a-z0-9]+)", shown).group(1)  # type: ignore[union-attr]
    token = re.search(r"token (art_\S+)", shown).group(1)  # type: ignore[union-attr]
    expect(page.locator("#tenants tbody tr", has_text=tenant_id)).to_have_count(1)
    assert platform.api.get(f"/v1/tenants/{tenant_id}").json()["max_clusters"] == 2

    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    _sign_in(page, token)
    expect(page.locator("#who")).to_have_text(f"signed in as tenant {tenant_id}")
    expect(page.locator("#tenants")).to_be_hidden()  # the admin's part

    page.fill("#cluster-name", "web")
    page.fill("#cluster-brokers", "2")
    page.click("#create-cluster button")
    expect(_row(page, "web")).to_have_count(1)
    (cluster,) = platform.api.get("/v1/clusters").json()["clusters"]
    assert (cluster["spec"]["name"], cluster["spec"]["tenant"]) == ("web", tenant_id)
    assert cluster["spec"]["brokers"] == 2

    _row(page, "web").click()
    expect(page.locator("#cluster-detail")).to_be_visible()
    page.fill("#resize-brokers", "3")
    page.click("#resize button")
    expect(page.locator("#status")).to_contain_text("generation 2")
    assert platform.cluster(cluster["id"])["spec"]["brokers"] == 3

    markup = '<img src=x onerror="alert(1)">'
    page.fill("#key-description", markup)
    page.click("#create-key button")
    expect(page.locator("#new-secret")).to_contain_text("secret ")
    key_row = page.locator("#api-keys tbody tr")
    expect(key_row).to_have_count(1)
    expect(key_row.locator("td").nth(2)).to_have_text(markup)  # text, not an element
    assert page.locator("#api-keys img").count() == 0
    (key,) = platform.api.get(f"/v1/clusters/{cluster['id']}/api-keys").json()["api_keys"]
    assert key["description"] == markup
    secret = re.search(r"secret (\S+)", page.locator("#new-secret").inner_text()).group(1)  # type: ignore[union-attr]
    assert secret not in platform.api.get(f"/v1/clusters/{cluster['id']}").text

    key_row.get_by_role("button", name="Delete").click()
    key_row.get_by_role("button", name="Really delete?").click()  # deleting takes two clicks
    expect(page.locator("#api-keys tbody tr")).to_have_count(0)
    assert platform.api.get(f"/v1/clusters/{cluster['id']}/api-keys").json()["api_keys"] == []

    # A second cluster is the tenant's quota; a third is refused with the API's reason.
    page.fill("#cluster-name", "second")
    page.click("#create-cluster button")
    expect(_row(page, "second")).to_have_count(1)
    page.fill("#cluster-name", "third")
    page.click("#create-cluster button")
    expect(page.locator("#status")).to_contain_text("409")
    expect(page.locator("#status")).to_contain_text("max_clusters")

    _row(page, "web").get_by_role("button", name="Delete").click()
    assert platform.cluster(cluster["id"])["spec"]["deleted"] is False  # asked once more
    _row(page, "web").get_by_role("button", name="Really delete?").click()
    expect(_row(page, "web")).to_contain_text("deleting")
    # Marked deleted, or (its data plane quick to report it gone) forgotten already.
    after = platform.api.get(f"/v1/clusters/{cluster['id']}")
    assert after.status_code == 404 or after.json()["spec"]["deleted"] is True, after.text

    # Signing out leaves nothing of the tenant on the page.
    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    assert page.locator("#token").input_value() == ""
    expect(page.locator("tbody tr")).to_have_count(0)
    assert page.locator("#new-secret").inner_text() == ""
    page.reload()  # nor in the browser's storage: a reload asks for the token again
    expect(page.locator("#sign-in")).to_be_visible()
    assert page.evaluate("JSON.stringify(sessionStorage) + JSON.stringify(localStorage)") == "{}{}"


def test_a_wrong_token_is_refused_and_the_page_is_locked_down(
    page: Page, platform: Platform
) -> None:
    _sign_in(page, "art_aaaaaaaaaaaaaaaa_not-a-secret")
    expect(page.locator("#status")).to_contain_text("401")
    expect(page.locator("#signed-in")).to_be_hidden()
    r = platform.api.get("/console")
    assert r.status_code == 200 and "script-src 'self'" in r.headers["content-security-policy"]
    for name in ("..%2fapi.py", "%2e%2e%2fapi.py", "secrets.txt", "console.js%00"):
        raw = httpx.get(f"{platform.api.base_url}/console/{name}")
        assert raw.status_code == 404, name
