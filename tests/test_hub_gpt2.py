"""The real GPT-2 from the Hugging Face hub against the essay's published numbers (and TransformerLens's).

They run where the hub is reachable (downloading GPT-2 small, 0.5 GB, once into the Hugging Face cache) and
are skipped where it is not. MINIGPT2_HUB_TESTS=1 forces them (they then fail offline); MINIGPT2_HUB_TESTS=0
skips them (no download).
"""
import os

import numpy as np
import pytest

import minigpt2

from .conftest import ESSAY_IDS, ESSAY_TEXT
from .conftest import hub_online as _online


_choice = os.environ.get("MINIGPT2_HUB_TESTS")
pytestmark = pytest.mark.skipif(_choice == "0" or (_choice != "1" and not _online()),
                                reason="MINIGPT2_HUB_TESTS=0" if _choice == "0" else
                                "offline: the Hugging Face hub is unreachable (MINIGPT2_HUB_TESTS=1 forces)")


# The essay's table "the results for 'home' for all 12 heads in layer 0" (bold marks and U+FFFD dropped).
ESSAY_HOME = {
    0: "pitchers, baseball, Cubs, outfielder, clubhouse, bullpen, Astros, shortstop, pitcher, catcher",
    1: "home, homes, Home, HOME, Home, houses, home, residences, house, indoor",
    2: "stadium, Stadium, season, England, India, UK, Cameron, bowl, EU, Scottish",
    3: "investment, wooden, home, front, arm, opening, economic, Apple, small, second",
    4: "Sweet, Jeff, sweet, New, ref, hot, wooden, pension, wet, moving",
    5: "home, Home, homes, home, Home, HOME, Homes, house, homeowners, New",
    6: "mining, planet, ship, Water, Enterprise, carbon",
    7: "smart, nursing, tiny, super, funeral, progressive, lightweight, non, health, parenting",
    8: "mortgage, investor, investors, buyer, buying, sales, purchase, energy, buyers, homeowners",
    10: "home, Home, homes, home, backyard, indoor, house, Homes, Home, houses",
    11: "<|endoftext|>, He, She, Most, More, There, 76, .$, Some, Although",
}


@pytest.fixture(scope="module")
def gpt2():
    return minigpt2.load("gpt2")


@pytest.fixture(scope="module")
def report(gpt2, tmp_path_factory):
    from analysis import analyze
    with pytest.MonkeyPatch.context() as mp:                # a private cache, for this module only
        mp.setenv("MINIGPT2_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield analyze(gpt2, ESSAY_TEXT, progress=False)


def test_the_essays_tokens_and_predictions(gpt2):
    ids = gpt2.encode(ESSAY_TEXT)
    assert ids.tolist() == ESSAY_IDS
    pred = np.argmax(gpt2.logits(ids), axis=-1)
    assert gpt2.token_strings(pred) == [" The", " first", " team", " who", " the", " home", " run", " in"]
    assert int((pred[:-1] == ids[1:]).sum()) == 3                       # "3 out of 7"


def test_the_devil_neuron(gpt2):
    """Layer 2, neuron 666 at position 0 (which depends on BOS alone) is 61.9 in the essay."""
    tr = gpt2.run(gpt2.encode(ESSAY_TEXT))
    assert tr.mlp_acts[2, 0, 666] == pytest.approx(61.9, abs=0.05)
    strongest = set(np.argsort(-tr.mlp_acts[2, 0])[:5].tolist())
    assert {666, 1825, 3034} <= strongest


def test_bos_neurons_table_has_the_essays_neurons(report):
    rows = {(r[0], r[1]) for r in report["bos_neurons"].rows}
    assert {(2, 666), (2, 1825), (2, 3034)} <= rows


def test_patterns_of_home_at_layer_0_match_the_essay(report):
    """Layer 0 reads W_E + W_pos only, so these rows are fixed by the weights. The tool searches whole words
    first and then takes the top 10 (the essay seems to take 10 and then drop fragments), so each head's
    essay row is compared as a set: at least 70% of its words must be among the tool's 10."""
    t = report["patterns"]
    for head, row in ESSAY_HOME.items():
        r = t.where(layer=0, head=head, pos=6).rows[0]
        tool = {w.strip() for w in r[t.columns.index("matches")].split(",")}
        essay = [w.strip() for w in row.split(", ")]
        hit = sum(w in tool for w in essay) / len(essay)
        assert hit >= 0.7, (head, essay, sorted(tool))
    cell = lambda h: t.where(layer=0, head=h, pos=6).rows[0][t.columns.index("words")]  # noqa: E731
    assert cell(9) == "(high bias)"                  # "Head 9 may be outputing garbage"
    assert cell(11) != "(high bias)"                 # "must have just barely missed the cut off"


def test_hello_world_loss_matches_transformerlens(gpt2):
    ids = gpt2.encode("Hello world!")
    logits = gpt2.logits(ids).astype(np.float64)
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    loss = float(np.mean(lse[:-1] - logits[np.arange(len(ids) - 1), ids[1:]]))
    assert loss == pytest.approx(5.3319, abs=1e-3)
