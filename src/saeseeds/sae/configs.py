"""The configs of an SAE and of its training: plain dataclasses with their checks, and no torch.

Snakemake checks every SAE entry of a study against them before any job (`saeseeds.config.study.check_training`),
and `saeseeds plan` does too; importing torch for that cost every Snakemake start ~1.5 s. `saeseeds.sae.coder`
and `saeseeds.sae.train` re-export them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from saeseeds.errors import SaeConfigError, TrainConfigError

SPARSE_ARCHS = ("topk", "batchtopk")
B_DEC_INITS = ("geometric_median", "mean")
"""How b_dec starts (`train.b_dec_init`): the first batch's geometric median or its mean."""
BATCH_ORDERS = ("tokens", "sequences")
OPTIMIZERS = ("adam", "signum")
ENCODER_SCREENS = ("auto", "bf16", "fp32")
DEVICE = re.compile(r"(cpu|cuda|mps|xpu|meta|hpu|mtia)(:\d+)?")
"""Device strings torch.device accepts for the backends a trainer can run on (checked without importing torch)."""

ARCHS = ("topk", "batchtopk", "jumprelu", "relu", "gated")


@dataclass
class SaeConfig:
    """The shape and activation of one SAE; plain JSON values so a workflow builds it from YAML."""

    num_latents: int
    """Number of latents (dictionary size). Required: the paper's results depend on it strongly."""

    arch: str = "topk"
    """Activation: "topk" (Gao et al. 2024, sparsify's default and the paper's main setting), "batchtopk"
    (top k*batch over the whole batch, Bussmann et al. 2024), "jumprelu" (Rajamanoharan et al. 2024b),
    "relu" (ReLU + L1 penalty, Bricken et al. 2023) or "gated" (Rajamanoharan et al. 2024a)."""

    k: int = 32
    """Active latents per token for topk/batchtopk (mean per token for batchtopk); the paper uses 32."""

    normalize_decoder: bool | None = None
    """Keep decoder rows at unit norm (renormalised every step, parallel gradient removed). None means
    the arch's recipe: true for topk/batchtopk/jumprelu/gated (sparsify, Bussmann, Rajamanoharan),
    false for relu, whose L1 penalty is weighted by decoder norms instead (Anthropic, April 2024)."""

    jumprelu_init_threshold: float = 0.01
    """Initial JumpReLU threshold, in units of activations rescaled to mean squared norm d (SAELens 6.x
    default); training converts it with the first batch's scale."""

    jumprelu_bandwidth: float = 0.05
    """Width of the rectangle kernel of JumpReLU's straight-through threshold gradient, same units
    (SAELens 6.x default)."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise SaeConfigError(f"sae arch={self.arch!r}: expected one of {ARCHS}")
        for key in ("num_latents", "k"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SaeConfigError(f"sae {key}={value!r}: expected a positive integer")
        if self.arch in SPARSE_ARCHS and self.k > self.num_latents:
            raise SaeConfigError(f"sae k={self.k} exceeds num_latents={self.num_latents}")
        for key in ("jumprelu_init_threshold", "jumprelu_bandwidth"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SaeConfigError(f"sae {key}={value!r}: expected a positive number")
        if self.normalize_decoder is None:
            self.normalize_decoder = self.arch != "relu"
        if not isinstance(self.normalize_decoder, bool):
            raise SaeConfigError(f"sae normalize_decoder={self.normalize_decoder!r}: expected true or false")


@dataclass
class TrainConfig:
    """How to train: plain JSON values so a workflow builds it from YAML."""

    batch_size: int = 4096
    """Tokens (activation rows) per optimiser step."""

    max_tokens: int | None = None
    """Training tokens; None means one pass over the store's training rows. More than the store holds
    means several passes, each with a fresh shuffle drawn from the data seed."""

    optimizer: str = "adam"
    """"adam" (the paper's recipe) or "signum" (sign of the gradient inside a schedule-free wrapper
    with momentum 0.95, constant lr: sparsify's default since 2025)."""

    lr: float | None = None
    """Peak learning rate; None gives 2e-4 / sqrt(num_latents / 2^14) for adam (the paper's) and
    5e-3 / sqrt(num_latents / 2^14) for signum (sparsify's)."""

    warmup_steps: int = 1000
    """Adam only: steps of linear learning-rate warmup, then linear decay to 0 at the last step (as in
    sparsify). Must be fewer than the training steps."""

    grad_clip: float | None = 1.0
    """Max gradient norm of each SAE (all its parameters); None disables clipping. Irrelevant to signum,
    whose update ignores the gradient's scale."""

    auxk_alpha: float = 0.0
    """Weight of the AuxK loss that revives dead latents (topk/batchtopk); 0 as in the paper's recipe,
    1/32 in Gao et al. (2024)."""

    dead_feature_threshold: int = 10_000_000
    """Tokens without firing after which a latent counts as dead for AuxK (sparsify's default)."""

    l1_coefficient: float = 5.0
    """relu and gated: weight of the decoder-norm-weighted L1 penalty, in units of activations rescaled
    to mean squared norm d (Anthropic's April 2024 recipe uses 5 in these units)."""

    l0_coefficient: float = 1.0
    """jumprelu: weight of the L0 penalty, same units (SAELens' default)."""

    sparsity_warmup_steps: int = 0
    """Steps over which the relu/gated/jumprelu sparsity coefficient rises linearly from 0."""

    device: str = "cpu"
    """Torch device. CPU runs are bitwise reproducible; CUDA runs are close but not bitwise."""

    tf32: bool = False
    """CUDA only: allow TF32 matmuls (faster, ~1e-3 relative error, not bitwise)."""

    encoder_screen: str = "auto"
    """topk without AuxK: how the encoder finds each token's k largest pre-activations. "bf16" screens all of
    them in bfloat16 under a proven error bound and computes float32 values only for the candidates
    (`saeseeds.sae.screened_topk`: the same latents as float32, up to float32 rounding); "fp32" computes all
    in float32; "auto" screens where bfloat16 is native (AMX, AVX512-BF16, CUDA) and the SAE has at least 1024
    latents (smaller ones are faster in float32). On CPU the choice changes
    checkpoint bytes (never the maths), so results are reproducible per setting and machine kind."""

    b_dec_init: str = "geometric_median"
    """How b_dec starts: "geometric_median" of the first batch (EleutherAI `sae` from June to 22 Nov 2024,
    Bricken et al. 2023) or its "mean" (`sae` from 22 Nov 2024, including the Dec 2024 version that trains
    several seeds at once, and sparsify 1.3.3). The same for every seed either way."""

    batch_order: str = "tokens"
    """"tokens": rows shuffled one by one within windows; "sequences": each batch is whole contexts
    (store attr `context_length` rows each, batch_size a multiple of it), the contexts shuffled within
    windows, as the paper's trainer feeds batches of sequences. Drawn from the data seed either way."""

    window_rows: int = 65536
    """Rows shuffled together: whole store chunks are read in a shuffled order and rows (or contexts) are
    shuffled within windows of about this many rows, so reads stay contiguous. A window at least as large
    as the store's training rows shuffles the whole cache at once (sparsify's shuffled dataset)."""

    prefetch_batches: int = 4
    """Batches the reader thread keeps ready ahead of training."""

    eval_batch_size: int = 2048
    """Held-out rows per evaluation batch (memory only: a [batch, num_latents] matrix is formed)."""

    state_every_steps: int = 500
    """Steps between saves of the resumable training state (0 disables)."""

    snapshots: int = 0
    """Checkpoints along training, the final one included (`saeseeds.sae.snapshots`: log-spaced by halving
    from the last step); 0 writes none. Adds no training: consistency over training from one run."""

    def __post_init__(self) -> None:
        def integer(key: str, minimum: int, allow_none: bool = False) -> None:
            value = getattr(self, key)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise TrainConfigError(f"train {key}={value!r}: expected an integer >= {minimum}")

        def number(key: str, *, positive: bool, allow_none: bool = False) -> None:
            value = getattr(self, key)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (positive and value == 0):
                raise TrainConfigError(f"train {key}={value!r}: expected a {'positive' if positive else 'non-negative'} number")

        for key in ("batch_size", "window_rows", "eval_batch_size", "dead_feature_threshold", "prefetch_batches"):
            integer(key, 1)
        integer("max_tokens", 1, allow_none=True)
        for key in ("warmup_steps", "sparsity_warmup_steps", "state_every_steps", "snapshots"):
            integer(key, 0)
        number("lr", positive=True, allow_none=True)
        number("grad_clip", positive=True, allow_none=True)
        for key in ("auxk_alpha", "l1_coefficient", "l0_coefficient"):
            number(key, positive=False)
        if self.encoder_screen not in ENCODER_SCREENS:
            raise TrainConfigError(f"train encoder_screen={self.encoder_screen!r}: expected one of {ENCODER_SCREENS}")
        if self.b_dec_init not in B_DEC_INITS:
            raise TrainConfigError(f"train b_dec_init={self.b_dec_init!r}: expected one of {B_DEC_INITS}")
        if self.batch_order not in BATCH_ORDERS:
            raise TrainConfigError(f"train batch_order={self.batch_order!r}: expected one of {BATCH_ORDERS}")
        if self.optimizer not in OPTIMIZERS:
            raise TrainConfigError(f"train optimizer={self.optimizer!r}: expected one of {OPTIMIZERS}")
        if not isinstance(self.tf32, bool):
            raise TrainConfigError(f"train tf32={self.tf32!r}: expected true or false")
        if not isinstance(self.device, str) or not DEVICE.fullmatch(self.device):
            raise TrainConfigError(f"train device={self.device!r}: expected a torch device such as 'cpu', 'cuda' or 'cuda:1'")
