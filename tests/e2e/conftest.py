"""Browser tests: Playwright driving Debian's chromium, headless, against live_server."""
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser():
    """One browser per module: Playwright's sync API runs an event loop in this thread
    while it lives, so it must be gone before the next (non-browser) module runs."""
    from playwright.sync_api import sync_playwright

    # The ORM calls the tests make between page actions are plain synchronous code;
    # Django would refuse them while Playwright's loop runs in the thread.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.csp_errors = []
    page.on("console", lambda msg: page.csp_errors.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    yield page
    context.close()


def sign_in(page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
