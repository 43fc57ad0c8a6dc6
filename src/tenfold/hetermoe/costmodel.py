"""Cost model: how long one op class takes on one device type.

HeterMoE (Wu et al., 2025, "HeterMoE: Efficient Training of Mixture-of-Experts Models on Heterogeneous
GPUs") rests on one observation: newer GPUs gain far more over older ones on attention than on expert
feed-forward work (an A40 is up to 3.7x a V100 on attention at 64K tokens, a V100 reaches about 80% of
an A40 on experts). The model here has three op classes:

- attention, per token: projections 8·h² flops (Q, K, V, O) on the device's matmul throughput, plus
  the causal core 2·s·h flops (QKᵀ and AV over s/2 keys on average) on its attention-core throughput.
  The core term (∝ tokens·seq) is what grows with sequence length and where new GPUs pull ahead
  (FlashAttention-2 kernels vs memory-bound attention on older cards).
- experts, per token: top_k experts × SwiGLU (3 matmuls of h×ffn, 6·h·ffn flops) on matmul throughput.
- all-to-all: bytes / per-GPU link bandwidth + a fixed latency.

Backward costs 2x forward; with activation checkpointing (the paper's setting) the forward is
recomputed, so backward costs 3x. Built-in profiles are estimates calibrated to the paper's ratios
(tested: V100/A40 expert speed 0.8, A40/V100 attention 3.7x at 64K tokens on a 2048-wide model);
`tenfold hetermoe profile` measures the machine at hand into a profile file that replaces them.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tenfold.core.errors import TenfoldError

BYTES_PER_VALUE = 2  # fp16 activations and gradients, as in the paper


@dataclass(frozen=True)
class DeviceProfile:
    """Effective (achieved, not peak) throughputs of one device type."""

    name: str
    matmul_tflops: float  # dense matmuls: projections, experts
    attn_core_tflops: float  # the s-dependent attention core
    link_gbps: float  # network bandwidth per GPU, GB/s, each direction
    memory_gb: float = 48.0
    link_latency_ms: float = 0.02
    generation: int = 0  # higher is newer; `plan` puts attention on the newest type

    def validate(self) -> DeviceProfile:
        for k in ("matmul_tflops", "attn_core_tflops", "link_gbps", "memory_gb"):
            if not getattr(self, k) > 0:
                raise TenfoldError(f"device {self.name!r}: {k} must be > 0, got {getattr(self, k)}")
        if self.link_latency_ms < 0:
            raise TenfoldError(f"device {self.name!r}: link_latency_ms must be >= 0")
        return self


# Effective fp16 throughputs (estimates: about 55% of dense tensor peak for matmuls). V100's attention
# core is set so that a 2048-wide layer at 64K tokens runs 3.7x slower than on an A40 (the paper's
# figure; no FlashAttention-2 on Volta); its matmuls are 0.8x an A40's (the paper's expert figure).
BUILTIN_PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile("H100", 400.0, 330.0, 50.0, 80.0, generation=4),
        DeviceProfile("A100", 170.0, 140.0, 25.0, 80.0, generation=3),
        DeviceProfile("L40S", 150.0, 120.0, 12.5, 48.0, generation=3),
        DeviceProfile("A40", 80.0, 70.0, 12.5, 48.0, generation=2),
        DeviceProfile("V100", 64.0, 17.6, 12.5, 32.0, generation=1),
        DeviceProfile("T4", 28.0, 6.0, 6.25, 16.0, generation=0),
    )
}


@dataclass(frozen=True)
class MoESpec:
    """A Mixtral-style MoE transformer (top-k routing, SwiGLU experts)."""

    name: str
    hidden: int
    ffn: int
    layers: int
    experts: int
    top_k: int = 2
    vocab: int = 32000

    @property
    def expert_params(self) -> int:
        return 3 * self.hidden * self.ffn

    @property
    def params(self) -> int:
        attn = 4 * self.hidden * self.hidden + self.hidden * self.experts
        return self.layers * (attn + self.experts * self.expert_params) + 2 * self.vocab * self.hidden

    def validate(self) -> MoESpec:
        for k in ("hidden", "ffn", "layers", "experts", "top_k"):
            if getattr(self, k) < 1:
                raise TenfoldError(f"model {self.name!r}: {k} must be >= 1, got {getattr(self, k)}")
        if self.top_k > self.experts:
            raise TenfoldError(f"model {self.name!r}: top_k={self.top_k} > experts={self.experts}")
        return self


# The paper's models are Mixtral-style, 1.2-4.3B parameters, 4-8 layers, 12-40 experts, top-2 (exact
# shapes are not published; these are ours in that range). moe-tiny matches tenfold's core preset.
MODEL_SPECS: dict[str, MoESpec] = {
    s.name: s
    for s in (
        MoESpec("mixtral-1.3b", hidden=1024, ffn=4096, layers=8, experts=12),
        MoESpec("mixtral-2.6b", hidden=2048, ffn=4096, layers=4, experts=24),
        MoESpec("mixtral-4.3b", hidden=2048, ffn=5120, layers=8, experts=16),
        MoESpec("moe-tiny", hidden=128, ffn=256, layers=2, experts=4, vocab=260),
    )
}


def get_model(name: str) -> MoESpec:
    if name not in MODEL_SPECS:
        raise TenfoldError(f"unknown model {name!r}; known: {sorted(MODEL_SPECS)}")
    return MODEL_SPECS[name]


@dataclass(frozen=True)
class Workload:
    """One training iteration: `batch` sequences of `seq` tokens, split into micro-batches."""

    seq: int
    batch: int = 8
    checkpointing: bool = True  # activation checkpointing: backward = 3x forward (else 2x)

    @property
    def tokens(self) -> int:
        return self.seq * self.batch

    @property
    def backward_factor(self) -> float:
        return 3.0 if self.checkpointing else 2.0

    def validate(self) -> Workload:
        if self.seq < 1 or self.batch < 1:
            raise TenfoldError(f"seq and batch must be >= 1, got seq={self.seq} batch={self.batch}")
        return self


@dataclass(frozen=True)
class CostModel:
    """Forward op times in milliseconds for one model and workload on any device profile."""

    model: MoESpec
    work: Workload

    def attention_ms(self, dev: DeviceProfile, tokens: float) -> float:
        """Forward attention (projections + causal core) plus the gate for `tokens` tokens."""
        h, s = self.model.hidden, self.work.seq
        proj = tokens * (8 * h * h + 2 * h * self.model.experts)
        core = tokens * 2 * s * h
        return (proj / dev.matmul_tflops + core / dev.attn_core_tflops) / 1e9

    def expert_ms(self, dev: DeviceProfile, routed_tokens: float) -> float:
        """Forward experts for `routed_tokens` (token, expert) pairs."""
        return routed_tokens * 6 * self.model.hidden * self.model.ffn / dev.matmul_tflops / 1e9

    def per_expert_ms(self, dev: DeviceProfile, tokens: float) -> float:
        """One expert's forward time when `tokens` tokens are routed evenly over all experts."""
        return self.expert_ms(dev, tokens * self.model.top_k / self.model.experts)

    def transfer_ms(self, dev: DeviceProfile, values: float) -> float:
        """Time to move `values` activations (fp16) through one GPU's link."""
        if values <= 0:
            return 0.0
        return dev.link_latency_ms + values * BYTES_PER_VALUE / (dev.link_gbps * 1e9) * 1e3

    def head_ms(self, dev: DeviceProfile, tokens: float) -> float:
        """Output projection + loss, forward and backward (on the attention side)."""
        return 3 * tokens * 2 * self.model.hidden * self.model.vocab / dev.matmul_tflops / 1e9


@dataclass(frozen=True)
class Cluster:
    """Device types and counts, newest first (e.g. `6xA40,6xV100`)."""

    groups: tuple[tuple[DeviceProfile, int], ...] = field(default_factory=tuple)

    @property
    def new(self) -> tuple[DeviceProfile, int]:
        return self.groups[0]

    @property
    def old(self) -> tuple[DeviceProfile, int]:
        return self.groups[-1]

    @property
    def gpus(self) -> int:
        return sum(n for _, n in self.groups)

    def __str__(self) -> str:
        return ",".join(f"{n}x{d.name}" for d, n in self.groups)


_GROUP = re.compile(r"^\s*(\d+)\s*[xX*]\s*([\w.-]+)\s*$")


def parse_cluster(text: str, profiles: dict[str, DeviceProfile] | None = None) -> Cluster:
    """`"6xA40,6xV100"` -> Cluster with two groups (newest generation first). Exactly two device types
    (HeterMoE's setting: one new and one old generation)."""
    profiles = {**BUILTIN_PROFILES, **(profiles or {})}
    groups = []
    for part in text.split(","):
        m = _GROUP.match(part)
        if not m:
            raise TenfoldError(f"bad cluster part {part!r}: expected COUNTxDEVICE, e.g. 6xA40")
        n, name = int(m[1]), m[2]
        if name not in profiles:
            raise TenfoldError(f"unknown device {name!r}; known: {sorted(profiles)} (or --profile FILE)")
        if n < 1:
            raise TenfoldError(f"bad cluster part {part!r}: need at least one GPU")
        groups.append((profiles[name].validate(), n))
    if len(groups) != 2 or groups[0][0].name == groups[1][0].name:
        raise TenfoldError(f"cluster {text!r}: give exactly two different device types, e.g. 6xA40,6xV100")
    groups.sort(key=lambda g: (-g[0].generation, -g[0].attn_core_tflops))
    return Cluster(tuple(groups))


def save_profiles(profiles: list[DeviceProfile], path: str | Path) -> None:
    from tenfold.core.io import atomic_write_text

    atomic_write_text(Path(path), json.dumps([asdict(p) for p in profiles], indent=1))


def load_profiles(path: str | Path) -> dict[str, DeviceProfile]:
    """Profiles written by `tenfold hetermoe profile` (a JSON list of DeviceProfile fields)."""
    try:
        rows = json.loads(Path(path).read_text())
        return {r["name"]: DeviceProfile(**r).validate() for r in rows}
    except FileNotFoundError:
        raise TenfoldError(f"profile file {path} does not exist") from None
    except (json.JSONDecodeError, TypeError, KeyError) as e:
        raise TenfoldError(f"profile file {path} is not a list of device profiles: {e}") from None
