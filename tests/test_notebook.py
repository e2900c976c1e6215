"""The README's "From Python" cells, run as a notebook by nbclient in a real Jupyter kernel: every cell runs,
the report's output is the interactive page (one inline script, no CDN) within its size, a single Table is
styled on its own, a Model is one line, and no progress bar warns "IProgress not found"."""
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed")
pytest.importorskip("ipykernel", reason="ipykernel is not installed")

README = Path(__file__).resolve().parent.parent / "README.md"
NOTEBOOK_HTML_MB = 3.0          # the bound at 8 tokens for GPT-2 small; this model is smaller still


def readme_cells() -> list[str]:
    """The "From Python" block, a cell per statement (a line at column 0 and the indented lines after it)."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## From Python\n\n```python\n(.*?)```", text, re.S).group(1)
    cells: list[list[str]] = []
    for line in block.splitlines():
        if line.strip() and not line[0].isspace():
            cells.append([line])
        elif cells:
            cells[-1].append(line)
    return ["\n".join(c) for c in cells]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, gpt2_bpe_files):
    """GPT-2's tokenizer and layer/head counts (the README asks for layer 12 and head 5-10), small widths."""
    from minigpt2.checkpoint import make_checkpoint
    from minigpt2.config import GPT2Config
    cfg = GPT2Config(n_layers=12, n_heads=12, d_model=96, d_mlp=128, d_vocab=50257, n_ctx=64)
    return make_checkpoint(cfg, tmp_path_factory.mktemp("nb-model"), seed=1)


def test_the_readmes_python_cells_run_in_a_notebook(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGPT2_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    if "CorpusStore(\"store\")" in README.read_text(encoding="utf-8"):     # the corpus cells read a store
        pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed")
        from analysis.cli import main
        (tmp_path / "doc.txt").write_text("The baseball player hit a home run. " * 40, encoding="utf-8")
        assert main(["corpus", str(tmp_path / "doc.txt"), "--model", str(checkpoint), "--out", "store",
                     "--seq-len", "16", "--top", "3", "--workers", "1"]) == 0
    cells = readme_cells()
    assert any(c.startswith("report ") or c == "report" or c.startswith("report  ") for c in cells)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.replace('minigpt2.load("gpt2")', f'minigpt2.load({str(checkpoint)!r})'))
                for c in cells]
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    outputs = {c.source.split("\n")[0].split("#")[0].strip(): c.outputs for c in nb.cells}
    streams = "".join(o.get("text", "") for c in nb.cells for o in c.outputs if o.output_type == "stream")
    assert "IProgress" not in streams and "Traceback" not in streams
    assert not [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    model_repr = outputs["model"][0]["data"]["text/plain"]
    assert "\n" not in model_repr and "12 layers x 12 heads" in model_repr and "RANDOM weights" in model_repr
    page = outputs["report"][0]["data"]["text/html"]
    assert len(page.encode()) <= NOTEBOOK_HTML_MB * 1e6
    assert page.count("<script>") == 1 and "<script src" not in page and 'data-mg2' in page     # interactive
    assert "Random weights" in page                                                            # and honest
    table = outputs['report["neurons"].where(layer=2, neuron=666)'][0]["data"]["text/html"]
    assert table.startswith('<div class="mg2r"><style>') and "td.h10" in table              # styled on its own
    assert (tmp_path / "my-report" / "index.html").is_file()
