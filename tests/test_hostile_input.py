"""Hostile and careless input (issue 16, classes 4-8): special files, hostile JSON and tokenizers, terminal
escape sequences, the Python API's arguments. Every row: one line `minigpt2: error: ...` and exit 1 (or a
minigpt2.Error from the API), the user's files untouched, nothing left behind, and never a hang: a FIFO or a
device is only ever met by a real process run with a timeout, so a regression fails instead of blocking.
"""
import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import minigpt2
from analysis import analyze, nearest_words
from analysis.cli import main
from analysis.cli.args import printable
from analysis.search.spaces import TOKEN_CHARS, show_token
from analysis.report.page import TITLE_CHARS

from .conftest import FIXTURES, snapshot

ROOT = Path(__file__).resolve().parents[1]
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]")
ESC = "\x1b]2;t\x07\x1b[1m\x9b"     # set the title, bold, C1 CSI: 12 tokens of the tiny model's 24


pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture
def work(tmp_path):
    """The user's folder: a copy of the tiny model, and nothing else."""
    w = tmp_path / "work"
    shutil.copytree(FIXTURES / "tiny-hub", w / "model")
    return w


def snapshot(folder: Path) -> dict:
    """Every entry under folder: its kind, and a regular file's bytes (a FIFO or device is never opened)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        m = p.lstat().st_mode
        out[str(p.relative_to(folder))] = (p.read_bytes() if stat.S_ISREG(m) else "link" if stat.S_ISLNK(m)
                                           else "dir" if stat.S_ISDIR(m) else f"special {stat.S_IFMT(m)}")
    return out


def wordlevel(model: Path, token) -> None:
    """Replace the model's tokenizer by a tokenizer.json with a WordLevel model: ids 0..298 are token(i),
    299 is <|endoftext|>. Its unknown token [UNK] is not in the vocabulary, so any other word makes encode
    raise (tokenizers' "Missing [UNK] token")."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    vocab = {token(i): i for i in range(299)}
    vocab["<|endoftext|>"] = 299
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    for name in ("vocab.json", "merges.txt"):
        (model / name).unlink()
    tok.save(str(model / "tokenizer.json"))


def deep(n: int) -> str:
    return "[" * n + "]" * n


def edit_config(model: Path, **change) -> None:
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(change)
    (model / "config.json").write_text(json.dumps(cfg))


def raw_config(model: Path, key: str, raw: str) -> None:
    """config.json with key set to raw JSON text (which json.dumps could not write: deep, huge)."""
    text = (model / "config.json").read_text().rstrip().removesuffix("}")
    (model / "config.json").write_text(f'{text}, "{key}": {raw}}}')


def replace(model: Path, name: str, how: str) -> None:
    p = model / name
    p.unlink()
    if how == "fifo":
        os.mkfifo(p)
    elif how == "device":
        p.symlink_to("/dev/zero")
    elif how == "folder":
        p.mkdir()


# -- the table: one bad input a row ----------------------------------------------------------------------
# (case, argv ({m}: the model, {w}: the user's folder), setup(model folder, user's folder), one-line message)
GEN = ["generate", "ab", "-n", "1", "--model", "{m}"]
ANALYZE = ["analyze", "ab", "--model", "{m}", "--out", "{w}/report"]
BPE = "vocab.json + "                      # ... model/merges.txt: cannot read the tokenizer (tokenizers' reason)

HOSTILE = [
    ("config nested 100,000 deep", GEN, lambda m, w: raw_config(m, "x", deep(100_000)),
     "config.json: not valid JSON (nested too deeply to read); replace it with the model's own config.json"),
    ("config n_embd of 5,000 digits", GEN, lambda m, w: raw_config(m, "n_embd", "7" * 5000),
     "config.json: not valid JSON (an integer of 5,000 digits, too long to be a real value)"),
    ("config n_embd of 4,000 digits", GEN, lambda m, w: raw_config(m, "n_embd", "7" * 4000),
     "config.json: n_embd must be in 1..1048576, got 7777"),
    ("config n_embd nested 500 deep", GEN, lambda m, w: raw_config(m, "n_embd", deep(500)),
     "config.json: n_embd must be an integer, got [[[["),
    ("config n_embd nested 990 deep", GEN, lambda m, w: raw_config(m, "n_embd", deep(990)), "config.json: "),
    ("config model_type of 100,000 characters", GEN, lambda m, w: edit_config(m, model_type="x" * 100_000),
     'config.json: model_type is "xxxx'),
    ("config.json over 16 MiB", GEN, lambda m, w: os.truncate(m / "config.json", (16 << 20) + 1),
     "config.json: is 16,777,217 bytes, more than the 16,777,216 such a file can be"),
    ("config.json is a folder", GEN, lambda m, w: replace(m, "config.json", "folder"),
     "config.json: is a folder, not a regular file; put the file itself there"),
    ("vocab.json nested 100,000 deep", GEN, lambda m, w: (m / "vocab.json").write_text(deep(100_000)), BPE),
    ("vocab.json not an object", GEN, lambda m, w: (m / "vocab.json").write_text("[1, 2]"), BPE),
    ("vocab.json id of 5,000 digits", GEN, lambda m, w: (m / "vocab.json").write_text('{"a": ' + "7" * 5000 + "}"),
     BPE),
    ("merges.txt with a bad line", GEN, lambda m, w: (m / "merges.txt").write_text("#version: 0.2\na b c\n"), BPE),
    ("merges.txt not UTF-8", GEN, lambda m, w: (m / "merges.txt").write_bytes(b"#version: 0.2\n\xff \xfe\n"), BPE),
    ("tokenizer.json nested 100,000 deep", GEN, lambda m, w: (m / "tokenizer.json").write_text(deep(100_000)),
     "tokenizer.json: cannot read the tokenizer ("),
    ("tokenizer whose encode raises: generate", ["generate", "zzz", "--model", "{m}"],
     lambda m, w: wordlevel(m, lambda i: f"w{i}"),
     "the model's tokenizer cannot encode 'zzz' (WordLevel error: Missing [UNK] token from the vocabulary)"),
    ("tokenizer whose encode raises: analyze", ["analyze", "zzz", "--model", "{m}", "--out", "{w}/report"],
     lambda m, w: wordlevel(m, lambda i: f"w{i}"), "the model's tokenizer cannot encode 'zzz'"),
    ("manifest nested 100,000 deep", ANALYZE,
     lambda m, w: ((w / "report").mkdir(), (w / "report" / "minigpt2-report.json").write_text(deep(100_000))),
     "report/minigpt2-report.json is not a minigpt2 report's manifest, and a report would replace it"),
    # class 8: checked before the model loads (the model does not even exist), each naming what is bad
    ("compare: the second prompt is not UTF-8", ["compare", "a", "\udcfe", "--model", "/no/such/model"], None,
     "prompt 2 of 2 is not valid UTF-8: byte 0xfe at character 0; pass UTF-8 text"),
    ("compare: a blank prompt", ["compare", "a", " ", "--model", "/no/such/model"], None,
     "prompt 2 of 2 is empty: give some text"),
    ("compare: --first not UTF-8", ["compare", "a", "--first", "\udcff", "--model", "/no/such/model"], None,
     "--first is not valid UTF-8: byte 0xff"),
    ("signature: --token not UTF-8", ["signature", "a b", "--head", "0-0", "--token", "\udcff", "--model",
                                      "/no/such/model"], None, "--token is not valid UTF-8: byte 0xff at character 0"),
    ("--effects on a 1-token prompt", ["analyze", "a", "--no-bos", "--effects", "--model", "{m}", "--out",
                                       "{w}/report"], None,
     "effects (--effects) need at least 2 tokens, a next token to predict: give a longer prompt"),
    # class 6: user text in an error message reaches the terminal escaped
    ("a model path holding escape sequences", ["generate", "x", "--model", "/no/such/" + ESC], None,
     "/no/such/\\x1b]2;t\\x07\\x1b[1m\\x9b: no such directory"),
    ("--out holding escape sequences", ["analyze", "x", "--model", "{m}", "--out", "{w}/model/config.json/\x1b[2J"],
     None, "config.json is a file, not a folder"),
]


@pytest.mark.parametrize("case, argv, setup, message", HOSTILE, ids=[r[0] for r in HOSTILE])
def test_hostile_input_is_one_line_and_touches_nothing(case, argv, setup, message, work, capsys):
    m = work / "model"
    if setup:
        setup(m, work)
    before = snapshot(work)
    code = main([a.replace("{m}", str(m)).replace("{w}", str(work)) for a in argv])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("minigpt2: error: ") and err.count("\n") == 1 and len(err) < 600, err
    assert message in err, err
    if message == BPE:
        assert "merges.txt: cannot read the tokenizer (Error while reading BPE files: " in err
    assert not CONTROL.search(err[:-1])
    assert snapshot(work) == before                        # the user's files as they were, nothing added


SPECIAL = [   # (case, file replaced, by what, the message); run in a real process, with a timeout
    ("config.json is a FIFO", "config.json", "fifo", "config.json: is a FIFO (named pipe), not a regular file"),
    ("config.json is /dev/zero", "config.json", "device", "config.json: is a character device, not a regular file"),
    ("vocab.json is a FIFO", "vocab.json", "fifo", "vocab.json: is a FIFO (named pipe), not a regular file"),
    ("merges.txt is a FIFO", "merges.txt", "fifo", "merges.txt: is a FIFO (named pipe), not a regular file"),
    ("merges.txt is /dev/zero", "merges.txt", "device", "merges.txt: is a character device, not a regular file"),
    ("model.safetensors is a FIFO", "model.safetensors", "fifo", "model.safetensors"),
    ("tokenizer.json is a FIFO", "tokenizer.json", "fifo", "tokenizer.json: is a FIFO (named pipe), not a regular"),
    ("tokenizer.json is /dev/zero", "tokenizer.json", "device", "tokenizer.json: is a character device, not a"),
    ("the report's manifest is a FIFO", "report/minigpt2-report.json", "fifo",
     "report/minigpt2-report.json is not a minigpt2 report's manifest, and a report would replace it"),
]


def cli_process(argv, timeout=60):
    """The command line in a real process: a read that blocks fails the test at the timeout, never hangs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        return subprocess.run([sys.executable, "-m", "analysis.cli", *argv], capture_output=True, text=True,
                              env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"minigpt2 {' '.join(argv[:2])} blocked on a special file")


@pytest.mark.parametrize("case, name, how, message", SPECIAL, ids=[r[0] for r in SPECIAL])
def test_a_fifo_or_device_is_named_never_read(case, name, how, message, work):
    m = work / "model"
    if name.startswith("report/"):
        (work / "report").mkdir()
        (work / name).touch()
    elif name == "tokenizer.json":
        (m / name).touch()
    replace(m if not name.startswith("report/") else work, name, how)
    before = snapshot(work)
    r = cli_process(["analyze", "ab", "--model", str(m), "--out", str(work / "report")])
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("minigpt2: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr
    assert snapshot(work) == before


def test_safetensors_header_reader_names_a_fifo(work):
    """The weights reader itself (model.load checks the name first): a FIFO is refused before it is opened
    for a blocking read."""
    p = work / "w.safetensors"
    os.mkfifo(p)
    code = ("import sys; from minigpt2.weights import read_header; from pathlib import Path\n"
            "try:\n    read_header(Path(sys.argv[1]))\nexcept Exception as e:\n    print(type(e).__name__, e)")
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.stdout.strip() == (f"WeightsError {p}: is a FIFO (named pipe), not a regular file; "
                                "put the file itself there")


def test_an_io_error_names_the_file(work, monkeypatch):
    import minigpt2.safeio as safeio

    class Failing:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self, n):
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(safeio.os, "fdopen", lambda fd, mode: (os.close(fd), Failing())[1])
    with pytest.raises(minigpt2.LoadError, match=r"model/config\.json: Input/output error$"):
        minigpt2.load(work / "model")


# -- a hostile tokenizer's 5,000-character tokens ----------------------------------------------------------

def test_long_tokens_cost_at_most_token_chars_each(work, capsys):
    """One token of 5,000 characters made a 140 MB report of a 1-token prompt: every place a token is shown
    (page, CSVs, printout) now shows at most TOKEN_CHARS characters of it."""
    m = work / "model"
    wordlevel(m, lambda i: "a" * 4995 + f"{i:05d}")
    out = work / "report"
    assert main(["analyze", "a" * 4995 + "00007", "--no-bos", "--model", str(m), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    run = "a" * TOKEN_CHARS
    assert run not in printed and "a" * (TOKEN_CHARS - 2) in printed
    for f in out.iterdir():                            # the page's title is the prompt, cut at TITLE_CHARS
        data = f.read_bytes().decode("utf-8", "replace")
        data = re.sub(r"<(title|h1)>minigpt2: a{%d}…</" % (TITLE_CHARS - 11), "", data)
        assert run not in data, f.name
    assert sum(f.stat().st_size for f in out.iterdir()) < 8 << 20


@given(st.one_of(st.text(max_size=20), st.text(min_size=TOKEN_CHARS - 5, max_size=400)))
def test_show_token_is_bounded_and_keeps_short_tokens(s):
    shown = show_token(s)
    control = lambda t: [c for c in t if ord(c) < 32 or ord(c) == 127]   # noqa: E731
    assert len(shown) <= TOKEN_CHARS and control(shown) == []          # a page shows no control character
    if len(s) <= TOKEN_CHARS and not s.startswith(" ") and not control(s):
        assert shown == s
    if len(s) > TOKEN_CHARS + 5:
        assert shown.endswith("…")


# -- terminal injection ------------------------------------------------------------------------------------

def test_printable_writes_every_control_character_as_an_escape():
    assert printable("a\x1b[31mb\x07\x9b\x7f\n\t\r\udcff\u202e é ✓") == \
        "a\\x1b[31mb\\x07\\x9b\\x7f\\n\\t\\r\\udcff\\u202e é ✓"


@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=60))
def test_printable_never_emits_a_control_character_and_loses_nothing(s):
    p = printable(s)
    assert not CONTROL.search(p)
    if not CONTROL.search(s):
        assert p == s                                  # ordinary text, accents and symbols, as it is
    if "\\" not in s:                                  # every escape is Python's for the character it replaced
        back = re.sub(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|[nrt])", lambda m: ast.literal_eval(f'"{m.group()}"'), p)
        assert back == s


@pytest.mark.parametrize("argv", [
    ["analyze", "<|endoftext|>" + ESC, "--model", "{m}", "--out", "{w}/report"],
    ["generate", ESC, "-n", "3", "--model", "{m}"],
    ["ablate", ESC, "--head", "0-0", "--model", "{m}"],
    ["compare", ESC, "--first", ESC, "--model", "{m}"],
    ["compare", ESC, "x" + ESC, "--model", "{m}"],
    ["signature", ESC + " b", "--head", "0-0", "--token", "\x1b", "--model", "{m}"],
], ids=["analyze", "generate", "ablate", "compare --first", "compare", "signature"])
def test_escape_sequences_in_the_prompt_reach_the_terminal_escaped(argv, work, capsys):
    code = main([a.replace("{m}", str(work / "model")).replace("{w}", str(work)) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert not CONTROL.search(out.replace("\n", "")) and not CONTROL.search(err.replace("\n", ""))
    assert "\\x1b" in out or "'\\x1b" in out


def test_generated_tokens_from_a_hostile_tokenizer_are_escaped(work, capsys):
    """Every token of this vocabulary sets the title, clears the screen and writes the clipboard."""
    wordlevel(work / "model", lambda i: f"\x1b]0;t{i}\x07\x1b[2J\x1b]52;c;aGk=\x07")
    assert main(["generate", "<|endoftext|>", "-n", "6", "--model", str(work / "model")]) == 0
    out = capsys.readouterr().out
    m = minigpt2.load(work / "model")
    made = m.generate(m.encode("<|endoftext|>"), 6)[1:].tolist()
    assert len(made) == 6 and sum(i < 299 for i in made) > 0
    assert not CONTROL.search(out.replace("\n", "")) and out.count("\\x1b]52;c;aGk=\\x07") == sum(i < 299 for i in made)


def test_unrecognised_arguments_are_escaped_in_the_usage_line(work, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "x", "\x1b[2J", "--model", str(work / "model")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "unrecognized arguments: \\x1b[2J" in err and not CONTROL.search(err[:-1])


# -- small command-line defects ----------------------------------------------------------------------------

def test_negative_numbers_are_values_not_options(work, capsys):
    assert main(["ablate", "ab", "--head", "0-0", "--scale", "-1e3", "--model", str(work / "model")]) == 0
    assert capsys.readouterr().out.startswith("Edits: head 0-0 x-1000")
    with pytest.raises(SystemExit) as e:
        main(["ablate", "ab", "--head", "0-0", "--scale", "-inf", "--model", str(work / "model")])
    assert e.value.code == 2 and "argument --scale: must be a finite number, got -inf" in capsys.readouterr().err


def test_duplicate_heads_and_neurons_give_one_row_each(work, capsys):
    import csv
    out = work / "report"
    assert main(["analyze", "ab", "--model", str(work / "model"), "--out", str(out), "--heads", "1-2,0-3",
                 "--heads", "1-2", "--neurons", "2-5,2-5", "--neurons", "0-1"]) == 0
    with open(out / "selected.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    heads = [(r["layer"], r["head"]) for r in rows if r["head"]]
    assert list(dict.fromkeys(heads)) == [("1", "2"), ("0", "3")] and len(heads) == 2 * 3    # 3 tokens each
    assert [(r["layer"], r["neuron"]) for r in rows if r["neuron"]] == [("2", "5"), ("0", "1")]


# -- the Python API: every argument checked at the door, before any work ----------------------------------

@pytest.fixture(scope="module")
def tiny():
    return minigpt2.load(FIXTURES / "tiny-hub")


V = np.ones(48, np.float32)
API_BAD = [   # (case, call(model), error type, message)
    ("nearest_words: NaN vector", lambda m: nearest_words(m, np.full(48, np.nan)), minigpt2.InputError,
     r"vector holds 48 NaN or infinite value\(s\) \(first at index 0\); pass a finite vector"),
    ("nearest_words: Inf in the vector", lambda m: nearest_words(m, np.r_[V[:47], np.inf]), minigpt2.InputError,
     r"1 NaN or infinite value\(s\) \(first at index 47\)"),
    ("nearest_words: beyond float32", lambda m: nearest_words(m, np.full(48, 1e300)), minigpt2.InputError,
     "beyond float32's range"),
    ("nearest_words: complex vector", lambda m: nearest_words(m, V + 1j), minigpt2.InputError,
     "vector must hold real numbers, got dtype complex"),
    ("nearest_words: text vector", lambda m: nearest_words(m, ["a"] * 48), minigpt2.InputError,
     "vector must hold real numbers"),
    ("nearest_words: ragged vector", lambda m: nearest_words(m, [[1.0], [1.0, 2.0]]), minigpt2.InputError,
     "vector must be an array of 48 real numbers"),
    ("nearest_words: wrong width", lambda m: nearest_words(m, V[:5]), minigpt2.InputError,
     r"vector must have shape \(48,\), got shape \(5,\)"),
    ("nearest_words: k=2.5", lambda m: nearest_words(m, V, k=2.5), minigpt2.InputError,
     r"k must be an integer, got 2.5 \(float\)"),
    ("nearest_words: k=True", lambda m: nearest_words(m, V, k=True), minigpt2.InputError, "k must be an integer"),
    ("nearest_words: k too large", lambda m: nearest_words(m, V, k=10 ** 6), minigpt2.InputError,
     r"k must be in 1\.\.\d+ \(the vocabulary's words\), got 1000000"),
    ("nearest_words: layer=True", lambda m: nearest_words(m, V, space="ln1", layer=True), minigpt2.InputError,
     r"layer must be an integer, got True \(bool\)"),
    ("nearest_words: layer=1.0", lambda m: nearest_words(m, V, space="ln2", layer=1.0), minigpt2.InputError,
     "layer must be an integer"),
    ("nearest_words: layer out of range", lambda m: nearest_words(m, V, space="ln2", layer=3), minigpt2.InputError,
     r"layer must be in 0\.\.2, got 3"),
    ("nearest_words: layer for unembed", lambda m: nearest_words(m, V, layer=0), minigpt2.InputError,
     "layer= applies to"),
    ("nearest_words: space", lambda m: nearest_words(m, V, space=None), minigpt2.InputError, "space must be"),
    ("nearest_words: not a model", lambda m: nearest_words("gpt2", V), minigpt2.InputError,
     "expected a minigpt2.Model"),
    ("analyze: position=1.5", lambda m: analyze(m, "ab", position=1.5), minigpt2.InputError,
     r"position must be an integer, got 1.5 \(float\)"),
    ("analyze: position=True", lambda m: analyze(m, "ab", position=True), minigpt2.InputError,
     "position must be an integer"),
    ("analyze: position outside", lambda m: analyze(m, "ab", position=3), minigpt2.InputError,
     "position 3 is outside the prompt's 3 tokens"),
    ("analyze: heads=[(0.5, 0)]", lambda m: analyze(m, "ab", heads=[(0.5, 0)]), minigpt2.InputError,
     r"heads: the layer of \(0.5, 0\) must be an integer, got 0.5"),
    ("analyze: heads='0-0'", lambda m: analyze(m, "ab", heads="0-0"), minigpt2.InputError,
     r"heads must be a list of \(layer, head\) pairs, e.g. \[\(0, 1\)\], got '0-0'"),
    ("analyze: heads=['0-0']", lambda m: analyze(m, "ab", heads=["0-0"]), minigpt2.InputError,
     r"heads: each item must be a \(layer, head\) pair of integers, got '0-0'"),
    ("analyze: heads=[(0, 1, 2)]", lambda m: analyze(m, "ab", heads=[(0, 1, 2)]), minigpt2.InputError,
     "each item must be a"),
    ("analyze: head out of range", lambda m: analyze(m, "ab", heads=[(0, 4)]), minigpt2.InputError,
     r"head 0-4: head 4 is outside 0\.\.3"),
    ("analyze: neurons=[(2, 80)]", lambda m: analyze(m, "ab", neurons=[(2, 80)]), minigpt2.InputError,
     r"neuron 2-80: neuron 80 is outside 0\.\.79"),
    ("analyze: neurons=(1, 2)", lambda m: analyze(m, "ab", neurons=(1, 2)), minigpt2.InputError,
     r"neurons: each item must be a \(layer, neuron\) pair of integers, got 1"),
    ("analyze: k=True", lambda m: analyze(m, "ab", k=True), minigpt2.InputError, "k must be an integer"),
    ("analyze: k=0", lambda m: analyze(m, "ab", k=0), minigpt2.InputError, r"k must be >= 1, got 0"),
    ("analyze: bos='no'", lambda m: analyze(m, "ab", bos="no"), minigpt2.InputError,
     "bos must be True or False, got 'no'"),
    ("analyze: bias_threshold=True", lambda m: analyze(m, "ab", bias_threshold=True), minigpt2.InputError,
     "bias_threshold must be a finite number"),
    ("analyze: effects on 1 token", lambda m: analyze(m, "a", bos=False, effects=True), minigpt2.InputError,
     "need at least 2 tokens"),
    ("analyze: ids outside the vocabulary", lambda m: analyze(m, ids=[1, 300]), minigpt2.InputError,
     "token id 300 at position 1 is outside the vocabulary"),
    ("analyze: no ids", lambda m: analyze(m, ids=[]), minigpt2.InputError, "empty input"),
    ("analyze: not a model", lambda m: analyze(None, "ab"), minigpt2.InputError, "expected a minigpt2.Model"),
]


class Ran(Exception):
    """The forward pass started: an argument was not checked at the door."""


@pytest.mark.parametrize("case, call, error, message", API_BAD, ids=[r[0] for r in API_BAD])
def test_api_arguments_are_checked_before_any_work(case, call, error, message, tiny, monkeypatch):
    def ran(*a, **k):
        raise Ran(case)
    monkeypatch.setattr(minigpt2.Model, "run", ran)
    monkeypatch.setattr("analysis.search.lookup.build_vocab", ran)
    monkeypatch.setattr("analysis.search.lookup._VOCABS", {})
    if "k too large" in case:                      # this one needs the vocabulary's size: let it be built
        monkeypatch.undo()
    with pytest.raises(error, match=message):
        call(tiny)


ANY = st.one_of(st.none(), st.booleans(), st.integers(-5, 400), st.floats(allow_nan=True), st.text(max_size=4),
                st.lists(st.integers(-1, 5), max_size=3), st.tuples(st.floats(0, 3), st.integers(0, 3)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=ANY, k=ANY, heads=st.one_of(ANY, st.lists(ANY, max_size=3)), neurons=st.lists(ANY, max_size=2))
def test_fuzzed_analyze_arguments_raise_only_the_projects_error(tiny, position, k, heads, neurons):
    """Anything as position, k, heads or neurons: a minigpt2.Error at the door, or the run starts."""
    def ran(*a, **kw):
        raise Ran()
    real, minigpt2.Model.run = minigpt2.Model.run, ran
    try:
        analyze(tiny, "ab", position=position, k=k, heads=heads, neurons=neurons, progress=False)
    except (minigpt2.Error, Ran):
        pass
    finally:
        minigpt2.Model.run = real


@settings(max_examples=60, deadline=None)
@given(vector=st.one_of(ANY, st.lists(st.floats(), min_size=48, max_size=48)), k=ANY, layer=ANY,
       space=st.sampled_from(["unembed", "ln1", "ln2", "x", None]), metric=st.sampled_from(["cosine", "dot", 1]))
def test_fuzzed_nearest_words_arguments_raise_only_the_projects_error(tiny, vector, k, layer, space, metric):
    try:
        got = nearest_words(tiny, vector, space=space, layer=layer, k=k, metric=metric)
    except minigpt2.Error:
        return
    assert len(got) == k and all(isinstance(w, str) and np.isfinite(s) for w, s in got)


# -- finite but huge weights ----------------------------------------------------------------------------------

def scaled_model(folder: Path, factor: float) -> Path:
    t = load_file(str(folder / "model.safetensors"))
    t["wte.weight"] = (t["wte.weight"].astype(np.float64) * factor).astype(np.float32)
    save_file(t, str(folder / "model.safetensors"))
    return folder


def test_huge_embeddings_are_a_numeric_error_with_no_warning(work, capsys):
    """W_E x 1e20 passes the forward pass (the LayerNorms remove scale), then overflowed float32 in the
    analysis: raw RuntimeWarnings and wrong neuron words. Now: NumericError at the analysis' door."""
    m = minigpt2.load(scaled_model(work / "model", 1e20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.run(m.encode("ab"))                                    # the forward pass itself is fine
        with pytest.raises(minigpt2.NumericError, match=r"weight W_E reaches [0-9.]+e\+19, beyond the "):
            analyze(m, "ab", progress=False)
        with pytest.raises(minigpt2.NumericError, match="weight W_E reaches"):
            nearest_words(m, V)
    assert main(["analyze", "ab", "--model", str(work / "model"), "--out", str(work / "report")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minigpt2: error: weight W_E reaches") and err.count("\n") == 1
    assert not (work / "report").exists()


def test_neuron_words_are_exact_just_below_the_limit(work):
    """Embeddings scaled to half the limit: no warning, and every neuron's words are those of a float64
    brute-force search (cosine: the scale must not change them)."""
    from analysis.search.guard import value_limit
    from analysis.search.neurons import compute_neuron_meanings
    from analysis.search.spaces import build_vocab
    W_E = load_file(str(work / "model" / "model.safetensors"))["wte.weight"]
    m = minigpt2.load(scaled_model(work / "model", value_limit(48) / 2 / np.abs(W_E).max()))
    p = m.params
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.abs(p.W_E).max() > value_limit(48) / 2.01
        vocab = build_vocab(m, min_words=5)
        got = compute_neuron_meanings(m, vocab, 5, "cosine", progress=False)
    E = p.W_E[vocab.words].astype(np.float64)
    out_keys = E * p.lnf_w
    out_keys /= np.linalg.norm(out_keys, axis=1, keepdims=True)
    mu = E.mean(1, keepdims=True)
    ln = (E - mu) / np.sqrt(((E - mu) ** 2).mean(1, keepdims=True) + 1e-5)
    for l in range(m.cfg.n_layers):
        W_out = p.W_out[l].astype(np.float64)
        sims = (W_out / np.linalg.norm(W_out, axis=1, keepdims=True)) @ out_keys.T          # [m, words]
        assert (got.out_ids[l] == vocab.words[np.argsort(-sims, axis=1, kind="stable")[:, :5]]).all()
        in_keys = ln * p.ln2_w[l] + p.ln2_b[l]
        in_keys /= np.linalg.norm(in_keys, axis=1, keepdims=True)
        sims = p.W_in[l].T.astype(np.float64) @ in_keys.T
        assert (got.in_ids[l] == vocab.words[np.argsort(-sims, axis=1, kind="stable")[:, :5]]).all()


# -- the page's hash --------------------------------------------------------------------------------------------

def test_a_malformed_hash_does_not_break_the_page(tiny, tmp_path):
    """index.html#% threw in decodeURIComponent, and the position chooser after it was never set up."""
    pytest.importorskip("selenium", reason="selenium is not installed")
    browser, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (browser and driver_path):
        pytest.skip("no chromium and chromium-driver installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    page = analyze(tiny, "abc", k=3, progress=False).write(tmp_path / "r") / "index.html"
    o = Options()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu"]:
        o.add_argument(a)
    o.binary_location = browser
    d = webdriver.Chrome(service=Service(driver_path), options=o)
    try:
        for h in ["#%", '#%22%5D"]', "#%E0%A4%A", "#streams"]:
            d.get("about:blank")
            d.get(page.as_uri() + h)
            chooser_on, shown, tab = d.execute_script(
                "var s=document.querySelector('[data-chooser]');"
                "return [!s.closest('p').hidden, [].slice.call(s.closest('.mg2').querySelectorAll('tbody tr'))"
                ".filter(function(t){return t.dataset.off==='0'}).length,"
                "document.querySelector('.mg2r>input:checked').id]")
            assert chooser_on and shown > 0, h                 # the script ran to its end
            assert tab == ("streams" if h == "#streams" else "patterns"), h
    finally:
        d.quit()
