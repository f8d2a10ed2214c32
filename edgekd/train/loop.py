"""The one training loop. Teacher, baseline and student differ only by their objective.

Per epoch: draw the epoch's training split, train with AdamW and a OneCycle schedule (the
forward pass under the stage's autocast, ``precision``, with a gradient scaler for fp16: see
:mod:`edgekd.train.precision`; optionally clipping each step's gradient norm, ``grad_clip_norm``,
after unscaling, and keeping an exponential moving average of the weights, ``ema_decay``: then
the average is what is validated, kept and shipped), validate
(top-1, mean |disparity| and the group-aware scores of :mod:`edgekd.train.selection` on the
validation split), checkpoint ``last.pt`` (model, optimiser, schedule, history) and keep
``best.pt`` by the recipe's ``select_by`` score. Every random draw is seeded from
``(seed, epoch)``, and the augmentation of the training images (``augment``,
:mod:`edgekd.data.augment`) from ``(seed, epoch, index)``, so a build stopped after epoch ``k``
and resumed gives the same weights as one that never stopped. A loss or an epoch's metric that
is NaN or infinite stops training with one line naming the stage, the epoch and the term
(:mod:`edgekd.train.finite`).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from edgekd.data.augment import Augmenter
from edgekd.data.rows import prefetch
from edgekd.data.splits import DataSplits, Split
from edgekd.fairness.counts import CellCounts, mean_abs_disparity
from edgekd.files import write_atomic, write_json
from edgekd.models import feature_width, pooled_features_and_logits
from edgekd.models.tensors import predict_logits, to_input
from edgekd.stages import Stage
from edgekd.train.distributed import SINGLE, Dist, rank_indices
from edgekd.train.finite import check_loss, check_record, nonfinite_term
from edgekd.train.objective import Batch, Objective
from edgekd.train.precision import Precision, resolve_precision
from edgekd.train.selection import resolve_select_by, validation_scores
from edgekd.train.teacher_outputs import TeacherOutputs

__all__ = ["fit", "EpochHook"]

EpochHook = Callable[[str, int, dict], None]


def _save(obj, path) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


def _validate(model, split: Split, data: DataSplits) -> dict:
    logits = predict_logits(model, split.images, data.mean, data.std)
    counts = CellCounts(
        split.labels,
        logits.argmax(1),
        split.groups,
        num_classes=data.num_classes,
        num_groups=len(data.group_names),
    )
    return {**validation_scores(counts), "val_mean_abs_disparity": mean_abs_disparity(counts)}


def _param_groups(model: torch.nn.Module, objective: Objective, weight_decay: float) -> list[dict]:
    """Weight decay on the model and on the objective's matrices, never on its scalars and
    vectors (CTKD's temperature, a BatchNorm's affine terms): decay would pull them to 0."""
    matrices = [p for p in objective.parameters() if p.ndim >= 2]
    others = [p for p in objective.parameters() if p.ndim < 2]
    groups = [{"params": list(model.parameters()) + matrices, "weight_decay": weight_decay}]
    if others:
        groups.append({"params": others, "weight_decay": 0.0})
    return groups


class _Step(nn.Module):
    """The model and its objective as one module: one forward gives the loss, and under DDP the
    objective's parameters (CTKD's temperature, KD++'s projection, the adversary) are averaged
    across ranks together with the model's. The network runs under the stage's autocast; the
    objective gets float32 logits and features and runs in float32."""

    def __init__(self, model: nn.Module, objective: Objective, precision: Precision) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.precision = precision

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with self.precision.autocast():
            features, logits = pooled_features_and_logits(self.model, batch.images)
        batch.features, logits = features.float(), logits.float()
        return self.objective(logits, batch), logits


def _schedule_step(schedule) -> None:
    # A gradient scaler skips the optimiser's step when the gradients overflowed; the schedule
    # still counts the step (OneCycle's total is fixed), which torch warns about once.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        schedule.step()


def fit(
    model: torch.nn.Module,
    objective: Objective,
    data: DataSplits,
    cfg,
    stage: Stage,
    *,
    seed: int,
    teacher_outputs: TeacherOutputs | None = None,
    cache_teacher: bool = True,
    resume: bool = True,
    on_epoch_end: EpochHook | None = None,
    log: Callable[[str], None] = print,
    dist: Dist = SINGLE,
) -> list[dict]:
    """Train ``model`` on ``objective`` for ``cfg.epochs``; leave the best epoch's weights in it.

    Parameters
    ----------
    model : nn.Module
        The network to train (its weights are replaced by the best epoch's at the end).
    objective : Objective
        The loss; its own parameters (if any) are trained with the model.
    data : DataSplits
        ``train_for_epoch(epoch)`` gives each epoch's images; ``val`` selects the best epoch.
    cfg : ModelConfig
        ``epochs``, ``batch_size`` (global), ``lr``, ``weight_decay``, ``warmup_fraction``,
        ``sync_batchnorm``, ``select_by`` (the validation score that picks ``best.pt``),
        ``grad_clip_norm``, ``ema_decay``, ``precision``, ``augment`` (of the training batches only).
    stage : Stage
        Where ``last.pt``, ``best.pt`` and ``metrics.jsonl`` go (written by rank 0 only).
    teacher_outputs : TeacherOutputs, optional
        The frozen teacher, for objectives with ``uses_teacher``: its logits (and features) are
        put on every batch.
    cache_teacher : bool
        Read the teacher's outputs of each epoch from ``teacher_outputs`` (computed once, kept on
        disk) instead of running the teacher on every batch. With augmentation they are the
        teacher's outputs on that epoch's augmented images (the same pixels the student sees).
    resume : bool
        Continue from ``last.pt`` when the stage holds one.
    dist : Dist
        This process's rank under torchrun (:mod:`edgekd.train.distributed`); each rank trains
        on its share of every batch inside DistributedDataParallel.

    Returns
    -------
    list of dict
        One record per epoch (losses, accuracies, validation metrics, learning rate, seconds).
    """
    if objective.uses_teacher and teacher_outputs is None:
        raise ValueError(f"{type(objective).__name__} needs a teacher")
    device = dist.device
    teacher = teacher_outputs.teacher if teacher_outputs is not None else None
    if teacher is not None:
        teacher.eval().requires_grad_(False).to(device)
    section = "teacher" if stage.name == "teacher" else "student"
    precision = resolve_precision(getattr(cfg, "precision", "auto"), device, key=f"{section}.precision")
    if precision.name != "fp32":
        log(
            f"{stage.name}: {precision.name} autocast"
            + (" with a gradient scaler" if precision.name == "fp16" else "")
        )
    objective.prepare(teacher_outputs=teacher_outputs, student_features=feature_width(model), data=data)
    net = model  # what trains; with SyncBatchNorm a converted copy, so ``model`` stays exportable
    if dist.enabled and getattr(cfg, "sync_batchnorm", False):
        net = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    step_module = _Step(net, objective, precision).to(device)
    runner: nn.Module = step_module
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    steps_per_epoch = max(1, len(data.train) // cfg.batch_size)
    per_rank = max(1, cfg.batch_size // dist.world_size)
    optimizer = torch.optim.AdamW(
        _param_groups(net, objective, cfg.weight_decay), lr=cfg.lr, fused=device.type in ("cpu", "cuda")
    )
    ema = None
    if getattr(cfg, "ema_decay", None):
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(net, decay=cfg.ema_decay)
    kept = (lambda: ema.module) if ema is not None else (lambda: net)  # validated, selected, shipped
    clip = getattr(cfg, "grad_clip_norm", None)
    scaler = precision.scaler()  # fp16 only; for fp32 and bf16 every call passes through
    augment = Augmenter(getattr(cfg, "augment", None), seed=seed)  # identity when off
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    warmup = cfg.warmup_fraction
    if abs(warmup * total_steps - 1.0) < 1e-9:
        warmup = min(0.99, 1.5 / total_steps)  # OneCycleLR divides by (warm-up steps - 1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=warmup
    )
    history: list[dict] = []
    select_by = resolve_select_by(cfg.select_by, len(data.group_names))
    best_score = -1.0
    last_path, best_path = stage.path("last.pt"), stage.path("best.pt")
    state = None
    if resume and dist.is_main and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
    state = dist.broadcast(state)  # every rank resumes from rank 0's checkpoint
    if state is not None:
        net.load_state_dict(state["model"])
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, best_score = state["history"], state["best_score"]
        if ema is not None:
            ema.module.load_state_dict(state["ema"])
        if scaler.is_enabled() and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        log(f"{stage.name}: resuming after epoch {len(history)} of {cfg.epochs}")

    for epoch in range(len(history), cfg.epochs):
        started = time.perf_counter()
        torch.manual_seed(seed * 100_003 + epoch)
        split = data.train_for_epoch(epoch)
        runner.train()
        objective.start_epoch(epoch, cfg.epochs)
        order = rank_indices(
            len(split),
            epoch=epoch,
            seed=seed,
            dist=dist,
            batch_size=cfg.batch_size,
            weights=objective.sample_weights(split.labels, split.groups),
        )
        cached = (
            teacher_outputs.for_epoch(epoch, split=split, augment=augment)
            if objective.uses_teacher and cache_teacher
            else None
        )
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{stage.name} {epoch + 1}/{cfg.epochs}",
            leave=False,
            unit="batch",
            disable=None if dist.is_main else True,
        )
        # the next batch's pixels are read while this one trains (a memory-mapped split is
        # read batch by batch: edgekd.data.rows)
        pixels = prefetch(
            split.images, (order[s * per_rank : (s + 1) * per_rank] for s in range(steps_per_epoch))
        )
        for step, step_pixels in zip(bar, pixels):
            idx = order[step * per_rank : (step + 1) * per_rank]
            batch = Batch(
                images=to_input(augment(step_pixels, idx, epoch=epoch), data.mean, data.std, device=device),
                labels=torch.from_numpy(split.labels[idx]).to(device),
                groups=torch.from_numpy(split.groups[idx]).to(device),
            )
            if cached is not None:
                batch.teacher_logits = torch.from_numpy(cached[0][idx]).to(device)
                batch.teacher_features = torch.from_numpy(cached[1][idx]).to(device)
            elif objective.uses_teacher:
                with torch.no_grad(), precision.autocast():
                    features, teacher_logits = pooled_features_and_logits(teacher, batch.images)
                batch.teacher_features, batch.teacher_logits = features.float(), teacher_logits.float()
            loss, logits = runner(batch)
            loss_value = float(loss.detach())
            if not dist.enabled and not math.isfinite(loss_value):  # DDP: at the epoch's end, together
                check_loss(
                    loss_value,
                    stage=stage.name,
                    epoch=epoch + 1,
                    step=step + 1,
                    steps=steps_per_epoch,
                    term=nonfinite_term(objective, logits, batch, net),
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if clip:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                torch.nn.utils.clip_grad_norm_(step_module.parameters(), clip)
            scaler.step(optimizer)
            scaler.update()
            _schedule_step(schedule)
            if ema is not None:
                ema.update(net, step=epoch * steps_per_epoch + step)
            total_loss += loss_value * len(idx)
            correct += int((logits.argmax(1) == batch.labels).sum())
            seen += len(idx)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        total_loss, correct, seen = dist.sum([total_loss, correct, seen])
        check_loss(total_loss, stage=stage.name, epoch=epoch + 1, step=0, steps=steps_per_epoch)
        extra = objective.epoch_metrics()  # reduced across ranks by the objectives that count
        record = None
        if dist.is_main:
            record = {
                "epoch": epoch + 1,
                "train_loss": total_loss / max(seen, 1),
                "train_top1": correct / max(seen, 1),
                **_validate(kept(), data.val, data),
                **extra,
                "selected_by": select_by,
                "lr": schedule.get_last_lr()[0],
                "precision": precision.name,
                "world_size": dist.world_size,
                "samples_per_rank": int(seen) // dist.world_size,
                "seconds": time.perf_counter() - started,
            }
        record = dist.broadcast(record)
        check_record(record, stage=stage.name, epoch=epoch + 1)  # before it is kept or shipped
        history.append(record)
        score = record[f"val_{select_by}"]
        score = -1.0 if score is None else score
        if dist.is_main:
            if score > best_score:
                _save({"model": kept().state_dict(), "epoch": epoch + 1}, best_path)
            write_atomic(stage.path("metrics.jsonl"), "".join(_json_line(r) for r in history))
        best_score = max(best_score, score)
        if dist.is_main:
            _save(
                {
                    "model": net.state_dict(),
                    "objective": objective.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "history": history,
                    "best_score": best_score,
                    **({"ema": ema.module.state_dict()} if ema is not None else {}),
                    **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {}),
                },
                last_path,
            )
            log(
                f"{stage.name} epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.3f} "
                f"train {record['train_top1']:.3f} val {record['val_top1']:.3f} "
                f"val |disp| {record['val_mean_abs_disparity'] or 0:.3f} "
                + (f"{select_by} {record[f'val_{select_by}'] or 0:.3f} " if select_by != "top1" else "")
                + (
                    f"adversary {record['adversary_top1']:.3f} (no-leak reference "
                    f"{record['adversary_reference']:.3f}) "
                    if record.get("adversary_top1") is not None
                    and record.get("adversary_reference") is not None
                    else ""
                )
                + f"({record['seconds']:.0f}s)"
            )
        if on_epoch_end is not None:
            on_epoch_end(stage.name, epoch + 1, record)

    best = None
    if dist.is_main and best_path.exists():
        best = torch.load(best_path, map_location="cpu", weights_only=True)["model"]
        write_json(stage.path("history.json"), history)
    best = dist.broadcast(best)
    if best is not None:
        model.load_state_dict(best)  # SyncBatchNorm and BatchNorm share their state-dict keys
    model.eval()
    return history


def _json_line(record: dict) -> str:
    import json

    return json.dumps(record) + "\n"
