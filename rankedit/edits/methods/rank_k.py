"""rank-k (AlphaRL) and its control random-rank-k.

rank-k keeps the top-k singular directions of dW: ``W0 + c · U_k S_k V_kᵀ``, with
``c = ‖dW‖_F / ‖U_k S_k V_kᵀ‖_F`` by default (AlphaRL's norm rescale, so the edit
moves the weights as far as the full update did), or ``c = 1`` (``scale="none"``),
or a given number. The top-k triplets come from ``rankedit.core.svd.edit_svd``: the
exact SVD of small matrices, a seeded randomized SVD checked against a stated
tolerance (``rankedit.core.guarded_svd``) for big ones.

random-rank-k is the control: k random orthonormal directions on each side,
carrying the same singular values and the same rescale, hence exactly the same
norm as the rank-k edit; only the directions differ.
"""

from __future__ import annotations

from typing import Callable, Literal, Optional, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from rankedit.edits.registry import Control, EditResult, MatrixInputs, SvdParams, generator, register
from rankedit.edits.storage import MatrixSize, Storage, low_rank
from rankedit.core.svd import edit_svd, svd_facts
from rankedit.core.guarded_svd import Accuracy
from rankedit.core.linalg import SVD, low_rank_product, norm64, numerical_rank

Scale = Union[Literal["norm", "none"], float]
NoiseOf = Union[float, Callable[[], float]]


class RankKParams(SvdParams):
    k: StrictInt = Field(1, ge=1, description="number of singular directions of dW kept")
    scale: Scale = Field("norm", description="norm (AlphaRL: rescale to ‖dW‖_F), none (c = 1) or a number c; "
                                             "--as-lora and --artifact default to none (the truncated SVD)")


class LoraOptions(BaseModel):
    """rank-k's build options (keyword arguments of ``build_edit``): its factors can be written
    as a PEFT adapter instead of merged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_lora: bool = Field(False, description="write a PEFT LoRA adapter (rank k) instead of a merged checkpoint: "
                                             "the truncated SVD, --scale none unless --scale is given")
    lora_dtype: Optional[Literal["source", "float32", "bfloat16", "float16"]] = Field(
        None, description="dtype of the adapter's factors (with --as-lora). Default: source, the base matrices' own")

    @model_validator(mode="after")
    def _lora_only(self):
        if self.lora_dtype is not None and not self.as_lora:
            raise ValueError("--lora-dtype applies to --as-lora only")
        return self


def extraction_params(edit, params: dict) -> dict:
    """The parameters of an extraction (a LoRA adapter, ``--as-lora``; an artifact, ``--artifact``) of a rank-family
    edit: the plain truncated SVD, ``scale: none`` (Eckart-Young: the best rank-k approximation of ΔW), unless a
    scale is asked for. AlphaRL's ‖ΔW‖ rescale is an edit, the merged edit's default, not an extraction's."""
    f = edit.params.model_fields.get("scale")
    if f is not None and f.default == "norm" and params.get("scale") is None:
        return {**params, "scale": "none"}
    return params


def low_rank_cost(p: RankKParams, size: MatrixSize) -> Storage:
    """The LoRA factors: k(m + n) values, the singular values and the rescale folded into them."""
    return low_rank(size, p.k)


def _describe_rank_k(p: RankKParams) -> str:
    how = {"norm": ", rescaled to ‖ΔW‖", "none": ""}.get(str(p.scale), f", ×{p.scale}")
    return f"top-{p.k} singular directions of ΔW{how}"


def rescale_factor(dw: torch.Tensor, s_kept: torch.Tensor, scale: Scale) -> float:
    """The factor c in front of the kept part."""
    if scale == "none":
        return 1.0
    if scale == "norm":
        kept = norm64(s_kept)  # float64 sums: see norm64
        return norm64(dw) / kept if kept > 0 else 1.0
    return float(scale)


def rank_k_factors(dw: torch.Tensor, k: int, scale: Scale = "norm", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(B, A, rank_kept)`` with ``B @ A = c · U_k S_k V_kᵀ``: B is (m, k), A is (k, n)."""
    return rank_k_parts(dw, k, scale, seed)[:3]


def rank_k_parts(dw: torch.Tensor, k: int, scale: Scale = "norm", seed: int = 0,
                 top: Optional[tuple[SVD, Accuracy]] = None, *, exact: bool = True,
                 noise: NoiseOf = 0.0) -> tuple[torch.Tensor, torch.Tensor, int, Accuracy, float]:
    """``rank_k_factors``, the ``Accuracy`` of the SVD behind them and the rescale c.

    The singular values are split evenly (sqrt on each side) so that B and A are
    also a well-conditioned LoRA pair. ``top``: dW's top-k triplets, where the caller
    has them already (rank-auto), else ``edit_svd``'s (``exact``, ``noise``: as there;
    the registered edits pass ``exact_svd`` and the tuned matrix's storage noise).
    """
    svd, acc = top if top is not None else edit_svd(dw, k, seed, exact=exact, noise=noise)
    c = rescale_factor(dw, svd.S, scale)
    root = (svd.S * abs(c)).sqrt()
    sign = -1.0 if c < 0 else 1.0
    B = svd.U * (root * sign)
    A = (svd.V * root).T
    return B, A, numerical_rank(svd.S, tuple(dw.shape), dw.dtype), acc, c


@register("rank-k", RankKParams, help="""Keep the top-k singular directions of each update dW (AlphaRL).

    New matrix: W0 + c·U_k S_k V_kᵀ of dW, with c = ‖dW‖_F / ‖U_k S_k V_kᵀ‖_F
    (--scale norm, the default: the edit moves as far as the full update),
    c = 1 (--scale none) or a given number. Uses a seeded randomized SVD of dW.
    --as-lora writes a PEFT LoRA adapter (rank k) instead of a merged checkpoint.""",
          card_text="keeps the top-k singular directions of each matrix's update dW = W_tuned - W_base "
                    "(W_base + c · U_k S_k V_kᵀ)",
          describe=_describe_rank_k, control=Control("random-rank-k"), storage=low_rank_cost, options=LoraOptions,
          artifact="lora", ahead=lambda p: top_k_of(p.k, p.exact_svd))
def rank_k(x: MatrixInputs, p: RankKParams) -> EditResult:
    return rank_k_edit(x.dw, p.k, p.scale, x.seed, x.ahead, exact=p.exact_svd, noise=noise_of(x))


def top_k_of(k: int, exact: bool) -> Callable[[MatrixInputs], tuple[SVD, Accuracy]]:
    """The work done beside the merge (``rankedit.edits.ahead``): dW's top-k, as ``edit_svd`` gives it inside
    the merge (dW is a fresh difference, so it has the same bits there)."""
    return lambda x: edit_svd(x.dw, k, x.seed, exact=exact, noise=noise_of(x))


def noise_of(x: MatrixInputs) -> Callable[[], float]:
    """dW's storage noise, that of the tuned matrix (W0 is the reference, exact by definition), computed
    only if the SVD asks for it (``rankedit.core.svd.storage_noise``)."""
    return lambda: x.tuned_noise()


def rank_k_edit(dw: torch.Tensor, k: int, scale: Scale, seed: int,
                top: Optional[tuple[SVD, Accuracy]] = None, *, exact: bool = True, noise: NoiseOf = 0.0) -> EditResult:
    """rank-k's result for dW (``top``, ``exact``, ``noise``: as ``rank_k_parts``)."""
    B, A, kept, acc, c = rank_k_parts(dw, k, scale, seed, top, exact=exact, noise=noise)
    return EditResult(delta=low_rank_product(B, A), rank_kept=kept, rescale=c, parts={"B": B, "A": A}, **svd_facts(acc))


def random_orthonormal(n: int, k: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    # Fix QR's sign ambiguity so the result depends only on the seed.
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))
    return q.to(dtype)


@register("random-rank-k", RankKParams, help="""Control for rank-k: k random orthonormal directions with the same norm.

    Same singular values and rescale as rank-k, random (seeded) directions, so the
    edit has exactly the rank-k edit's norm and only the directions differ.""",
          card_text="control: k random orthonormal directions of the same norm in place of the update",
          describe=lambda p: f"{p.k} random direction{'s' if p.k != 1 else ''} per matrix, same norm (control)",
          storage=low_rank_cost, artifact="lora", ahead=lambda p: top_k_of(p.k, p.exact_svd))
def random_rank_k(x: MatrixInputs, p: RankKParams) -> EditResult:
    top = (x.ahead[0].S, x.ahead[1]) if x.ahead is not None else None
    return random_directions(x, p.k, p.scale, top, exact=p.exact_svd)


def random_directions(x: MatrixInputs, k: int, scale: Scale,
                      top: Optional[tuple[torch.Tensor, Accuracy]] = None, *, exact: bool = True) -> EditResult:
    """k random orthonormal directions per side carrying dW's top-k singular values and rescale
    (``top``: those values and their accuracy, where the caller has them already)."""
    dw = x.dw
    if top is None:
        svd, acc = edit_svd(dw, k, x.seed, exact=exact, noise=noise_of(x))
        top = (svd.S, acc)
    S, acc = top
    c = rescale_factor(dw, S, scale)
    gen = generator(x.seed)
    m, n = dw.shape
    U = random_orthonormal(m, k, gen, dw.dtype).to(dw.device)
    V = random_orthonormal(n, k, gen, dw.dtype).to(dw.device)
    B, A = U * (S * c), V.T
    return EditResult(delta=low_rank_product(B, A), rank_kept=numerical_rank(S, (m, n), dw.dtype),
                      rescale=c, parts={"B": B, "A": A}, **svd_facts(acc))
