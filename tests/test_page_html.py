"""The page's notation, read from its HTML (issue 18 item 8): tokens shown one way on every tab, the
stream's "200" said to be the largest, the same word-column order in both neuron tabs, and layers apart
in the patterns and messages grids."""
import html
import re

import pytest

import minigpt2
from analysis import analyze
from analysis.report.html import table_html

TEXT = "<|endoftext|> The baseball player\nhit a home run"          # a newline inside: shown as ⏎


@pytest.fixture(scope="module")
def report(tmp_path_factory, gpt2_bpe_files):
    from minigpt2.checkpoint import make_checkpoint
    from minigpt2.config import KNOWN_CONFIGS
    model = minigpt2.load(make_checkpoint(KNOWN_CONFIGS["tiny"], tmp_path_factory.mktemp("tiny"), seed=3))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIGPT2_CACHE", str(tmp_path_factory.mktemp("cache")))
        return model, analyze(model, TEXT, k=3, progress=False, bias_threshold=10.0)


def cells(block: str) -> list[list[str]]:
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", block) if "<td" in tr]


def test_predictions_show_tokens_as_every_tab_does(report):
    model, rep = report
    rows = cells(table_html(rep["predictions"]))
    ids = model.encode(TEXT)
    pred = model.logits(ids).argmax(-1)
    for t, r in enumerate(rows):
        raw = model.tokenizer.decode([int(pred[t])])
        assert r[2] == ("·" * (len(raw) - len(raw.lstrip(" "))) + raw.lstrip(" ")).replace("\n", "⏎")
        assert "\n" not in r[1] and r[1] == rep["predictions"].rows[t][1].replace("\n", "⏎")
    assert any("⏎" in r[1] for r in rows) and rows[0][3] == "·The"              # the actual next token too


def test_the_streams_rows_are_the_largest_and_say_so(report):
    _, rep = report
    block = table_html(rep["stream"], rep.tables)
    n = len(rep["stream"].rows)
    assert n > 200
    assert f"Showing the 200 rows of largest |direct effect| of {n} rows" in html.unescape(block)
    effects = [abs(r[rep["stream"].columns.index("direct effect")]) for r in rep["stream"].rows]
    assert min(effects[:200]) >= max(effects[200:])                              # they are the largest


def test_both_neuron_tabs_put_input_words_before_output_words(report):
    _, rep = report
    for name in ("neurons", "bos_neurons"):
        head = re.findall(r"<th[^>]*>([^<]*)</th>", table_html(rep[name]))
        assert head.index("input words") < head.index("output words"), name


def test_layers_are_separated_in_the_head_grids(report):
    _, rep = report
    for name in ("patterns", "messages"):
        rows = re.findall(r"<tr([^>]*)>", table_html(rep[name]).split("<tbody>")[1])
        layers = [int(re.search(r'data-l="(\d+)"', r).group(1)) for r in rows]
        assert [("sep" in r) for r in rows] == [i > 0 and layers[i] != layers[i - 1] for i in range(len(rows))]
        assert sum("sep" in r for r in rows) == max(layers)                     # one line per new layer
