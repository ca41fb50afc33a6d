"""The GPU check: full-size evidence from one short device call (``make gpu-check``, about 6 minutes).

    python benchmarks/gpu_check.py --official-repo .gpu_kit/CRIS.pytorch --out DIR [--budget-s 360]
    python benchmarks/gpu_check.py --device cpu --tiny --out DIR       # the CPU dry run of the tests

Parts, in the order they run; each is guarded (an exception or a too-small remaining budget gives a row
with ``error`` or ``skipped``, and the next part still runs), and every row is written to
``DIR/<device>_check.json`` as soon as it exists:

1. ``official``: our CRIS-R50 train step at 416 px, batch 32, bf16 + channels_last, against the official
   CRIS (same weights, its own recipe: fp16 autocast + GradScaler, ``nn.MultiheadAttention``, NCHW),
   timed in interleaved rounds in one process: images/s, ratio, peak memory, MFU from counted FLOPs; in
   the same rounds, our step with the paper-cell configuration's own settings (``cris_r50_refcoco``:
   fp16 + GradScaler, NCHW, eager), a ``train_step_paper_cell`` row beside the bf16 / channels_last (and,
   part 6, compiled) opt-ins;
2. ``lts``: LTS at 416 px, batch 32, bf16 + channels_last: images/s, peak memory, MFU;
3. ``training``: a real run of ``refseg_core.engine.train``: CRIS-R50 from random weights on the synthetic
   set at 416 px for a fixed number of epochs (one epoch of ~10k refs: ~90 s on an H200), its loss curve,
   val mIoU and the language-blind baselines (it must beat the largest-object one). A time guard far
   above that is a loud failure: a run it stops reports no validation score;
4. ``recipe``: ``cris_r50`` trained with the paper-cell configuration's own recipe (``cris_r50_refcoco``:
   fp16 + GradScaler, NCHW, Adam 1e-4 with the backbone at x0.1 and the official epoch-1 quirk, no
   warm-up, no Dice term, ``select_best``) on the synthetic set at 416 px for a fixed number of epochs
   (``recipe_epochs``, each of ``recipe_items`` refs; never stopped by a clock: the guard is a loud
   failure), random weights (no OpenAI download on the device); then ``python -m refseg_core evaluate``
   scores the run folder (so ``best.pt``, the official choice) on every split, every sentence, next to
   the language-blind baselines of each split;
5. ``eval_data``: evaluation throughput (sentences/s, the official post-processing at the original size)
   and the data loader at 416 px with 8 workers against the train-step rate of part 1;
6. ``compile``: part 1 again with ``torch.compile`` on our side, its compile time reported separately
   (last, so that a slow compiler cannot starve the other parts).

The default budget (360 s) covers parts 1-3 and 5-6 on an H200; parts 1 and 4 alone (issue 23's rows)
take about 4 minutes: ``make gpu-check GPU_CHECK_ARGS="--only official,recipe --budget-s 330"``.

``--tiny`` shrinks every size (64 px, batch 2, a few steps) for the CPU dry run; its numbers mean nothing.
A summary table is printed at the end. Without CUDA the check refuses to run unless ``--device cpu`` is
given, and CPU rows say so in their ``device`` field: a CPU number never passes for a GPU one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.bench_models import BenchConfig, _set_memory_format, bench_model, make_batch, train_step_fn  # noqa: E402
from benchmarks.env import device_slug, environment, write_rows  # noqa: E402
from benchmarks.flops import mfu, model_flops_per_image, peak_tflops  # noqa: E402
from benchmarks.timing import PeakMemory, sync  # noqa: E402

SCHEMA_KEYS = ("part", "kind", "device", "device_type", "torch", "date")  # every row has these
FULL = dict(
    size=416,
    batch=32,
    rounds=8,
    steps_per_round=5,
    train_images=4000,
    train_image_size=256,
    train_epochs=1,  # fixed: one epoch took ~90 s on an H200 (2026-11-28)
    recipe_model="cris_r50",
    recipe_epochs=3,  # fixed: 3 x 80 steps of batch 32 at fp16, estimated ~2 minutes with validation
    recipe_items=2560,
    recipe_val_items=1000,
    eval_sentences=3000,
    eval_image_size=480,
    eval_batch=64,
    workers=8,
    loader_batches=40,
)
TINY = dict(
    size=64,
    batch=2,
    rounds=2,
    steps_per_round=1,
    train_images=8,
    train_image_size=64,
    train_epochs=1,
    recipe_model="cris_tiny",  # the CPU dry run exercises the code path, not the model
    # fp16 autocast on a CPU takes ~10x a bf16 step (no fp16 kernels): the dry run times the paper-cell row
    # in fp32 (its row says so); the fp16 + GradScaler path runs in the dry run's recipe part
    paper_cell_precision="fp32",
    recipe_epochs=2,
    recipe_items=4,
    recipe_val_items=4,
    eval_sentences=16,
    eval_image_size=64,
    eval_batch=4,
    workers=0,
    loader_batches=2,
)
# Seconds each part needs on an H200 at FULL sizes (estimates; a part is skipped when less remains).
ESTIMATE_S = dict(official=80, lts=15, training=150, recipe=150, eval_data=40, compile=90)
PAPER_CELL = "cris_r50_refcoco"  # the configuration whose own recipe parts 1 and 4 run


@dataclass
class Check:
    """The state of one check: sizes, the deadline, the rows so far and where they go."""

    device: torch.device
    sizes: dict
    budget_s: float
    out: Path
    official_repo: str | None
    start: float = field(default_factory=time.time)
    rows: list = field(default_factory=list)
    shared: dict = field(default_factory=dict)  # what one part hands to a later one (models, rates)

    def remaining(self) -> float:
        return self.budget_s - (time.time() - self.start)

    def add(self, part: str, kind: str, **values) -> dict:
        row = {"part": part, "kind": kind, **environment(self.device), **values}
        self.rows.append(row)
        write_rows(self.out / f"{device_slug(self.device)}_check.json", self.rows)
        return row


def interleaved(fns: dict, device: torch.device, rounds: int, steps: int, deadline=None) -> dict:
    """Seconds per call of each of ``fns`` (name -> closure), timed in turns: round r runs ``steps`` calls
    of every closure in order, so that a slower phase of the machine (clocks, other tenants) falls on all
    alike. Returns ``{name: [seconds per call of each round]}``; stops early (after >= 1 round) when
    ``deadline()`` says no time is left."""
    times = {k: [] for k in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) / steps)
        if deadline is not None and r >= 0 and deadline():
            break
    return times


def _peak(fn, device) -> float | None:
    with PeakMemory(device) as mem:
        fn()
    return mem.mib


def _pair(check: Check):
    """Our CRIS-R50 and the official CRIS with the same weights, built once and shared by parts 1 and 5."""
    if "pair" not in check.shared:
        from benchmarks.official_cris import OfficialRepoMissing, build_pair
        from refseg_core.models import build_model

        try:
            ours, official = build_pair("cris_r50", check.official_repo)
            official.to(check.device).train()
        except OfficialRepoMissing as exc:  # ours is still measured; the row says why the other is not
            check.shared["official_missing"] = str(exc)
            torch.manual_seed(0)
            ours, official = build_model("cris_r50"), None
        ours.to(check.device).train()
        check.shared["pair"] = (ours, official)
    return check.shared["pair"]


def _official_precision(device: torch.device) -> str:
    from benchmarks.official_cris import official_recipe

    return official_recipe(device)


def _paper_cell_step(ours, batch: dict, device: torch.device, precision: str | None = None):
    """``(BenchConfig, step closure, model)``: our train step with the paper-cell configuration's own
    speed settings (precision, channels_last, compile of :data:`PAPER_CELL`) on a copy of ``ours`` (the
    same weights; the copy keeps its own memory format and optimiser)."""
    import copy

    from refseg_core.config import load_config

    pc = load_config(PAPER_CELL)
    cfg = BenchConfig(precision or pc.precision, channels_last=pc.channels_last, compile=pc.compile)
    model = copy.deepcopy(ours)
    paper_batch = _set_memory_format(model, batch, cfg.channels_last)
    return cfg, train_step_fn(model, paper_batch, cfg, device), model


def _config_precision() -> str:
    from refseg_core.config import load_config

    return load_config(PAPER_CELL).precision


def part_official(check: Check, compiled: bool = False) -> None:
    """Part 1 (and 6 with ``compiled``): our train step against the official one, interleaved; part 1 also
    times the paper-cell configuration's own settings in the same rounds."""
    from benchmarks.official_cris import official_step_fn

    s, dev = check.sizes, check.device
    part = "compile" if compiled else "official"
    ours, official = _pair(check)
    batch = make_batch(ours, s["batch"], s["size"], dev)
    cfg = BenchConfig("bf16", channels_last=True, compile=compiled)
    paper = (  # before ours goes channels_last
        None if compiled else _paper_cell_step(ours, batch, dev, s.get("paper_cell_precision"))
    )
    ours_batch = _set_memory_format(ours, batch, True)
    off_prec = _official_precision(dev)
    fns = {"ours": train_step_fn(ours, ours_batch, cfg, dev)}
    if official is not None:
        fns["official"] = official_step_fn(official, batch, off_prec, dev)
    if paper is not None:
        fns["paper_cell"] = paper[1]
    t0 = time.perf_counter()
    fns["ours"]()  # first call: Adam state, allocator growth, and with compile the compilation
    sync(dev)
    first_call_s = time.perf_counter() - t0
    for name in ("official", "paper_cell"):
        if name in fns:
            fns[name]()  # the same first call, untimed
    peaks = {k: _peak(fn, dev) for k, fn in fns.items()}
    times = interleaved(fns, dev, s["rounds"], s["steps_per_round"], deadline=lambda: check.remaining() < 30)
    if "flops" not in check.shared:
        check.shared["flops"] = model_flops_per_image(ours, batch, train=True)
    flops = check.shared["flops"]
    ips = {k: s["batch"] / statistics.median(v) for k, v in times.items()}
    ips.setdefault("official", None)
    times.setdefault("official", [])
    peaks.setdefault("official", None)
    paper_row = None
    if paper is not None:
        pcfg = paper[0]
        peak_paper = (
            peak_tflops(torch.cuda.get_device_name(dev), pcfg.precision)[0] if dev.type == "cuda" else None
        )
        paper_row = dict(
            model="cris_r50",
            config=PAPER_CELL,
            input_size=s["size"],
            batch=s["batch"],
            precision=pcfg.precision,
            config_precision=_config_precision(),
            channels_last=pcfg.channels_last,
            compile=pcfg.compile,
            step="engine train_step + backward_step (autocast, GradScaler for fp16, Adam)",
            images_per_s=round(ips["paper_cell"], 2),
            round_s=[round(t, 5) for t in times["paper_cell"]],
            peak_mem_mib=peaks["paper_cell"],
            relative_to_bf16_channels_last=round(ips["paper_cell"] / ips["ours"], 3),
            relative_to_official=round(ips["paper_cell"] / ips["official"], 3) if ips["official"] else None,
            mfu=mfu(flops, ips["paper_cell"], peak_paper),
            note="timed in the same interleaved rounds as the train_step_vs_official row (a model copy, NCHW)",
        )
    peak_bf16 = peak_tflops(torch.cuda.get_device_name(dev), "bf16")[0] if dev.type == "cuda" else None
    peak_off = peak_tflops(torch.cuda.get_device_name(dev), off_prec)[0] if dev.type == "cuda" else None
    check.shared.setdefault("train_ips", ips["ours"])
    check.add(
        part,
        "train_step_vs_official",
        model="cris_r50",
        input_size=s["size"],
        batch=s["batch"],
        ours_config="bf16+channels_last" + ("+compile" if compiled else ""),
        official_config=f"{off_prec} autocast{' + GradScaler' if off_prec == 'fp16' else ''}, eager, NCHW",
        ours_images_per_s=round(ips["ours"], 2),
        official_images_per_s=round(ips["official"], 2) if ips["official"] else None,
        speedup=round(ips["ours"] / ips["official"], 3) if ips["official"] else None,
        official_skipped=check.shared.get("official_missing"),
        rounds=len(times["ours"]),
        steps_per_round=s["steps_per_round"],
        ours_round_s=[round(t, 5) for t in times["ours"]],
        official_round_s=[round(t, 5) for t in times["official"]],
        ours_peak_mem_mib=peaks["ours"],
        official_peak_mem_mib=peaks["official"],
        peak_mem_note="max allocated during one step, every model of the rounds and its optimiser resident",
        first_call_s=round(first_call_s, 2),
        **({"compile_s": round(first_call_s, 2)} if compiled else {}),
        flops_per_image=flops,
        ours_mfu=mfu(flops, ips["ours"], peak_bf16),
        official_mfu=mfu(flops, ips["official"], peak_off),
    )
    if paper_row is not None:
        check.add(part, "train_step_paper_cell", **paper_row)
        paper[2].zero_grad(set_to_none=True)
        del paper, fns
    ours.zero_grad(set_to_none=True)
    if official is not None:
        official.zero_grad(set_to_none=True)
    if compiled:
        torch._dynamo.reset()


def part_lts(check: Check) -> None:
    """Part 2: LTS train step at full size, bf16 + channels_last."""
    s = check.sizes
    for r in bench_model(
        "lts",
        check.device,
        s["size"],
        s["batch"],
        s["batch"],
        [BenchConfig("bf16", True)],
        warmup=1,
        repeats=max(3, s["rounds"] * s["steps_per_round"]),
        kinds=("train_step",),
    ):
        check.add("lts", r.pop("kind"), **{k: v for k, v in r.items() if k not in SCHEMA_KEYS})


def part_training(check: Check) -> None:
    """Part 3: a real training run from random weights on the synthetic set (fixed epochs, seeded)."""
    from refseg_core import engine
    from refseg_core.data.synthetic import ensure_synthetic

    s, work = check.sizes, check.out / "_work"
    t_data = time.time()  # generated here with all workers; train() then finds it (same manifest)
    ensure_synthetic(
        work / "train_data",
        "refcoco",
        0,
        s["train_images"],
        s["train_image_size"],
        num_workers=s["workers"],
        regenerate=True,
    )  # _work is this script's scratch
    data_s = time.time() - t_data
    # A loud guard only: a run it stops is a failure of the check (no learning result is reported),
    # never a result measured after however many steps the machine managed.
    guard = max(30.0, check.remaining() - 60)
    cfg = dict(
        model="cris_r50",
        pretrained=None,
        dataset="refcoco",
        split_by="unc",
        synthetic=True,
        data_root=str(work / "train_data"),
        synthetic_num_images=s["train_images"],
        synthetic_image_size=s["train_image_size"],
        input_size=s["size"],
        epochs=s["train_epochs"],
        batch_size=s["batch"],
        lr=1e-4,
        backbone_lr_mult=1.0,
        milestones=[max(1, s["train_epochs"] - 1)],
        warmup_steps=50 if s is FULL else 0,
        dice_weight=1.0,
        precision="bf16",
        channels_last=True,
        device=str(check.device),
        num_workers=s["workers"],
        seed=0,
        output_dir=str(work / "train_run"),
        log_every=10 if s is FULL else 1,
        tensorboard=False,
        max_eval_items=2000,
        time_limit_s=guard,
    )
    t0 = time.time()
    result = engine.train(cfg, progress=True, overwrite=True)  # scratch run of this script
    check.shared["training_data_s"] = data_s
    baselines = result.extra.get("baselines", {})
    best = max(baselines.items(), key=lambda kv: kv[1]["mIoU"]) if baselines else (None, {"mIoU": None})
    curve = [
        dict(step=h["step"], loss=round(h["loss"], 5))
        for h in result.history
        if "loss" in h and "val_mIoU" not in h
    ]
    check.add(
        "training",
        "training_run",
        model="cris_r50",
        pretrained=None,
        input_size=s["size"],
        batch=s["batch"],
        epochs=s["train_epochs"],
        steps=max((h["step"] for h in result.history), default=None),
        train_time_s=round(result.train_time_s, 1),
        data_generation_s=round(data_s, 1),
        wall_s=round(time.time() - t0, 1),
        stopped_by_guard=result.stopped_early,
        guard_s=round(guard),
        config={k: v for k, v in cfg.items() if k not in ("data_root", "output_dir")},
        deviations="random init (no OpenAI weights offline), backbone lr x1, Dice term, 50 warm-up steps",
        loss_curve=curve,  # fixed steps: the same points whatever the machine's speed
        **(
            {
                "error": f"the time guard ({round(guard)} s) stopped the run before its {s['train_epochs']} epoch(s)"
            }
            if result.stopped_early
            else dict(
                val_mIoU=result.metrics.get("mIoU"),
                val_oIoU=result.metrics.get("oIoU"),
                val_n=result.metrics.get("n"),
                baselines={k: v.get("mIoU") for k, v in baselines.items()},
                best_baseline=best[0],
                beats_best_baseline=(result.metrics.get("mIoU") or 0) > (best[1]["mIoU"] or 1),
            )
        ),
    )


def part_recipe(check: Check) -> None:
    """Part 4: ``cris_r50`` with the paper-cell configuration's own recipe and best-epoch selection, then
    ``evaluate`` on the run folder (``best.pt``) for every split."""
    import contextlib
    import io
    import json

    from refseg_core import engine
    from refseg_core.__main__ import main as cli
    from refseg_core.config import load_config
    from refseg_core.data.refer import Refer
    from refseg_core.data.synthetic import ensure_synthetic

    s, work = check.sizes, check.out / "_work"
    t_data = time.time()  # part 3's data when it ran (same manifest), else generated here
    ensure_synthetic(
        work / "train_data", "refcoco", 0, s["train_images"], s["train_image_size"], num_workers=s["workers"]
    )
    data_s = time.time() - t_data
    guard = max(30.0, check.remaining() - 60)  # a loud failure only, never a result
    deviations = {  # what differs from the paper cell, each for a reason of this check
        "model": s["recipe_model"],
        "pretrained": None,  # no OpenAI weights on the device: random init
        "synthetic": True,
        "data_root": str(work / "train_data"),
        "synthetic_num_images": s["train_images"],
        "synthetic_image_size": s["train_image_size"],
        "epochs": s["recipe_epochs"],  # fixed, far fewer than 50: the call's time
        "max_train_items": s["recipe_items"],
        "max_eval_items": s["recipe_val_items"],  # validation during training (first sentences)
        "batch_size": s["batch"],  # one GPU (the recipe's 64 is global over 8)
        "num_workers": s["workers"],
        "device": str(check.device),
        "output_dir": str(work / "recipe_run"),
        "tensorboard": False,
        "log_every": 10 if s is FULL else 1,
        "time_limit_s": guard,
        **(
            {} if s is FULL else {"input_size": s["size"]}
        ),  # the dry run's tiny input (FULL: the config's 416)
    }
    cfg = load_config(PAPER_CELL, deviations)
    result = engine.train(cfg, progress=True, overwrite=True)  # scratch run of this script
    row = dict(
        config=PAPER_CELL,
        model=cfg.model,
        input_size=cfg.input_size,
        recipe={
            k: getattr(cfg, k)
            for k in (
                "precision",
                "channels_last",
                "lr",
                "backbone_lr_mult",
                "official_lr_quirk",
                "warmup_steps",
                "dice_weight",
                "milestones",
                "sync_bn",
                "select_best",
                "val_first_sentence_only",
            )
        },
        deviations={k: v for k, v in deviations.items() if k not in ("data_root", "output_dir", "device")},
        train_time_s=round(result.train_time_s, 1),
        data_generation_s=round(data_s, 1),
        steps=max((h["step"] for h in result.history), default=None),
        stopped_by_guard=result.stopped_early,
        guard_s=round(guard),
        val_mIoU_by_epoch=[
            {"epoch": h["epoch"], "val_mIoU": h["val_mIoU"]} for h in result.history if "val_mIoU" in h
        ],
        best=result.best,
        loss_curve=[
            dict(step=h["step"], loss=round(h["loss"], 5)) for h in result.history if "val_mIoU" not in h
        ],
    )
    if result.stopped_early:
        check.add("recipe", "recipe_run", **row, error=f"the time guard ({round(guard)} s) stopped the run")
        return
    run = Path(cfg.output_dir)
    refer = Refer(cfg.data_root, cfg.dataset, cfg.split_by)
    splits = [sp for sp in ("val", "testA", "testB") if refer.split_refs(sp)]
    argv = ["evaluate", "--checkpoint", str(run), "--set", "max_eval_items=null"]
    for sp in splits:
        argv += ["--split", sp]
    buf = io.StringIO()
    t0 = time.time()
    with contextlib.redirect_stdout(buf):
        rc = cli(argv)
    said = buf.getvalue()
    print(said, end="", flush=True)
    if rc != 0:
        check.add("recipe", "recipe_run", **row, error=f"evaluate exited {rc}")
        return
    scores = {}
    for sp in splits:
        e = json.loads((run / f"eval_{cfg.dataset}_{sp}.json").read_text())
        base = engine.trivial_baselines(refer, sp)
        scores[sp] = dict(
            mIoU=e["mIoU"],
            oIoU=e["oIoU"],
            n=e["n"],
            checkpoint=Path(e["meta"]["checkpoint"]).name,
            checkpoint_epoch=e["meta"].get("checkpoint_epoch"),
            baselines={k: v["mIoU"] for k, v in base.items()},
        )
    check.add(
        "recipe",
        "recipe_run",
        **row,
        evaluate_said=[ln for ln in said.splitlines() if ln.startswith("evaluate:")],
        evaluate_s=round(time.time() - t0, 1),
        scores=scores,
        beats_largest_object={sp: v["mIoU"] > v["baselines"]["largest_object"] for sp, v in scores.items()},
    )


def part_eval_data(check: Check) -> None:
    """Part 5: evaluation throughput and the data loader at 8 workers against the train-step rate."""
    from benchmarks.data_pipeline import loader_throughput
    from benchmarks.eval_throughput import eval_row
    from refseg_core.data.refer import Refer

    s, work = check.sizes, check.out / "_work"
    ev = eval_row(
        "cris_r50",
        work / "eval_data",
        s["eval_sentences"],
        s["eval_image_size"],
        s["size"],
        s["eval_batch"],
        s["workers"],
        precision="bf16",
        device=check.device,
        gen_workers=s["workers"],
    )
    check.add("eval_data", ev.pop("kind"), **{k: v for k, v in ev.items() if k not in SCHEMA_KEYS})
    refer = Refer(work / "eval_data", "refcoco", "unc")
    dl = loader_throughput(
        refer, s["workers"], s["batch"], s["size"], s["loader_batches"], device=check.device
    )
    train_ips = check.shared.get("train_ips")
    ratio = round(dl["samples_per_s"] / train_ips, 3) if train_ips else None
    check.add(
        "eval_data",
        dl.pop("kind"),
        **{k: v for k, v in dl.items() if k not in SCHEMA_KEYS},
        train_images_per_s_ref=round(train_ips, 2) if train_ips else None,
        ratio_to_train_step=ratio,
        meets_2x_target=ratio >= 2.0 if ratio else None,
    )


PARTS = (
    ("official", part_official),
    ("lts", part_lts),
    ("training", part_training),
    ("recipe", part_recipe),
    ("eval_data", part_eval_data),
    ("compile", lambda c: part_official(c, compiled=True)),
)


def run_check(check: Check, only: list[str] | None = None) -> list[dict]:
    """Run the parts in order, each guarded; returns the rows."""
    scale = 1.0 if check.sizes is FULL else 0.0
    for name, fn in PARTS:
        if only and name not in only:
            continue
        need = ESTIMATE_S[name] * scale
        if check.remaining() < need:
            check.add(
                name,
                "skipped",
                skipped=f"{check.remaining():.0f} s of the budget left, the part needs ~{need} s",
            )
            print(f"== {name}: skipped (budget)", flush=True)
            continue
        print(f"== {name} ({check.remaining():.0f} s left)", flush=True)
        t0 = time.time()
        try:
            fn(check)
        except Exception as exc:  # noqa: BLE001 - recorded as a row; the other parts still run
            traceback.print_exc()
            check.add(name, "error", error=f"{type(exc).__name__}: {exc}"[:500])
            if check.device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"   {name} took {time.time() - t0:.0f} s", flush=True)
    return check.rows


def summary(rows: list[dict]) -> str:
    """The table printed at the end: one line per row, its headline numbers."""
    lines = [f"{'part':10s} {'kind':24s} result"]
    for r in rows:
        if r["kind"] == "train_step_vs_official":
            res = (
                f"ours {r['ours_images_per_s']} vs official {r['official_images_per_s']} img/s = x{r['speedup']}; "
                f"MFU {r['ours_mfu']} vs {r['official_mfu']}; peak {r['ours_peak_mem_mib']} / "
                f"{r['official_peak_mem_mib']} MiB"
                + (f"; compile {r['compile_s']} s" if "compile_s" in r else "")
            )
        elif r["kind"] == "train_step":
            res = f"{r.get('images_per_s')} img/s, peak {r.get('peak_mem_mib')} MiB, MFU {r.get('mfu')}"
        elif r["kind"] == "training_run" and (r.get("error") or r.get("stopped_by_guard")):
            res = f"{r.get('error') or 'stopped by the time guard'}; {r['steps']} steps in {r['train_time_s']} s"
        elif r["kind"] == "training_run":
            res = (
                f"val mIoU {r['val_mIoU']:.3f} vs best baseline {r['best_baseline']} "
                f"{r['baselines'].get(r['best_baseline'])}; {r['steps']} steps in {r['train_time_s']} s"
            )
        elif r["kind"] == "train_step_paper_cell":
            res = (
                f"{r['config']} ({r['precision']}, {'channels_last' if r['channels_last'] else 'NCHW'}): "
                f"{r['images_per_s']} img/s = x{r['relative_to_bf16_channels_last']} bf16+channels_last"
            )
        elif r["kind"] == "recipe_run" and r.get("error"):
            res = f"{r['error']}; {r['steps']} steps in {r['train_time_s']} s"
        elif r["kind"] == "recipe_run":
            res = f"best epoch {r['best']['epoch']} of {len(r['val_mIoU_by_epoch'])}; best.pt " + ", ".join(
                f"{sp} {v['mIoU']:.3f} (largest object {v['baselines']['largest_object']:.3f})"
                for sp, v in r["scores"].items()
            )
        elif r["kind"] == "evaluation":
            res = f"{r['sentences_per_s']} sentences/s ({r['sentences']} sentences)"
        elif r["kind"] == "data_loader":
            res = f"{r['samples_per_s']} samples/s with {r['workers']} workers = x{r['ratio_to_train_step']} the train step"
        else:
            res = r.get("error") or r.get("skipped") or ""
        lines.append(f"{r['part']:10s} {r['kind']:24s} {res}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes for the CPU dry run")
    ap.add_argument("--budget-s", type=float, default=360.0, help="wall-clock budget of the whole check")
    ap.add_argument("--official-repo", default=".gpu_kit/CRIS.pytorch")
    ap.add_argument("--out", type=Path, default=Path("_build/gpu_check"))
    ap.add_argument("--only", default=None, help=f"comma-separated parts of {[p for p, _ in PARTS]}")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device is visible; nothing was measured (a CPU dry run: --device cpu --tiny)",
            file=sys.stderr,
        )
        return 2
    torch.backends.cudnn.benchmark = args.device == "cuda"
    args.out.mkdir(parents=True, exist_ok=True)
    repo = args.official_repo if Path(args.official_repo, "model", "segmenter.py").is_file() else None
    check = Check(torch.device(args.device), TINY if args.tiny else FULL, args.budget_s, args.out, repo)
    only = [p.strip() for p in args.only.split(",")] if args.only else None
    rows = run_check(check, only)
    print(summary(rows), flush=True)
    print(f"gpu_check: {len(rows)} rows in {args.out} after {time.time() - check.start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
