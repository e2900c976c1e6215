"""Bad input, damaged files and interrupted runs: one clear line, the right exit status, nothing lost.

Each row of BAD_CLI is one case of the reliability issue, asserted exactly: the exit status, the one line
on stderr, foreign files untouched, and an earlier report intact.
"""
import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import minigpt2
from analysis.cli import main
from analysis.report.writer import MANIFEST

from .conftest import FIXTURES, snapshot

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("private_cache")






def edit_config(d: Path, **change) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(change)
    (d / "config.json").write_text(json.dumps(cfg))


def run_cli(argv, capsys):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# -- the table of bad inputs -----------------------------------------------------------------------

def _foreign(tmp):          # a user's folder, with notes in it
    d = tmp / "notes"
    d.mkdir()
    (d / "todo.txt").write_text("buy milk")
    (d / "sub").mkdir()
    (d / "sub" / "x.csv").write_text("1,2")
    return d


def _symlink(tmp):
    link = tmp / "link"
    link.symlink_to(_foreign(tmp), target_is_directory=True)
    return link


def _a_file(tmp):
    f = tmp / "afile"
    f.write_text("data")
    return f


def _dangling(tmp):
    link = tmp / "dangling"
    link.symlink_to(tmp / "nowhere")
    return link


BAD_CLI = [
    # (case, argv with {m} the model and {out} the --out, setup of --out, exit, one-line message)
    ("out is a user's folder", ["analyze", "hi", "--model", "{m}", "--out", "{out}"], _foreign, 1,
     "is not empty and holds no minigpt2 report; choose a new or empty folder, or add --force"),
    ("out is checked before the model loads", ["analyze", "hi", "--model", "/no/such/model", "--out", "{out}"],
     _foreign, 1, "is not empty and holds no minigpt2 report"),
    ("out is a symlink to a user's folder", ["analyze", "hi", "--model", "{m}", "--out", "{out}"], _symlink, 1,
     "is not empty and holds no minigpt2 report"),
    ("out is the model's folder", ["analyze", "hi", "--model", "{m}", "--out", "{m}"], None, 1,
     "is not empty and holds no minigpt2 report"),
    ("out is a file", ["analyze", "hi", "--model", "{m}", "--out", "{out}"], _a_file, 1,
     "exists and is not a folder"),
    ("out is empty", ["analyze", "hi", "--model", "{m}", "--out", ""], None, 1, "--out is empty"),
    ("prompt is not UTF-8", ["analyze", "abc\udcff", "--model", "{m}", "--out", "{out}"], None, 1,
     "the prompt is not valid UTF-8: byte 0xff at character 3"),
    ("prompt is blank", ["analyze", "  ", "--model", "{m}", "--out", "{out}"], None, 1, "empty prompt"),
    ("position outside the prompt", ["analyze", "hi", "--model", "{m}", "--out", "{out}", "--position", "9"],
     None, 1, "position 9 is outside the prompt's 3 tokens"),
    ("model folder missing", ["generate", "x", "--model", "/no/such/dir"], None, 1, "no such directory"),
    ("generate: prompt not UTF-8", ["generate", "\udcc3(", "--model", "{m}"], None, 1,
     "not valid UTF-8: byte 0xc3 at character 0"),
    ("bias threshold NaN", ["analyze", "hi", "--model", "{m}", "--bias-threshold", "nan"], None, 2,
     "must be a finite number >= 0, got nan"),
    ("bias threshold negative", ["analyze", "hi", "--model", "{m}", "--bias-threshold", "-1"], None, 2,
     "must be a finite number >= 0, got -1"),
    ("make-checkpoint into a user's folder", ["make-checkpoint", "--like", "tiny", "--out", "{out}"], _foreign, 1,
     "is not empty; choose a new or empty folder, or add --force"),
    ("make-checkpoint --out empty", ["make-checkpoint", "--like", "tiny", "--out", "", "--force"], None, 1,
     "--out is empty"),
    ("make-checkpoint negative seed", ["make-checkpoint", "--like", "tiny", "--out", "{out}", "--seed", "-5"], None, 2,
     "must be an integer >= 0, got -5"),
    ("out is a dangling symlink", ["analyze", "hi", "--model", "/no/such/model", "--out", "{out}"], _dangling, 1,
     "is a symbolic link to nothing (or a loop)"),
    ("out is under a file", ["analyze", "hi", "--model", "/no/such/model", "--out", "{out}/sub"], _a_file, 1,
     "afile is a file, not a folder"),
    ("k not an integer", ["analyze", "hi", "--model", "{m}", "-k", "1.5"], None, 2,
     "argument -k: must be a positive integer, got '1.5'"),
    ("unknown metric", ["analyze", "hi", "--model", "{m}", "--metric", "foo"], None, 2,
     "argument --metric: invalid choice: 'foo'"),
]


@pytest.mark.parametrize("case, argv, setup, code, message", BAD_CLI, ids=[r[0] for r in BAD_CLI])
def test_bad_cli_input(case, argv, setup, code, message, tmp_path, model_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = setup(tmp_path) if setup else tmp_path / "report"
    before_out = snapshot(out.resolve()) if out.exists() and out.is_dir() else None
    before_model = snapshot(model_dir)
    argv = [a.replace("{m}", str(model_dir)).replace("{out}", str(out)) for a in argv]
    if code == 2:                                   # a bad option: one line too, exit status 2 (usage)
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.startswith("minigpt2: error: ") and err.count("\n") == 1
        return
    got, stdout, err = run_cli(argv, capsys)
    assert got == code
    assert err.startswith("minigpt2: error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err
    if before_out is not None:
        assert snapshot(out.resolve()) == before_out
    assert snapshot(model_dir) == before_model
    assert not (tmp_path / "report").exists()


def test_out_dot_and_cwd_are_refused_when_not_empty(tmp_path, model_dir, capsys, monkeypatch):
    _foreign(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    code, _, err = run_cli(["analyze", "hi", "--model", str(model_dir), "--out", "."], capsys)
    assert code == 1 and "is not empty and holds no minigpt2 report" in err
    assert snapshot(tmp_path) == before


def test_earlier_report_is_replaced_and_foreign_files_stay(tmp_path, model_dir, capsys):
    out = tmp_path / "rep"
    assert run_cli(["analyze", "a b", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)[0] == 0
    listed = [r["name"] for r in json.loads((out / MANIFEST).read_text())["files"]]
    assert sorted(listed) == sorted(p.name for p in out.iterdir() if p.name != MANIFEST)
    (out / "my-notes.txt").write_text("mine")
    (out / "extra.csv").write_text("not the report's")           # same kind of name, but not listed
    code, stdout, _ = run_cli(["analyze", "c d e", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)
    assert code == 0 and "out of 5 tokens" in stdout          # byte-level: BOS + 5 bytes
    assert (out / "my-notes.txt").read_text() == "mine" and (out / "extra.csv").read_text() == "not the report's"
    with open(out / "predictions.csv", encoding="utf-8") as f:
        assert len(list(csv.reader(f))) == 1 + 6                 # the new report's 6 positions


def test_a_name_added_to_the_manifest_by_hand_is_never_deleted(tmp_path, model_dir, capsys):
    """A listed name is deleted only while its content is what minigpt2 wrote (tests/test_folder_safety.py)."""
    out = tmp_path / "rep"
    assert run_cli(["analyze", "a b", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)[0] == 0
    (out / "old-table.csv").write_text("from an older version")
    m = json.loads((out / MANIFEST).read_text())
    m["files"].append("old-table.csv")
    m["files"].append("../escape.csv")                            # a damaged manifest is not trusted at all
    (out / MANIFEST).write_text(json.dumps(m))
    (tmp_path / "escape.csv").write_text("outside")
    code, _, err = run_cli(["analyze", "a b", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)
    assert code == 1 and "is not a minigpt2 report's manifest" in err   # an invalid manifest is not ours
    m["files"].remove("../escape.csv")
    (out / MANIFEST).write_text(json.dumps(m))
    assert run_cli(["analyze", "a b", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)[0] == 0
    assert (out / "old-table.csv").read_text() == "from an older version"
    assert (tmp_path / "escape.csv").read_text() == "outside"


def test_force_writes_beside_foreign_files_and_deletes_nothing(tmp_path, model_dir, capsys):
    out = _foreign(tmp_path)
    before = snapshot(out)
    code, _, _ = run_cli(["analyze", "hi", "--model", str(model_dir), "--out", str(out), "--force", "-k", "3"], capsys)
    assert code == 0
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before
    assert "index.html" in after and MANIFEST in after


def test_generate_says_when_it_stops_at_the_context(model_dir, capsys):
    code, stdout, err = run_cli(["generate", "ab", "-n", "40", "--model", str(model_dir)], capsys)
    assert code == 0 and stdout
    assert err == "minigpt2: note: stopped after 21 of 40 new tokens: the model's context holds 24 tokens\n"


def test_csv_cells_a_spreadsheet_would_evaluate_are_neutralised(tmp_path, model_dir, capsys):
    from analysis.report.table import csv_safe
    for cell, safe in [("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"), ("+1+2", "'+1+2"), ("-x", "'-x"), ("@SUM", "'@SUM"),
                       ("\tx", "'\tx"), ("\rx", "'\rx"), ("-1.5", "-1.5"), ("+3e-05", "+3e-05"), ("-", "'-"),
                       ("a=b", "a=b"), (" =x", " =x"), ("--", "'--")]:
        assert csv_safe(cell) == safe, cell
    out = tmp_path / "rep"
    code, _, _ = run_cli(["analyze", "=1+2", "--no-bos", "--model", str(model_dir), "--out", str(out), "-k", "3"],
                         capsys)
    assert code == 0
    with open(out / "predictions.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[1][1] == "'=" and rows[4][1] == "'=1+2"          # the prefixes: "=", "=1", "=1+", "=1+2"
    assert all(not c.startswith(("=", "+", "@")) for r in rows for c in r)


# -- config and weights ---------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"layer_norm_epsilon": float("nan")}, "layer_norm_epsilon must be a finite number > 0, got NaN"),
    ({"layer_norm_epsilon": -1}, "layer_norm_epsilon must be a finite number > 0, got -1"),
    ({"layer_norm_epsilon": "1e-5"}, "layer_norm_epsilon must be a finite number > 0"),
    ({"n_layer": 64.9}, "n_layer must be an integer, got 64.9"),
    ({"n_layer": "2"}, 'n_layer must be an integer, got "2"'),
    ({"n_layer": True}, "n_layer must be an integer, got true"),
    ({"n_head": 0}, "n_head must be in 1.."),
    ({"n_inner": 80.0}, "n_inner must be an integer"),
    ({"n_layer": 3000000}, "n_layer must be in 1..1048576, got 3000000"),
    ({"n_layer": 1000}, "config.json says n_layer=1000, but the file holds 3 layers"),
    ({"vocab_size": 10 ** 6}, "tensor 'wte.weight' has shape (300, 48), config.json implies (1000000, 48)"),
    ({"n_head": 5}, "n_embd=48 is not divisible by n_head=5"),
    ({"bos_token_id": 300}, "bos_token_id=300 is outside the vocabulary"),
])
def test_config_is_validated_before_anything_is_allocated(model_dir, change, message, capsys):
    edit_config(model_dir, **change)
    code, _, err = run_cli(["generate", "x", "--model", str(model_dir)], capsys)
    assert code == 1 and err.count("\n") == 1 and message in err, err


def test_a_tensor_under_both_key_layouts_is_refused(model_dir):
    t = load_file(str(model_dir / "model.safetensors"))
    t["transformer.ln_f.weight"] = t["ln_f.weight"] + 1
    save_file(t, str(model_dir / "model.safetensors"))
    with pytest.raises(minigpt2.LoadError, match="tensors 'ln_f.weight' and 'transformer.ln_f.weight' are the "
                                                 "same weight under two key layouts"):
        minigpt2.load(model_dir)


def write_bf16_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A safetensors file with every float32 tensor stored as bfloat16, written by hand from the format's
    spec (numpy cannot hold bf16). Returns the float32 values those bf16 bits stand for."""
    header, blobs, offset, exact = {}, [], 0, {}
    for name, a in tensors.items():
        bits = (np.ascontiguousarray(a, np.float32).view(np.uint32) >> 16).astype("<u2")   # truncation
        exact[name] = (bits.astype(np.uint32) << 16).view(np.float32)
        header[name] = {"dtype": "BF16", "shape": list(a.shape), "data_offsets": [offset, offset + bits.nbytes]}
        blobs.append(bits.tobytes())
        offset += bits.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return exact


def test_bfloat16_and_float16_checkpoints_load_exactly(model_dir):
    t = load_file(str(model_dir / "model.safetensors"))
    exact = write_bf16_safetensors(model_dir / "model.safetensors", t)
    m = minigpt2.load(model_dir)
    np.testing.assert_array_equal(m.params.W_E, exact["wte.weight"])
    np.testing.assert_array_equal(m.params.b_out[2], exact["h.2.mlp.c_proj.bias"])
    np.testing.assert_array_equal(m.params.W_in[1], exact["h.1.mlp.c_fc.weight"])
    assert np.abs(m.params.W_E - t["wte.weight"]).max() > 0                  # it really was rounded
    save_file({k: v.astype(np.float16) for k, v in t.items()}, str(model_dir / "model.safetensors"))
    m = minigpt2.load(model_dir)
    np.testing.assert_array_equal(m.params.W_pos, t["wpe.weight"].astype(np.float16).astype(np.float32))


# -- fuzzing: damaged files only ever raise minigpt2.Error -----------------------------------------

CLEAN = (FIXTURES / "tiny-hub" / "model.safetensors").read_bytes()
CLEAN_CONFIG = (FIXTURES / "tiny-hub" / "config.json").read_bytes()
HEADER_END = 8 + int.from_bytes(CLEAN[:8], "little")


def _load_and_run(d: Path) -> None:
    try:
        m = minigpt2.load(d)
        logits = m.logits(np.arange(5) % m.cfg.d_vocab)
    except minigpt2.Error:
        return
    assert np.isfinite(logits).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.one_of(st.integers(0, HEADER_END - 1), st.integers(0, len(CLEAN) - 1)),
                                st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, len(CLEAN))))
def test_fuzzed_safetensors_only_raise_the_projects_error(tmp_path_factory, edits, cut):
    d = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(FIXTURES / "tiny-hub", d, dirs_exist_ok=True)
    data = bytearray(CLEAN)
    for i, b in edits:
        data[i] = b
    (d / "model.safetensors").write_bytes(bytes(data[:cut] if cut is not None else data))
    _load_and_run(d)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, len(CLEAN_CONFIG) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzzed_config_only_raises_the_projects_error(tmp_path_factory, edits):
    d = tmp_path_factory.mktemp("fuzzcfg")
    shutil.copytree(FIXTURES / "tiny-hub", d, dirs_exist_ok=True)
    data = bytearray(CLEAN_CONFIG)
    for i, b in edits:
        data[i] = b
    (d / "config.json").write_bytes(bytes(data))
    _load_and_run(d)


def test_huge_weights_raise_numeric_error_not_nan(model_dir):
    t = load_file(str(model_dir / "model.safetensors"))
    t["h.0.mlp.c_proj.weight"] = np.full_like(t["h.0.mlp.c_proj.weight"], 3e38)
    save_file(t, str(model_dir / "model.safetensors"))
    m = minigpt2.load(model_dir)
    with pytest.raises(minigpt2.NumericError, match="non-finite from layer 1"):
        m.run([1, 2, 3])


def test_lone_surrogate_through_the_api_is_a_clear_error():
    m = minigpt2.load(FIXTURES / "tiny-hub")
    with pytest.raises(minigpt2.InputError, match=r"unpaired surrogate U\+D800 at character 1"):
        m.encode("a\ud800")


# -- caches heal themselves -----------------------------------------------------------------------

def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "bitflip":
        data[-3] ^= 0x10
        path.write_bytes(bytes(data))
    elif how == "garbage":
        path.write_bytes(b"PK\x03\x04 not a cache at all")
    elif how == "header-not-an-object":        # valid JSON, of the wrong shape
        n = int.from_bytes(data[17:25], "little")
        path.write_bytes(bytes(data[:25]) + b"[]" + b" " * (n - 2) + bytes(data[25 + n:]))
    elif how == "zero-data":                   # right size, right header, contents zeroed
        start = len(data) - 4096
        data[start:] = bytes(len(data) - start)
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "bitflip", "garbage", "header-not-an-object", "zero-data"])
def test_damaged_neuron_cache_warns_once_and_is_rebuilt(how, tmp_path, capsys):
    from analysis.search.neurons import neuron_meanings
    from analysis.search.spaces import build_vocab
    m = minigpt2.load(FIXTURES / "tiny-hub")
    vocab = build_vocab(m, min_words=3)
    fresh = neuron_meanings(m, vocab, 3, "cosine", progress=False)
    (path,) = (tmp_path / "cache").glob("neurons-*.bin")
    _damage(path, how)
    capsys.readouterr()
    healed = neuron_meanings(m, vocab, 3, "cosine", progress=False)
    err = capsys.readouterr().err
    assert err.startswith(f"minigpt2: warning: cache file {path} is ") and err.endswith("; rebuilding it\n")
    assert err.count("\n") == 1
    for name in fresh.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(healed, name), getattr(fresh, name))
    neuron_meanings(m, vocab, 3, "cosine", progress=False)                  # rebuilt: silent now
    assert capsys.readouterr().err == ""


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.integers(0, 3), st.data())
def test_cache_checksum_sees_any_bit_flip_truncation_and_block_swap(raw, blocks, data):
    from analysis.search.diskcache import CHECK_BLOCK, checksum
    rng = np.random.default_rng(len(raw))
    a = np.concatenate([rng.integers(0, 256, blocks * 8 * CHECK_BLOCK).astype(np.uint8), np.frombuffer(raw, np.uint8)])
    bit = data.draw(st.integers(0, 8 * a.size - 1))
    flipped = a.copy()
    flipped[bit // 8] ^= np.uint8(1 << (bit % 8))
    assert checksum(flipped) != checksum(a)
    if a.size >= 8:                                        # a word's top bit: lost to an even weight
        top = a.copy()
        top[7] ^= np.uint8(0x80)
        assert checksum(top) != checksum(a)
    assert checksum(a[:-1]) != checksum(a)
    if blocks >= 2:                                        # two different blocks of words, swapped
        b = 8 * CHECK_BLOCK
        assert checksum(np.concatenate([a[b:2 * b], a[:b], a[2 * b:]])) != checksum(a)


def test_cache_file_of_an_older_format_is_rebuilt_silently_and_a_foreign_one_warns(tmp_path, capsys):
    from analysis.search import diskcache
    path, x = tmp_path / "c.bin", np.arange(6, dtype=np.int64)
    expect = {"x": (np.int64, (6,))}
    assert diskcache.save(path, "k", {"x": x})
    data = bytearray(path.read_bytes())
    data[len(diskcache.MAGIC) - 2] ^= 0x7                  # the version byte: an older minigpt2 wrote it
    path.write_bytes(bytes(data))
    assert diskcache.load(path, "k", expect) is None and capsys.readouterr().err == ""
    data[:4] = b"\x89PNG"
    path.write_bytes(bytes(data))
    assert diskcache.load(path, "k", expect) is None
    assert capsys.readouterr().err == f"minigpt2: warning: cache file {path} is not a minigpt2 cache file; rebuilding it\n"


def test_cached_normalised_vocabulary_is_layernorm_of_the_current_embeddings(tmp_path):
    from analysis.search.spaces import build_vocab
    m = minigpt2.load(FIXTURES / "tiny-hub")

    def expected(W_E, words):                            # LayerNorm without gain and bias, in float64
        x = W_E[words].astype(np.float64)
        mu, sd = x.mean(1, keepdims=True), np.sqrt(x.var(1, keepdims=True) + 1e-5)
        return np.hstack([(x - mu) / sd, mu / sd]), sd[:, 0]

    for step in range(3):                                # build, read back, then new weights: rebuilt
        if step == 2:
            m.params.W_E[:] = m.params.W_E[::-1] * np.float32(1.5)
        v = build_vocab(m, min_words=3, use_cache=True)
        aug, sd = expected(m.params.W_E, v.words)
        np.testing.assert_allclose(v.normed_aug, aug, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(v.row_std, sd, rtol=1e-6)
        assert v.normed_aug.flags.writeable == (step != 1)   # step 1: the memory-mapped cache file
    assert len(list((tmp_path / "cache").glob("normed-*.bin"))) == 2


def test_loaded_cache_arrays_are_read_only_views_of_the_file(tmp_path):
    from analysis.search import diskcache
    path = tmp_path / "c.bin"
    x = np.arange(10, dtype=np.float32)
    assert diskcache.save(path, "k", {"x": x})
    found = diskcache.load(path, "k", {"x": (np.float32, (10,))})
    np.testing.assert_array_equal(found["x"], x)
    assert not found["x"].flags.writeable
    with pytest.raises(ValueError):
        found["x"][0] = 1


def test_damaged_head_cache_never_changes_the_tables(tmp_path, capsys, monkeypatch):
    """A NaN-filled projected vocabulary used to change hundreds of pattern rows silently."""
    from analysis import analyze
    from analysis.views import context
    m = minigpt2.load(FIXTURES / "tiny-hub")
    ids = np.arange(20) % 299
    monkeypatch.setattr(context, "MIN_TOKENS", 8)                          # the low-rank (cached) path
    clean = analyze(m, ids=ids, k=3, progress=False)
    files = sorted((tmp_path / "cache").glob("heads-*/*.bin"))
    assert len(files) == 2 * m.cfg.n_layers
    for f in files[:2]:
        data = bytearray(f.read_bytes())
        data[-400:] = np.full(100, np.nan, np.float32).tobytes()
        f.write_bytes(bytes(data))
    capsys.readouterr()
    again = analyze(m, ids=ids, k=3, progress=False)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("checksum mismatch" in line for line in err)
    assert again["patterns"].rows == clean["patterns"].rows and again["messages"].rows == clean["messages"].rows


def test_stale_temporary_files_are_swept_and_live_or_foreign_ones_kept(tmp_path, model_dir, capsys):
    """A temporary is stale when no process holds its lock, whatever PID its name holds."""
    from minigpt2.atomic import TMP_MARK
    out = tmp_path / "rep"
    assert run_cli(["analyze", "hi", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)[0] == 0
    stale = out / f".index.html{TMP_MARK}0123456789abcdef"                 # left by a killed run
    older = out / f".index.html{TMP_MARK}{os.getpid()}-0123abcd"            # an older minigpt2's name, a live PID
    live = out / f".index.html{TMP_MARK}fedcba9876543210"                  # another run, still going
    for f in (stale, older, live):
        f.write_text("a temporary")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1]); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
                               str(live)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        mine = tmp_path / "mine.txt"
        mine.write_text("a user's file")
        foreign = {out / ".index.html.bak": "a user's backup", out / f".notes{TMP_MARK}0123-xyz": "not our pattern",
                   out / f".notes{TMP_MARK}0123456789abcdef.txt": "not our pattern either"}
        for f, text in foreign.items():
            f.write_text(text)
        link = out / f".stream.csv{TMP_MARK}89abcdef01234567"                  # our pattern, but a symlink
        link.symlink_to(mine)
        folder = out / f".x{TMP_MARK}0123456701234567"                         # our pattern, but a folder
        folder.mkdir()
        assert run_cli(["analyze", "hi", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)[0] == 0
        assert not stale.exists() and not older.exists() and live.read_text() == "a temporary"
        assert all(f.read_text() == text for f, text in foreign.items())
        assert link.is_symlink() and mine.read_text() == "a user's file" and folder.is_dir()
    finally:
        holder.stdin.close()
        holder.wait()


def test_a_foreign_file_named_like_the_manifest_is_never_replaced(tmp_path, model_dir, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / MANIFEST).write_text("my own json, not a report's")
    before = snapshot(out)
    code, _, err = run_cli(["analyze", "hi", "--model", str(model_dir), "--out", str(out), "--force"], capsys)
    assert code == 1 and "is not a minigpt2 report's manifest" in err and snapshot(out) == before


def test_report_files_that_are_symlinks_are_replaced_not_followed(tmp_path, model_dir, capsys):
    out = tmp_path / "rep"
    assert run_cli(["analyze", "hi", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)[0] == 0
    outside = tmp_path / "precious.html"
    outside.write_text("not the report's")
    (out / "index.html").unlink()
    (out / "index.html").symlink_to(outside)
    before = snapshot(out)
    code, _, err = run_cli(["analyze", "hi there", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)
    assert code == 1 and err == (f"minigpt2: error: {out / 'index.html'} was not written by minigpt2, or has changed "
                                 "since; the report would replace it: move it away, or add --force to replace it\n")
    assert snapshot(out) == before                                    # a link is not a file the report wrote
    assert run_cli(["analyze", "hi there", "--model", str(model_dir), "--out", str(out), "-k", "3", "--force"],
                   capsys)[0] == 0
    assert outside.read_text() == "not the report's"
    assert not (out / "index.html").is_symlink() and "<!DOCTYPE html>" in (out / "index.html").read_text()


def test_a_failed_write_removes_only_the_folders_it_created(tmp_path, model_dir, capsys, monkeypatch):
    def full(*a, **k):
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr("minigpt2.atomic.Stage.add", full)
    (tmp_path / "mine").mkdir()                              # the user's empty folder: it must stay
    (tmp_path / "notes.txt").write_text("a user's file")
    outside_cache = lambda: {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("cache")}  # noqa: E731
    before = outside_cache()
    for out in (tmp_path / "new" / "deeper", tmp_path / "mine" / "deeper"):
        code, _, err = run_cli(["analyze", "hi", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)
        assert code == 1 and "No space left on device (injected)" in err
        assert outside_cache() == before                     # its manifest and folders gone; "mine" as it was
    assert not (tmp_path / "new").exists() and (tmp_path / "mine").is_dir()


def test_a_failed_write_keeps_an_earlier_empty_manifest(tmp_path, model_dir, capsys, monkeypatch):
    out = tmp_path / "rep"
    out.mkdir()
    (out / MANIFEST).write_text(json.dumps({"tool": "minigpt2", "files": []}))
    before = snapshot(out)

    def full(*a, **k):
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr("minigpt2.atomic.Stage.add", full)
    assert run_cli(["analyze", "hi", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)[0] == 1
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST]           # still a report folder
    assert json.loads((out / MANIFEST).read_text()) == json.loads(before[MANIFEST])


# -- interrupted runs -------------------------------------------------------------------------------

INTERRUPT = textwrap.dedent("""
    import os, signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)   # a background pytest hands SIGINT down ignored
    from analysis.views import tables
    from analysis.search import diskcache
    sig = getattr(signal, sys.argv[1])
    where = sys.argv[2]
    if where == "report":
        real = tables.Table.to_csv
        def to_csv(self, path):
            real(self, path)
            if self.name == "neurons":
                os.kill(os.getpid(), sig)
        tables.Table.to_csv = to_csv
    else:
        import contextlib
        real_atomic = diskcache.atomic_file
        @contextlib.contextmanager
        def atomic_file(path):                   # the first cache file: signalled once its temporary is written
            with real_atomic(path) as tmp:
                yield tmp
                print("TEMPORARY", tmp, os.path.getsize(tmp), flush=True)
                os.kill(os.getpid(), sig)
        diskcache.atomic_file = atomic_file
    from analysis.cli import main
    sys.exit(main(sys.argv[3:]))
""")


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143), ("SIGKILL", -9)])
@pytest.mark.parametrize("where", ["report", "cache"])
def test_interrupted_run_leaves_nothing_partial(sig, code, where, tmp_path, model_dir, capsys):
    out = tmp_path / "rep"
    assert run_cli(["analyze", "first", "--model", str(model_dir), "--out", str(out), "-k", "3", "--no-cache"],
                   capsys)[0] == 0
    before = snapshot(out)
    env = {**os.environ, "MINIGPT2_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", INTERRUPT, sig, where, "analyze", "second", "--model", str(model_dir),
                        "--out", str(out), "-k", "3"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == code, r.stderr
    if code > 0:
        assert r.stderr.strip().splitlines()[-1] in ("minigpt2: interrupted", "minigpt2: terminated")
        assert "Traceback" not in r.stderr
    kept = {k: v for k, v in snapshot(out).items() if ".minigpt2-tmp-" not in k}
    assert kept == before                                                   # the earlier report, intact
    cache = tmp_path / "cache"
    debris = [p for p in cache.rglob("*") if ".minigpt2-tmp-" in p.name] if cache.exists() else []
    if where == "cache":                         # the signal came while a written temporary cache file existed
        (line,) = [x for x in r.stdout.splitlines() if x.startswith("TEMPORARY ")]
        temporary, size = Path(line.split()[1]), int(line.split()[2])
        assert size > 0 and ".minigpt2-tmp-" in temporary.name
        assert [p.name for p in debris] == ([] if code > 0 else [temporary.name])   # it printed a held-folder path
    if code > 0:
        assert debris == [] and snapshot(out) == before
    else:                                        # SIGKILL runs no cleanup; the next run sweeps what it left
        assert run_cli(["analyze", "third", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)[0] == 0
        assert [p for p in out.iterdir() if ".minigpt2-tmp-" in p.name] == []
        assert [p for p in cache.rglob("*") if ".minigpt2-tmp-" in p.name] == []


def test_non_utf8_argument_through_a_real_process(model_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "analysis.cli", "analyze", b"abc\xff", "--model", str(model_dir),
                        "--out", str(tmp_path / "r")], capture_output=True, env=env, timeout=300)
    assert r.returncode == 1
    assert r.stderr == b"minigpt2: error: the prompt is not valid UTF-8: byte 0xff at character 3; pass UTF-8 text\n"


def _fail_fifth_rename(monkeypatch) -> None:
    """The fifth os.replace of a temporary file fails as a full disk would (after the manifest and three
    report files are in place)."""
    import minigpt2.atomic as atomic
    real, calls = os.replace, []

    def flaky(a, b, **kw):
        calls.append(b)
        if len(calls) == 5 and ".minigpt2-tmp-" in str(a):
            raise OSError(28, "No space left on device (injected)")
        return real(a, b, **kw)

    monkeypatch.setattr(atomic.os, "replace", flaky)


def test_a_failed_rename_restores_the_earlier_report(tmp_path, model_dir, capsys, monkeypatch):
    """The renames are one unit: if one fails midway, the files already replaced are put back."""
    out = tmp_path / "rep"
    assert run_cli(["analyze", "first", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)[0] == 0
    before = snapshot(out)
    _fail_fifth_rename(monkeypatch)
    code, _, err = run_cli(["analyze", "second", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)
    assert code == 1 and "No space left on device (injected)" in err
    assert snapshot(out) == before


def test_a_failed_rename_puts_back_a_report_file_that_was_a_symlink(tmp_path, model_dir, capsys, monkeypatch):
    """A symlink in place of a report file is replaced, never followed; if the write then fails, the link
    itself comes back, pointing where it pointed."""
    out = tmp_path / "rep"
    assert run_cli(["analyze", "first", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)[0] == 0
    outside = tmp_path / "precious.csv"
    outside.write_text("a user's file")
    (out / "patterns.csv").unlink()
    (out / "patterns.csv").symlink_to(outside)                # renamed first, so replaced before the failure
    _fail_fifth_rename(monkeypatch)
    code, _, err = run_cli(["analyze", "second", "--model", str(model_dir), "--out", str(out), "-k", "3", "--force"],
                           capsys)
    assert code == 1 and "No space left on device (injected)" in err
    assert (out / "patterns.csv").is_symlink() and os.readlink(out / "patterns.csv") == str(outside)
    assert outside.read_text() == "a user's file"
    assert [p for p in out.iterdir() if ".minigpt2-tmp-" in p.name] == []


def test_a_folder_in_place_of_a_report_file_is_named_before_anything_changes(tmp_path, model_dir, capsys):
    out = tmp_path / "rep"
    assert run_cli(["analyze", "first", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)[0] == 0
    (out / "index.html").unlink()
    (out / "index.html").mkdir()
    before = snapshot(out)
    code, _, err = run_cli(["analyze", "second", "--model", str(model_dir), "--out", str(out), "-k", "3"], capsys)
    assert code == 1 and f"{out / 'index.html'} is a folder, not a file" in err
    assert snapshot(out) == before


def test_make_checkpoint_files_are_readable_and_an_interrupt_leaves_nothing(tmp_path, monkeypatch):
    from minigpt2.checkpoint import make_checkpoint
    from minigpt2.config import KNOWN_CONFIGS
    old = os.umask(0o022)
    try:
        d = make_checkpoint(tiny_like(KNOWN_CONFIGS), tmp_path / "ck")
        assert {p.name: p.stat().st_mode & 0o777 for p in d.iterdir()} == {
            "config.json": 0o644, "model.safetensors": 0o644, "vocab.json": 0o644, "merges.txt": 0o644}
    finally:
        os.umask(old)
    import safetensors.numpy

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.numpy, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_checkpoint(tiny_like(KNOWN_CONFIGS), tmp_path / "ck2")
    assert not (tmp_path / "ck2").exists()


def tiny_like(known):
    from dataclasses import replace
    return replace(known["tiny"], d_vocab=300, n_layers=1)          # byte-level vocabulary: no BPE files needed
