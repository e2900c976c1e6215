"""Corpus mode (minigpt2 corpus): the store against a brute-force pass written here, the same store from any
cluster (1 or 2 local workers, a `dask scheduler` + `dask worker` pair, any shard size), resuming a killed
run, the Parquet files read back, and every refused input as one line that touches nothing.

One LocalCluster (2 workers) is shared by the module: most runs reach it with --scheduler, the same code
path as a remote cluster; one run starts its own with --workers 1.
"""
from __future__ import annotations

import html
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigpt2
from analysis.cli import main
from analysis.search.spaces import show_token

from .conftest import FIXTURES, snapshot

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parent.parent
MODEL = FIXTURES / "tiny-hub"
SEQ, TOP = 7, 3                     # short windows (n_ctx is 24), an odd k: a pair of tied values straddles it
TEXT_A = "The baseball player hit a home run, and the crowd stood up."
TEXT_B = "hello world, this is a test of the corpus mode"
TEXT_C = "the cat sat on the mat"
TABLES = ("neurons.parquet", "neuron_stats.parquet", "heads.parquet")


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory) -> list[str]:
    """A .txt, a .jsonl whose doc 2 repeats doc 0 (every value tied) and has a blank line, a .parquet with
    a null row: documents whose lengths are not multiples of SEQ (short last windows)."""
    d = tmp_path_factory.mktemp("corpus")
    (d / "a.txt").write_text(TEXT_A, encoding="utf-8")
    (d / "b.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in (TEXT_B, TEXT_C, TEXT_B))
                               .replace(json.dumps({"text": TEXT_C}), json.dumps({"text": TEXT_C}) + "\n"),
                               encoding="utf-8")
    pq.write_table(pa.table({"text": ["a parquet row", None, TEXT_C + "!"], "n": [1, 2, 3]}), d / "c.parquet")
    return [str(d / "a.txt"), str(d / "b.jsonl"), str(d / "c.parquet")]


@pytest.fixture(scope="module", autouse=True)
def module_cache(tmp_path_factory):
    """MINIGPT2_CACHE for this module and every worker it starts (they keep the mapped weights there)."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("MINIGPT2_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def scheduler():
    """The address of a LocalCluster of 2 single-threaded worker processes, shared by the module."""
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as lc:
        yield lc.scheduler_address


def corpus(files, out, *more, model=MODEL) -> int:
    return main(["corpus", *files, "--model", str(model), "--out", str(out), "--seq-len", str(SEQ),
                 "--top", str(TOP), "--shard-tokens", "10", *more])


@pytest.fixture(scope="module")
def store(corpus_files, scheduler, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stores") / "store"
    assert corpus(corpus_files, out, "--scheduler", scheduler) == 0
    return out


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- the selection alone: any grouping into shards and batches gives the brute force's top k ---------------
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 5), st.data())
def test_top_k_of_any_shards_and_batches_is_the_sorted_brute_force(k, n, rows, data):
    """Values drawn from a few integers (ties everywhere), keys ascending, cut into random shards, each folded
    in random batches, the shards tree-merged: the top k by (value desc, key asc) of every row."""
    from analysis.corpus.topk import Partial, fold, ranked, tree_merge

    vals = np.array(data.draw(st.lists(st.lists(st.integers(-2, 2), min_size=n, max_size=n), min_size=rows,
                                       max_size=rows)), np.float32)
    keys = np.cumsum(np.array(data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)), np.int64))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=5)))) if n > 1 else []
    parts = []
    for a, b in zip([0, *cuts], [*cuts, n]):
        top = (np.zeros((rows, 0), np.float32), np.zeros((rows, 0), np.int64))
        inner = sorted(set(data.draw(st.lists(st.integers(a + 1, b - 1), max_size=3)))) if b - a > 1 else []
        for c, d in zip([a, *inner], [*inner, b]):
            top = fold(*top, vals[:, c:d], keys[c:d], k)
        zeros = np.zeros(rows)
        parts.append(Partial(*top, zeros, zeros, zeros, *top, zeros, b - a))
    merged = tree_merge(parts, k)
    got = ranked(merged.n_vals, merged.n_keys)
    for r in range(rows):
        want = sorted(zip(-vals[r], keys))[:k]
        assert [(-v, key) for v, key in want] == list(zip(got[0][r].tolist(), got[1][r].tolist()))


# -- the brute force: every window run alone, every candidate listed, sorted by (-value, place) ----------------
def documents(files) -> list[tuple[str, int, str]]:
    """(file, doc number, text), read here from the files' known contents."""
    a, b, c = files
    return [(a, 0, TEXT_A), (b, 0, TEXT_B), (b, 1, TEXT_C), (b, 3, TEXT_B), (c, 0, "a parquet row"),
            (c, 2, TEXT_C + "!")]


@pytest.fixture(scope="module")
def brute(corpus_files):
    from threadpoolctl import threadpool_limits

    model = minigpt2.load(MODEL)
    L, H, m = model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_mlp
    neurons = [[] for _ in range(L * m)]
    heads = [[] for _ in range(L * H)]
    total, acts_sum, acts_pos, acts_max = 0, np.zeros(L * m), np.zeros(L * m), np.full(L * m, -np.inf)
    on0 = np.zeros(L * H)
    with threadpool_limits(1):                                      # as the workers run: one BLAS thread
        for fi, (name, doc, text) in enumerate(documents(corpus_files)):
            ids = model.encode(text, bos=False)
            for w0 in range(0, len(ids), SEQ):
                tr = model.run(np.concatenate([[model.cfg.bos_token_id], ids[w0:w0 + SEQ]]))
                T = tr.n_tokens - 1
                for p in range(1, T + 1):
                    total += 1
                    place = (corpus_files.index(name), doc, w0 + p - 1)
                    for l in range(L):
                        for n in range(m):
                            v = float(tr.mlp_acts[l, p, n])
                            neurons[l * m + n].append((-v, place, name))
                            acts_sum[l * m + n] += v
                            acts_pos[l * m + n] += v > 0
                            acts_max[l * m + n] = max(acts_max[l * m + n], v)
                        for h in range(H):
                            on0[l * H + h] += float(tr.attn[l, h, p, 0])
                            for s in range(1, p + 1) if p >= 2 else ():   # position 1: no choice
                                heads[l * H + h].append((-float(tr.attn[l, h, p, s]), place, w0 + s - 1, name))
    return {"model": model, "neurons": [sorted(c)[:TOP] for c in neurons], "heads": [sorted(c)[:TOP] for c in heads],
            "tokens": total, "mean": acts_sum / total, "frac": acts_pos / total, "max": acts_max, "on0": on0 / total}


def test_neurons_top_k_equals_a_brute_force_pass_ties_to_the_earlier_document(store, brute):
    t = pq.read_table(store / "neurons.parquet").to_pylist()
    m = brute["model"].cfg.d_mlp
    assert len(t) == len(brute["neurons"]) * TOP
    straddled = 0
    for r in t:
        want = brute["neurons"][r["layer"] * m + r["neuron"]][r["rank"] - 1]
        assert (r["file"], r["doc"], r["token_index"]) == (want[2], want[1][1], want[1][2]), r
        assert r["activation"] == pytest.approx(-want[0], rel=1e-6, abs=1e-7)
    for rows in brute["neurons"]:                                   # the fixture did make ties that matter
        straddled += rows[-1][0] == rows[-2][0]
    assert straddled > 0


def test_heads_top_k_equals_a_brute_force_pass(store, brute):
    t = pq.read_table(store / "heads.parquet").to_pylist()
    H = brute["model"].cfg.n_heads
    assert len(t) == len(brute["heads"]) * TOP
    for r in t:
        want = brute["heads"][r["layer"] * H + r["head"]][r["rank"] - 1]
        assert (r["file"], r["doc"], r["token_index"], r["source_index"]) == (want[3], want[1][1], want[1][2], want[2])
        assert r["attention"] == pytest.approx(-want[0], rel=1e-6, abs=1e-7)
        assert r["source_index"] <= r["token_index"] and r["token_index"] - r["source_index"] < SEQ


def test_neuron_stats_and_attention_on_0_against_the_brute_force(store, brute):
    stats = pq.read_table(store / "neuron_stats.parquet").to_pydict()
    m = brute["model"].cfg.d_mlp
    i = np.array(stats["layer"]) * m + np.array(stats["neuron"])
    assert sorted(i.tolist()) == list(range(len(brute["mean"])))
    np.testing.assert_allclose(stats["mean"], brute["mean"][i], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(stats["frac_active"], brute["frac"][i])
    np.testing.assert_allclose(stats["max"], brute["max"][i], rtol=1e-6)
    assert set(stats["tokens"]) == {brute["tokens"]}
    heads = pq.read_table(store / "heads.parquet").to_pydict()
    H = brute["model"].cfg.n_heads
    j = np.array(heads["layer"]) * H + np.array(heads["head"])
    np.testing.assert_allclose(heads["attention_on_0"], brute["on0"][j], rtol=1e-5)


def test_contexts_mark_the_token_within_its_window(store, corpus_files, brute):
    """A context: up to 10 tokens before the example from its own window, the token in ⟦ ⟧, 4 after it in the
    document; a head's source in ⟨ ⟩."""
    model = brute["model"]
    texts = {(f, d): t for f, d, t in documents(corpus_files)}

    def shown_of(r):
        ids = model.encode(texts[(r["file"], r["doc"])], bos=False)
        return [show_token(s) for s in model.token_strings(ids)]

    for r in pq.read_table(store / "neurons.parquet").to_pylist()[:60]:
        shown = shown_of(r)
        t, w0 = r["token_index"], r["token_index"] // SEQ * SEQ
        assert r["token"] == shown[t]
        assert r["context"] == "".join(shown[max(w0, t - 10):t]) + "⟦" + shown[t] + "⟧" + "".join(shown[t + 1:t + 5])
    checked = 0
    for r in pq.read_table(store / "heads.parquet").to_pylist():
        s, t = r["source_index"], r["token_index"]
        if t - s in (1, 2):
            shown = shown_of(r)
            assert "⟨" + shown[s] + "⟩" + "".join(shown[s + 1:t]) + "⟦" + shown[t] + "⟧" in r["context"]
            assert r["source_token"] == shown[s] and r["token"] == shown[t]
            checked += 1
    assert checked


def test_the_store_reads_back_with_pyarrow_as_documented(store, corpus_files):
    import hashlib

    from analysis.corpus.shard import model_fingerprint

    assert set(files_of(store)) == {*TABLES, "minigpt2-corpus.json"}        # the shards are gone
    schemas = {n: pq.read_schema(store / n) for n in TABLES}
    assert schemas["neurons.parquet"].names == ["layer", "neuron", "rank", "activation", "file", "doc",
                                                "token_index", "token", "context"]
    assert schemas["neuron_stats.parquet"].names == ["layer", "neuron", "mean", "max", "frac_active", "tokens"]
    assert schemas["heads.parquet"].names == ["layer", "head", "rank", "attention", "file", "doc", "token_index",
                                              "token", "source_index", "source_token", "context", "attention_on_0"]
    assert schemas["neurons.parquet"].field("activation").type == pa.float32()
    man = json.loads((store / "minigpt2-corpus.json").read_text())
    assert man["state"] == "complete" and man["settings"]["seq_len"] == SEQ and man["settings"]["top"] == TOP
    assert man["model"]["fingerprint"] == model_fingerprint(minigpt2.load(MODEL))
    assert [(f["name"], f["size"], f["sha256"]) for f in man["inputs"]] == [
        (f, os.path.getsize(f), hashlib.sha256(Path(f).read_bytes()).hexdigest()) for f in corpus_files]
    assert {f["name"]: f["sha256"] for f in man["files"]} == {
        n: hashlib.sha256((store / n).read_bytes()).hexdigest() for n in TABLES}
    assert man["tokens"]["documents"] == 6


# -- the same store from any cluster ----------------------------------------------------------------------
def test_one_local_worker_and_another_shard_size_give_the_same_store(store, corpus_files, tmp_path):
    assert corpus(corpus_files, tmp_path / "one", "--workers", "1") == 0
    assert files_of(tmp_path / "one") == files_of(store)
    assert main(["corpus", *corpus_files, "--model", str(MODEL), "--out", str(tmp_path / "big"), "--seq-len",
                 str(SEQ), "--top", str(TOP), "--workers", "1"]) == 0          # one shard in all
    big = files_of(tmp_path / "big")
    assert all(big[n] == files_of(store)[n] for n in TABLES)


def test_a_cluster_with_no_workers_is_named_once_and_the_run_ends_the_same_when_a_worker_joins(
        store, corpus_files, tmp_path, monkeypatch):
    """A --scheduler cluster without workers: the run says so (once, at two checks apart), waits as Dask does,
    and when a worker joins it ends with the same store as any other cluster."""
    import logging

    from analysis.corpus import engine

    monkeypatch.setattr(engine, "NO_WORKERS_S", 0.05)
    said, waiting, errors = [], threading.Event(), []

    def say(line: str) -> None:
        said.append(line)
        if line.startswith("waiting for Dask workers"):
            waiting.set()

    def run(address: str) -> None:
        try:
            model = minigpt2.load(MODEL)
            model.source = str(MODEL)                               # as `corpus --model MODEL` records it
            engine.build_store(corpus_files, model, str(MODEL.resolve()), tmp_path / "late", seq_len=SEQ,
                               top=TOP, scheduler=address, shard_tokens=10, say=say)
        except BaseException as e:                                  # noqa: BLE001 (reported by the test)
            errors.append(e)

    with distributed.LocalCluster(n_workers=0, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as lc:
        t = threading.Thread(target=run, args=(lc.scheduler_address,), daemon=True)
        t.start()
        assert waiting.wait(60), (said, errors)
        lc.scale(1)
        t.join(120)
    assert not t.is_alive() and not errors, errors
    waits = [line for line in said if line.startswith("waiting")]
    assert len(waits) == 1 and lc.scheduler_address in waits[0] and "dask worker" in waits[0]
    assert files_of(tmp_path / "late") == files_of(store)


def test_workers_that_load_other_weights_than_the_client_stop_the_run_and_leave_no_folder(scheduler, corpus_files,
                                                                                        tmp_path):
    """The model folder changed between the client's load and the workers' (or differs on another machine):
    the first shard fails with one line naming it, and the store folder this run made is gone again."""
    from analysis.corpus import engine
    from minigpt2.errors import LoadError

    model = minigpt2.load(MODEL)
    model.params.W_in[0, 0, 0] += 1.0                               # what the client ran is not what the files hold
    out = tmp_path / "new" / "store"
    with pytest.raises(LoadError, match="other weights .* same model files"):
        engine.build_store(corpus_files, model, str(MODEL.resolve()), out, seq_len=SEQ, top=TOP,
                           scheduler=scheduler, shard_tokens=10, say=lambda line: None)
    assert list(tmp_path.iterdir()) == []


def test_workers_map_the_weights_from_the_cache_and_never_use_a_damaged_copy(store, corpus_files, module_cache,
                                                                            tmp_path):
    model = minigpt2.load(MODEL)
    (folder,) = module_cache.glob("corpus-params-*")
    mapped = np.load(folder / "W_in.npy", mmap_mode="r")
    np.testing.assert_array_equal(mapped, model.params.W_in)
    data = bytearray((folder / "W_in.npy").read_bytes())           # damaged: zeros in the middle of the data
    start = len(data) - mapped.nbytes // 2
    data[start:start + 64] = bytes(64)
    assert np.load(io.BytesIO(data)).tobytes() != model.params.W_in.tobytes()
    (folder / "damaged").write_bytes(data)
    os.replace(folder / "damaged", folder / "W_in.npy")            # (the shared cluster's maps keep the old file)
    assert corpus(corpus_files, tmp_path / "again", "--workers", "1") == 0
    assert files_of(tmp_path / "again") == files_of(store)
    np.testing.assert_array_equal(np.load(folder / "W_in.npy"), model.params.W_in)   # written again


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- resuming a killed run --------------------------------------------------------------------------------
PAUSING = """
import os, sys
from analysis.corpus.store import Store
real = Store.commit_shard
def commit_shard(self, i, part):
    real(self, i, part)
    print("COMMITTED", len(self.records), flush=True)
    if len(self.records) == int(os.environ["PAUSE_AT"]):
        sys.stdin.readline()                   # held here until the test says go (or kills it)
Store.commit_shard = commit_shard
from analysis.cli import main
sys.exit(main(sys.argv[1:]))
"""


def paused_run(argv: list[str], at: int) -> subprocess.Popen:
    """The command line in a real process that stops after its at-th shard commit, once it says so."""
    p = subprocess.Popen([sys.executable, "-c", PAUSING, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "PAUSE_AT": str(at)})
    watchdog = threading.Timer(120, p.kill)                         # a hang fails, never blocks the suite
    watchdog.daemon = True
    watchdog.start()
    for line in p.stdout:
        if line.strip() == f"COMMITTED {at}":
            return p
    raise AssertionError(f"it ended before {at} commits: {p.stderr.read()}")


def test_a_dask_scheduler_and_worker_started_here_give_the_same_store_though_a_worker_dies(store, corpus_files,
                                                                                          tmp_path):
    """`dask scheduler` and `dask worker` (2 processes) as a user starts them; the run pauses after its first
    commit, one worker process is killed (SIGKILL) with finished shards in its memory, its nanny starts it
    again and Dask reruns what it lost; the store is still the same bytes: nothing lost, nothing twice."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    exe = Path(sys.executable).parent / "dask"                      # the `dask` command, else its modules
    dask = lambda cmd: [str(exe), cmd] if exe.exists() else [sys.executable, "-m", f"distributed.cli.dask_{cmd}"]  # noqa
    address = f"tcp://127.0.0.1:{port}"
    sched = subprocess.Popen([*dask("scheduler"), "--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
                              ":0"], env=env, stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        for line in sched.stderr:                                   # it says when it listens
            if "Scheduler at" in line:
                break
        threading.Thread(target=sched.stderr.read, daemon=True).start()  # keep its pipe drained
        worker = subprocess.Popen([*dask("worker"), address, "--nthreads", "1", "--nworkers", "2",
                                   "--no-dashboard"], env=env, stderr=subprocess.DEVNULL)
        argv = ["corpus", *corpus_files, "--model", str(MODEL), "--out", str(tmp_path / "remote"), "--seq-len",
                str(SEQ), "--top", str(TOP), "--shard-tokens", "10", "--scheduler", address]
        with distributed.Client(address) as client:
            # Both nannies must have started their workers: a worker killed while its nanny is still starting
            # is a failed start, and `dask worker` then exits with every worker (no restart, a run that waits
            # forever). Registering a plugin with the nannies returns once no nanny is starting.
            client.wait_for_workers(2, timeout=60)
            client.register_plugin(distributed.diagnostics.plugin.NannyPlugin(), name="nannies-started")
            run = paused_run(argv, 1)
            before = client.run(os.getpid)
            os.kill(next(iter(before.values())), signal.SIGKILL)
            run.stdin.write("\n")
            run.stdin.flush()
            _, err = run.communicate()
            assert run.returncode == 0, err
            assert set(client.run(os.getpid).values()) != set(before.values())    # one was started again
    finally:
        for p in (worker, sched):
            if p is not None:
                p.terminate()
                p.wait(timeout=60)
    assert files_of(tmp_path / "remote") == files_of(store)


def test_ctrl_c_stops_a_local_run_with_one_line_and_keeps_its_shards(store, corpus_files, tmp_path):
    """Ctrl-C at a terminal signals the whole process group, the local workers included: the command says
    one line and exits 130, no worker prints a traceback, and a rerun resumes to the same store."""
    out = tmp_path / "stopped"
    argv = ["corpus", *corpus_files, "--model", str(MODEL), "--out", str(out), "--seq-len", str(SEQ), "--top",
            str(TOP), "--shard-tokens", "10", "--workers", "1"]
    p = subprocess.Popen([sys.executable, "-c", PAUSING, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True,   # its own group, as a shell's
                         env={**os.environ, "PYTHONPATH": str(ROOT), "PAUSE_AT": "2"})
    watchdog = threading.Timer(120, lambda: os.killpg(p.pid, signal.SIGKILL))
    watchdog.daemon = True
    watchdog.start()
    for line in p.stdout:
        if line.strip() == "COMMITTED 2":
            break
    os.killpg(p.pid, signal.SIGINT)                                 # what the terminal does on Ctrl-C
    _, err = p.communicate()
    watchdog.cancel()
    assert p.returncode == 130 and err.splitlines() == ["minigpt2: interrupted"], err
    assert main(argv) == 0
    assert files_of(out) == files_of(store)


def test_a_run_killed_after_some_shards_resumes_them_and_ends_with_the_identical_store(store, corpus_files,
                                                                                      scheduler, tmp_path, capsys):
    out = tmp_path / "resumed"
    argv = ["corpus", *corpus_files, "--model", str(MODEL), "--out", str(out), "--seq-len", str(SEQ), "--top",
            str(TOP), "--shard-tokens", "10", "--scheduler", scheduler]
    p = paused_run(argv, 3)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    man = json.loads((out / "minigpt2-corpus.json").read_text())
    assert man["state"] == "running" and len(man["files"]) == 3
    assert all((out / f["name"]).is_file() for f in man["files"])
    capsys.readouterr()
    assert main(argv) == 0
    assert f"3 of {man['tokens']['shards']} shards were done before" in capsys.readouterr().out
    assert files_of(out) == files_of(store)
    assert main(argv) == 0                                          # complete: nothing to do, nothing changed
    assert "nothing to do" in capsys.readouterr().out and files_of(out) == files_of(store)


def test_a_jsonl_with_a_byte_order_mark_and_a_null_text_reads_its_other_lines_by_their_numbers():
    from analysis.corpus.inputs import _documents

    data = b'\xef\xbb\xbf{"text": "a"}\n{"text": null}\n\n{"text": "b"}\n'
    assert _documents("x.JSONL", data) == [(0, "a"), (3, "b")]
    assert _documents("x.txt", b"\xef\xbb\xbfhi") == [(0, "hi")]


# -- refused input: one line naming it, nothing touched ----------------------------------------------------
def _bad_files(d: Path) -> dict:
    (d / "latin1.txt").write_bytes("café".encode("latin-1"))
    (d / "notjson.jsonl").write_text('{"text": "ok"}\n{oops\n')
    (d / "notext.jsonl").write_text('{"body": "ok"}\n')
    (d / "number.jsonl").write_text('{"text": 5}\n')
    pq.write_table(pa.table({"body": ["x"]}), d / "nocol.parquet")
    (d / "garbage.parquet").write_bytes(b"PAR1 not really")
    (d / "empty.txt").write_text("")
    (d / "blank.jsonl").write_text("\n\n")
    (d / "good.txt").write_text("some good text")
    os.mkfifo(d / "pipe.txt")                                       # never opened for reading: it would hang
    return {"latin1.txt": r"latin1.txt is not UTF-8: byte 0xe9 at offset 3",
            "notjson.jsonl": r"notjson.jsonl line 2 is not JSON",
            "notext.jsonl": r'notext.jsonl line 1 has no "text" field',
            "number.jsonl": r'number.jsonl line 1: "text" is int, not a string',
            "nocol.parquet": r"nocol.parquet has no `text` column \(its columns: body\)",
            "garbage.parquet": r"garbage.parquet is not a Parquet file",
            "empty.txt": r"the corpus is empty: .*empty.txt holds no text",
            "blank.jsonl": r"the corpus is empty: .*blank.jsonl",
            "missing.txt": r"missing.txt: No such file or directory",
            ".": r"is a folder, not a regular file",
            "pipe.txt": r"pipe.txt: is a FIFO \(named pipe\), not a regular file"}


def test_bad_input_files_are_one_line_naming_the_file_and_make_no_store(tmp_path, capsys):
    import re

    for name, message in _bad_files(tmp_path).items():
        out = tmp_path / "out"
        assert corpus([str(tmp_path / name)], out, "--workers", "1") == 1, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("minigpt2: error: ") and re.search(message, err), (name, err)
        assert not out.exists()


def test_seq_len_must_fit_the_context_and_out_is_never_a_foreign_folder(tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text("some good text")
    assert main(["corpus", str(good), "--model", str(MODEL), "--out", str(tmp_path / "s"), "--seq-len", "24"]) == 1
    assert "--seq-len 24 does not fit the model's context" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    (mine / "neurons.parquet").write_text("mine too")
    before = snapshot(mine)
    assert corpus([str(good)], mine, "--workers", "1") == 1
    assert "is not empty and holds no minigpt2 corpus store" in capsys.readouterr().err
    assert snapshot(mine) == before
    report = tmp_path / "report"
    assert main(["analyze", "hi", "--model", str(MODEL), "--out", str(report), "--no-cache"]) == 0
    before = snapshot(report)
    assert corpus([str(good)], report, "--workers", "1") == 1
    assert "holds no minigpt2 corpus store" in capsys.readouterr().err and snapshot(report) == before
    (mine / "minigpt2-corpus.json").write_text("{}")
    assert corpus([str(good)], mine, "--workers", "1", "--force") == 1     # not a store's manifest: even forced
    assert "is not a minigpt2 corpus store's manifest" in capsys.readouterr().err


def test_a_store_of_an_earlier_version_is_refused_by_every_command(store, corpus_files, tmp_path, capsys):
    """Version 1 ranked head events from window position 1 too: its heads table means something else."""
    import shutil

    old = tmp_path / "v1"
    shutil.copytree(store, old)
    man = json.loads((old / "minigpt2-corpus.json").read_text())
    man["version"] = 1
    (old / "minigpt2-corpus.json").write_text(json.dumps(man))
    before = snapshot(old)
    assert corpus(corpus_files, old, "--workers", "1") == 1
    assert "store version 1; this one writes 2" in capsys.readouterr().err and snapshot(old) == before
    assert main(["neuron", "1-5", "--corpus", str(old)]) == 1
    assert "store version 1" in capsys.readouterr().err


def test_another_runs_store_is_refused_or_started_afresh_with_force(store, corpus_files, scheduler, tmp_path,
                                                                     capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(store, out)
    before = snapshot(out)
    for more, said in ((["--top", "2", "--seq-len", str(SEQ)], f"--top {TOP} there, 2 here"),
                       (["--seq-len", "5", "--top", str(TOP)], f"--seq-len {SEQ} there, 5 here")):
        assert main(["corpus", *corpus_files, "--model", str(MODEL), "--out", str(out), "--scheduler", scheduler,
                     *more]) == 1
        err = capsys.readouterr().err
        assert "holds a corpus store of another run: its settings differ: " in err and said in err, err
    assert corpus(corpus_files[:2], out, "--scheduler", scheduler) == 1
    assert "its input files differ" in capsys.readouterr().err
    other = tmp_path / "model"
    shutil.copytree(MODEL, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["layer_norm_epsilon"] = 1e-3
    (other / "config.json").write_text(json.dumps(cfg))
    assert corpus(corpus_files, out, "--scheduler", scheduler, model=other) == 1
    assert "its model differs" in capsys.readouterr().err
    assert snapshot(out) == before
    (out / "notes.txt").write_text("mine")
    assert corpus(corpus_files[:2], out, "--scheduler", scheduler, "--force") == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert files_of(out)["neurons.parquet"] != files_of(store)["neurons.parquet"]


def test_analyze_without_corpus_never_imports_dask(tmp_path):
    code = ("import sys; from analysis.cli import main; "
            f"rc = main(['analyze', 'hi', '--model', {str(MODEL)!r}, '--out', {str(tmp_path / 'r')!r}, '--no-cache']); "
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'pyarrow')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.stdout.strip().splitlines()[-1] == "0 []", r.stderr


# -- the store in the report and on the terminal ----------------------------------------------------------
def test_analyze_with_corpus_adds_each_neurons_and_heads_top_contexts(store, tmp_path, capsys):
    import csv

    out = tmp_path / "report"
    assert main(["analyze", "The cat sat", "--model", str(MODEL), "--out", str(out), "--no-cache",
                 "--corpus", str(store)]) == 0
    rows = list(csv.DictReader((out / "neurons.csv").open(encoding="utf-8")))
    top = pq.read_table(store / "neurons.parquet").to_pylist()
    stats = {(r["layer"], r["neuron"]): r for r in pq.read_table(store / "neuron_stats.parquet").to_pylist()}
    first = {(r["layer"], r["neuron"]): r for r in top if r["rank"] == 1}
    third = {(r["layer"], r["neuron"]): r for r in top if r["rank"] == 3}
    assert len(rows) == len(first)
    for r in rows:
        key = (int(r["layer"]), int(r["neuron"]))
        assert r["corpus #1"] == f"{first[key]['context']} ({first[key]['activation']:.3g})"
        assert r["corpus #3"].startswith(third[key]["context"] + " (")
        assert float(r["corpus active"]) == pytest.approx(stats[key]["frac_active"], rel=1e-6)
    heads = list(csv.DictReader((out / "corpus_heads.csv").open(encoding="utf-8")))
    ht = {(r["layer"], r["head"], r["rank"]): r for r in pq.read_table(store / "heads.parquet").to_pylist()}
    assert len(heads) == 3 * 4
    for r in heads:
        want = ht[(int(r["layer"]), int(r["head"]), 2)]
        assert r["corpus #2"] == f"{want['context']} ({want['attention']:.3g})"
        assert float(r["corpus attention on 0"]) == pytest.approx(want["attention_on_0"], rel=1e-6)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Heads in the corpus" in page
    figures = dict(((int(l), int(h)), body) for l, h, body in re.findall(
        r'<figure class="head" data-l="(\d+)" data-h="(\d+)">(.*?)</figure>', page, re.S))
    assert len(figures) == 3 * 4                                    # each head's events beside its patterns
    for (l, h), body in figures.items():
        (items,) = re.findall(r'<div class="corpus">.*?<ol>(.*?)</ol>', body, re.S)
        want = [f"{ht[l, h, k]['context']} ({ht[l, h, k]['attention']:.3g})" for k in (1, 2, 3)]
        assert [html.unescape(i) for i in re.findall(r"<li>(.*?)</li>", items)] == want
        assert f"<strong>{ht[l, h, 1]['attention_on_0']:.2f}</strong>" in body.split('<div class="corpus">')[1]


def test_a_neuron_card_shows_its_corpus_contexts_or_says_where_they_are(store, tmp_path):
    """In a real browser: the card of a neuron in the page's neurons tab shows its corpus columns; one beyond
    the tab's rows names the command that prints them."""
    import csv
    import shutil

    pytest.importorskip("selenium")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("no chromium and chromium-driver installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    out = tmp_path / "report"
    assert main(["analyze", "The cat sat", "--model", str(MODEL), "--out", str(out), "--no-cache",
                 "--corpus", str(store)]) == 0
    rows = list(csv.DictReader((out / "neurons.csv").open(encoding="utf-8")))   # the page shows the first 150
    top = {(r["layer"], r["neuron"], r["rank"]): r for r in pq.read_table(store / "neurons.parquet").to_pylist()}
    o = Options()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"]:
        o.add_argument(a)
    o.binary_location = shutil.which("chromium")
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=o)
    try:
        d.get((out / "index.html").as_uri())

        def card(l, n) -> str:
            box = d.find_element(By.CSS_SELECTOR, "[data-jump]")
            box.clear()
            box.send_keys(f"L{l} N{n}", Keys.ENTER)
            return d.find_element(By.CSS_SELECTOR, "#p-neuron_card .ncbody").text

        for r in (rows[0], rows[149]):
            l, n = int(r["layer"]), int(r["neuron"])
            text = card(l, n)
            assert "In the corpus" in text
            for k in (1, 2, 3):
                assert f"corpus #{k} {top[l, n, k]['context']} ({top[l, n, k]['activation']:.3g})" in text
        l, n = int(rows[150]["layer"]), int(rows[150]["neuron"])
        text = card(l, n)
        assert "In the corpus" not in text and f"minigpt2 neuron {l}-{n} --corpus STORE" in text
    finally:
        d.quit()


def test_a_store_of_another_model_is_refused_by_analyze_and_neuron(store, tmp_path, capsys):
    other = tmp_path / "model"
    import shutil
    shutil.copytree(MODEL, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["layer_norm_epsilon"] = 1e-3
    (other / "config.json").write_text(json.dumps(cfg))
    assert main(["analyze", "hi", "--model", str(other), "--out", str(tmp_path / "r"), "--corpus", str(store)]) == 1
    assert "was made with another model" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["neuron", "1-5", "--corpus", str(store), "--model", str(other)]) == 1
    assert "was made with another model" in capsys.readouterr().err
    assert main(["neuron", "1-5", "--corpus", str(tmp_path)]) == 1
    assert "holds no finished corpus store" in capsys.readouterr().err


def test_neuron_names_the_stores_model_when_it_does_not_load_from_here(store, tmp_path, capsys):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    man = json.loads((copy / "minigpt2-corpus.json").read_text())
    man["model"]["source"] = "models/tiny"                         # a relative --model, from another folder
    (copy / "minigpt2-corpus.json").write_text(json.dumps(man))
    assert main(["neuron", "1-5", "--corpus", str(copy)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "was made with --model models/tiny" in err and "pass --model" in err
    assert main(["neuron", "1-5", "--corpus", str(copy), "--model", str(MODEL)]) == 0


def test_neuron_prints_its_static_words_and_its_corpus_card(store, brute, capsys):
    from analysis.search.neurons import compute_neuron_meanings
    from analysis.search.spaces import build_vocab

    model = brute["model"]
    assert main(["neuron", "1-5", "--corpus", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    meanings = compute_neuron_meanings(model, build_vocab(model, min_words=10), 10, "cosine", progress=False)
    words = lambda ids: " ".join(show_token(s) for s in model.token_strings(ids))  # noqa: E731
    from analysis.cli.args import printable
    assert lines[1] == printable(f"  input words: {words(meanings.in_ids[1, 5])}")
    assert lines[2] == printable(f"  output words: {words(meanings.out_ids[1, 5])}")
    assert lines[3] == printable(f"  negative output words: {words(meanings.neg_ids[1, 5])}")
    m = model.cfg.d_mlp
    want = brute["neurons"][1 * m + 5]
    assert f"mean {brute['mean'][m + 5]:.4g}, max {brute['max'][m + 5]:.4g}" in lines[4]
    for rank, (v, place, name) in enumerate(want, 1):
        assert lines[5 + rank].split()[:2] == [str(rank), f"{-v:.4g}"]
        assert lines[5 + rank].endswith(f"[{name} doc {place[1]} token {place[2]}]")


def test_the_progress_bar_counts_every_token_once(scheduler, tmp_path, capsys):
    """Shards longer than a worker's batch report their progress as they go; the bar still ends at the total,
    never beyond it."""
    import re

    from analysis.corpus.engine import build_store

    (tmp_path / "long.txt").write_text(" ".join([TEXT_A, TEXT_B, TEXT_C] * 30), encoding="utf-8")
    model = minigpt2.load(MODEL)
    header = build_store([str(tmp_path / "long.txt")], model, str(MODEL), tmp_path / "bar", seq_len=SEQ, top=TOP,
                         scheduler=scheduler, shard_tokens=1500, progress=True, say=print)
    total = header["tokens"]["tokens"]
    assert total > 3000 and header["tokens"]["shards"] >= 3
    bars = [b for b in capsys.readouterr().err.replace("\r", "\n").splitlines() if b.startswith("corpus:")]
    percent = [int(re.search(r"(\d+)%", b).group(1)) for b in bars]
    assert percent[-1] == 100 and max(percent) == 100
    assert any(0 < p < 100 for p in percent)                         # it moved in between
