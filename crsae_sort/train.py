"""Learning the dictionary and lambda on random windows of the preprocessed recording.

Each mini-batch ``y`` ``(batch, M, N)`` takes two steps (the two-stage M-step of Tolooshams et
al. 2020):

1. dictionary: ``z_T = Encoder_T(y)``; Adam step (:mod:`crsae_sort.optim`) on the dictionary-gradient rule's loss
   (:mod:`crsae_sort.model.gradients`; by default ``1/2 ||y - H z_T||^2`` backpropagated through
   the unrolled encoder); every atom renormalised to unit norm; ``L`` recomputed. An encoder
   with its own weights (``reweighted``, ``learned-steps``) steps them in the same Adam step, on
   the objective it unrolls (:func:`~crsae_sort.model.gradients.encoder_loss`);
2. lambda: the M-step in closed form, the minimiser of the Gamma-prior loss with ``z_T`` treated as data,
   over the codes of every mini-batch so far (online EM: each template's ``||z_c||_1`` and the code
   samples are summed across batches; :func:`~crsae_sort.model.losses.lambda_minimiser`). Adam steps on
   ``log lambda`` moved every lambda by ~2 % a step, more than the units' minimisers differ (1.7 % across
   hybrid_locust_a's atoms), so lambda ended where the mini-batches' noise left it.

10 % of the windows are held out and judged by the objective both M-steps descend, the negative log
posterior at the encoder's codes (:func:`~crsae_sort.model.losses.map_objective`); the reconstruction
alone rises whenever lambda follows its prior and rewards codes that fit noise. Training stops when it
has not improved for ``patience`` evaluations; the best dictionary and lambda are kept, together.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .io import checkpoints
from .io.checkpoints import checkpointed
from .model.crsae import CRsAE
from .model.gradients import encoder_loss, get_dictionary_gradient
from .model.losses import gamma_prior, lambda_minimiser, universal_lambda
from .oom import run_in_parts
from .optim import Adam
from .params import SortParams, TrainParams
from .selection import Judge

logger = logging.getLogger(__name__)


def initial_model(init, params: SortParams, n_window: int, device: torch.device,
                  channel_locations_um: np.ndarray | None = None) -> CRsAE:
    """The CRsAE training starts from: the initial dictionary, lambda at ``lambda_scale`` x the universal
    threshold for windows of ``n_window`` samples, and the chosen encoder.

    With ``channel_locations_um`` ``(M, 2)`` and ``radius_um > 0``, each atom keeps only the channels
    within ``radius_um`` of its peak channel (the channel of its initial template's largest absolute
    value), renormalised. When the atoms would keep more than ``LOCAL_MAX_SHARE`` of the
    channels on average (tetrodes, short probes) the dictionary stays dense: there the block-local
    operator costs more than it saves (a 32-channel, 2-column probe at 100 µm keeps ~60 % and
    sorted 2x slower on 2 CPU cores at the same accuracy).
    """
    options, model_params = params.encoder_options(), params.model
    dense = torch.from_numpy(init.dictionary).to(device)
    n_atoms, n_channels, k = dense.shape
    n_codes = n_window - k + 1
    lam0 = model_params.lambda_scale * universal_lambda(n_atoms, n_codes)
    local = {}
    if channel_locations_um is not None and model_params.radius_um > 0:
        from .model.local_operator import channel_supports, to_local

        peaks = init.peak_channels
        if peaks is None:  # an initial dictionary from an older checkpoint
            peaks = np.abs(init.dictionary).max(axis=2).argmax(axis=1)
        support, mask = channel_supports(channel_locations_um, peaks, model_params.radius_um)
        share = float(mask.sum()) / (n_atoms * n_channels)
        if share > LOCAL_MAX_SHARE:
            logger.info("atoms keep %.0f %% of the channels within %.0f µm: dense atoms (local ones pay off "
                        "below %.0f %%)", 100 * share, model_params.radius_um, 100 * LOCAL_MAX_SHARE)
        else:
            support, mask = support.to(device), mask.to(device)
            local = dict(support=support, mask=mask, n_channels=n_channels)
            dense = to_local(dense, support, mask)
            logger.info("local atoms: %d of %d channels each on average (radius %.0f µm)",
                        round(float(mask.sum()) / n_atoms), n_channels, model_params.radius_um)
    model = CRsAE(dense, torch.full((n_atoms,), lam0, device=device), model_params.n_iterations,
                  model_params.positive_codes, torch.from_numpy(init.amplitudes).to(device),
                  encoder=model_params.encoder, encoder_options=options, **local)
    logger.info("model: %d templates x %d channels x %d samples, encoder %s, T=%d, L=%.3f, lambda0=%.3f",
                n_atoms, n_channels, k, model_params.encoder, model.n_iter, model.lipschitz, lam0)
    return model


LOCAL_MAX_SHARE = 0.25  # local atoms only when each keeps at most a quarter of the channels on average


@checkpointed
@dataclass
class TrainingResult:
    history: list[dict] = field(default_factory=list)   # one row per evaluation
    best_step: int = 0
    n_steps: int = 0
    seconds: float = 0.0


def window_samples(params: SortParams, fs: float, n_times_atom: int) -> int:
    """Samples in a training window: ``window_ms`` at the model's rate ``fs``, at least two atoms long."""
    return max(int(round(params.train.window_ms * fs / 1000)), 2 * n_times_atom)


def sample_windows(recording, n_windows: int, n_samples: int, seed: int) -> np.ndarray:
    """``n_windows`` random windows ``(n_windows, n_channels, n_samples)`` across all segments.

    Each segment is drawn in proportion to its usable length, each start uniformly within its own
    segment; windows are ordered by segment and start. Each window is one read: the pipeline's
    preprocessed recording is held in memory or in the disk cache (:func:`crsae_sort.preprocess.cache_plan`),
    where a read costs a copy.
    """
    rng = np.random.default_rng(seed)
    lengths = np.array([recording.get_num_samples(s) for s in range(recording.get_num_segments())])
    usable = np.maximum(lengths - n_samples, 0)
    if usable.sum() == 0:
        raise ValueError(f"recording is shorter than one training window ({n_samples} samples); "
                         "lower window_ms")
    segs = rng.choice(len(lengths), size=n_windows, p=usable / usable.sum())
    starts = rng.integers(0, usable[segs] + 1)
    order = np.lexsort((starts, segs))
    segs, starts = segs[order], starts[order]
    out = np.empty((n_windows, recording.get_num_channels(), n_samples), dtype=np.float32)
    for i, (seg, start) in enumerate(zip(segs, starts)):
        out[i] = recording.get_traces(segment_index=int(seg), start_frame=int(start),
                                      end_frame=int(start) + n_samples).T
    return out


def train(model: CRsAE, windows: np.ndarray, params: TrainParams, *, lambda_prior_strength: float,
          seed: int, progress: bool = False, checkpoint: Path | None = None,
          dictionary_gradient: str = "ae-ls") -> TrainingResult:
    """Fit ``model`` in place on ``windows`` ``(n, M, N)``; returns the loss and lambda history.

    The Gamma prior on each lambda_c has ``lambda_prior_strength * N_e`` pseudo-samples (``N_e`` code samples
    per mini-batch) and puts lambda's minimiser at its starting value for an atom whose codes have the start's
    mean size on the held-out windows (:func:`~crsae_sort.model.losses.gamma_prior`): atoms that code more
    (larger or more frequent units) end with a lower lambda, atoms that code less with a higher one.
    With ``checkpoint``, the whole training state (model, optimisers, random generator, position
    in the epoch, best state, history) is saved after every evaluation, and an existing
    checkpoint is resumed from: the result is identical to an uninterrupted run.
    """
    device = model.dictionary.device
    rule = get_dictionary_gradient(dictionary_gradient)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(windows), generator=gen).numpy()
    n_val = max(1, len(windows) // 10)
    val = torch.from_numpy(windows[order[:n_val]]).to(device)
    train_set = windows[order[n_val:]]
    groups = [dict(params=[model.dictionary], lr=params.learning_rate)]
    learned = [p for p in model.encoder.parameters() if p.requires_grad]
    if learned:  # an encoder's own weights (reweighted, learned-steps) step with the dictionary
        groups.append(dict(params=learned, lr=params.encoder_learning_rate))
    opt_dict = Adam(groups)
    batch = min(params.batch_size, len(train_set))
    n_batches = len(train_set) // batch  # full batches only
    lam0 = model.lam.detach().clone()
    judge = Judge(val)
    start = judge.measure(model)
    code_l1 = float(start.l1.mean()) / start.n_e  # the start's mean code size per code sample

    def prior(n_codes: int):  # as many pseudo-samples per code sample for every count of code samples
        return gamma_prior(lam0, n_codes, lambda_prior_strength, code_l1 * n_codes)

    judge.prior = prior(start.n_e)
    first = judge.score(model, start)
    st = _State(best_loss=first["val_objective"], best_state=copy.deepcopy(model.state_dict()),
                l1_sum=torch.zeros(len(lam0), dtype=torch.float64))
    st.history.append(dict(step=0, train_loss=float("nan"), **first, lam=lam0.cpu().tolist()))
    if checkpoint is not None and checkpoint.exists():
        st = _load(checkpoint, model, opt_dict, gen)
        logger.info("resuming training from %s at step %d", checkpoint, st.step)
    t0 = time.perf_counter()
    n_micro = 1
    bar = _bar(params.max_epochs * n_batches, progress, initial=st.epoch * n_batches + st.batch)
    while st.epoch < params.max_epochs and not st.stopped:
        if st.perm is None:
            st.perm = torch.randperm(len(train_set), generator=gen).numpy()
        while st.batch < n_batches:
            b = st.batch
            y = torch.from_numpy(train_set[st.perm[b * batch: (b + 1) * batch]]).to(device)
            opt_dict.zero_grad(set_to_none=True)
            z, loss, n_micro = _dictionary_gradient(rule, model, y, n_micro)
            opt_dict.step()
            model.normalize_()
            _lambda_step(st, model, z, prior)
            st.step, st.batch = st.step + 1, st.batch + 1
            bar.update(1)
            if st.step % params.eval_every == 0:
                _evaluate(st, model, judge, loss.item(), params.patience)
                if checkpoint is not None:
                    _save(checkpoint, st, model, opt_dict, gen)
                if st.stopped:
                    logger.info("early stop at step %d: no held-out improvement in %d evaluations",
                                st.step, st.stale)
                    break
        if not st.stopped:
            st.epoch, st.batch, st.perm = st.epoch + 1, 0, None
    if st.step > st.history[-1]["step"]:  # the last steps were not evaluated yet (or fewer than eval_every)
        _evaluate(st, model, judge, loss.item(), params.patience)
    bar.close()
    model.load_state_dict(st.best_state)  # L (and the encoder's own weights) are part of the state
    for name, p in model.encoder.named_parameters():
        logger.info("encoder %s: exp(%s) min %.3f, mean %.3f, max %.3f", model.encoder.name, name,
                    float(p.detach().exp().min()), float(p.detach().exp().mean()), float(p.detach().exp().max()))
    for row in st.history:  # what the report says was kept
        row["kept"] = row["step"] == st.best_step
    result = TrainingResult(st.history, st.best_step, st.step, time.perf_counter() - t0)
    best = next(row for row in st.history if row["kept"])
    lam = model.lam.detach().cpu().numpy()
    logger.info("training: %d steps in %.1f s, kept step %d: held-out objective %.5f (start %.5f), "
                "reconstruction %.5f (start %.5f); lambda %.3f-%.3f (start %.3f-%.3f)", st.step, result.seconds,
                st.best_step, best["val_objective"], st.history[0]["val_objective"], best["val_loss"],
                st.history[0]["val_loss"], lam.min(), lam.max(), float(lam0.min()), float(lam0.max()))
    return result


def _dictionary_gradient(rule, model: CRsAE, y: torch.Tensor, n_micro: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Backpropagate ``rule``'s loss of batch ``y``; returns codes, loss and micro-batch count.

    The batch is processed in ``n_micro`` equal parts with gradients accumulated (the same
    gradient as one pass); on GPU out-of-memory the number of parts doubles and the step is
    redone (:func:`crsae_sort.oom.run_in_parts`), and the larger count is kept for the rest of
    training.
    """
    learned = [p for p in model.encoder.parameters() if p.requires_grad]

    def part_gradient(part):
        z, loss = rule(model, part)
        share = len(part) / len(y)
        if learned:  # the encoder's own weights descend the objective it unrolls, not the rule's loss
            (encoder_loss(model, part, z) * share).backward(inputs=learned, retain_graph=True)
        loss = loss * share
        loss.backward(inputs=[model.dictionary])
        return z.detach(), loss.detach().double()  # no .item(): a GPU need not wait here

    def forget():
        for p in [model.dictionary, *learned]:
            p.grad = None

    parts, n_micro = run_in_parts(part_gradient, y, n_micro, what="a batch of windows", on_retry=forget)
    total = parts[0][1]
    for _, loss in parts[1:]:
        total = total + loss
    return torch.cat([z for z, _ in parts]), total, n_micro


def _lambda_step(st: "_State", model: CRsAE, z: torch.Tensor, prior) -> None:
    """Online EM for lambda: add the batch's codes ``z`` ``(batch, C, n)`` to the running sums, and set
    lambda to the minimiser of the Gamma-prior loss over every code so far."""
    st.l1_sum = st.l1_sum + z.detach().abs().sum(dim=(0, 2)).double().cpu()
    st.n_codes += z.shape[0] * z.shape[2]
    lam = lambda_minimiser(st.l1_sum, st.n_codes, *(p.double().cpu() for p in prior(st.n_codes)))
    with torch.no_grad():
        model.log_lambda.copy_(lam.log().to(model.log_lambda))


@dataclass
class _State:
    """Everything that moves during training, so a checkpoint can restore it exactly."""
    best_loss: float
    best_state: dict
    best_step: int = 0
    stale: int = 0
    stopped: bool = False
    step: int = 0
    epoch: int = 0
    batch: int = 0
    perm: np.ndarray | None = None
    history: list = field(default_factory=list)
    l1_sum: torch.Tensor | None = None          # (C,) each template's ||z_c||_1 over every training batch so far
    n_codes: int = 0                            # the code samples they were summed over


def _evaluate(st: _State, model: CRsAE, judge: Judge, train_loss: float, patience: int) -> None:
    held_out = judge(model)
    st.history.append(dict(step=st.step, train_loss=train_loss, **held_out, lam=model.lam.detach().cpu().tolist()))
    logger.debug("step %d: train %.5f held-out objective %.5f, reconstruction %.5f", st.step, train_loss,
                 held_out["val_objective"], held_out["val_loss"])
    if held_out["val_objective"] < st.best_loss - 1e-6:
        st.best_loss, st.best_state, st.best_step, st.stale = (held_out["val_objective"],
                                                               copy.deepcopy(model.state_dict()), st.step, 0)
    else:
        st.stale += 1
    st.stopped = st.stale >= patience


def _save(path: Path, st: _State, model, opt_dict, gen) -> None:
    """Write the checkpoint atomically (a killed write leaves the previous one intact)."""
    checkpoints.save(path, dict(state=st.__dict__, model=model.state_dict(), opt_dict=opt_dict.state_dict(),
                                gen=gen.get_state()))


def _load(path: Path, model, opt_dict, gen) -> _State:
    blob = checkpoints.load(path, model.dictionary.device)
    model.load_state_dict(blob["model"])
    opt_dict.load_state_dict(blob["opt_dict"])
    gen.set_state(blob["gen"].cpu())
    return _State(**blob["state"])


def _bar(total: int, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc="training", unit="batch", disable=not enabled, leave=False)
