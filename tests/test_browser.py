"""The page in a real browser (Debian's chromium and chromium-driver, through selenium): tabs, sticky headers
and label columns in the real scroll container, the jump box, the row filter, tooltips, the position chooser,
and the page with JavaScript off. Skipped where chromium, its driver or selenium is missing."""
import re
import shutil

import pytest

import minigpt2
from analysis import analyze

PROMPT = "<|endoftext|> The baseball player hit a home run"

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (BROWSER and DRIVER):
    pytest.skip("no chromium and chromium-driver installed (Debian: apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402


@pytest.fixture(scope="module")
def page(tmp_path_factory, gpt2_bpe_files):
    from minigpt2.checkpoint import make_checkpoint
    from minigpt2.config import KNOWN_CONFIGS
    d = make_checkpoint(KNOWN_CONFIGS["tiny"], tmp_path_factory.mktemp("tiny"), seed=3)
    model = minigpt2.load(d)
    with pytest.MonkeyPatch.context() as mp:                # a private cache, for this module only
        mp.setenv("MINIGPT2_CACHE", str(tmp_path_factory.mktemp("cache")))
        rep = analyze(model, PROMPT, k=5, progress=False, bias_threshold=0.4, heads=[(1, 2)], neurons=[(1, 17)])
    return rep.write(tmp_path_factory.mktemp("page") / "r") / "index.html", rep


def browser(script=True):
    o = Options()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,850"]:
        o.add_argument(a)
    if not script:
        o.add_argument("--blink-settings=scriptEnabled=false")
    o.binary_location = BROWSER
    return webdriver.Chrome(service=Service(DRIVER), options=o)


@pytest.fixture(scope="module")
def driver():
    d = browser()
    yield d
    d.quit()


def active(d):
    return d.execute_script("return document.querySelector('.tabs>input:checked').id")


def test_opens_on_the_selection_and_switches_tabs(driver, page):
    path, _ = page
    driver.get(path.as_uri())
    assert active(driver) == "selected"
    driver.find_element(By.CSS_SELECTOR, 'label[for="patterns"]').click()
    assert active(driver) == "patterns"
    driver.get(path.as_uri() + "#stream")
    assert active(driver) == "stream"
    assert driver.find_element(By.CSS_SELECTOR, 'label[for="stream"]+.panel').is_displayed()


def test_headers_and_label_columns_stick_in_the_scroll_box(driver, page):
    path, _ = page
    driver.get(path.as_uri())
    driver.find_element(By.CSS_SELECTOR, 'label[for="neurons"]').click()
    box = driver.execute_script("return document.querySelector('.tabs>input:checked+label+.panel .scroll')")
    driver.execute_script("arguments[0].scrollTop = 3000; arguments[0].scrollLeft = 400;", box)
    top, th_top, left, lab_left, scrolled = driver.execute_script(
        "var b=arguments[0],th=b.querySelector('thead th'),r=b.getBoundingClientRect();"
        "var rows=b.querySelectorAll('tbody tr'),mid=null;"
        "for(var i=0;i<rows.length;i++){var q=rows[i].getBoundingClientRect();if(q.top>r.top+60){mid=rows[i];break;}}"
        "return [r.top, th.getBoundingClientRect().top, r.left, mid.cells[0].getBoundingClientRect().left,"
        " b.scrollTop];", box)
    assert scrolled > 2000                                   # the box really scrolled ...
    assert abs(th_top - top) <= 2                            # ... and its header stayed at its top
    assert abs(lab_left - left) <= 2                         # ... and the layer column at its left


def test_jump_box_finds_a_neuron_in_another_tab(driver, page):
    path, _ = page
    driver.get(path.as_uri())
    driver.find_element(By.CSS_SELECTOR, 'label[for="patterns"]').click()
    box = driver.find_element(By.CSS_SELECTOR, "[data-jump]")
    box.send_keys("L1 N17", Keys.ENTER)
    assert active(driver) == "selected"                     # the selection lists 1-17 too: found there first
    box.clear()
    driver.find_element(By.CSS_SELECTOR, 'label[for="bos_neurons"]').click()
    box.send_keys("1-3", Keys.ENTER)                         # a head: not on this tab, so the first tab with it
    row = driver.find_element(By.CSS_SELECTOR, "tr.hit")
    assert row.get_attribute("data-l") == "1" and row.get_attribute("data-h") == "3"
    assert row.is_displayed() and "found in" in driver.find_element(By.CSS_SELECTOR, "[data-status]").text


def test_filter_hides_rows_that_do_not_match(driver, page):
    path, _ = page
    driver.get(path.as_uri())
    driver.find_element(By.CSS_SELECTOR, 'label[for="attended"]').click()
    rows = lambda: driver.execute_script(  # noqa: E731
        "return [].slice.call(document.querySelectorAll('.tabs>input:checked+label+.panel tbody tr'))"
        ".filter(function(t){return !t.hidden}).map(function(t){return t.textContent})")
    before = rows()
    driver.find_element(By.CSS_SELECTOR, "[data-filter]").send_keys("·baseball")
    after = rows()
    assert 0 < len(after) < len(before) and all("·baseball" in t for t in after)


def test_word_cells_have_tooltips_with_scores_and_hidden_high_bias_words(driver, page):
    path, rep = page
    driver.get(path.as_uri())
    driver.find_element(By.CSS_SELECTOR, 'label[for="patterns"]').click()
    cells = driver.find_elements(By.CSS_SELECTOR, 'label[for="patterns"]+.panel td.words, '
                                                  'label[for="patterns"]+.panel td.hb')
    assert cells and all(re.search(r"\d\.\d{3}", c.get_attribute("title")) for c in cells)
    hb = [c for c in cells if c.text == "(high bias)"]
    assert hb, "bias threshold 0.4 should hide some cells"
    assert all(re.search(r"\(high bias: mean bias z [+-]\d\.\d\d\) hidden words: \S", c.get_attribute("title"))
               for c in hb)


def test_position_chooser_shows_one_position(driver, page):
    path, _ = page
    driver.get(path.as_uri() + "#streams")
    from selenium.webdriver.support.ui import Select
    Select(driver.find_element(By.CSS_SELECTOR, "[data-chooser]")).select_by_value("3")
    shown = driver.execute_script(
        "return [].slice.call(document.querySelectorAll('label[for=\"streams\"]+.panel tbody tr'))"
        ".filter(function(t){return !t.hidden}).map(function(t){return t.dataset.sel})")
    assert shown and set(shown) == {"3"}


def test_the_page_reads_with_javascript_off(page):
    path, _ = page
    d = browser(script=False)
    try:
        d.get(path.as_uri())
        assert d.find_element(By.CSS_SELECTOR, 'label[for="selected"]+.panel table').is_displayed()
        assert not d.find_element(By.CSS_SELECTOR, ".tools").is_displayed()       # no dead controls
        d.find_element(By.CSS_SELECTOR, 'label[for="evolution"]').click()          # tabs are pure CSS
        assert d.find_element(By.CSS_SELECTOR, 'label[for="evolution"]+.panel table').is_displayed()
    finally:
        d.quit()
