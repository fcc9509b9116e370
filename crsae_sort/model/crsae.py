"""The CRsAE module: encoder (an unrolled solver), decoder (the dictionary) and their shared weights.

Tolooshams, Dey & Ba, "Deep residual autoencoders for expectation maximization-inspired
dictionary learning", IEEE TNNLS 2020.

* Encoder: ``z_T = Encoder_T(y; H, lambda)`` (:mod:`.encoders`; FISTA by default).
* Decoder: ``y_hat = H z_T`` with the same, tied dictionary (:mod:`.operator`).
* Losses: :mod:`.losses`; the dictionary's gradient: :mod:`.gradients`.

The step size ``1/L`` of every encoder needs ``L >= ||H||^2``; ``L`` is part of the model's state
(saved and loaded with it) and is recomputed whenever the atoms are renormalised, so a model
built from a saved state is ready to encode without a refresh to remember.
"""
from __future__ import annotations

import torch
from torch import nn

from .encoders import make_encoder
from .encoders.base import Encoder
from .local_operator import (LocalConvOperator, lipschitz_bound_local, local_gram_table, local_layout, to_dense,
                             to_local)
from .operator import ConvOperator, lipschitz_bound, lipschitz_constant
from .working_set import encode_working_set, gram_table

#: version of the state a CRsAE saves (``model.pt``, checkpoints); older files are refused
STATE_FORMAT = 2
#: where an atom came from: the initial clustering, the residual (growth) or a split
ORIGINS = ("init", "residual", "split")


class CRsAE(nn.Module):
    """Constrained recurrent sparse autoencoder with a multichannel convolutional dictionary.

    dictionary: ``(n_atoms, n_channels, n_times_atom)``, unit-norm atoms.
    ``log_lambda``: ``(n_atoms,)``, the per-template sparsity weight on a log scale.
    ``reference_amplitude``: ``(n_atoms,)`` buffer, the typical code of a spike of each template
    (median over its initial cluster), used to tell spikes from small residual codes.
    ``encoder``: a registered encoder name (``fista``) or an :class:`Encoder` instance.

    Spatially local atoms (dense probes): with ``support`` and ``mask`` ``(C, S)`` (the channels
    of each atom, :func:`~crsae_sort.model.local_operator.channel_supports`) and ``n_channels``,
    ``dictionary`` is the local ``(C, S, K)`` and ``H``, ``H^T`` touch only those channels
    (:class:`~crsae_sort.model.local_operator.LocalConvOperator`); :meth:`dense_dictionary`
    gives the ``(C, M, K)`` templates.

    ``origin``: per atom, one of :data:`ORIGINS` (``init`` by default), saved with the state.

    ``working_set_screen``: when > 0 and the encoder supports it (FISTA, ISTA), :meth:`encode` runs
    the encoder on a working set of code entries started at this fraction of lambda
    (:mod:`.working_set`): the same codes and gradients at a fraction of the cost when codes are
    sparse. 0 (the default, and what is saved) runs the dense encoder. Training on the CPU sets it.
    """

    def __init__(self, dictionary: torch.Tensor, lam: torch.Tensor, n_iter: int, positive: bool = True,
                 reference_amplitude: torch.Tensor | None = None, encoder: str | Encoder = "fista",
                 encoder_options=None, support: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                 n_channels: int | None = None, origin: list[str] | None = None):
        super().__init__()
        if (support is None) != (mask is None) or (support is not None and n_channels is None):
            raise ValueError("a local dictionary needs support, mask and n_channels together")
        self.origin = list(origin) if origin is not None else ["init"] * len(dictionary)
        if len(self.origin) != len(dictionary) or not set(self.origin) <= set(ORIGINS):
            raise ValueError(f"origin must give one of {ORIGINS} per atom ({len(dictionary)}), got {self.origin}")
        self.dictionary = nn.Parameter(dictionary.clone())
        self.n_channels = int(n_channels) if support is not None else int(dictionary.shape[1])
        if support is not None:
            self.register_buffer("support", support.to(dictionary.device, torch.int64))
            self.register_buffer("mask", mask.to(dictionary.device, torch.bool))
        else:
            self.support = self.mask = None
        self._layouts = {}
        self.log_lambda = nn.Parameter(lam.clone().log())
        ref = reference_amplitude if reference_amplitude is not None else torch.ones(len(dictionary))
        self.register_buffer("reference_amplitude", ref.clone().to(dictionary.dtype))
        if isinstance(encoder, str):
            encoder = make_encoder(encoder, n_iter, positive, encoder_options, n_atoms=len(dictionary))
        self.encoder = encoder
        self.lipschitz = 0.0
        self.working_set_screen = 0.0
        self.normalize_()

    @property
    def n_iter(self) -> int:
        """Unrolled iterations T of the encoder."""
        return self.encoder.n_iter

    @property
    def positive(self) -> bool:
        """One-sided shrinkage (non-negative codes)."""
        return self.encoder.positive

    @property
    def lam(self) -> torch.Tensor:
        """Per-template sparsity weight ``lambda`` ``(n_atoms,)``."""
        return self.log_lambda.exp()

    @torch.no_grad()
    def normalize_(self) -> None:
        """Project each atom onto the unit sphere, ``h_c <- h_c / ||h_c||``, and recompute L.

        On a GPU, L stays a tensor on the device (training runs without a host round trip per
        step); on the CPU it is a Python float.
        """
        if self.is_local:
            self.dictionary.mul_(self.mask.unsqueeze(-1))  # padding entries stay exactly zero
        norms = self.dictionary.flatten(1).norm(dim=1).clamp_min(1e-12)
        self.dictionary.div_(norms.view(-1, 1, 1))
        if self.is_local:
            self.lipschitz = lipschitz_bound_local(self.dictionary, self.support, self.mask, self.n_channels)
        elif self.dictionary.is_cuda:
            self.lipschitz = lipschitz_bound(self.dictionary)
        else:
            self.lipschitz = lipschitz_constant(self.dictionary)

    def encode(self, y: torch.Tensor, track_lambda_grad: bool = False, z0: torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``z_T`` ``(batch, C, N - K + 1)`` of windows ``y`` ``(batch, M, N)``."""
        if z0 is None and self.working_set_screen > 0 and self.encoder.supports_working_set:
            return self.encode_on_working_set(y, self.working_set_screen, track_lambda_grad=track_lambda_grad)
        lam = self.lam if track_lambda_grad else self.lam.detach()
        return self.encoder(y, self.operator(), lam, self.lipschitz, z0)

    def uses_working_set(self, screen: float) -> bool:
        """Whether to encode on working sets started at ``screen`` lambda: FISTA and ISTA, on the CPU.
        On a GPU the dense encoder's convolutions are fast and the working set, untested there so far,
        is not used (the tests' ``gpu`` copies check it where one exists)."""
        return screen > 0 and self.encoder.supports_working_set and self.dictionary.device.type == "cpu"

    def encode_on_working_set(self, y: torch.Tensor, screen: float, table: torch.Tensor | None = None,
                              counts=None, track_lambda_grad: bool = False) -> torch.Tensor:
        """Codes ``(batch, C, N - K + 1)`` of ``y`` ``(batch, M, N)`` by the encoder run on working sets
        (:func:`~.working_set.encode_working_set`), the dense encoder when the set does not settle.

        table: the templates' Gram table (:meth:`gram_table`), computed here (in the graph of
        the dictionary) when not given; counts: a :class:`~.working_set.WorkingSetCounts` to add to.
        """
        lam = self.lam if track_lambda_grad else self.lam.detach()
        op, enc = self.operator(), self.encoder
        table = self.gram_table() if table is None else table
        return encode_working_set(y, op, table, lam, self.lipschitz, enc.n_iter, enc.positive, enc.extrapolates,
                                  screen, lambda y_: enc(y_, op, lam, self.lipschitz), counts=counts)

    def gram_table(self) -> torch.Tensor:
        """The templates' Gram table ``(C, C, 2K - 1)`` (:func:`~.working_set.gram_table`), in the graph of the
        dictionary; for local atoms only the pairs that share a channel (:func:`~.local_operator.local_gram_table`)."""
        if self.is_local:
            return local_gram_table(self.dictionary, self.support, self.mask, self.n_channels)
        return gram_table(self.dictionary)

    def _templates(self) -> torch.Tensor:
        """The dense templates ``(C, M, K)``, in the graph of the dictionary parameter."""
        if self.is_local:
            return to_dense(self.dictionary, self.support, self.mask, self.n_channels)
        return self.dictionary

    @property
    def is_local(self) -> bool:
        """Whether atoms are restricted to their channel supports."""
        return self.support is not None

    def operator(self):
        """``H`` and ``H^T`` of the current dictionary (a view: it follows the parameter)."""
        if not self.is_local:
            return ConvOperator(self.dictionary)
        return LocalConvOperator(self.dictionary, self._layout())

    def _layout(self):
        key = str(self.dictionary.device)
        if key not in self._layouts:  # the block partition depends on the supports only: once per device
            layout = local_layout(self.support, self.mask, self.n_channels, self.dictionary.shape[-1])
            self._layouts[key] = layout.to(self.dictionary.device)
        return self._layouts[key]

    def dense_dictionary(self) -> torch.Tensor:
        """The templates ``(C, M, K)`` (zero off each atom's support when local), detached."""
        return self._templates().detach()

    @torch.no_grad()
    def replace_atom(self, index: int, atom: torch.Tensor, reference_amplitude: float, origin: str) -> None:
        """Put the dense ``atom`` ``(M, K)`` (restricted to the atom's support when local, unit norm) in
        place of atom ``index``, with its reference amplitude and origin; ``L`` is recomputed."""
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, got {origin!r}")
        atom = atom.to(self.dictionary)
        if self.is_local:
            atom = to_local(atom[None], self.support[index: index + 1], self.mask[index: index + 1])[0]
        self.dictionary[index] = atom
        self.reference_amplitude[index] = reference_amplitude
        self.origin[index] = origin
        self.normalize_()

    @torch.no_grad()
    def with_atoms(self, atoms: torch.Tensor, lam: torch.Tensor, reference_amplitude: torch.Tensor, origin: str,
                   support: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> "CRsAE":
        """A new model holding this one's atoms and ``A`` more: dense ``atoms`` ``(A, M, K)``.

        ``lam`` and ``reference_amplitude`` are ``(A,)``; ``origin`` (one of :data:`ORIGINS`) is recorded
        for each new atom. A local model needs the new atoms' ``support`` and ``mask`` ``(A, S')``
        (:func:`~crsae_sort.model.local_operator.channel_supports`); both sets are padded to a common
        width. The encoder's settings and learned state carry over; ``L`` is recomputed.
        """
        old = self.dictionary.detach()
        if atoms.shape[1:] != (self.n_channels, old.shape[-1]):
            raise ValueError(f"new atoms must be (A, {self.n_channels}, {old.shape[-1]}), got {tuple(atoms.shape)}")
        atoms = atoms.to(old)
        local = {}
        if self.is_local:
            if support is None or mask is None:
                raise ValueError("a local model needs the new atoms' support and mask")
            width = max(self.support.shape[1], support.shape[1])
            pairs = [(self.support, self.mask), (support.to(old.device), mask.to(old.device))]
            sup = [torch.cat([s, s[:, :1].expand(-1, width - s.shape[1])], 1) for s, _ in pairs]  # pad: masked out
            msk = [torch.cat([m, m.new_zeros(len(m), width - m.shape[1])], 1) for _, m in pairs]
            new_local = to_local(atoms, sup[1], msk[1])
            old = torch.cat([old, old.new_zeros(len(old), width - old.shape[1], old.shape[2])], 1)
            local = dict(support=torch.cat(sup), mask=torch.cat(msk), n_channels=self.n_channels)
            atoms = new_local
        model = CRsAE(torch.cat([old, atoms]), torch.cat([self.lam.detach(), lam.to(old)]), self.n_iter, self.positive,
                      torch.cat([self.reference_amplitude, reference_amplitude.to(old)]), encoder=self.encoder.name,
                      encoder_options=self.encoder.options, origin=self.origin + [origin] * len(atoms), **local)
        model.encoder.load_state_dict(self.encoder.state_with_atoms(len(atoms)))
        with torch.no_grad():  # the existing atoms exactly as they were (the constructor renormalised them)
            model.dictionary[: len(old)].copy_(old)
        model.normalize_()
        return model

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``H z`` ``(batch, M, N)``."""
        return self.operator().H(z)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(y)
        return z, self.decode(z)

    # L travels with the weights: state_dict() saves it, load_state_dict() restores it
    def get_extra_state(self) -> dict:
        return dict(format=STATE_FORMAT, lipschitz=float(self.lipschitz), encoder=self.encoder.name)

    def set_extra_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"model state of format {state.get('format') if isinstance(state, dict) else '?'}, "
                             f"this crsae-sort reads format {STATE_FORMAT}")
        if state["encoder"] != self.encoder.name:
            raise ValueError(f"state of a model with encoder {state['encoder']!r} loaded into one with "
                             f"encoder {self.encoder.name!r}")
        self.lipschitz = float(state["lipschitz"])

    def to_state(self) -> dict:
        """Everything needed to rebuild this model (tensors on the CPU): see :meth:`from_state`."""
        return dict(format=STATE_FORMAT, dictionary=self.dictionary.detach().cpu(), lam=self.lam.detach().cpu(),
                    reference_amplitude=self.reference_amplitude.cpu(), n_iterations=self.n_iter,
                    positive=self.positive, encoder=self.encoder.name,
                    encoder_options=_options_dict(self.encoder.options),
                    encoder_state={k: v.cpu() for k, v in self.encoder.state_dict().items()},
                    lipschitz=float(self.lipschitz), n_channels=self.n_channels,
                    support=None if self.support is None else self.support.cpu(),
                    mask=None if self.mask is None else self.mask.cpu(), origin=list(self.origin))

    @classmethod
    def from_state(cls, state: dict, device: torch.device | str = "cpu") -> "CRsAE":
        """The one way to rebuild a model from :meth:`to_state` (``model.pt``, checkpoints)."""
        from .encoders import ENCODER_OPTIONS

        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"model state of format {state.get('format')}, this crsae-sort reads format "
                             f"{STATE_FORMAT}")
        options = ENCODER_OPTIONS[state["encoder"]](**state["encoder_options"])
        model = cls(state["dictionary"], state["lam"], state["n_iterations"], state["positive"],
                    state["reference_amplitude"], encoder=state["encoder"], encoder_options=options,
                    support=state.get("support"), mask=state.get("mask"), n_channels=state.get("n_channels"),
                    origin=state.get("origin"))
        model.encoder.load_state_dict(state["encoder_state"])
        with torch.no_grad():  # exactly the saved atoms (the constructor renormalised them once more)
            model.dictionary.copy_(state["dictionary"])
        model.lipschitz = float(state["lipschitz"])
        return model.to(device)


def _options_dict(options) -> dict:
    import dataclasses

    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
