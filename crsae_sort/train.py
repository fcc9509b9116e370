"""Learning the dictionary and lambda on random windows of the preprocessed recording.

Each mini-batch ``y`` ``(batch, M, N)`` takes two steps (the two-stage M-step of Tolooshams et
al. 2020):

1. dictionary: ``z_T = FISTA_T(y)``; Adam step on ``1/2 ||y - H z_T||^2`` backpropagated
   through the unrolled encoder; every atom renormalised to unit norm; ``L`` recomputed;
2. lambda: Adam step on ``log lambda`` for the Gamma-prior loss with ``z_T`` held fixed.

10 % of the windows are held out; training stops when the held-out reconstruction loss has not
improved for ``patience`` evaluations, and the best dictionary and lambda are kept.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .model import CRsAE, gamma_prior, lambda_loss, reconstruction_loss
from .params import TrainParams

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    history: list[dict] = field(default_factory=list)   # one row per evaluation
    best_step: int = 0
    n_steps: int = 0
    seconds: float = 0.0


def sample_windows(recording, n_windows: int, n_samples: int, seed: int) -> np.ndarray:
    """``n_windows`` random windows ``(n_windows, n_channels, n_samples)`` across all segments."""
    rng = np.random.default_rng(seed)
    lengths = np.array([recording.get_num_samples(s) for s in range(recording.get_num_segments())])
    usable = np.maximum(lengths - n_samples, 0)
    if usable.sum() == 0:
        raise ValueError(f"recording is shorter than one training window ({n_samples} samples); "
                         "lower window_ms")
    segs = rng.choice(len(lengths), size=n_windows, p=usable / usable.sum())
    starts = np.sort(rng.integers(0, usable[segs] + 1))
    out = np.empty((n_windows, recording.get_num_channels(), n_samples), dtype=np.float32)
    for i, (seg, start) in enumerate(zip(segs, starts)):
        out[i] = recording.get_traces(segment_index=int(seg), start_frame=int(start),
                                      end_frame=int(start) + n_samples).T
    return out


def train(model: CRsAE, windows: np.ndarray, params: TrainParams, *, lambda_prior_strength: float,
          seed: int, progress: bool = False) -> TrainingResult:
    """Fit ``model`` in place on ``windows`` ``(n, M, N)``; returns the loss and lambda history.

    The Gamma prior on each lambda_c has mean lambda_c at the start of training and
    ``lambda_prior_strength * N_e`` pseudo-samples (``N_e`` code samples per mini-batch).
    """
    device = model.dictionary.device
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(windows), generator=gen).numpy()
    n_val = max(1, len(windows) // 10)
    val = torch.from_numpy(windows[order[:n_val]]).to(device)
    train_set = windows[order[n_val:]]
    opt_dict = torch.optim.Adam([model.dictionary], lr=params.learning_rate)
    opt_lam = torch.optim.Adam([model.log_lambda], lr=params.lambda_learning_rate)
    n_codes = windows.shape[-1] - model.dictionary.shape[-1] + 1
    n_e = min(params.batch_size, len(train_set)) * n_codes  # code samples per mini-batch
    lam0 = model.lam.detach().clone()
    shape_r, rate_delta = gamma_prior(lam0, n_e, lambda_prior_strength)
    result = TrainingResult()
    best_loss, best_state = _validation_loss(model, val), copy.deepcopy(model.state_dict())
    result.history.append(dict(step=0, train_loss=float("nan"), val_loss=best_loss, lam=lam0.cpu().tolist()))
    batch = min(params.batch_size, len(train_set))
    n_batches = len(train_set) // batch  # full batches only: N_e is the same in every lambda step
    stale, step, t0 = 0, 0, time.perf_counter()
    bar = _bar(params.max_epochs * n_batches, progress)
    for epoch in range(params.max_epochs):
        perm = torch.randperm(len(train_set), generator=gen).numpy()
        for b in range(n_batches):
            y = torch.from_numpy(train_set[perm[b * batch: (b + 1) * batch]]).to(device)
            z, y_hat = model(y)
            loss = reconstruction_loss(y, y_hat)
            opt_dict.zero_grad(set_to_none=True)
            loss.backward()
            opt_dict.step()
            model.normalize_()
            lam_loss = lambda_loss(z.detach(), model.lam, shape_r, rate_delta) / n_e
            opt_lam.zero_grad(set_to_none=True)
            lam_loss.backward()
            opt_lam.step()
            step += 1
            bar.update(1)
            if step % params.eval_every:
                continue
            val_loss = _validation_loss(model, val)
            result.history.append(dict(step=step, train_loss=loss.item(), val_loss=val_loss,
                                       lam=model.lam.detach().cpu().tolist()))
            logger.debug("step %d: train %.5f held-out %.5f", step, loss.item(), val_loss)
            if val_loss < best_loss - 1e-6:
                best_loss, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
                result.best_step = step
            else:
                stale += 1
            if stale >= params.patience:
                break
        if stale >= params.patience:
            logger.info("early stop at step %d: no held-out improvement in %d evaluations", step, stale)
            break
    bar.close()
    model.load_state_dict(best_state)
    model.normalize_()
    result.n_steps, result.seconds = step, time.perf_counter() - t0
    logger.info("training: %d steps in %.1f s, best held-out loss %.5f at step %d (start %.5f)",
                step, result.seconds, best_loss, result.best_step, result.history[0]["val_loss"])
    return result


@torch.no_grad()
def _validation_loss(model: CRsAE, val: torch.Tensor) -> float:
    z, y_hat = model(val)
    return float(reconstruction_loss(val, y_hat))


def _bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="training", unit="batch", disable=not enabled, leave=False)
