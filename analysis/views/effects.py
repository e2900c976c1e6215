"""What each head and neuron does to the prediction of the text: its total effect (ablated alone, exact), its
attribution (the first-order estimate of the same from one backward pass) and its direct effect (its own
write, read through ln_f)."""
from __future__ import annotations

import numpy as np

from minigpt2 import Edit
from minigpt2.attribution import attribution
from minigpt2.backward import backward
from minigpt2.errors import InputError
from minigpt2.layers import log_softmax
from minigpt2.readout import head_effects, ln_final_scale, logit_directions

from ..report.table import Table

EXACT_NEURONS = 256   # neurons ablated exactly: those of largest |attribution|


def direct_effects(model, trace) -> dict[str, np.ndarray]:
    """Direct effect on the actual next token's logit, summed over the prompt: {"head": [L, H], "neuron": [L, m]}
    (minigpt2.readout: each contribution at position t read along the next token's logit direction)."""
    p, T = model.params, trace.n_tokens
    w = logit_directions(p, trace.ids[1:], ln_final_scale(trace.resid_pre[-1, : T - 1], trace.layer_norm_eps))
    heads = head_effects(trace.head_outputs(T - 1), p.W_O, w).sum(axis=-1, dtype=np.float64)       # [L, H]
    neurons = np.stack([np.einsum("tm,mt->m", trace.mlp_acts[l, : T - 1], p.W_out[l] @ w.T)   # sum_t of
                        for l in range(trace.n_layers)])      # readout.neuron_effects, without its [T, m] array
    return {"head": heads, "neuron": neurons}


def exact_effects(model, trace, jobs, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For each (kind, layer, index) in jobs, ablated alone (scale 0): the drop of the actual next tokens'
    log-prob and of their logit, summed over the prompt ([n], [n] float64). Each pass resumes at the
    component's own layer from the clean residual, so it costs only the layers after it."""
    from minigpt2.progress import steps

    ids = trace.ids
    nxt, t_ = ids[1:], np.arange(len(ids) - 1)
    clean_lp = log_softmax(trace.logits)[t_, nxt]                                # [T-1]
    clean_logit = trace.logits[t_, nxt].astype(np.float64)
    lp_drop, logit_drop = np.zeros(len(jobs)), np.zeros(len(jobs))
    for j, (kind, l, i) in enumerate(steps(jobs, "total effects", "ablation", progress)):   # an estimate, then
                                                                                           #   a line every 10%
        edit = Edit.head(l, i, 0.0) if kind == "head" else Edit.neuron(l, i, 0.0)
        logits = model.logits(ids, edits=[edit], start=l, resid=trace.resid_pre[l])
        lp_drop[j] = (clean_lp - log_softmax(logits)[t_, nxt]).sum()
        logit_drop[j] = (clean_logit - logits[t_, nxt]).sum()
    return lp_drop, logit_drop


def total_effects_table(model, trace, tokens: list[str], n_neurons: int = EXACT_NEURONS,
                        progress: bool = False) -> Table:
    """Every head and every neuron: its attribution (one backward pass), and for every head and the n_neurons
    neurons of largest |attribution| its exact total effect (one resumed pass each), beside its direct effect.
    Rows with an exact effect come first, by |total effect|; the other neurons follow by |attribution|."""
    ids, cfg = trace.ids, model.cfg
    if len(ids) < 2:
        raise InputError("total effects need at least 2 tokens (a next token to predict)")
    L, H, m = cfg.n_layers, cfg.n_heads, cfg.d_mlp
    attr = attribution(trace, backward(trace, cfg))                              # [L, H], [L, m]
    top = np.argsort(-np.abs(attr.neurons).reshape(-1), kind="stable")[: min(n_neurons, L * m)]
    jobs = [("head", l, h) for l in range(L) for h in range(H)] + [("neuron", *divmod(int(f), m)) for f in top]
    lp_drop, logit_drop = exact_effects(model, trace, jobs, progress)
    exact = {job: (a, b) for job, a, b in zip(jobs, lp_drop.tolist(), logit_drop.tolist())}
    direct = direct_effects(model, trace)
    rows = []
    for kind, arr, n in (("head", attr.heads, H), ("neuron", attr.neurons, m)):
        for (l, i), a, d in zip(np.ndindex(L, n), arr.reshape(-1).tolist(), direct[kind].reshape(-1).tolist()):
            total, logit = exact.get((kind, l, i), (None, None))
            rows.append([f"L{l} H{i}" if kind == "head" else f"L{l} N{i}", kind, l, i if kind == "head" else None,
                         i if kind == "neuron" else None, total, a, logit, d])
    rows.sort(key=lambda r: (r[5] is None, -abs(r[6] if r[5] is None else r[5])))
    columns = ["component", "kind", "layer", "head", "neuron", "total effect (log-prob)", "attribution (log-prob)",
               "total effect (logit)", "direct effect (logit)"]
    r = correlation([(x[5], x[6]) for x in rows if x[5] is not None])
    return Table("effects", "Total effects", columns, rows,
                 f"Each head, and the {len(top)} neurons of largest |attribution|, ablated alone (scale 0): how "
                 "much the log-probability of the actual next tokens drops, summed over the prompt (positive: the "
                 "component helps predict the text). Attribution is the same to first order, from one backward "
                 f"pass (d sum log p / d scale at scale 1), for all {L * H} heads and {L * m} neurons (effects.csv "
                 f"has every one); over the exact rows its correlation with the total effect is r = {r:.3f}. The "
                 "logit columns set the total effect beside the direct effect (the component's own write, read "
                 "through ln_f): total minus direct is what it does through later layers.")


def correlation(pairs: list[tuple[float, float]]) -> float:
    """Pearson's r of the pairs (nan for fewer than two, or a constant column)."""
    if len(pairs) < 2:
        return float("nan")
    x, y = np.array(pairs, np.float64).T
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / den) if den > 0 else float("nan")
