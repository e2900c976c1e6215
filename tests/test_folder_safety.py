"""A user's files are never touched, concurrent runs are safe, and signals never cut a write in half.

Real processes where it matters: a wrapper script (WRAPPER, below) runs the command line and pauses at a
named step until the test writes a line to its stdin, so that a second run, a signal or a swapped folder
comes exactly there (no sleeps). Each case asserts one line and the exit status, the user's files
byte-for-byte, and nothing left behind (no temporary, no lock file, no folder made for nothing).
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.report.writer import MANIFEST

from .conftest import FIXTURES, snapshot

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("private_cache")






def debris(folder: Path) -> list:
    return [p for p in folder.rglob("*") if ".minigpt2-tmp-" in p.name or p.name == ".minigpt2.lock"]


def run_cli(argv, capsys):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def analyze(out, model_dir, text="hi", *more):
    return ["analyze", text, "--model", str(model_dir), "--out", str(out), "-k", "3", "--no-cache", *more]


def assert_whole_report(out: Path, others=()) -> dict:
    """out holds exactly one report: every file its manifest lists, with that size and SHA-256 (computed
    here), and nothing else but others. Returns {name: bytes}."""
    records = json.loads((out / MANIFEST).read_text())["files"]
    names = [r["name"] for r in records]
    assert len(names) == len(set(names))
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, MANIFEST, *others])
    for r in records:
        data = (out / r["name"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (r["size"], r["sha256"]), r["name"]
    return {n: (out / n).read_bytes() for n in names}


# -- foreign files ---------------------------------------------------------------------------------

def test_an_unlisted_file_named_like_an_optional_report_file_is_refused_and_never_deleted(tmp_path, model_dir,
                                                                                        capsys):
    out = tmp_path / "rep"
    assert run_cli(analyze(out, model_dir), capsys)[0] == 0
    (out / "selected.csv").write_text("my own selection")        # the name --heads writes
    before = snapshot(out)
    code, _, err = run_cli(analyze(out, model_dir, "hi", "--heads", "0-0"), capsys)
    assert code == 1 and err == (f"minigpt2: error: {out / 'selected.csv'} was not written by minigpt2, or has "
                                 "changed since; the report would replace it: move it away, or add --force to "
                                 "replace it\n")
    assert snapshot(out) == before
    assert run_cli(analyze(out, model_dir, "hi there"), capsys)[0] == 0     # a run without it: kept
    assert (out / "selected.csv").read_text() == "my own selection"
    assert_whole_report(out, others=["selected.csv"])


def test_a_file_of_the_earlier_report_is_deleted_only_while_unchanged(tmp_path, model_dir, capsys):
    out = tmp_path / "rep"
    assert run_cli(analyze(out, model_dir, "hi", "--heads", "0-0"), capsys)[0] == 0
    assert (out / "selected.csv").exists()
    assert run_cli(analyze(out, model_dir), capsys)[0] == 0                 # unchanged: the report's own
    assert not (out / "selected.csv").exists()
    assert_whole_report(out)

    assert run_cli(analyze(out, model_dir, "hi", "--heads", "0-0"), capsys)[0] == 0
    with open(out / "selected.csv", "a") as f:
        f.write("my note\n")                                     # changed since: the user's now
    kept = (out / "selected.csv").read_bytes()
    assert run_cli(analyze(out, model_dir), capsys)[0] == 0
    assert (out / "selected.csv").read_bytes() == kept
    assert_whole_report(out, others=["selected.csv"])                       # and no longer listed


def test_a_changed_report_file_is_refused_and_replaced_only_with_force(tmp_path, model_dir, capsys):
    out = tmp_path / "rep"
    assert run_cli(analyze(out, model_dir), capsys)[0] == 0
    (out / "predictions.csv").write_text("edited by hand")
    before = snapshot(out)
    code, _, err = run_cli(analyze(out, model_dir, "hi there"), capsys)
    assert code == 1 and err.startswith(f"minigpt2: error: {out / 'predictions.csv'} was not written by minigpt2")
    assert err.count("\n") == 1 and snapshot(out) == before
    assert run_cli(analyze(out, model_dir, "hi there", "--force"), capsys)[0] == 0
    assert (out / "predictions.csv").read_text() != "edited by hand"
    assert_whole_report(out)


def test_a_hand_made_manifest_cannot_make_it_delete_or_replace_anything(tmp_path, model_dir, capsys):
    """Names listed in a manifest minigpt2 did not write (wrong hash, wrong size, or an older manifest's bare
    names) are foreign: never deleted, and replaced only with --force."""
    out = tmp_path / "notes"
    out.mkdir()
    files = {"data.csv": b"1,2,3\n", "plot.svg": b"<svg/>", "table.csv": b"a,b\n"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    (out / MANIFEST).write_text(json.dumps({"tool": "minigpt2", "files": [
        {"name": "data.csv", "size": 6, "sha256": "0" * 64},                                 # wrong hash
        {"name": "plot.svg", "size": 99, "sha256": hashlib.sha256(b"<svg/>").hexdigest()},   # wrong size
        "table.csv"]}))                                                                      # no record at all
    before = snapshot(out)
    assert run_cli(analyze(out, model_dir), capsys)[0] == 0
    after = snapshot(out)
    assert {n: after[n] for n in files} == {n: before[n] for n in files}
    assert_whole_report(out, others=list(files))


@pytest.mark.parametrize("manifest", [
    json.dumps({"tool": "minigpt2", "files": ["index.html\n"]}),          # `$` would take the newline
    json.dumps({"tool": "minigpt2", "files": [{"name": "../x.csv", "size": 1, "sha256": "0" * 64}]}),
    "[" * 100_000 + "]" * 100_000,                                         # deeper than Python's recursion
    "{" * 2_000_000,                                                      # over the size cap
])
def test_a_manifest_that_is_not_minigpt2s_is_refused_in_one_line(manifest, tmp_path, model_dir, capsys):
    out = tmp_path / "rep"
    out.mkdir()
    (out / MANIFEST).write_text(manifest)
    before = snapshot(out)
    code, _, err = run_cli(analyze(out, model_dir, "hi", "--force"), capsys)
    assert code == 1 and err == (f"minigpt2: error: {out / MANIFEST} is not a minigpt2 report's manifest, and a "
                                 "report would replace it; move it away or choose another --out\n")
    assert snapshot(out) == before


def test_a_fifo_in_place_of_the_manifest_is_refused_without_reading_it(tmp_path, model_dir, capsys):
    out = tmp_path / "rep"
    out.mkdir()
    os.mkfifo(out / MANIFEST)                    # opening it to read would wait forever for a writer
    code, _, err = run_cli(analyze(out, model_dir), capsys)
    assert code == 1 and "is not a minigpt2 report's manifest" in err and err.count("\n") == 1


# -- real processes: the wrapper -------------------------------------------------------------------

WRAPPER = textwrap.dedent("""
    import json, os, sys, threading
    opts = json.loads(sys.argv[1])
    if opts.get("blas"):                       # BLAS threads alive and busy, as during an analysis
        import numpy as np
        a = np.ones((256, 256), np.float32)
        a @ a
        threading.Thread(target=lambda: [a @ a for _ in iter(int, 1)], daemon=True).start()
        print("THREADS", len(os.listdir("/proc/self/task")), flush=True)
    import analysis.report.writer
    from analysis.report import table as tables
    from minigpt2.folder import Folder
    if "lock_wait" in opts:
        analysis.report.writer.LOCK_WAIT_S = opts["lock_wait"]

    def pause(tag):
        print("PAUSED", tag, flush=True)
        sys.stdin.readline()

    real_csv = tables.Table.to_csv
    def to_csv(self, path):                    # pause once this table's temporary is written
        real_csv(self, path)
        if self.name in opts.get("pause", []):
            pause(self.name)
    tables.Table.to_csv = to_csv

    calls = {}
    def counted(attr):                         # Folder.replace / Folder.unlink, call N: pause, or fail
        real = getattr(Folder, attr)
        def step(*a, **k):
            calls[attr] = n = calls.get(attr, 0) + 1
            if f"{attr}{n}" in opts.get("pause", []):
                pause(f"{attr}{n}")
            if f"{attr}{n}" in opts.get("fail", []):
                raise OSError(28, "No space left on device (injected)")
            return real(*a, **k)
        setattr(Folder, attr, step)
    counted("replace")
    counted("unlink")
    from analysis.cli import main
    sys.exit(main(opts["argv"]))
""")


class Run:
    """The command line in a real process, through WRAPPER; killed if it is still running after 300 s."""

    def __init__(self, argv, prefix=(), env=None, **opts):
        env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.p = subprocess.Popen([*prefix, sys.executable, "-c", WRAPPER, json.dumps({**opts, "argv": argv})],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env)
        self.watchdog = threading.Timer(300, self.p.kill)
        self.watchdog.start()

    def until(self, prefix: str) -> str:
        """Read its stdout up to the line that starts with prefix."""
        for line in self.p.stdout:
            if line.startswith(prefix):
                return line.strip()
        raise AssertionError(f"it ended before {prefix!r}: {self.p.stderr.read()}")

    def go(self) -> None:
        self.p.stdin.write("\n")
        self.p.stdin.flush()

    def finish(self) -> tuple[int, str]:
        _, err = self.p.communicate()
        self.watchdog.cancel()
        return self.p.returncode, err


# -- concurrent runs ----------------------------------------------------------------------------------

def test_a_second_run_on_a_folder_being_written_says_so_or_waits_for_it(tmp_path, model_dir, capsys):
    out = tmp_path / "rep"
    assert run_cli(analyze(out, model_dir, "first"), capsys)[0] == 0
    slow = Run(analyze(out, model_dir, "slow", "--heads", "0-0"), pause=["patterns"])    # as on NFS
    try:
        slow.until("PAUSED patterns")
        during = snapshot(out)                                      # the earlier report, and the temporaries
        impatient = Run(analyze(out, model_dir, "impatient"), lock_wait=0)
        code, err = impatient.finish()
        assert code == 1 and err == (f"minigpt2: error: {out} is being written by another minigpt2 run; run again "
                                     "once it has finished, or choose another --out\n")
        assert snapshot(out) == during
        patient = Run(analyze(out, model_dir, "patient"))
        assert patient.p.stderr.readline() == f"minigpt2: waiting for another minigpt2 run to finish writing {out}\n"
    finally:
        slow.go()
    assert slow.finish() == (0, "")
    assert patient.finish() == (0, "")
    files = assert_whole_report(out)                            # one report, not a mix of two
    assert "selected.csv" not in files and "patient" in files["index.html"].decode()
    assert debris(tmp_path) == []


def test_parallel_runs_into_new_sibling_folders_under_a_new_parent(tmp_path, model_dir):
    parent = tmp_path / "new" / "parent"
    runs = [Run(analyze(parent / f"r{i}", model_dir, f"run {i}")) for i in range(4)]
    assert [r.finish() for r in runs] == [(0, "")] * 4
    for i in range(4):
        assert f"run {i}" in assert_whole_report(parent / f"r{i}")["index.html"].decode()
    assert debris(tmp_path) == []


def _make_and_remove(base: str, worker: int, rounds: int, barrier) -> None:
    from analysis.report.writer import probe_folder
    from minigpt2.folder import make_folders, remove_made
    for r in range(rounds):
        barrier.wait(timeout=60)                    # every worker at once, on a parent none has made yet
        leaf = Path(base) / f"round{r}" / "parent" / f"w{worker}"
        probe_folder(leaf)                          # made and removed again, as check_out does
        made = make_folders(leaf)
        assert leaf.is_dir()
        if worker % 2:
            remove_made(made)                       # as a failed run does, while the others make theirs


def test_making_the_same_new_parents_at_once_never_fails(tmp_path):
    """5 of 120 parallel runs used to fail with "No such file or directory" or "File exists"."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(6)
    procs = [ctx.Process(target=_make_and_remove, args=(str(tmp_path), w, 60, barrier)) for w in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * 6
    for r in range(60):                             # the even workers' folders, and nothing else
        assert sorted(p.name for p in (tmp_path / f"round{r}" / "parent").iterdir()) == ["w0", "w2", "w4"]


def _pid_namespace() -> list:
    for prefix in (["unshare", "--pid", "--fork"], ["unshare", "--pid", "--fork", "--map-root-user"]):
        try:
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=60).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            pass
    pytest.skip("cannot make a PID namespace here (unshare --pid)")


def test_a_writer_in_another_pid_namespace_keeps_its_temporaries_and_its_lock(tmp_path, model_dir, capsys):
    from minigpt2.atomic import sweep_stale
    prefix = _pid_namespace()
    out = tmp_path / "rep"
    assert run_cli(analyze(out, model_dir, "first"), capsys)[0] == 0
    other = Run(analyze(out, model_dir, "from another namespace"), prefix=prefix, pause=["patterns"])
    try:
        other.until("PAUSED patterns")
        temporaries = [p for p in out.iterdir() if ".minigpt2-tmp-" in p.name]
        assert temporaries
        assert sweep_stale(out) == 0 and all(p.exists() for p in temporaries)   # its writer lives
        here = Run(analyze(out, model_dir, "here"), lock_wait=0)
        code, err = here.finish()
        assert code == 1 and "is being written by another minigpt2 run" in err and err.count("\n") == 1
    finally:
        other.go()
    assert other.finish() == (0, "")
    assert "from another namespace" in assert_whole_report(out)["index.html"].decode()
    assert debris(tmp_path) == []


def test_a_killed_cache_writers_temporary_is_swept_on_load_and_a_live_ones_kept(tmp_path):
    from analysis.search import diskcache
    from minigpt2.atomic import TMP_MARK
    folder = tmp_path / "cache"
    folder.mkdir()
    stale = folder / f".neurons-x.bin{TMP_MARK}0123456789abcdef"
    live = folder / f".neurons-y.bin{TMP_MARK}fedcba9876543210"
    stale.write_bytes(b"left by a killed run")
    live.write_bytes(b"another run, still writing")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1]); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
                               str(live)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert diskcache.load(folder / "words-z.bin", "k", {"x": ("float32", (1,))}) is None   # a miss, no save
        assert not stale.exists() and live.read_bytes() == b"another run, still writing"
    finally:
        holder.stdin.close()
        holder.wait()


# -- signals with BLAS threads ---------------------------------------------------------------------

def _signalled_run(tmp_path, model_dir, capsys, steps):
    """An earlier report, then a run with BLAS threads busy that pauses at each (step, action): "TERM" sends
    it a process-directed SIGTERM from here before it goes on. Returns (exit status, stderr, the earlier
    report's snapshot, out)."""
    out = tmp_path / "rep"
    assert run_cli(analyze(out, model_dir, "first", "--heads", "0-0"), capsys)[0] == 0
    before = snapshot(out)
    run = Run(analyze(out, model_dir, "second"), env={"OPENBLAS_NUM_THREADS": "4"}, blas=True,
              pause=[step for step, action in steps if action != "fail"],
              fail=[step for step, action in steps if action == "fail"])
    try:
        assert int(run.until("THREADS").split()[1]) >= 3                # main, the matmul thread, BLAS's own
        for step, action in steps:
            if action == "TERM":
                run.until(f"PAUSED {step}")
                os.kill(run.p.pid, signal.SIGTERM)
                run.go()
            elif action == "pause":
                run.until(f"PAUSED {step}")
                run.go()
    except BaseException:
        run.p.kill()
        raise
    code, err = run.finish()
    return code, err, before, out


def test_sigterm_during_the_final_renames_lets_them_finish(tmp_path, model_dir, capsys):
    """It used to lose a file of the earlier report: the renames are done, then the run ends with 143."""
    code, err, before, out = _signalled_run(tmp_path, model_dir, capsys, [("replace3", "TERM")])
    assert (code, err) == (143, "minigpt2: terminated\n")
    files = assert_whole_report(out)                            # the new report, whole; selected.csv gone
    assert "second" in files["index.html"].decode() and "selected.csv" not in files
    assert debris(tmp_path) == []


def test_a_second_sigterm_during_the_cleanup_does_not_cut_it_short(tmp_path, model_dir, capsys):
    """It used to leave 4 files of the new run: the first SIGTERM ends the run, the second waits."""
    code, err, before, out = _signalled_run(tmp_path, model_dir, capsys,
                                            [("patterns", "TERM"), ("unlink1", "TERM")])
    assert (code, err) == (143, "minigpt2: terminated\n")
    assert snapshot(out) == before and debris(tmp_path) == []


def test_sigterm_during_the_rollback_of_a_failed_rename_waits_for_it(tmp_path, model_dir, capsys):
    code, err, before, out = _signalled_run(tmp_path, model_dir, capsys,
                                            [("replace5", "fail"), ("replace6", "TERM")])
    assert (code, err) == (143, "minigpt2: terminated\n")
    assert snapshot(out) == before and debris(tmp_path) == []


# -- a folder swapped for a link mid-run ------------------------------------------------------------

@pytest.mark.parametrize("fail", [False, True])
def test_a_folder_swapped_for_a_link_mid_run_redirects_nothing(fail, tmp_path, model_dir, capsys):
    from minigpt2.folder import DIR_FD
    if not DIR_FD:
        pytest.skip("no dir_fd operations on this platform")
    out, moved, victim = tmp_path / "rep", tmp_path / "moved", tmp_path / "victim"
    assert run_cli(analyze(out, model_dir, "first", "--heads", "0-0"), capsys)[0] == 0
    earlier = snapshot(out)
    shutil.copytree(out, victim)                  # another report (a path-based rollback would "restore" it)
    (victim / "notes.txt").write_text("the user's")
    victim_before = snapshot(victim)
    run = Run(analyze(out, model_dir, "second"), pause=["patterns"], fail=["replace4"] if fail else [])
    try:
        run.until("PAUSED patterns")
        out.rename(moved)
        out.symlink_to(victim)
    finally:
        run.go()
    code, err = run.finish()
    assert snapshot(victim) == victim_before and out.is_symlink()
    if fail:
        assert code == 1 and err.startswith(f"minigpt2: error: cannot write {out}/") and err.count("\n") == 1
        assert snapshot(moved) == earlier             # the held folder, rolled back
    else:
        assert (code, err) == (0, "")
        assert "second" in assert_whole_report(moved)["index.html"].decode()
    assert debris(tmp_path) == []


# -- a full disk -----------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted afterwards; skipped where one cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)]).returncode != 0:
            subprocess.run(["umount", "--lazy", str(disk)], check=True)


def test_a_full_disk_names_the_file_and_leaves_the_earlier_report(small_disk, model_dir, capsys):
    (small_disk / "notes.txt").write_text("the user's")
    out = small_disk / "rep"
    assert run_cli(analyze(out, model_dir, "hi"), capsys)[0] == 0
    before = snapshot(small_disk)
    code, _, err = run_cli(analyze(out, model_dir, "a much longer prompt"), capsys)   # twice over a 1 MiB disk
    assert code == 1 and err.startswith(f"minigpt2: error: cannot write {out}/") and err.count("\n") == 1
    assert "No space left on device" in err
    assert snapshot(small_disk) == before and debris(small_disk) == []
    code, _, err = run_cli(analyze(small_disk / "new" / "deeper", model_dir, "a much longer prompt"), capsys)
    assert code == 1 and "No space left on device" in err and err.count("\n") == 1
    assert snapshot(small_disk) == before                                            # "new" removed again


def test_a_short_write_on_a_full_disk_says_no_space_left(small_disk):
    """numpy reports a short write as "N requested and M written", with no errno and no file name."""
    import numpy as np
    from minigpt2.atomic import write_files
    from minigpt2.errors import OutputError
    (small_disk / "filler").write_bytes(b"x" * (1024 * 1024 - 64 * 1024))
    before = snapshot(small_disk)

    def save(path):
        with open(path, "wb") as f:         # a file object, as the report writes its arrays
            np.save(f, np.zeros(100_000, np.float32))

    with pytest.raises(OutputError) as e:
        write_files(small_disk, {"acts.npy": save})
    msg = str(e.value)
    assert msg.startswith(f"cannot write {small_disk / 'acts.npy'}: No space left on device (") and "written" in msg
    assert snapshot(small_disk) == before


def test_make_checkpoint_on_a_full_disk_one_line_and_only_its_own_folders_removed(small_disk, capsys):
    """tokenizers' and safetensors' writers fail with their own exception types (no traceback now)."""
    from dataclasses import replace
    from minigpt2.checkpoint import make_checkpoint
    from minigpt2.config import KNOWN_CONFIGS
    from minigpt2.errors import OutputError
    (small_disk / "mine").mkdir()
    (small_disk / "filler").write_bytes(b"x" * (1024 * 1024 - 256 * 1024))   # room for the small files only
    before = snapshot(small_disk)
    for out in (small_disk / "a" / "b" / "ck", small_disk / "mine" / "ck"):
        code, _, err = run_cli(["make-checkpoint", "--like", "tiny", "--out", str(out)], capsys)
        assert (code, err) == (1, f"minigpt2: error: cannot write {out / 'tokenizer.json'}: "
                                  "No space left on device\n")            # GPT-2's BPE: written first
        assert snapshot(small_disk) == before
        with pytest.raises(OutputError) as e:           # a byte-level vocabulary: the weights fail
            make_checkpoint(replace(KNOWN_CONFIGS["tiny"], d_vocab=300), out)
        assert str(e.value) == f"cannot write {out / 'model.safetensors'}: No space left on device"
        assert snapshot(small_disk) == before


# -- a cache folder that cannot be used ---------------------------------------------------------------

@pytest.mark.parametrize("mode, line", [
    (0o000, "cannot read the cache folder {cache} (Permission denied); going on without it"),
    (0o555, "cannot write to the cache folder {cache} (Permission denied); going on without saving to it")])
def test_a_cache_folder_that_cannot_be_used_warns_once_and_the_run_goes_on(mode, line, tmp_path, model_dir):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(mode)
    prefix = []
    if os.geteuid() == 0:                         # root ignores permissions: drop that power for the run
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
        if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"]).returncode != 0:
            pytest.skip("cannot drop CAP_DAC_OVERRIDE here (setpriv)")
    try:
        out = tmp_path / "rep"
        run = Run(["analyze", "hi", "--model", str(model_dir), "--out", str(out), "-k", "3"], prefix=prefix,
                  env={"MINIGPT2_CACHE": str(cache)})
        code, err = run.finish()
        assert (code, err) == (0, f"minigpt2: warning: {line.format(cache=cache)}\n")
        assert_whole_report(out)
    finally:
        cache.chmod(0o755)
    assert list(cache.iterdir()) == []


# -- the lock where a folder cannot be locked itself, and signals outside the command line ----------

def test_where_a_folder_cannot_be_locked_a_lock_file_serves_and_goes(tmp_path, model_dir, capsys, monkeypatch):
    """As on NFS, where flock on a folder (opened read-only) fails with EBADF."""
    import errno
    import stat as st

    import filelock
    from minigpt2.folder import LOCK_NAME, Folder
    real = filelock.lock_descriptor

    def no_folder_locks(fd, **k):
        if st.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real(fd, **k)

    monkeypatch.setattr(filelock, "lock_descriptor", no_folder_locks)
    monkeypatch.setattr("analysis.report.writer.LOCK_WAIT_S", 0)
    out = tmp_path / "rep"
    assert run_cli(analyze(out, model_dir, "first"), capsys)[0] == 0
    assert not (out / LOCK_NAME).exists()
    other = Folder(out)                                    # another run's lock
    try:
        assert other.try_lock() and (out / LOCK_NAME).exists()
        before = snapshot(out)
        code, _, err = run_cli(analyze(out, model_dir, "second"), capsys)
        assert code == 1 and "is being written by another minigpt2 run" in err and snapshot(out) == before
    finally:
        other.close()
    assert not (out / LOCK_NAME).exists()
    assert run_cli(analyze(out, model_dir, "second"), capsys)[0] == 0
    assert_whole_report(out) and debris(tmp_path) == []


SIGNALLED_API = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from minigpt2.atomic import write_files
    from minigpt2.folder import Folder
    out, where = Path(sys.argv[1]), sys.argv[2]
    def term(path):
        path.write_text("b")
        if where == "writing":
            os.kill(os.getpid(), signal.SIGTERM)
    real = Folder.replace
    def replace(self, a, b):
        real(self, a, b)
        if where == "renaming":
            os.kill(os.getpid(), signal.SIGTERM)
    Folder.replace = replace
    write_files(out, {"a.txt": lambda p: p.write_text("a"), "b.txt": term, "c.txt": lambda p: p.write_text("c")})
    print("not reached: SIGTERM's default action ends the process")
""")


@pytest.mark.parametrize("where, after", [("writing", {}), ("renaming", {"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})])
def test_sigterm_with_its_default_action_in_a_plain_program(where, after, tmp_path):
    """Outside the command line SIGTERM still ends the process (status -15), after the cleanup or the renames."""
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([sys.executable, "-c", SIGNALLED_API, str(out), where], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert (r.returncode, r.stdout, r.stderr) == (-signal.SIGTERM, "", "")
    assert snapshot(out) == after
