# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Reproduction results
#
# **What you will learn.** Where the reproduction of LTS {cite}`jing2021lts` and CRIS {cite}`wang2022cris`
# stands: which paper numbers have a parameter file that reproduces them, which of those have been run at
# full scale, and what they measured — each next to the paper's number *of the same metric* (mIoU for
# CRIS, oIoU for LTS, cIoU and gIoU for gRefCOCO {cite}`liu2023gres`). The table is computed when the
# book is built, from the result files on disk: a cell without a run says so.

# %%
import sys

REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"  # the release
if "google.colab" in sys.modules:  # in Colab only: install the package, nothing else
    import subprocess

    package = f"refseg_core @ git+{REPO}@{REF}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

# %% tags=["parameters"]
runs_dir = None  # the runs of this machine (chapters 3 to 6); None: <refseg home>/runs
results_dir = None  # committed full reproduction runs; None: the ones shipped with refseg_core

# %%
import json
from pathlib import Path

from IPython.display import Markdown, display

from refseg_core import configs, evidence
from refseg_core.config import read_config_values
from refseg_core.engine import results as gather
from refseg_core.paths import home

published = gather.load_published()  # the shipped published.yaml
runs_dir = runs_dir or str(home() / "runs")
results_dir = results_dir or str(evidence.RUNS_DIR)

# %% [markdown]
# ## The configurations
#
# One configuration shipped with `refseg_core` (`refseg_core/configs/`) per cell of the papers' tables (the
# `smoke_*` ones are the book's CPU runs; `published.yaml` holds the papers' numbers). A full run is one
# command on a machine with the data and a GPU; `refseg_core/evidence/runs/README.md` says how to add its
# result folder to the book.

# %%
paper_cells = [n for n in configs.names() if not n.startswith("smoke_")]
plans = []
rows = [
    "| configuration | model | dataset (split) | paper numbers it targets | command |",
    "|---|---|---|---|---|",
]
for name in paper_cells:
    cfg, _ = read_config_values(name)
    # the paper numbers a full (non-synthetic) run of this file would be compared with, split by split
    targets = [
        q
        for q in published
        if gather.paper_numbers(
            {"synthetic": False, "model": cfg["model"], "dataset": cfg["dataset"], "split": q["split"]}, [q]
        )
    ]
    plans.append({"file": name, "model": cfg["model"], "dataset": cfg["dataset"], "targets": targets})
    metrics = sorted({f"{q['metric']} ({q['method']})" for q in targets})
    rows.append(
        f"| `{name}` | {cfg['model']} | {cfg['dataset']} ({cfg.get('split_by', '')}) | "
        f"{len(targets)} × {', '.join(metrics) or '—'} | `python -m refseg_core train --config {name}` |"
    )
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## Full runs against the papers
#
# Every paper number of `published.yaml` that a configuration targets, with our measured number of the
# same metric from a committed full run (`refseg_core/evidence/runs/`) where one exists. A number from `metrics.json` is the
# validation score at the end of training, which by default uses each ref's first sentence only; the
# `eval_<dataset>_<split>.json` files of `python -m refseg_core evaluate` score every sentence, like the
# papers, and are preferred.

# %%
results_path = Path(results_dir)
full_rows = gather.find_results(results_path) if results_path.is_dir() else []
full_rows = [r for r in full_rows if not r["synthetic"]]
runs_found = sorted({r["run"] for r in full_rows})
print(
    f"committed full runs: {len(runs_found)} folder(s) with results"
    + (f": {', '.join(runs_found)}" if runs_found else "")
)


def first_sentence_only(row: dict) -> bool:
    meta = json.loads((results_path / row["run"] / row["file"]).read_text()).get("meta", {})
    return bool(meta.get("val_first_sentence_only", False))


def measured(q: dict):
    """Our number for paper entry ``q``: (value, where) from the best matching full-run file, or None."""
    hits = [
        r
        for r in full_rows
        if q in gather.paper_numbers(r, [q]) and r["metrics"].get(q["metric"]) is not None
    ]
    hits.sort(key=lambda r: r["file"].startswith("eval_"), reverse=True)  # every sentence first
    if not hits:
        return None
    r = hits[0]
    note = " (first sentence per ref)" if r["file"] == "metrics.json" and first_sentence_only(r) else ""
    return 100 * r["metrics"][q["metric"]], f"`{r['run']}/{r['file']}`{note}"


targeted = [q for plan in plans for q in plan["targets"]]
targeted = [q for i, q in enumerate(targeted) if q not in targeted[:i]]
rows = [
    "| method | dataset | split | metric | paper | ours (full run) | source of ours |",
    "|---|---|---|---|---|---|---|",
]
done = 0
for q in targeted:
    m = measured(q)
    done += m is not None
    ours, where = (f"{m[0]:.2f}", m[1]) if m else ("**not yet reproduced**", "no committed result file")
    rows.append(
        f"| {q['method']} | {q['dataset']} | {q['split']} | {q['metric']} | {q['value']:.2f} ({q['source']}) | "
        f"{ours} | {where} |"
    )
display(Markdown("\n".join(rows)))
display(
    Markdown(
        f"**{done} of {len(targeted)}** paper numbers targeted by a configuration have a committed "
        f"full-run result; the other {len(targeted) - done} are not yet reproduced."
    )
)

# %% [markdown]
# Numbers of neighbouring methods, kept for context; this book has no configuration for them:

# %%
others = [q for q in published if q not in targeted]
rows = ["| method | dataset | split | metric | paper |", "|---|---|---|---|---|"]
rows += [
    f"| {q['method']} | {q['dataset']} | {q['split']} | {q['metric']} | {q['value']:.2f} ({q['source']}) |"
    for q in others
]
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## The smoke runs of this build
#
# What the earlier chapters measured while this book was built: tiny models on the synthetic data, on a
# CPU. They exercise the same code path as the full runs, so `refseg_core.engine.results` reads them the same
# way, but no paper number belongs next to them (the papers did not use this data).

# %%
smoke_path = Path(runs_dir)
smoke_rows = gather.find_results(smoke_path) if smoke_path.is_dir() else []
if smoke_rows:
    md, _ = gather.table(smoke_rows, published)
    display(Markdown(md))
else:
    print(f"{runs_dir} holds no result files: run chapters 3 to 6 first (make book runs them in order)")

# %% [markdown]
# ## Summary
#
# * Each cell of the papers' tables has a configuration and a one-line command.
# * Paper numbers are compared only with our number of the same metric; the table is built from the
#   committed run folders, and a missing run shows as "not yet reproduced".
# * The smoke runs of the book use the same code and file formats, on synthetic data.
#
# ## Exercises
#
# 1. Run `python -m refseg_core gather ~/refseg-book/runs` from a terminal. What does it write besides the table?
# 2. Put a copy of a smoke run folder into a folder of your own, pass it as `results_dir`, and edit its `metrics.json` so that `meta.synthetic`
#    is false and `meta.model` is `cris_r50`. Where does it appear, and why is this a bad idea for a real
#    result?
# 3. Which paper numbers could a run of the configuration `lts_refcoco` fill, and with which metric?
