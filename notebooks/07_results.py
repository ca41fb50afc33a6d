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
# # 7. Where the reproduction stands
#
# **What you will learn.** Which numbers of the LTS {cite}`jing2021lts` and CRIS {cite}`wang2022cris`
# papers this book has a run configuration for, which of them have been run at full scale, and what
# those runs measured, each next to the paper's number *of the same metric* (mIoU for CRIS, oIoU for
# LTS, cIoU and gIoU for gRefCOCO {cite}`liu2023gres`; chapter 2 explains why they differ). The tables
# are computed when the book is built, from the result files on disk: a cell without a run says so. The
# papers' numbers are read from `published.yaml`, shipped with `refseg_core`; ours from the run
# folders committed under `refseg_core/evidence/runs/`.

# %%
import sys

REPO, REF = "https://github.com/refseg-book/refseg-book", "v0.1.0"  # the release
if "google.colab" in sys.modules:  # in Colab only: install the package, nothing else
    import subprocess

    package = f"refseg_core @ git+{REPO}@{REF}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

# %% tags=["parameters"]
runs_dir = None  # the runs of this machine (chapters 3 to 6); None: <refseg home>/runs
results_dir = None  # full reproduction runs; None: the ones shipped with refseg_core

# %%
from pathlib import Path

from refseg_core import configs, engine, evidence, published
from refseg_core.config import read_config_values
from refseg_core.engine import results as gather
from refseg_core.notebook import show_markdown
from refseg_core.paths import home
from refseg_core.tables import markdown_table

runs_dir = Path(runs_dir or home() / "runs")
results_dir = Path(results_dir or evidence.RUNS_DIR)

# %% [markdown]
# ## The configurations
#
# One configuration shipped with `refseg_core` (`refseg_core/configs/`) per cell of the papers' tables;
# the `smoke_*` ones are the book's CPU runs. A full run is one command on a machine with the data and a
# GPU, `python -m refseg_core train --config <name>`; `refseg_core/evidence/runs/README.md` says how to
# add its result folder to the book. The paper numbers each configuration targets, by
# `published.lookup` on its model's method and its dataset:

# %%
targets = {}
for name in configs.names():
    if name.startswith("smoke_"):
        continue
    cfg, _ = read_config_values(name)
    method = published.paper_method(cfg["model"], cfg["dataset"])
    targets[name] = (cfg, published.lookup(method=method, dataset=cfg["dataset"]))
rows = [
    [name, cfg["model"], cfg["dataset"], cfg.get("split_by"), len(qs),
     ", ".join(sorted({f"{q['metric']} ({q['method']})" for q in qs}))]
    for name, (cfg, qs) in targets.items()
]  # fmt: skip
headers = ["configuration", "model", "dataset", "splitBy", "paper numbers", "metrics"]
show_markdown(markdown_table(rows, headers=headers))

# %% [markdown]
# ## Full runs against the papers
#
# Every paper number a configuration targets, as "paper / ours": ours is the number of the same metric
# from a committed full run, where one exists. An `eval_<dataset>_<split>.json` file of
# `python -m refseg_core evaluate` scores every sentence, as the papers do, and is preferred to the
# `metrics.json` of training, whose validation score uses each ref's first sentence only (the file's
# `meta` says so, and the table marks it).

# %%
found = engine.find_results(results_dir) if results_dir.is_dir() else []
full = [r for r in found if r["synthetic"] is False]  # files that say their data is real
print(f"committed full runs: {len({r['run'] for r in full})} folder(s) with results")


def ours(q: dict) -> str:
    """Our number for the paper number ``q``: '–' without a run; marked if first sentences."""
    hits = [r for r in full if q in published.paper_numbers(r)]
    hits = [r for r in hits if r["metrics"].get(q["metric"]) is not None]
    # eval files (every sentence) first
    hits.sort(key=lambda r: r["file"].startswith("eval_"), reverse=True)
    if not hits:
        return "–"
    r = hits[0]
    first_only = r["file"] == "metrics.json" and r["meta"].get("val_first_sentence_only")
    value = f"{100 * r['metrics'][q['metric']]:.2f}"
    return value + (" (first sentences)" if first_only else "")


splits = ["val", "testA", "testB", "test"]
targeted = [q for _, qs in targets.values() for q in qs]
targeted = [q for i, q in enumerate(targeted) if q not in targeted[:i]]
grid = {}
for q in targeted:
    key = (q["method"], q["dataset"], q["metric"], q["source"])
    grid.setdefault(key, {})[q["split"]] = f"{q['value']:.2f} / {ours(q)}"
rows = [[*key, *(cells.get(s) for s in splits)] for key, cells in grid.items()]
headers = ["method", "dataset", "metric", "paper's source", *splits]
show_markdown(markdown_table(rows, headers=headers))
done = sum(ours(q) != "–" for q in targeted)
print(f"{done} of {len(targeted)} targeted paper numbers have a committed full run.")

# %% [markdown]
# Numbers of neighbouring methods, kept for context; this book has no configuration for them:

# %%
others = [q for q in published.lookup() if q not in targeted]
columns = ["method", "dataset", "split", "metric", "value", "source"]
show_markdown(markdown_table(others, columns))

# %% [markdown]
# ## The smoke runs of this build
#
# What the earlier chapters measured while this book was built: tiny models on the synthetic data, on a
# CPU. They exercise the same code path as the full runs, and `refseg_core.engine.results` reads them
# the same way, but no paper number belongs next to them: the papers did not use this data.

# %%
smoke = engine.find_results(runs_dir) if runs_dir.is_dir() else []
if smoke:
    show_markdown(gather.table(smoke)[0])
else:
    print(f"{runs_dir} holds no result files yet: chapters 3 to 6 write them")

# %% [markdown]
# ## Summary
#
# * Each cell of the papers' tables has a configuration and a one-line command.
# * Paper numbers are compared only with our number of the same metric; the table is built from the
#   committed run folders, and a cell without a run shows "–" after the paper's number.
# * The book's smoke runs use the same code and file formats, on synthetic data, and are never set next
#   to a paper's number.
#
# ## Exercises
#
# 1. Run `python -m refseg_core gather ~/refseg-book/runs` in a terminal (the runs folder of the
#    book's smoke runs). What does it write besides the table it prints?
#
# ```{dropdown} Solution
# It writes `results.md` (the same Markdown table) and `results.json` (every row with its metrics, its
# `meta` and the paper numbers it was matched with) into the runs folder; `--out STEM` writes them
# elsewhere.
# ```
#
# 2. Copy a smoke run folder into a folder of your own, pass that folder as `results_dir`, and edit
#    its `metrics.json` so that `meta.synthetic` is false and `meta.model` is `cris_r50`. Where does it
#    appear, and why is this a bad idea for a real result?
#
# ````{dropdown} Solution
# ```python
# import json, shutil
# shutil.copytree(runs_dir / "smoke_cris", "my_results/smoke_cris")
# f = Path("my_results/smoke_cris/metrics.json")
# data = json.loads(f.read_text())
# data["meta"].update(synthetic=False, model="cris_r50")
# f.write_text(json.dumps(data))
# ```
#
# With `results_dir = "my_results"` the run fills the CRIS-R50 RefCOCO *val* cell as "ours", next to the
# paper's mIoU. It is a bad idea because nothing but the `meta` of the file keeps a number measured
# on generated scenes, with a tiny model, from standing next to a paper's number: the engine writes
# `synthetic` from the data itself (`engine.eval_meta`) precisely so that this cannot happen by accident,
# and a file edited by hand defeats it. A `metrics.json` also holds training's validation score, not
# a score of the papers' test protocol.
# ````
#
# 3. Score the smoke CRIS run on its testA split (the run folder: its selected `best.pt`),
#    `python -m refseg_core evaluate --checkpoint ~/refseg-book/runs/smoke_cris --split testA`, and execute
#    this chapter again. Which table gains a row, and why has that row no paper number?
#
# ```{dropdown} Solution
# The smoke-runs table gains a row for `eval_refcoco_testA.json`, scored on every sentence of testA. It
# has no paper number because its `meta.synthetic` is true: `evaluate` records that the data was
# generated (the data folder's `synthetic.json` manifest says so), and the papers did not use that data.
# ```
