"""The training loop: fit with validation under a fit policy; predict.

The loop takes plain values and small policy objects: it knows no config
group, no command-line option and no file path (checkpoints go through the
`save(name, state)` callable the caller hands to `fit`). The update half of a
step (precision, clipping, non-finite safety) lives in step.py; when to stop
and which epochs to keep in fit_policy.py.

Per step the loop does the forward/backward/step and three in-place additions
on the device (loss, hit and sample sums); the host reads them once per epoch.
Progress is refreshed at most every `REFRESH_S` seconds.
"""

import contextlib
import time
from dataclasses import asdict, dataclass, field

import torch

from dlrun import stopping
from dlrun.data.batches import batch_sizes
from dlrun.errors import DlrunError
from dlrun.layout import kept_name
from dlrun.results import checkpoint, metrics
from dlrun.tasks.finetune import Freezing
from dlrun.train import device as devices
from dlrun.train import distributed
from dlrun.train import optimizer as optimizers
from dlrun.train.averaging import Averaging
from dlrun.train.fit_policy import FitPolicy, FitState
from dlrun.train.regularization import l1_penalty, mix, penalized_weights
from dlrun.train.schedule_free import EvaluatedWeights, switches_weights
from dlrun.train.step import GuardedUpdate
from dlrun.train.tta import averaged as tta_averaged

REFRESH_S = 0.25
RUNNING_SUMS = ("loss_sum", "correct", "count")  # of an epoch so far, kept by a mid-epoch checkpoint
# Columns of an epoch's row that measure the machine, not the training: they differ between
# two otherwise identical runs.
MEASURED = ("seconds", "samples_per_s", "data_wait", "peak_rss_mb", "cuda_peak_mb")


class Diverged(DlrunError):
    """More non-finite steps than the policy allows; none of them changed the weights."""

    status = "diverged"


class Interrupted(DlrunError):
    """Stopped (a signal, the sweep's stop, preemption: see stopping.py) after writing the `last`
    checkpoint."""

    status = "interrupted"

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Loop:
    """Everything the loop drives, built by build.py from the config."""

    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: object
    train_batches: object
    val_batches: object
    device: torch.device
    task: str
    num_classes: int
    policy: FitPolicy
    precision: str = "fp32"
    clip_mode: str = None           # None | norm | value
    clip_max: float = None
    l1: float = 0.0                 # weight of the L1 penalty on weights
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    channels_last: bool = False
    compile_mode: str = None
    threshold: float = 0.5
    target_scale: tuple = None
    augment_generator: torch.Generator = None
    record: dict = None             # stored as is in every checkpoint: config, overrides, preprocessing, model spec
    freezing: Freezing = None       # parameters kept fixed (until an epoch), by name pattern
    accumulate: int = 1             # micro-batches per optimizer step (gradient accumulation)
    step_hooks: list = field(default_factory=list)  # called after every micro-batch (e.g. a profiler's step)
    averaging: Averaging = None     # EMA or SWA of the weights: then the averaged weights are validated and kept
    val_metrics: tuple = ()         # probability metrics (roc_auc, ...) validated every epoch besides the cheap ones
    tta: str = None                 # test-time augmentation of the evaluations after training (tta.py)

    def __post_init__(self):
        forward = distributed.wrap(self.model, self.device)
        self.forward = torch.compile(forward, mode=self.compile_mode) if self.compile_mode else forward
        self.update = GuardedUpdate(self.optimizer, self.device, self.precision, self.clip_mode, self.clip_max)
        self.closure_steps = optimizers.needs_closure(self.optimizer)
        self.autocast = devices.autocast(self.device, self.precision) or contextlib.nullcontext()
        self.l1_weights = penalized_weights(self.model) if self.l1 else None
        self.mixing = self.mixup_alpha > 0 or self.cutmix_alpha > 0
        # Reading the bad-step count costs nothing on the CPU; on accelerators it
        # would synchronise every step, so it is read with the progress refresh.
        self.read_every_step = self.device.type == "cpu"
        self.stop_votes = distributed.StopVotes()
        self.eval_model = self.model    # what validation and evaluation run: the averaged weights, when on
        self.evaluated = EvaluatedWeights(self.model) if switches_weights(self.optimizer) else None
        if self.evaluated is not None:  # schedule-free: the average of its iterates
            self.eval_model = self.evaluated.model
        self.freezing = self.freezing or Freezing()
        self.freezing.check(self.model)
        self.freezing.apply(self.model, 0)

    # ----------------------------------------------------------------- fitting
    def fit(self, state, save, stop, on_epoch=None, on_step=None, on_validation=None):
        """Train until the policy stops; `save(name, state_dict)` keeps the `best`, `last` and
        kept epochs' checkpoints (`save(name, None)`: an epoch no longer kept). Returns the final
        state. `on_step(done, total)` refreshes progress; `on_validation(state, row)` receives the mid-epoch validations
        (policy.val_every).

        `stop` (a stopping.Stop) is read after each optimizer step: a stop saves the exact
        position in last.pt and raises Interrupted; with a time budget (`policy.max_time`), the
        step that exhausts it is the last, and a resume continues from there."""
        state.timed_out = False
        with stop.training(self.policy.max_time):
            return self._fit(state, save, stop, on_epoch, on_step, on_validation)

    def _fit(self, state, save, stop, on_epoch, on_step, on_validation):
        while self.policy.running(state):
            started = time.perf_counter()
            if self._swa_owns_schedule(state.epoch):
                self.averaging.swa_schedule.step()  # SWA's constant learning rate from its first epoch on
            lr = self.schedule.lr()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            train, speed = self.train_epoch(state, save, stop, on_step, on_validation)
            if state.timed_out:
                break
            if self.averaging is not None:
                self.averaging.after_epoch(self.model, state.epoch, self.train_batches)
                self.eval_model = self.averaging.model.module if self.averaging.active(state.epoch) else self.model
            val = self.validate()
            row = {"epoch": state.epoch + 1, **train, **{f"val/{k}": v for k, v in val.items()},
                   "lr": lr, "seconds": time.perf_counter() - started, **speed,
                   **devices.peak_memory_mb(self.device)}
            best = self.policy.end_epoch(state, row) and self.policy.save_best
            if not self._swa_owns_schedule(state.epoch - 1):
                self.schedule.after_epoch(row[self.policy.monitor])
            last = self.policy.last_due(state)
            before, kept = self.policy.kept_epochs(state.history[:-1]), self.policy.kept_epochs(state.history)
            if best or last or state.epoch in kept:
                ckpt = self.state_dict(state)  # one state for all: the caller may serialize it once
                if best:
                    save("best", ckpt)  # before last: see checkpoint.resolve
                if last:
                    save("last", ckpt)
                if state.epoch in kept:
                    save(kept_name(row, self.policy.monitor), ckpt)
            for row_out in (r for r in state.history if r["epoch"] in before - kept):  # left the top k
                save(kept_name(row_out, self.policy.monitor), None)
            if on_epoch:
                on_epoch(state, row)
        return state

    def train_epoch(self, state, save, stop, on_step=None, on_validation=None):
        """One pass over the training batches; returns the epoch's train metrics and its speed:
        the training samples per second (all processes together) and `data_wait`, the share of
        the pass this process spent waiting for its next batch (host time: no device sync).

        Loss, hit and sample sums stay on the device; the host reads them once
        at the end (and reads the bad-step count at each progress refresh)."""
        self.model.train()
        self.freezing.apply(self.model, state.epoch)
        partial = state.partial or {}
        start = partial.get("batch", 0)
        # Three separate running sums. A mid-epoch checkpoint carries those of all processes
        # together: rank 0 carries them on, the others start from zero.
        carried = partial if distributed.shard()[0] == 0 else {}
        loss_sum, correct, count = (torch.as_tensor(carried.get(key, 0.0), dtype=torch.float32).to(self.device).clone()
                                    for key in RUNNING_SUMS)
        state.partial = None
        started = time.perf_counter()
        next_refresh = started + REFRESH_S
        total, seen, waited = len(self.train_batches), 0, 0.0
        batches = self.micro_batches(start)
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)
            waited += time.perf_counter() - asked
            if batch is None:
                break
            i, x, y, share, window_start, window_end = batch
            loss, out, skipped = self.step(x, y, state, share, window_start, window_end)
            kept = (~skipped).float()
            n = y.shape[0]
            seen += n  # a host-side shape: no sync
            loss_sum.add_(torch.where(skipped, 0.0, loss.detach().float()), alpha=n)
            count.add_(kept, alpha=n)
            if self.task != "regression":
                correct.add_(self._hits(out.detach(), y) * kept)
            if self.read_every_step:
                self._check_bad_steps(state)
            for hook in self.step_hooks:
                hook()
            # A stop, a step checkpoint or a validation waits for the end of an accumulation window.
            if window_end and self._window_end(state, save, stop, on_validation, (i + 1, total),
                                               (loss_sum, correct, count)):
                return None, {}  # the time budget ran out (a signal raises instead)
            if on_step is not None and time.perf_counter() >= next_refresh:
                self._check_bad_steps(state)  # host-device sync, a few times a second
                on_step(i + 1, total)
                next_refresh = time.perf_counter() + REFRESH_S
        self._check_bad_steps(state)
        if on_step is not None:  # the whole epoch, also when it was shorter than a refresh
            on_step(total, total)
        distributed.sum_across(loss_sum, correct, count)
        sums = torch.stack([loss_sum, correct, count.clamp(min=1)]).tolist()  # host-device sync: once per epoch
        elapsed = max(time.perf_counter() - started, 1e-9)
        speed = {"samples_per_s": seen * distributed.shard()[1] / elapsed, "data_wait": min(waited / elapsed, 1.0)}
        row = {"train/loss": sums[0] / sums[2]}
        if self.task != "regression":
            row["train/accuracy"] = sums[1] / sums[2]
        return row, speed

    def _window_end(self, state, save, stop, on_validation, place, sums):
        """After an optimizer step: stop (True: the time budget ran out; a signal raises), write
        the step checkpoint or validate, as the policy says. `place` is (batches done, total)."""
        done, total = place
        code, timed_out = self._stop_reason(stop, last_of_epoch=done == total)
        if code or timed_out or (done < total and self.policy.due(self.policy.checkpoint_every, state)):
            state.partial = {"batch": done, **dict(zip(RUNNING_SUMS, distributed.summed(*sums)))}
            if code or timed_out:
                self._stop_mid_epoch(state, save, code, stop)
                return True
            save("last", self.state_dict(state, mid_epoch=True))
            state.partial = None
        if done < total and on_validation is not None and self.policy.due(self.policy.val_every, state):
            on_validation(state, {"step": state.step, "epoch": state.epoch + done / total,
                                  **{f"val/{k}": v for k, v in self.validate().items()}})
            self.model.train()
            self.freezing.apply(self.model, state.epoch)
        return False

    def _hits(self, out, y):
        if self.task == "multilabel":  # rows with every label right (at 0.5)
            return ((out > 0) == (y > 0.5)).all(1).sum()
        if self.task == "binary":
            return ((out.view(-1) > 0) == (y.view(-1) > 0.5)).sum()
        return (out.argmax(1) == y).sum()

    def micro_batches(self, start=0):
        """The training batches of one epoch from batch `start`, each with its place in its
        accumulation window: (index, x, y, share, window_start, window_end)."""
        total = len(self.train_batches)
        for i, (x, y) in enumerate(self.train_batches.epoch(start), start):
            yield (i, x, y, self._share(i, total, y.shape[0]), i % self.accumulate == 0,
                   (i + 1) % self.accumulate == 0 or i + 1 == total)

    def _share(self, i, total, n):
        """Batch i's share of its accumulation window's samples: its loss is weighted by it, so
        that the window's update is that of one batch of all its samples (the last, shorter
        window of an epoch included). None without accumulation."""
        if self.accumulate == 1:
            return None
        first = i - i % self.accumulate
        end = min(first + self.accumulate, total)
        size = self.train_batches.batch_size
        return n / (min(end * size, self.train_batches.samples) - first * size)

    def step(self, x, y, state, share=None, window_start=True, window_end=True):
        """One micro-batch (one training step without accumulation): forward, backward and, at the
        end of the accumulation window, the update. Returns (loss, outputs, skipped) with `skipped`
        an on-device flag; `share` weights the loss within its window (see _share)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if window_start:
            self.optimizer.zero_grad(set_to_none=True)
        # Data-parallel gradients are averaged across processes once per window, not per micro-batch.
        sync = contextlib.nullcontext() if window_end or not hasattr(self.forward, "no_sync") else self.forward.no_sync()
        with sync:
            with self.autocast:
                if self.mixing:
                    x, y_partner, lam = mix(x, y, self.mixup_alpha, self.cutmix_alpha, self.augment_generator)
                    out = self.forward(x)
                    loss = lam * self.loss_fn(out, y) + (1 - lam) * self.loss_fn(out, y_partner)
                else:
                    out = self.forward(x)
                    loss = self.loss_fn(out, y)
                if self.l1_weights:
                    loss = loss + self.l1 * l1_penalty(self.l1_weights)
            if window_end:
                state.step += 1
            if self.closure_steps:
                skipped = self.update.with_closure(self._closure(x, y, loss), loss, state.step)
            else:
                skipped = self.update(loss if share is None else loss * share, state.step, final=window_end)
        if window_end:
            if self.averaging is not None:
                self.averaging.after_step(self.model)
            if not self._swa_owns_schedule(state.epoch):
                self.schedule.after_batch()
        return loss, out, skipped

    def _closure(self, x, y, loss):
        """What L-BFGS calls to evaluate the loss and its gradients on this batch: its first call
        uses the loss computed already, the others (its iterations and line search) compute it again."""
        computed = [loss]

        def closure():
            self.optimizer.zero_grad(set_to_none=True)
            if computed:
                value = computed.pop()
            else:
                with self.autocast:
                    value = self.loss_fn(self.forward(x), y)
                    if self.l1_weights:
                        value = value + self.l1 * l1_penalty(self.l1_weights)
            value.backward()
            return value.detach()

        return closure

    def _swa_owns_schedule(self, epoch):
        return self.averaging is not None and self.averaging.owns_schedule(epoch)

    def _check_bad_steps(self, state):
        """Host-device sync: stop once the policy's tolerance of non-finite steps is exceeded."""
        state.skipped = self.update.bad_count()
        if state.skipped > self.policy.skip_nonfinite:
            bad = self.update.read()
            raise Diverged(
                f"{bad.what()} at step {bad.first_step} (epoch {state.epoch + 1}) "
                f"with learning rate {self.schedule.lr():.3g}; "
                f"{bad.count} non-finite step(s) by step {state.step}, more than the {self.policy.skip_nonfinite} "
                f"allowed. None of them changed the weights.")

    def _stop_reason(self, stop, last_of_epoch):
        """(the exit code of a stop that ends the run or 0, whether the time budget ran out).
        Under DDP all processes stop at the same step once one of them has a reason (a signal may
        reach one process only): the votes are agreed in the background, a step behind, and at
        the last step of an epoch at once (distributed.StopVotes)."""
        reason = stop.why()
        code = reason.exit_code if reason is not None and reason.ends_run else 0
        return self.stop_votes.agree((code, int(reason is stopping.TIME_BUDGET)), wait=last_of_epoch)

    def _stop_mid_epoch(self, state, save, code, stop):
        """Keep the exact position in the `last` checkpoint; a stop then raises Interrupted, an
        exhausted time budget marks the state as timed out."""
        state.timed_out = not code
        save("last", self.state_dict(state, mid_epoch=True))
        if code:
            cause = stop.reason.cause if stop.reason is not None else "another process's stop"  # DDP
            raise Interrupted(f"stopped by {cause} at step {state.step} (epoch {state.epoch + 1}); the last "
                              f"checkpoint holds the exact position.", code)

    def compile_ahead(self):
        """With device.compile: run the compiled forward (and backward) once for every batch size
        training and validation will meet, on zeros, so that compiling happens here and not in
        the first steps (a time budget counts training only). Leaves no trace (untouched)."""
        shape = self.record["model_spec"]["input_shape"]  # one input row, as the model takes it

        def zeros(size):  # laid out as the batches are (a broadcast view would be compiled for its strides)
            x = torch.zeros(size, *shape, device=self.device)
            return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

        with devices.untouched(self.model):
            self.model.train()
            for size in batch_sizes(self.train_batches):
                with self.autocast:
                    out = self.forward(zeros(size))
                out.float().sum().backward()
            self.model.eval()
            inputs = [zeros(size) for size in batch_sizes(self.val_batches)]  # made outside inference mode, as
            with torch.inference_mode(), self.autocast:                        # the validation batches are
                for x in inputs:
                    self.forward(x)

    # -------------------------------------------------------------- evaluating
    @torch.inference_mode()
    def predict(self, batches, with_embeddings=False, on_device=False, tta=None):
        """Outputs, targets (and embeddings) of every batch, on the CPU (or left on the device), and
        the loss over them all; `tta`: the outputs averaged over its views (tta.py)."""
        model = self.eval_model
        model.eval()
        forward = self.forward if model is self.model else model
        outs, targets, embeds = [], [], []
        with self.autocast:
            for x, y in batches.epoch():
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                if with_embeddings and hasattr(model, "embed"):
                    feats = model.embed(x)
                    outs.append(tta_averaged(forward, x, tta) if tta else model.head(feats))
                    embeds.append(feats.flatten(1))
                else:
                    outs.append(tta_averaged(forward, x, tta))
                targets.append(y)
        out, y = torch.cat(outs).float(), torch.cat(targets)
        loss = self.loss_fn(out, y).item()
        if on_device:
            return out, y, loss, None
        emb = torch.cat(embeds).float().cpu() if embeds else None
        return out.cpu(), y.cpu(), loss, emb

    def use_weights(self, ckpt, path):
        """Evaluate these weights (a checkpoint's `model`: averaged ones when averaging was on)."""
        checkpoint.load_model_state(self.model, ckpt, path)
        self.eval_model = self.model

    def predictions(self, out, y):
        return metrics.Predictions(self.task, out, y, self.threshold, self.target_scale)

    def validate(self, full=False):
        """The validation metrics of the weights evaluated (none without validation rows: split.val=0).
        Each epoch: the loss and what the confusion matrix (or the error sums) gives, counted on the
        device, plus `val_metrics`; `full`: every metric, as the test split gets them."""
        if not len(self.val_batches):
            return {}
        self._refresh_evaluated()
        if full:
            out, y, loss, _ = self.predict(self.val_batches, tta=self.tta)
            return metrics.scalar_metrics(self.predictions(out, y), self.num_classes, loss)
        out, y, loss, _ = self.predict(self.val_batches, on_device=True)
        return metrics.epoch_metrics(self.task, out, y, loss, self.num_classes, self.threshold, self.target_scale,
                                     self.val_metrics)

    def _refresh_evaluated(self):
        if self.evaluated is not None and self.eval_model is self.evaluated.model:
            self.evaluated.refresh(self.model, self.optimizer)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self, state, mid_epoch=False):
        averaged = {} if self.averaging is None else {"trained_model": self.model.state_dict(),
                                                       "averaging": self.averaging.state_dict()}
        if self.evaluated is not None:
            self._refresh_evaluated()
            averaged = {"trained_model": self.model.state_dict()}
        return {
            "model": self.eval_model.state_dict(),  # the weights that are evaluated, exported and reused
            **averaged,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "update": self.update.state_dict(),
            "fit": asdict(state),
            "batches": self.train_batches.state_dict(mid_epoch),
            "augment": self.augment_generator.get_state() if self.augment_generator is not None else None,
            "rng": devices.rng_state(),
            "world_size": distributed.shard()[1],  # processes that trained it: a resume with others changes the batch
            **(self.record or {}),
        }

    def load_state_dict(self, ckpt, path):
        checkpoint.load_model_state(self.model, {"model": ckpt.get("trained_model", ckpt["model"])}, path)
        if self.averaging is not None and "averaging" in ckpt:
            self.averaging.load_state_dict(ckpt["averaging"], ckpt["model"])
            if ckpt["fit"]["epoch"] and self.averaging.active(ckpt["fit"]["epoch"] - 1):
                self.eval_model = self.averaging.model.module
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.update.load_state_dict(ckpt["update"])
        self.train_batches.load_state_dict(ckpt["batches"])
        if self.augment_generator is not None and ckpt.get("augment") is not None:
            self.augment_generator.set_state(ckpt["augment"])
        devices.set_rng_state(ckpt["rng"])
        return FitState(**ckpt["fit"])
