"""LoRA on the tiny LLaVA through PEFT, with one rank per module, and a check that PEFT did what was asked.

Two pitfalls this module guards against (a run with the wrong ranks looks like a normal run):

- PEFT's `rank_pattern` silently ignores a key that matches no module (PEFT #3582), leaving those
  layers at the default rank;
- bare leaf names (`q_proj`) also match the CLIP layers, so LoRA lands on the vision tower when only
  the LLM was meant (LLaVA #1647).

So the target modules are named by full-path regular expressions, one per module, and
`check_ranks(model, expected)` compares every adapted layer's realised rank with the rank asked for,
and the set of adapted layers with the set of linear layers each module has: a missing, extra or
wrongly ranked layer is an error naming it. The projector is never adapted (frozen, in every arm).

LoRA's alpha is twice the rank in each module (LLaVA's recipe: r 128, alpha 256), so the adapter's
scale alpha/r is 2 at every rank and the rank changes capacity and update size, not the scale.
"""

from __future__ import annotations

import re
import warnings

import torch

from tenfold.core.errors import TenfoldError

MODULES = ("vision", "language")
# each module's adapted linear layers: the CLIP encoder's attention and MLP, the Llama decoder's
_LAYERS = {
    "vision": r"model\.vision_tower\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])",
    "language": r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)",
}
_MODULE_KEY = {"vision": r"model\.vision_tower\..*", "language": r"model\.language_model\..*"}
ALPHA_PER_RANK = 2


class RankMismatchError(TenfoldError):
    """PEFT adapted other layers, or at other ranks, than were asked for."""


def module_of(name: str) -> str | None:
    """'vision' or 'language' for a parameter or module name inside that module, else None."""
    if ".vision_tower." in name:
        return "vision"
    if ".language_model." in name:
        return "language"
    return None


def target_layers(model) -> dict[str, set[str]]:
    """{module: names of its linear layers that LoRA should adapt} in the (unwrapped) model."""
    out: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        name = name.removesuffix(".base_layer")  # a layer PEFT has wrapped keeps its Linear here
        for m, pattern in _LAYERS.items():
            if re.search(rf"(^|\.){pattern}$", name):
                out[m].add(name)
    return out


def check_rank(r: object, what: str) -> int:
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise TenfoldError(f"{what} rank must be a positive integer, got {r!r}")
    return r


def lora_config(rank_vision: int, rank_language: int, dropout: float = 0.0):
    """PEFT `LoraConfig` with one rank (and alpha = 2 x rank) per module."""
    from peft import LoraConfig

    ranks = {"vision": check_rank(rank_vision, "vision"), "language": check_rank(rank_language, "language")}
    return LoraConfig(
        r=ranks["language"],
        lora_alpha=ALPHA_PER_RANK * ranks["language"],
        lora_dropout=dropout,
        target_modules=r"(.*\.)?(" + "|".join(_LAYERS.values()) + r")",
        rank_pattern={_MODULE_KEY[m]: ranks[m] for m in MODULES},
        alpha_pattern={_MODULE_KEY[m]: ALPHA_PER_RANK * ranks[m] for m in MODULES},
    )


def adalora_config(init_r: int, target_r: int, total_step: int, tinit: int, tfinal: int, delta_t: int):
    """PEFT `AdaLoraConfig` over the same layers (one budget shared by both modules)."""
    from peft import AdaLoraConfig

    return AdaLoraConfig(
        init_r=check_rank(init_r, "AdaLoRA initial"),
        target_r=check_rank(target_r, "AdaLoRA target"),
        lora_alpha=ALPHA_PER_RANK * init_r,
        target_modules=r"(.*\.)?(" + "|".join(_LAYERS.values()) + r")",
        total_step=total_step,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=delta_t,
    )


def realised_ranks(peft_model) -> dict[str, dict[str, int]]:
    """{module: {layer name (as in the unwrapped model): rank}} of every LoRA layer PEFT made; layers
    outside both modules are listed under "other"."""
    out: dict[str, dict[str, int]] = {"vision": {}, "language": {}, "other": {}}
    for name, mod in peft_model.named_modules():
        r = getattr(mod, "r", None)
        if not isinstance(r, dict) or "default" not in r or not hasattr(mod, "lora_A"):
            continue
        plain = name.removeprefix("base_model.model.")
        out[module_of("." + plain) or "other"][plain] = int(r["default"])
    return out


def check_ranks(peft_model, expected: dict[str, int]) -> dict[str, int]:
    """Every targeted layer of each module carries the module's expected rank, and nothing else is
    adapted; returns {module: adapted layer count}. Raises RankMismatchError naming what differs."""
    got = realised_ranks(peft_model)
    want = target_layers(peft_model.get_base_model())
    if got["other"]:
        raise RankMismatchError(f"LoRA outside the vision tower and the LLM: {sorted(got['other'])[:3]}")
    for m in MODULES:
        missing = want[m] - set(got[m])
        extra = set(got[m]) - want[m]
        if missing or extra:
            raise RankMismatchError(
                f"{m}: {len(missing)} targeted layers without LoRA (e.g. {sorted(missing)[:2]}), "
                f"{len(extra)} unexpected (e.g. {sorted(extra)[:2]})"
            )
        wrong = {n: r for n, r in got[m].items() if r != expected[m]}
        if wrong:
            name, r = next(iter(sorted(wrong.items())))
            raise RankMismatchError(
                f"{m}: {len(wrong)} of {len(got[m])} layers have a rank other than {expected[m]} "
                f"(e.g. {name}: {r})"
            )
    return {m: len(got[m]) for m in MODULES}


def _quiet_peft() -> None:
    # transformers 5 deprecates a name PEFT still calls at every wrap; the warning says nothing to users
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def attach(model, rank_vision: int, rank_language: int):
    """The PEFT model with LoRA of the given ranks on the two modules (checked), everything else frozen."""
    from peft import get_peft_model

    _quiet_peft()
    peft_model = get_peft_model(model, lora_config(rank_vision, rank_language))
    check_ranks(peft_model, {"vision": rank_vision, "language": rank_language})
    return peft_model


def attach_adalora(model, **kw):
    from peft import get_peft_model

    _quiet_peft()
    return get_peft_model(model, adalora_config(**kw))


def lora_parameters(peft_model) -> dict[str, list[tuple[str, torch.nn.Parameter]]]:
    """{module: [(name, parameter)]} of the trainable LoRA parameters, by module."""
    out: dict[str, list] = {m: [] for m in MODULES}
    for name, p in peft_model.named_parameters():
        if p.requires_grad:
            m = module_of(name)
            if m is None:
                raise RankMismatchError(f"trainable parameter outside both modules: {name}")
            out[m].append((name, p))
    return out
