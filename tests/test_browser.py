"""The page in a real browser (Debian's chromium and chromium-driver, through selenium, at 1400x900): tabs, the
sticky tools bar, sticky headers and label columns, the head view within the viewport, the token view, the
neuron card for any neuron, sorting, the filter on grids, word jumps that cycle, tooltips, the position
chooser, the random-weights banner, and the page with JavaScript off. Skipped where chromium, its driver or
selenium is missing."""
import re
import shutil

import numpy as np
import pytest

import minigpt2
from analysis import analyze

PROMPT = "<|endoftext|> The baseball player hit a home run"
LONG = "<|endoftext|> The baseball player hit a home run and the crowd stood up to cheer for him"   # 17 tokens

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
def tiny(tmp_path_factory, gpt2_bpe_files):
    from minigpt2.checkpoint import make_checkpoint
    from minigpt2.config import KNOWN_CONFIGS
    return minigpt2.load(make_checkpoint(KNOWN_CONFIGS["tiny"], tmp_path_factory.mktemp("tiny"), seed=3))


def _report(tiny, tmp_path_factory, text, **kw):
    with pytest.MonkeyPatch.context() as mp:                # a private cache, for this module only
        mp.setenv("MINIGPT2_CACHE", str(tmp_path_factory.mktemp("cache")))
        rep = analyze(tiny, text, k=5, progress=False, bias_threshold=0.4, **kw)
    return rep.write(tmp_path_factory.mktemp("page") / "r") / "index.html", rep


@pytest.fixture(scope="module")
def page(tiny, tmp_path_factory):
    return _report(tiny, tmp_path_factory, PROMPT, heads=[(1, 2)], neurons=[(1, 17)])


@pytest.fixture(scope="module")
def long_page(tiny, tmp_path_factory):
    return _report(tiny, tmp_path_factory, LONG)


def browser(script=True):
    o = Options()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"]:
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
    return d.execute_script("return document.querySelector('.mg2r>input:checked').id")


def tab(d, name):
    d.find_element(By.CSS_SELECTOR, f'label[for="{name}"]').click()


def jump(d, text):
    box = d.find_element(By.CSS_SELECTOR, "[data-jump]")
    box.clear()
    box.send_keys(text, Keys.ENTER)
    return d.find_element(By.CSS_SELECTOR, "[data-status]").text


def visible_rows(d, css):
    return d.execute_script("return [].slice.call(document.querySelectorAll(arguments[0]))"
                            ".filter(function(t){return t.offsetParent!==null})", css)


def test_opens_on_the_selection_and_switches_tabs(driver, page):
    path, _ = page
    driver.get(path.as_uri())
    assert active(driver) == "selected"
    tab(driver, "patterns")
    assert active(driver) == "patterns"
    driver.get(path.as_uri() + "#stream")
    assert active(driver) == "stream"
    assert driver.find_element(By.CSS_SELECTOR, "#p-stream").is_displayed()
    assert not driver.find_element(By.CSS_SELECTOR, "#p-patterns").is_displayed()


def test_headers_and_label_columns_stick_in_the_scroll_box(driver, page):
    path, _ = page
    driver.get(path.as_uri())
    tab(driver, "neurons")
    box = driver.find_element(By.CSS_SELECTOR, "#p-neurons .scroll")
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


def test_tools_bar_stays_on_screen_while_the_page_scrolls(driver, page):
    path, _ = page
    driver.get(path.as_uri())
    tab(driver, "stream")                                    # a tall tab: the page itself scrolls
    driver.execute_script("window.scrollTo(0, 1500)")
    y, bar_top, jump_top, label_shown = driver.execute_script(
        "var b=document.querySelector('.bar');return [window.scrollY, b.getBoundingClientRect().top,"
        "document.querySelector('[data-jump]').getBoundingClientRect().top,"
        "document.querySelector('label[for=patterns]').getBoundingClientRect().bottom>0]")
    assert y > 200 and abs(bar_top) <= 1 and 0 <= jump_top < 60 and label_shown


@pytest.mark.parametrize("query", ["1-2", "1 2", "L1 H2", "L1-H2", "l1h2"])
def test_head_view_opens_one_head_whose_columns_fit_1400_px(driver, long_page, query):
    path, rep = long_page
    driver.get(path.as_uri())
    assert "head 1-2" in jump(driver, query)
    assert active(driver) == "attended"
    shown = [f for f in driver.find_elements(By.CSS_SELECTOR, "#p-attended figure.head") if f.is_displayed()]
    assert [(f.get_attribute("data-l"), f.get_attribute("data-h")) for f in shown] == [("1", "2")]
    fig = shown[0]
    heads = [th.text for th in fig.find_elements(By.CSS_SELECTOR, "thead th[data-pos]")]
    T = len(rep.tokens)
    assert T == 17 and heads == [c for c in rep["attended"].columns if re.match(r"\d+:", c)]   # queries label columns
    width, right, box_scroll, box_client = driver.execute_script(
        "var f=arguments[0],b=f.querySelector('.scroll'),c=f.querySelectorAll('thead th');"
        "return [document.documentElement.clientWidth, c[c.length-1].getBoundingClientRect().right,"
        " b.scrollWidth, b.clientWidth]", fig)
    assert width >= 1360 and right <= width and box_scroll <= box_client      # no horizontal scrolling
    first = fig.find_element(By.CSS_SELECTOR, "tbody tr")                      # source 0's attention from query 3
    att = rep["attended"].where(layer=1, head=2, source=0).records()[0][heads[3]]
    assert first.find_elements(By.CSS_SELECTOR, "td")[-T + 3].text == f"{att:.2g}"
    on0 = rep["attention_on_0"].records()[1]["head 2"]
    assert f"attention on position 0: {on0:.2f}" in fig.find_element(By.CSS_SELECTOR, "figcaption").text


def test_neuron_card_opens_for_a_neuron_outside_the_top_list(driver, page, tiny):
    path, rep = page
    driver.get(path.as_uri())
    listed = {(int(r.get_attribute("data-l")), int(r.get_attribute("data-n")))
              for r in driver.find_elements(By.CSS_SELECTOR, "#p-neurons tbody tr")}
    row = next(r for r in rep["neurons"].records() if (r["layer"], r["neuron"]) not in listed)
    l, n = row["layer"], row["neuron"]
    assert "neuron card" in jump(driver, f"L{l} N{n}")
    assert active(driver) == "neuron_card"
    card = driver.find_element(By.CSS_SELECTOR, "#p-neuron_card .ncbody")
    cells = {tr.find_element(By.TAG_NAME, "th").text: tr.find_element(By.TAG_NAME, "td").text
             for tr in card.find_elements(By.CSS_SELECTOR, ".ncbody>table tr")}
    words = row["input words (scores)"][0][:5]
    assert cells["input words (top 5)"].startswith(", ".join(words))
    assert cells["output words (top 5)"].startswith(", ".join(row["output words (scores)"][0][:5]))
    assert "negative output words (top 5)" in cells
    acts = tiny.run(tiny.encode(PROMPT)).mlp_acts[l, :, n].astype(np.float64)      # a fresh forward pass
    shown = [float(td.get_attribute("title").split()[-1]) for td in card.find_elements(By.CSS_SELECTOR, "tbody td.num")]
    np.testing.assert_allclose(shown, acts, rtol=0.05, atol=1e-3)                  # 8 bits, log-spaced


def test_token_view_shows_a_token_at_every_head_of_a_layer_and_links_to_the_logit_lens(driver, page):
    path, rep = page
    driver.get(path.as_uri())
    tab(driver, "patterns")
    driver.find_element(By.CSS_SELECTOR, '#p-patterns thead th[data-pos="6"]').click()     # "6:·home"
    assert active(driver) == "token_view"

    def rows():
        return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in driver.find_elements(By.CSS_SELECTOR, "#p-token_view tbody tr")]

    expect = lambda layer: [[str(h), rep["patterns"].where(layer=layer, head=h, pos=6).records()[0]["words"],  # noqa: E731
                             rep["messages"].where(layer=layer, head=h, pos=6).records()[0]["words"]]
                            for h in range(4)]
    assert rows() == expect(0)
    driver.find_element(By.CSS_SELECTOR, '#p-token_view [data-tvstep="1"]').click()          # the next layer
    assert rows() == expect(1)
    driver.find_element(By.CSS_SELECTOR, "#p-token_view [data-lens]").click()
    assert active(driver) == "evolution"
    hit = driver.find_elements(By.CSS_SELECTOR, "#p-evolution td.hit")
    assert len(hit) == len(rep["evolution"].rows) and all(td.is_displayed() for td in hit)
    col = rep["evolution"].columns.index("6:·home")
    assert [td.text for td in hit] == [r[col] for r in rep["evolution"].rows]


def test_columns_sort_by_click_and_by_keyboard(driver, page):
    path, rep = page
    driver.get(path.as_uri())
    tab(driver, "stream")
    th = next(t for t in driver.find_elements(By.CSS_SELECTOR, "#p-stream h3+p+.scroll ~ h3 ~ .scroll thead th, "
                                                            "#p-stream .scroll:last-of-type thead th")
              if t.text == "weight")
    col = rep["stream"].columns.index("weight")

    def column():
        return [float(tr.find_elements(By.TAG_NAME, "td")[col].text or "nan")
                for tr in th.find_element(By.XPATH, "ancestor::table").find_elements(By.CSS_SELECTOR, "tbody tr")]

    th.click()
    got = column()
    assert th.get_attribute("aria-sort") == "descending" and got == sorted(got, reverse=True)
    th.send_keys(Keys.ENTER)                                  # the keyboard: focused header, Enter
    got = column()
    assert th.get_attribute("aria-sort") == "ascending" and got == sorted(got)
    assert th.get_attribute("tabindex") == "0"
    driver.find_element(By.CSS_SELECTOR, 'label[for="neurons"]').send_keys(Keys.ENTER)    # tabs by keyboard
    assert active(driver) == "neurons"


def test_filter_works_on_the_grids_and_says_it_is_active(driver, page):
    path, _ = page
    driver.get(path.as_uri())
    tab(driver, "attention")
    f = driver.find_element(By.CSS_SELECTOR, "[data-filter]")
    f.send_keys("L1 H2")
    figs = [x.text.split("\n")[0] for x in driver.find_elements(By.CSS_SELECTOR, "#p-attention figure") if x.is_displayed()]
    assert figs == ["L1 H2"]
    assert "filter" in driver.find_element(By.CSS_SELECTOR, "[data-status]").text
    f.clear()
    f.send_keys("h2")                                        # text: every head 2
    figs = [x.text.split("\n")[0] for x in driver.find_elements(By.CSS_SELECTOR, "#p-attention figure") if x.is_displayed()]
    assert figs == ["L0 H2", "L1 H2"]
    f.send_keys(Keys.ESCAPE)
    assert len([x for x in driver.find_elements(By.CSS_SELECTOR, "#p-attention figure") if x.is_displayed()]) == 8
    tab(driver, "position0")                                 # layer 0's grid: its figures name heads only
    for query, expect in (("L0 H2", ["H2"]), ("L1 H2", [])):
        f.clear()
        f.send_keys(query)
        assert [x.text.split("\n")[0] for x in driver.find_elements(By.CSS_SELECTOR, "#p-position0 figure")
                if x.is_displayed()] == expect


def test_filter_hides_rows_that_do_not_match(driver, page):
    path, _ = page
    driver.get(path.as_uri())
    tab(driver, "neurons")
    before = visible_rows(driver, "#p-neurons tbody tr")
    driver.find_element(By.CSS_SELECTOR, "[data-filter]").send_keys("L1 N17")
    after = visible_rows(driver, "#p-neurons tbody tr")
    assert len(before) > 1 and [(r.get_attribute("data-l"), r.get_attribute("data-n")) for r in after] == [("1", "17")]


def test_word_jumps_cycle_through_every_match(driver, page):
    path, _ = page
    driver.get(path.as_uri())
    first = jump(driver, "·baseball")
    m = re.search(r"match 1 of (\d+)", first)
    assert m and int(m.group(1)) > 2
    assert active(driver) == "token_view"                    # a token of the prompt: its token view first
    second = jump(driver, "·baseball")
    assert "match 2 of" in second and driver.find_element(By.CSS_SELECTOR, "tr.hit").is_displayed()


def test_word_cells_have_tooltips_with_scores_and_hidden_high_bias_words(driver, page):
    path, rep = page
    driver.get(path.as_uri())
    tab(driver, "patterns")
    cells = driver.find_elements(By.CSS_SELECTOR, "#p-patterns td.words, #p-patterns td.hb")
    assert cells and all(re.search(r"\d\.\d{3}", c.get_attribute("title")) for c in cells)
    hb = [c for c in cells if c.text == "(high bias)"]
    assert hb, "bias threshold 0.4 should hide some cells"
    assert all(re.search(r"\(high bias: mean bias z [+-]\d\.\d\d\) hidden words: \S", c.get_attribute("title"))
               for c in hb)
    shown = next(c for c in cells if c.text != "(high bias)")
    webdriver.ActionChains(driver).move_to_element(shown).perform()                 # hover: words and scores
    assert re.match(r"\S+ \d\.\d{3}, ", shown.get_attribute("title"))
    assert shown.get_attribute("title").split(" ")[0] == shown.text.split(", ")[0]


def test_position_chooser_shows_one_position(driver, page):
    path, _ = page
    driver.get(path.as_uri() + "#streams")
    from selenium.webdriver.support.ui import Select
    Select(driver.find_element(By.CSS_SELECTOR, "[data-chooser]")).select_by_value("3")
    shown = driver.execute_script(
        "return [].slice.call(document.querySelectorAll('#p-streams tbody tr'))"
        ".filter(function(t){return !t.hidden}).map(function(t){return t.dataset.sel})")
    assert shown and set(shown) == {"3"}


def test_random_weights_say_so(driver, page):
    path, rep = page
    driver.get(path.as_uri())
    banner = driver.find_element(By.CSS_SELECTOR, ".random")
    assert rep.random_weights and banner.is_displayed() and "the words mean nothing" in banner.text
    assert banner.location["y"] < 10                          # above everything


def test_the_page_reads_with_javascript_off(page):
    path, rep = page
    d = browser(script=False)
    try:
        d.get(path.as_uri())
        assert d.find_element(By.CSS_SELECTOR, "#p-selected table").is_displayed()
        assert not d.find_element(By.CSS_SELECTOR, ".tools").is_displayed()       # no dead controls
        assert not d.find_element(By.CSS_SELECTOR, 'label[for="token_view"]').is_displayed()
        tab(d, "evolution")                                                        # tabs are pure CSS
        assert d.find_element(By.CSS_SELECTOR, "#p-evolution table").is_displayed()
        tab(d, "attended")                                                         # every head, as a static table
        figs = [f for f in d.find_elements(By.CSS_SELECTOR, "#p-attended figure.head") if f.is_displayed()]
        assert len(figs) == 8 and all(len(f.find_elements(By.CSS_SELECTOR, "tbody tr")) == 8 for f in figs)
        assert "5:·a" in [th.text for th in figs[0].find_elements(By.CSS_SELECTOR, "thead th")]
    finally:
        d.quit()


def test_two_notebook_reports_on_one_page_each_have_their_own_tools(driver, page, tmp_path):
    _, rep = page
    doc = tmp_path / "notebook.html"                          # what Jupyter shows: two outputs, one document
    doc.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{rep._repr_html_()}"
                   f"<p>another cell</p>{rep._repr_html_()}</body></html>", encoding="utf-8")
    driver.get(doc.as_uri())
    roots = driver.find_elements(By.CSS_SELECTOR, ".mg2r")
    assert len(roots) == 2 and all(r.find_element(By.CSS_SELECTOR, ".tools").is_displayed() for r in roots)
    first, second = roots
    box = second.find_element(By.CSS_SELECTOR, "[data-jump]")
    box.send_keys("1-2", Keys.ENTER)
    checked = lambda r: r.find_element(By.CSS_SELECTOR, ":scope>input:checked").get_attribute("id")  # noqa: E731
    assert checked(second).endswith("-attended") and checked(first).endswith("-selected")
    assert "head 1-2" in second.find_element(By.CSS_SELECTOR, "[data-status]").text
    box.clear()
    box.send_keys("·home", Keys.ENTER)                        # its token view, not the first report's
    assert checked(second).endswith("-token_view") and checked(first).endswith("-selected")
    assert len(second.find_elements(By.CSS_SELECTOR, ".tvbody tbody tr")) == 4
    first.find_element(By.CSS_SELECTOR, "[data-filter]").send_keys("L0 H1")
    status = [r.find_element(By.CSS_SELECTOR, "[data-status]").text for r in roots]
    assert status[0].startswith('filter "L0 H1"') and not status[1].startswith("filter")


def test_a_long_prompts_head_keeps_its_sources_and_queries_labelled_while_it_scrolls(driver, tiny, tmp_path_factory):
    path, rep = _report(tiny, tmp_path_factory, " ".join([LONG.split("> ")[1]] * 3))       # 49 tokens
    driver.get(path.as_uri())
    jump(driver, "1-2")
    fig = driver.find_element(By.CSS_SELECTOR, '#p-attended figure.head[data-l="1"][data-h="2"]')
    box = fig.find_element(By.CSS_SELECTOR, ".scroll")
    driver.execute_script("arguments[0].scrollLeft = 600; arguments[0].scrollTop = 400;", box)
    left, top, src_left, q_top, sx, sy = driver.execute_script(
        "var b=arguments[0],r=b.getBoundingClientRect(),rows=b.querySelectorAll('tbody tr'),mid=null;"
        "for(var i=0;i<rows.length;i++){if(rows[i].getBoundingClientRect().top>r.top+150){mid=rows[i];break;}}"
        "return [r.left, r.top, mid.querySelector('td.tok').getBoundingClientRect().left,"
        " b.querySelector('thead th[data-pos]').getBoundingClientRect().top, b.scrollLeft, b.scrollTop]", box)
    assert len(rep.tokens) == 49 and sx > 300 and sy > 300           # it scrolled both ways ...
    assert abs(src_left - left) <= 2 and abs(q_top - top) <= 2        # ... the source column and the query
                                                                      #     headers stayed at its edges
