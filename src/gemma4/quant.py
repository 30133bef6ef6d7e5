"""int8 weights with per-output-channel scales; activations in float32, split into two
int8 parts per row for products of several rows.

A quantized parameter is a `QTensor` in place of the official array. It keeps the
official (logical) shape for checks, and stores the weight with its contracted axes
last and flattened, split into contiguous chunks of at most `CHUNK` columns:
`values` [C, *out, K / C] int8 and `scale` [*out] float32, so that
w[official] == transpose(values * scale) to within half a step of its row.

How a product runs depends on its rows (bench/quant_split.txt):
- One row (batch-1 decode): `x @ values.astype(f32).T * scale`, which XLA on CPU (jax
  0.10.2) runs as one loop that reads int8 and converts in registers, when the weight
  is [out, in] with `in` contiguous and at most about 3000; beyond that, and in other
  forms, it first writes a transposed float32 copy of the whole weight on every call
  (bench/quant_matvec.txt: 1536 x 2048 in 0.33 ms, 1536 x 4096 in 9.9 ms, 0.40 ms as
  two scanned chunks).
- Two or more rows (batched decode, prefill): each row of x is split into two int8
  rows, x = a (hi + lo / 254) with a = max|row| / 127, and both are multiplied by the
  int8 weight in int32 (on CPU, XLA's matrix library), then scaled. The
  input so keeps about 15 bits per row (an error of at most a / 508 per element,
  `split_rows`), where float32 keeps 24; the product takes 0.17-0.56x the time of
  float32 rows times the weight converted (E2B's widths, 2 to 1024 rows), which XLA CPU
  only fuses under an option that makes integer products 7-44x slower
  (compilation.FLOAT_OPTIONS). Integer sums are exact, so each row's result does not
  depend on the other rows of the call.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

FORMATS = ('int8',)

# Half the steps the low int8 part of a split row takes per step of its high part: the
# rest t - round(t) of a row in steps is within +-0.5, so lo = round(rest * LO) is
# within +-127 (`split_rows`).
LO = 254
# The most contracted columns an int32 sum of products of int8 rows may take: K * 127 *
# 127 stays below 2**31.
MAX_K = (2 ** 31 - 1) // (127 * 127)
CHUNK = 2048  # the most contracted columns one fused matrix-vector loop reads (XLA stops
# fusing between 3072 and 4096 and writes a transposed float32 copy instead: 30x slower)


@dataclasses.dataclass(frozen=True)
class Layout:
  """How an official weight maps to [out..., contracted...]: `perm` reorders its axes so
  that the `n_out` output axes come first."""

  perm: tuple[int, ...]
  n_out: int


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QTensor:
  """An int8 weight with one float32 scale per output channel (see the module doc).

  values: [C, *out, K // C] int8; scale: [*out] float32.
  shape: the official shape of the weight it stands for; layout: how to get there.
  """

  values: jax.Array
  scale: jax.Array
  shape: tuple[int, ...] = dataclasses.field(metadata=dict(static=True))
  layout: Layout = dataclasses.field(metadata=dict(static=True))

  @property
  def dtype(self):
    return self.values.dtype

  @property
  def out_shape(self) -> tuple[int, ...]:
    return tuple(self.scale.shape)

  @property
  def nbytes(self) -> int:
    return int(self.values.size) * self.values.dtype.itemsize + int(self.scale.size) * 4

  def dequantize(self, dtype=jnp.float32) -> jax.Array:
    """The weight in its official layout and `dtype`."""
    c, *out, kc = self.values.shape
    w = jnp.moveaxis(self.values, 0, -2).reshape(*out, c * kc).astype(jnp.float32)
    w = w * self.scale[..., None]
    contracted = [self.shape[a] for a in self.layout.perm[self.layout.n_out:]]
    w = w.reshape(*out, *contracted)
    return jnp.transpose(w, np.argsort(self.layout.perm)).astype(dtype)


def is_quantized(x: Any) -> bool:
  return isinstance(x, QTensor)


# The decoder weights that are quantized, by the last part of their path, and their
# layout. Norms, scales, the MoE router and the encoders stay as they are.
_LAYOUTS = {
    'attn/q_einsum/w': Layout((0, 2, 1), 2),           # [N, D, H] -> [N, H | D]
    'attn/k_einsum/w': Layout((0, 2, 1), 2),           # [K, D, H] -> [K, H | D]
    'attn/kv_einsum/w': Layout((0, 1, 3, 2), 3),       # [2, K, D, H] -> [2, K, H | D]
    'attn/attn_vec_einsum/w': Layout((2, 0, 1), 1),    # [N, H, D] -> [D | N, H]
    'mlp/gating_einsum': Layout((0, 1, 2), 2),         # [2, F, D] -> [2, F | D]
    'mlp/linear': Layout((1, 0), 1),                   # [F, D] -> [D | F]
    'mlp2/gating_einsum': Layout((0, 1, 2), 2),
    'mlp2/linear': Layout((1, 0), 1),
    'mlp/gating_einsum/w': Layout((0, 1, 2, 3), 3),    # MoE [E, 2, H, D] -> [E, 2, H | D]
    'mlp/linear/w': Layout((0, 2, 1), 2),              # MoE [E, H, D] -> [E, D | H]
    'per_layer_input_gate/w': Layout((1, 0), 1),       # [D, P] -> [P | D]
    'per_layer_projection/w': Layout((1, 0), 1),       # [P, D] -> [D | P]
    'embedder/input_embedding': Layout((0, 1), 1),     # [V, D]: lookup and tied LM head
    'embedder/per_layer_embeddings': Layout((0, 1, 2), 2),        # [V, L, P]: lookup
    'embedder/per_layer_model_projection/w': Layout((1, 2, 0), 2),  # [D, L, P] -> [L, P | D]
}


def layout_for(path: str) -> Layout | None:
  """The layout of the decoder weight at `path` ('layer_3/attn/q_einsum/w'), or None
  for a parameter that stays in float."""
  if path.startswith('embedder/'):
    return _LAYOUTS.get(path)
  if path.startswith('layer_'):
    return _LAYOUTS.get(path.split('/', 1)[1])
  return None


def chunks(k: int) -> int:
  """How many contiguous chunks a contracted size k is split into (k // chunks <= CHUNK
  where k divides; one chunk otherwise)."""
  for c in range(-(-k // CHUNK), k + 1):
    if k % c == 0 and k // c <= CHUNK:
      return c
  return 1


def quantize_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[..., K] float -> int8 [..., K] and float32 scale [...]: symmetric, per row,
  scale = max |row| / 127 (0 for a zero row), values = round(row / scale)."""
  rows = np.asarray(rows, np.float32)
  amax = np.max(np.abs(rows), axis=-1)
  scale = (amax / 127.0).astype(np.float32)
  inv = np.where(scale > 0, 1.0 / np.where(scale > 0, scale, 1.0), 0.0).astype(np.float32)
  values = np.clip(np.rint(rows * inv[..., None]), -127, 127).astype(np.int8)
  return values, scale


def quantize(w, layout: Layout) -> QTensor:
  """An official-layout weight (NumPy or jax, any float dtype) as a QTensor."""
  values, scale = quantize_host(w, layout)
  return QTensor(jax.device_put(values), jax.device_put(scale), tuple(np.shape(w)), layout)


def quantize_host(w, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
  """`quantize` on the host: the stored values [C, *out, K / C] int8 (contiguous) and
  scale [*out] float32, as NumPy arrays."""
  w = np.transpose(np.asarray(w, np.float32), layout.perm)
  out = w.shape[:layout.n_out]
  k = int(np.prod(w.shape[layout.n_out:]))
  values, scale = quantize_rows(w.reshape(*out, k))
  return np.ascontiguousarray(to_chunks(values)), np.asarray(scale, np.float32)


def from_rows(values: np.ndarray, scale: np.ndarray, shape: tuple[int, ...],
              layout: Layout) -> QTensor:
  """A QTensor from int8 rows [*out, K] and scales [*out] (already quantized)."""
  return QTensor(jax.device_put(np.ascontiguousarray(to_chunks(values))),
                 jax.device_put(np.asarray(scale, np.float32)), tuple(shape), layout)


def to_chunks(rows: np.ndarray) -> np.ndarray:
  """int8 rows [..., K] as the stored chunks [C, ..., K / C] (a view; C = chunks(K))."""
  k = rows.shape[-1]
  c = chunks(k)
  return np.moveaxis(rows.reshape(*rows.shape[:-1], c, k // c), -2, 0)


def _materialized(xs: jax.Array) -> jax.Array:
  """xs [1, ...] computed once, before the product that reads it.

  XLA fuses the producer of a matrix-vector product's input (a norm, a GELU, the
  transpose of an attention output) into the product's loop and recomputes it for
  every weight element (270M int8 decode: 31.4 ms per token so, 16.5 ms with this;
  bench/decode_step.txt).
  A conditional is a fusion boundary XLA keeps (an optimization_barrier is not, and a
  conditional with equal branches is folded away). Its other branch gives what the
  product gives when the first element is NaN: NaN everywhere, as NaN * 0 is NaN.
  """
  return jax.lax.cond(jnp.isnan(xs.reshape(-1)[0]), lambda a: jnp.full_like(a, jnp.nan),
                      lambda a: a, xs)


def dot(x: jax.Array, q: QTensor) -> jax.Array:
  """x [..., K] (K the flattened contracted axes) times the weight: [..., *out], float32.

  One row: each chunk is `x_c @ values_c.astype(f32).T`, the form XLA CPU fuses (module
  doc); several chunks run as a `lax.scan`, since XLA merges separate products over one
  operand back into a single one, which it no longer fuses. Two or more rows: the rows
  split into int8 parts (`split_rows`) times the int8 chunks, summed in int32. The
  per-row scale multiplies the sum.
  """
  c, *out, kc = q.values.shape
  lead = x.shape[:-1]
  o = int(np.prod(out))
  xs = x.reshape(-1, c * kc).astype(jnp.float32)
  if xs.shape[0] == 1:
    y = _product(_materialized(xs.reshape(1, c, kc)), q.values)
  else:
    y = _split_product(xs, q.values.reshape(c, o, kc))
  return (y * q.scale.reshape(o)).reshape(*lead, *out)


def split_rows(xs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """xs [M, K] float32 as int8 parts: hi, lo [M, K] and a [M, 1] float32 with
  xs ~= a * (hi + lo / LO), a = max |row| / 127 (1 for a zero row), so that every element
  is within a / (2 LO) of its row's parts."""
  amax = jnp.max(jnp.abs(xs), axis=-1, keepdims=True)
  a = jnp.where(amax > 0, amax / 127, 1.0).astype(jnp.float32)
  t = xs / a
  hi = jnp.round(t)
  lo = jnp.round((t - hi) * LO)
  return hi.astype(jnp.int8), lo.astype(jnp.int8), a


def _split_product(xs: jax.Array, values: jax.Array) -> jax.Array:
  """xs [M, K] float32 (M >= 2) times int8 values [C, O, K / C], unscaled: [M, O].

  Both parts of every row go through one int8 x int8 product per chunk, summed in
  int32 (all pairs of chunks at once, which avoids XLA copying each chunk's slice, is
  no faster in a decode step: bench/all_pairs_forward.txt)."""
  c, o, kc = values.shape
  if c * kc > MAX_K:
    raise ValueError(f'an int8 weight contracting {c * kc} columns: at most {MAX_K} '
                     'fit an int32 sum of int8 products')
  m = xs.shape[0]
  hi, lo, a = split_rows(xs)
  parts = jnp.concatenate([hi, lo]).reshape(2 * m, c, kc)
  y = sum(jax.lax.dot_general(parts[:, i], values[i], (((1,), (1,)), ((), ())),
                              preferred_element_type=jnp.int32) for i in range(c))
  y = y.astype(jnp.float32)
  return (y[:m] + y[m:] * (1 / LO)) * a


def _product(xs: jax.Array, values: jax.Array) -> jax.Array:
  """xs [1, C, Kc] float32 times int8 values [C, *out, Kc], unscaled: [1, prod(out)]."""
  c, *out, kc = values.shape
  o = int(np.prod(out))

  def times(x, w):  # x [1, Kc] times one chunk w [*out, Kc]
    return jnp.dot(x, w.reshape(o, kc).astype(jnp.float32).T)

  if c == 1:
    return times(xs[:, 0], values)

  def chunk(acc, part):
    xc, wc = part
    return acc + times(xc, wc), None
  y, _ = jax.lax.scan(chunk, jnp.zeros((1, o), jnp.float32), (jnp.swapaxes(xs, 0, 1), values))
  return y


def take(q: QTensor, ids: jax.Array) -> jax.Array:
  """Rows of an embedding table (layout with the row axis first): [*ids.shape, ...] f32."""
  c, v, *rest = q.values.shape
  rows = jnp.moveaxis(q.values[:, ids], 0, -2)  # [*ids, *out_rest, C, Kc]
  rows = rows.reshape(*rows.shape[:-2], -1).astype(jnp.float32)
  return rows * q.scale[ids][..., None]


def quantize_params(params: Mapping[str, Any], fmt: str = 'int8') -> dict:
  """The decoder weights of an official tree (see `layout_for`) as QTensors; every other
  leaf as it is. A tree already quantized is returned with its QTensors unchanged."""
  check_format(fmt)

  def walk(node, prefix):
    if isinstance(node, Mapping):
      return {k: walk(v, f'{prefix}/{k}' if prefix else str(k)) for k, v in node.items()}
    layout = layout_for(prefix)
    return quantize(node, layout) if layout is not None and not is_quantized(node) else node

  return walk(params, '')


def check_format(fmt) -> None:
  if not isinstance(fmt, str) or fmt not in FORMATS:
    raise ValueError(f'quantize={fmt!r} is not a weight format (expected one of '
                     f'{", ".join(map(repr, FORMATS))})')


def resolve_format(fmt) -> str | None:
  """`load_checkpoint`'s quantize= argument: 'auto' becomes 'int8' on a CPU backend and
  None (float weights) elsewhere; None and the FORMATS stay; anything else raises."""
  if fmt is None:
    return None
  if isinstance(fmt, str) and fmt == 'auto':
    return 'int8' if jax.default_backend() == 'cpu' else None
  if not isinstance(fmt, str) or fmt not in FORMATS:
    raise ValueError(f'quantize={fmt!r} is not a weight format (expected \'auto\', '
                     f'{", ".join(map(repr, FORMATS))} or None for float weights)')
  return fmt


def describe(params: Mapping[str, Any]) -> str:
  """'int8' for a tree with int8 decoder weights, else its float dtype's name."""
  dtype = compute_dtype(params)  # float32 for an int8 tree
  return 'int8' if _has_quantized(params) else jnp.dtype(dtype).name


def nbytes(params: Mapping[str, Any]) -> int:
  """Bytes the parameter tree holds (QTensors: int8 values plus float32 scales)."""
  total = 0
  for leaf in jax.tree.leaves(params, is_leaf=is_quantized):
    total += leaf.nbytes if is_quantized(leaf) else int(leaf.size) * leaf.dtype.itemsize
  return total


def compute_dtype(params: Mapping[str, Any]):
  """The dtype activations (and the KV cache) take: float32 where the tree holds int8
  weights, else the dtype of its first leaf (the embedding table)."""
  if _has_quantized(params):
    return jnp.dtype(jnp.float32)
  return jax.tree.leaves(params)[0].dtype


def _has_quantized(params) -> bool:
  return any(is_quantized(x) for x in jax.tree.leaves(params, is_leaf=is_quantized))


def abstract(w: jax.ShapeDtypeStruct, layout: Layout) -> QTensor:
  """The QTensor `quantize` would make of a weight of w's shape, as ShapeDtypeStructs
  (for planning memory without the weight)."""
  shape = tuple(w.shape)
  out = tuple(shape[a] for a in layout.perm[:layout.n_out])
  k = int(np.prod([shape[a] for a in layout.perm[layout.n_out:]]))
  c = chunks(k)
  return QTensor(jax.ShapeDtypeStruct((c, *out, k // c), jnp.int8),
                 jax.ShapeDtypeStruct(out, jnp.float32), shape, layout)


def abstract_params(shapes: Mapping[str, Any]) -> dict:
  """`quantize_params` on a tree of ShapeDtypeStructs: the int8 tree's shapes."""
  def walk(node, prefix):
    if isinstance(node, Mapping):
      return {k: walk(v, f'{prefix}/{k}' if prefix else str(k)) for k, v in node.items()}
    layout = layout_for(prefix)
    return abstract(node, layout) if layout is not None else node
  return walk(shapes, '')
