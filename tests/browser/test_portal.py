"""The portal in real headless Chromium: log in, create a study on digits, start it, watch
the tiles and the gallery change from websocket events (no reload), open a trial and see
the 3D canvas drawn, cancel a study; an outsider cannot open the study.

The trials train for real (TensorFlow on the bundled digits), kept tiny.
"""
from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from studies.models import Status, Study
from tests.browser.conftest import Site, log_in, screenshot, wait_for, with_password

pytestmark = pytest.mark.django_db(transaction=True)

# Counts the pixels of a canvas that differ from its corner (background) pixel.
COUNT_DRAWN_PIXELS = """
const canvas = arguments[0];
const copy = document.createElement('canvas');
copy.width = canvas.width; copy.height = canvas.height;
const context = copy.getContext('2d');
context.drawImage(canvas, 0, 0);
const pixels = context.getImageData(0, 0, copy.width, copy.height).data;
const bg = [pixels[0], pixels[1], pixels[2]];
let drawn = 0;
for (let i = 0; i < pixels.length; i += 4) {
  if (Math.abs(pixels[i] - bg[0]) + Math.abs(pixels[i + 1] - bg[1]) + Math.abs(pixels[i + 2] - bg[2]) > 30) drawn++;
}
return drawn;
"""


def text_of(browser: Any, element_id: str) -> str:
    element = browser.find_element(By.ID, element_id)
    values = element.find_elements(By.CSS_SELECTOR, ".value")  # a tile's figure
    return str((values[0] if values else element).text).strip()


def create_study(browser: Any, site: Site, name: str, *, trials: int, epochs: int, fraction: str, start: bool) -> int:
    browser.get(site.url + "/studies/new/")
    browser.find_element(By.NAME, "name").send_keys(name)
    Select(browser.find_element(By.NAME, "dataset")).select_by_value("digits")
    for field, value in (("n_trials", str(trials)), ("max_epochs", str(epochs)), ("sample_fraction", fraction)):
        element = browser.find_element(By.NAME, field)
        element.clear()
        element.send_keys(value)
    seed = browser.find_element(By.NAME, "seed")
    seed.clear()
    seed.send_keys("0")
    button = "start" if start else "create"
    browser.find_element(By.CSS_SELECTOR, f"form button[name=action][value={button}]").click()
    wait_for(browser, lambda b: b.current_url.rstrip("/").split("/")[-1].isdigit(), "the study page")
    return int(browser.current_url.rstrip("/").split("/")[-1])


# Form controls without a label (label[for], aria-label, or a button's own text).
UNLABELLED = """
return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter(e => e.offsetParent !== null || e.getClientRects().length)
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')
               && !(e.tagName === 'BUTTON' && e.textContent.trim()))
  .map(e => e.outerHTML.slice(0, 120));
"""
OVERFLOW = "return document.documentElement.scrollWidth - window.innerWidth;"


def check_page_is_accessible_and_fits_a_phone(browser: Any, url: str) -> None:
    """Every control labelled; at 390 px wide nothing overflows sideways."""
    browser.get(url)
    assert browser.execute_script(UNLABELLED) == [], url
    browser.set_window_size(390, 844)
    try:
        browser.get(url)
        assert browser.execute_script(OVERFLOW) <= 0, url
    finally:
        browser.set_window_size(1280, 1000)


def test_a_member_runs_a_study_and_watches_it_live(site: Site, browser: Any, member: Any, workspace: Any) -> None:
    with_password(member)
    log_in(browser, site, member.username)
    browser.get(site.url + "/studies/new/")
    screenshot(browser, "new-study")
    study_id = create_study(browser, site, "live digits", trials=2, epochs=2, fraction="0.4", start=True)
    browser.execute_script("window.__noReload = 'still here';")

    # Tiles and gallery change from websocket events, without a reload.
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#gallery [data-trial]"), "a trial card in the gallery", 120)
    wait_for(browser, lambda b: text_of(b, "tile-trials").startswith("2"), "the trials tile to show 2 finished", 240)
    assert browser.execute_script("return window.__noReload") == "still here"
    assert text_of(browser, "tile-best-accuracy") not in ("", "—", "-")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#gallery [data-trial]")) == 2
    wait_for(browser, lambda b: Study.objects.get(pk=study_id).status == Status.COMPLETED, "the study to complete", 60)
    screenshot(browser, "study")

    # The trial page draws its architecture in 3D.
    browser.find_element(By.CSS_SELECTOR, "#gallery [data-trial] a[data-field=link]").click()
    canvas = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#architecture-viewer canvas"), "the 3D canvas")[0]
    drawn = wait_for(browser, lambda b: b.execute_script(COUNT_DRAWN_PIXELS, canvas) or None, "pixels on the canvas", 30)
    assert drawn > 500
    screenshot(browser, "trial")
    trial_url = browser.current_url

    browser.get(site.url + "/studies/")
    screenshot(browser, "studies")
    for url in (
        f"{site.url}/studies/",
        f"{site.url}/studies/new/",
        f"{site.url}/studies/{study_id}/",
        trial_url,
        f"{site.url}/studies/{study_id}/compare/?trials=0,1",
        f"{site.url}/accounts/workspaces/{workspace.slug}/members/",
        f"{site.url}/accounts/tokens/",
    ):
        check_page_is_accessible_and_fits_a_phone(browser, url)


def test_a_study_is_cancelled_from_its_page(site: Site, browser: Any, member: Any, workspace: Any) -> None:
    with_password(member)
    log_in(browser, site, member.username)
    study_id = create_study(browser, site, "to cancel", trials=30, epochs=10, fraction="1", start=True)
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#running-trials [data-trial]"), "a running trial", 120)
    browser.find_element(By.ID, "cancel-button").click()
    wait_for(browser, lambda b: b.switch_to.alert, "the confirmation dialog", 10).accept()
    wait_for(browser, lambda b: Study.objects.get(pk=study_id).status == Status.CANCELLED, "the study to be cancelled", 60)
    wait_for(browser, lambda b: "cancelled" in text_of(b, "study-status").lower(), "the page to say cancelled", 30)
    assert Study.objects.get(pk=study_id).trials.count() < 30


def test_an_outsider_cannot_open_the_study(site: Site, browser: Any, member: Any, workspace: Any, outsider: Any) -> None:
    from studies.services import study_create

    study = study_create(user=member, workspace=workspace, name="private")
    with_password(outsider)
    log_in(browser, site, outsider.username)
    browser.get(f"{site.url}/studies/{study.pk}/")
    assert "private" not in browser.page_source
    assert "not found" in browser.page_source.lower()
    browser.get(f"{site.url}/studies/")
    assert "private" not in browser.page_source
