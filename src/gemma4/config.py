"""Frozen model configs and the preset table; knows shapes and layer layout, not math.

Every value of the official presets (gemma/gm/nn/gemma4/_gemma4.py, gemma==4.0.1) is
written here once as data; `gemma4.models` turns a preset into a model.
"""

from __future__ import annotations

import dataclasses
import functools

LOCAL = 'local'  # sliding-window attention layer
GLOBAL = 'global'  # full attention layer


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """Vision encoder settings (official `VisionEncoder` fields, same defaults)."""

  d_model: int = 768
  num_layers: int = 16
  num_heads: int = 12
  ffw_hidden: int = 3072
  patch_size: int = 16
  output_length: int = 280
  pos_emb_shape_yx: tuple[int, int] = (10240, 2)
  pooling_kernel_size: int = 3
  use_clipped_linears: bool = False
  standardize_embeddings: bool = False


@dataclasses.dataclass(frozen=True)
class AudioConfig:
  """Conformer audio encoder settings (official `ConformerConfig`, same defaults)."""

  num_layers: int = 12
  model_dims: int = 1024
  lm_model_dims: int = 1536
  atten_num_heads: int = 8
  atten_left_context: int = 13
  atten_right_context: int = 0
  conv_kernel_size: int = 5
  gradient_clipping: float = 10_000_000_000.0
  conf_reduction_factor: int = 1


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Text decoder hyper-parameters.

  Letters used in shapes across the package: B batch, T query length, S key length,
  D embed_dim, N query heads, K kv heads, G = N // K, H head dim, F mlp hidden,
  E experts, P per-layer input dim, L layers, V vocab.
  """

  embed_dim: int
  hidden_dim: int  # dense MLP width F (the shared dense branch `mlp2` for MoE)
  num_heads: int
  num_kv_heads: int
  layer_types: tuple[str, ...]  # LOCAL or GLOBAL per layer
  sliding_window: int  # a local query sees this many keys, itself included
  vocab_size: int = 262144
  head_dim: int = 256
  num_global_kv_heads: int | None = None  # None: num_kv_heads
  global_head_dim: int | None = 512  # None: head_dim
  k_eq_v_global: bool = False  # global layers project K once and use it as V too
  local_rope_base: float = 10_000
  global_rope_base: float = 1_000_000
  local_rope_proportion: float = 1.0
  global_rope_proportion: float = 0.25
  local_rope_scale: float = 1.0
  global_rope_scale: float = 1.0
  final_logit_softcap: float | None = 30.0
  attn_logits_softcap: float | None = None
  use_post_attn_norm: bool = True
  use_post_ffw_norm: bool = True
  qk_norm_with_scale: bool = True
  family: str = 'gemma4'  # 'gemma3': norms scale by (1 + w), no V norm, no skip scale
  query_scale: float = 1.0  # queries are multiplied by this (Gemma 3: 1/sqrt(head_dim))
  per_layer_input_dim: int = 0  # P; 0 disables per-layer embeddings
  num_kv_shared_layers: int = 0  # the last layers reuse K/V of earlier ones
  kv_shared_hidden_dim: int | None = None  # MLP width on KV-shared layers
  num_experts: int = 0  # 0: dense MLP; >0: MoE branch beside the dense one
  expert_dim: int = 0
  top_k_experts: int = 0
  bidirectional_vision: bool = False  # image soft tokens see each other on local layers
  vision: VisionConfig | None = None
  audio: AudioConfig | None = None

  def __post_init__(self):
    bad = [t for t in self.layer_types if t not in (LOCAL, GLOBAL)]
    if bad:
      raise ValueError(f'layer_types must be {LOCAL!r} or {GLOBAL!r}, got {bad}')
    if self.num_heads % self.kv_heads(LOCAL) or self.num_heads % self.kv_heads(GLOBAL):
      raise ValueError(
          f'num_heads={self.num_heads} must be a multiple of the kv head counts'
          f' ({self.kv_heads(LOCAL)} local, {self.kv_heads(GLOBAL)} global)')
    if not 0 <= self.num_kv_shared_layers < self.num_layers:
      raise ValueError(f'num_kv_shared_layers={self.num_kv_shared_layers} must be in'
                       f' [0, num_layers={self.num_layers})')
    if self.num_experts and not 0 < self.top_k_experts <= self.num_experts:
      raise ValueError(f'top_k_experts={self.top_k_experts} must be in [1, {self.num_experts}]')
    if self.family not in ('gemma3', 'gemma4'):
      raise ValueError(f"family must be 'gemma3' or 'gemma4', got {self.family!r}")
    self.kv_source  # raises if a shared layer has no source of its kind

  @property
  def num_layers(self) -> int:
    return len(self.layer_types)

  @property
  def is_moe(self) -> bool:
    return self.num_experts > 0

  @property
  def norm_offset(self) -> float:
    """Added to every norm weight: Gemma 3 stores w and scales by 1 + w."""
    return 1.0 if self.family == 'gemma3' else 0.0

  @property
  def value_norm(self) -> bool:
    return self.family == 'gemma4'

  @property
  def skip_scale(self) -> bool:
    """Gemma 4 layers end with a learned scalar (`skip_scale`); Gemma 3 has none."""
    return self.family == 'gemma4'

  @property
  def qk_norm_names(self) -> tuple[str, str]:
    """The official names of the query and key norms in the attention scope."""
    return ('_query_norm', '_key_norm') if self.family == 'gemma3' else ('query_norm', 'key_norm')

  def kv_heads(self, kind: str) -> int:
    if kind == GLOBAL and self.num_global_kv_heads:
      return self.num_global_kv_heads
    return self.num_kv_heads

  def key_size(self, kind: str) -> int:
    if kind == GLOBAL and self.global_head_dim:
      return self.global_head_dim
    return self.head_dim

  def k_eq_v(self, kind: str) -> bool:
    return kind == GLOBAL and self.k_eq_v_global

  def rope(self, kind: str) -> tuple[float, float, float]:
    """(base, proportion of dims rotated, position scale) of this layer kind."""
    if kind == GLOBAL:
      return self.global_rope_base, self.global_rope_proportion, self.global_rope_scale
    return self.local_rope_base, self.local_rope_proportion, self.local_rope_scale

  @functools.cached_property
  def kv_source(self) -> tuple[int, ...]:
    """Per layer, the layer whose K/V it attends with (itself unless KV-shared).

    A shared layer reads the last unshared layer of its own kind, as both references do.
    """
    first_shared = self.num_layers - self.num_kv_shared_layers
    src = []
    for i, kind in enumerate(self.layer_types):
      if i < first_shared:
        src.append(i)
        continue
      same = [j for j in range(first_shared) if self.layer_types[j] == kind]
      if not same:
        raise ValueError(f'KV-shared layer {i} ({kind}) has no unshared {kind} layer to read')
      src.append(same[-1])
    return tuple(src)

  def is_kv_shared(self, layer: int) -> bool:
    return self.kv_source[layer] != layer

  def mlp_hidden(self, layer: int) -> int:
    if self.is_kv_shared(layer) and self.kv_shared_hidden_dim:
      return self.kv_shared_hidden_dim
    return self.hidden_dim


def layer_pattern(pattern: tuple[str, ...], num_layers: int) -> tuple[str, ...]:
  """Repeats `pattern` to `num_layers` entries (official `make_attention_layers_types`)."""
  return tuple(pattern[i % len(pattern)] for i in range(num_layers))


def kv_shared_count(frac_shared_layers: float, num_layers: int) -> int:
  """The official fraction -> layer count, with its exact float arithmetic."""
  return num_layers - int(num_layers - frac_shared_layers * num_layers)


_L4G = (LOCAL,) * 4 + (GLOBAL,)
_L5G = (LOCAL,) * 5 + (GLOBAL,)
_BIG_VISION = VisionConfig(d_model=1152, num_layers=27, num_heads=16, ffw_hidden=4304,
                           use_clipped_linears=False, standardize_embeddings=True)

PRESETS: dict[str, TransformerConfig] = {
    'gemma4_e2b': TransformerConfig(
        embed_dim=1536, hidden_dim=1536 * 4, num_heads=8, num_kv_heads=1,
        layer_types=layer_pattern(_L4G, 35), sliding_window=512,
        per_layer_input_dim=256, num_kv_shared_layers=kv_shared_count(20.0 / 35, 35),
        kv_shared_hidden_dim=1536 * 4 * 2,
        vision=VisionConfig(use_clipped_linears=True), audio=AudioConfig()),
    'gemma4_e4b': TransformerConfig(
        embed_dim=2560, hidden_dim=2560 * 4, num_heads=8, num_kv_heads=2,
        layer_types=layer_pattern(_L5G, 42), sliding_window=512,
        per_layer_input_dim=256, num_kv_shared_layers=kv_shared_count(18.0 / 42, 42),
        vision=VisionConfig(use_clipped_linears=True), audio=AudioConfig()),
    'gemma4_26b_a4b': TransformerConfig(
        embed_dim=2816, hidden_dim=2112, num_heads=16, num_kv_heads=8,
        num_global_kv_heads=2, k_eq_v_global=True,
        layer_types=layer_pattern(_L5G, 30), sliding_window=1024,
        num_experts=128, expert_dim=704, top_k_experts=8,
        bidirectional_vision=True, vision=_BIG_VISION),
    'gemma4_31b': TransformerConfig(
        embed_dim=5376, hidden_dim=5376 * 4, num_heads=32, num_kv_heads=16,
        num_global_kv_heads=4, k_eq_v_global=True,
        layer_types=layer_pattern(_L5G, 60), sliding_window=1024,
        bidirectional_vision=True, vision=_BIG_VISION),
}


def gemma3_config(embed_dim: int, hidden_dim: int, num_heads: int, num_kv_heads: int,
                  num_layers: int, sliding_window: int, head_dim: int = 256,
                  global_rope_scale: float = 1.0, query_scale: float | None = None
                  ) -> TransformerConfig:
  """A Gemma 3 text decoder (official gm.nn.Gemma3_*): the decoder without the Gemma 4
  extras; local RoPE base 10k, global 1M, five local layers to one global."""
  return TransformerConfig(
      family='gemma3', embed_dim=embed_dim, hidden_dim=hidden_dim, num_heads=num_heads,
      num_kv_heads=num_kv_heads, head_dim=head_dim, global_head_dim=None,
      layer_types=layer_pattern(_L5G, num_layers), sliding_window=sliding_window,
      global_rope_proportion=1.0, global_rope_scale=global_rope_scale,
      final_logit_softcap=None, query_scale=query_scale or head_dim ** -0.5)


PRESETS.update({
    'gemma3_270m': gemma3_config(640, 2048, 4, 1, 18, 512),
    'gemma3_1b': gemma3_config(1152, 6 * 1152, 4, 1, 26, 512),
    'gemma3_4b': gemma3_config(2560, 2560 * 4, 8, 4, 34, 1024, global_rope_scale=8.0),
    'gemma3_12b': gemma3_config(3840, 3840 * 4, 16, 8, 48, 1024, global_rope_scale=8.0),
    'gemma3_27b': gemma3_config(5376, 5376 * 4, 32, 16, 62, 1024, head_dim=128,
                          global_rope_scale=8.0, query_scale=(5376 // 32) ** -0.5),
})


def get_preset_key(name: str) -> str:
  """The PRESETS key for `name`: 'gemma4_e2b', 'Gemma4_E2B', 'e2b', '26B-A4B',
  'gemma3_270m', 'Gemma3-1B', ..."""
  key = str(name).lower().replace('-', '_')
  if not key.startswith(('gemma4_', 'gemma3_')):
    key = 'gemma4_' + key
  if key not in PRESETS:
    raise ValueError(f'unknown preset {name!r}; known presets: {", ".join(PRESETS)}')
  return key


def matching_preset(cfg: TransformerConfig) -> tuple[str, TransformerConfig] | None:
  """(key, preset) whose decoder is `cfg`, or None. Checkpoint configs may leave out what
  only multimodal inputs use (the encoders, bidirectional vision attention), so those are
  not compared; the preset returned has them."""
  def text(c):
    return dataclasses.replace(c, bidirectional_vision=False, vision=None, audio=None)
  return next(((k, p) for k, p in PRESETS.items() if text(p) == text(cfg)), None)


def get_preset(name: str) -> TransformerConfig:
  """The preset config named `name` (see `get_preset_key`)."""
  return PRESETS[get_preset_key(name)]
