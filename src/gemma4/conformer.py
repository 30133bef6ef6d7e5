"""The Gemma 4 audio encoder (E2B, E4B): log-mel front end and conformer, on the official
parameter tree (gemma/gm/nn/gemma4/audio, gemma==4.0.1).

waveforms [B, S] float32 and valid sample counts [B] -> encoder outputs [B, T2, P] and
their validity, T2 = ceil(ceil(T0 / 2) / 2) for T0 mel frames of S samples.

Front end: 20 ms frames every 10 ms with no padding (frame i is samples [160 i, 160 i +
320)), window 0.5 - 0.5 cos(2 pi (n + 0.5) / 320), 512-point FFT magnitude, 128 HTK mel
bins over 0-8000 Hz without area normalisation, ln(mel + 0.001). Frames past a clip's
samples are zeroed. Subsampling: two 3x3 stride-2 convolutions (padding 1) over (time,
mel), each followed by a LayerNorm over channels and ReLU, then a dense layer over
(mel / 4, 32 channels). Conformer layers: half-step FFN, local self-attention (each
frame sees itself and the 12 before it, Transformer-XL relative position term, learned
per-dimension query scale, logits soft-capped at 50), causal depthwise convolution
(kernel 5) between GLU and swish, half-step FFN, RMS norm. Output: dense layer with bias.

Two deliberate differences from the official code, both so that a clip encodes the same
alone or padded in a batch (they agree for a clip alone):
- a clip's valid mel frames are counted exactly (frames wholly inside its samples); the
  official code divides in float32 (floor(len / (S / T0))), which for some lengths drops
  the last frame (its soft-token count then points one past the encoder's output, and
  the last soft token is a zero vector);
- the invalid rows between the two convolutions are zeroed (as HF transformers does), as
  they are for a clip alone; the official code lets them into the second convolution.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gemma4.audio import FRAME, HOP, MIN_SAMPLES, SAMPLE_RATE
from gemma4.config import AudioConfig
from gemma4.params import ParamSpec

N_MELS = 128
N_FFT = 512
BLOCK = 12           # the official attention block; left context = atten_left_context - 1
SOFTCAP = 50.0
CHANNELS = (128, 32)  # subsampling convolution filters
CLIP = 'clip_input_min', 'clip_input_max', 'clip_output_min', 'clip_output_max'


def param_specs(a: AudioConfig) -> dict:
  """The official `audio_encoder` tree (one subtree per layer, not stacked)."""
  d, p, n, k = a.model_dims, a.lm_model_dims, a.atten_num_heads, a.conv_kernel_size
  h = d // n

  def clipped(shape, fan_axes=(0,)):
    out = {'kernel': ParamSpec(shape, 'normal', fan_axes)}
    out.update({c: ParamSpec((), 'clip_' + c.split('_')[-1]) for c in CLIP})
    return out

  def norm(dim):
    return {'scale': ParamSpec((dim,), 'ones')}

  def ffn():
    return {'pre_layer_norm': norm(d), 'post_layer_norm': norm(d),
            'ffn_layer1': clipped((d, 4 * d)), 'ffn_layer2': clipped((4 * d, d))}

  layer = {
      'fflayer_start': ffn(), 'fflayer_end': ffn(),
      'trans_atten': {
          'pre_norm': norm(d), 'post_norm': norm(d),
          'self_atten': {'query': clipped((d, d)), 'key': clipped((d, d)),
                         'value': clipped((d, d)), 'per_dim_scale': ParamSpec((h,), 'ones'),
                         'relative_position_embedding': {
                             'pos_proj': {'kernel': ParamSpec((d, n, h), 'normal', (0,))}}},
          'post': clipped((n, h, d), (0, 1)),
      },
      'lconv': {'ln': norm(d), 'conv_norm': norm(d), 'linear_start': clipped((d, 2 * d)),
                'linear_end': clipped((d, d)),
                'depthwise_conv1d': {'kernel': ParamSpec((k, 1, d), 'normal', (0,))}},
      'final_ln': norm(d),
  }
  c0, c1 = CHANNELS
  f = N_MELS // 4
  return {
      'feature': {'subsampling_0': {'kernel': ParamSpec((3, 3, 1, c0), 'normal', (0, 1, 2))},
                  'norm_0': norm(c0),
                  'subsampling_1': {'kernel': ParamSpec((3, 3, c0, c1), 'normal', (0, 1, 2))},
                  'norm_1': norm(c1),
                  'input_proj': {'kernel': ParamSpec((f, c1, d), 'normal', (0, 1))}},
      'conformer': {f'stacked_layers_{i}': layer for i in range(a.num_layers)},
      'output_projection': {'kernel': ParamSpec((d, p), 'normal', (0,)),
                            'bias': ParamSpec((p,), 'zeros')},
  }


def projection_spec(a: AudioConfig, text_width: int) -> dict:
  """`embedder/audio_input_projection`: encoder output width -> text width."""
  return {'w': ParamSpec((a.lm_model_dims, text_width), 'normal', (0,))}


# --- front end -----------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def mel_matrix() -> np.ndarray:
  """[257, 128] float32: triangular HTK mel filters built in Hz (tf.signal's recipe)."""
  def to_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)
  fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1, dtype=np.float64)
  edges = 700.0 * (np.power(10, np.linspace(to_mel(0.0), to_mel(8000.0), N_MELS + 2) / 2595.0)
                   - 1.0)
  slopes = edges[None, :] - fft_freqs[:, None]
  diff = np.diff(edges)
  down, up = -slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]
  return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


def window() -> np.ndarray:
  return (0.5 - 0.5 * np.cos(2 * np.pi / FRAME * (np.arange(FRAME, dtype=np.float32) + 0.5))
          ).astype(np.float32)


def num_frames(samples: int) -> int:
  return max(0, (samples - MIN_SAMPLES) // HOP + 1)


def log_mel(waveforms: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
  """[B, S] float32, [B] valid samples -> log-mel [B, T0, 128] (zero past each clip's
  frames) and the frame validity [B, T0]."""
  b, s = waveforms.shape
  t0 = num_frames(s)
  index = np.arange(t0)[:, None] * HOP + np.arange(FRAME)[None, :]
  frames = waveforms[:, index] * jnp.asarray(window())
  spectrum = jnp.abs(jnp.fft.rfft(frames, n=N_FFT))
  mel = jnp.log(jnp.einsum('BTF,FM->BTM', spectrum, jnp.asarray(mel_matrix()),
                           precision=jax.lax.Precision.HIGHEST) + 0.001)
  valid_frames = jnp.maximum((lengths - MIN_SAMPLES) // HOP + 1, 0)
  valid = jnp.arange(t0)[None, :] < valid_frames[:, None]
  return jnp.where(valid[..., None], mel, 0.0), valid


# --- encoder -------------------------------------------------------------------------

def _rms(x, scale=None, eps=1e-6):
  x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps)
  return x * scale if scale is not None else x


def _layer_norm(x, scale, eps=1e-6):
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps) * scale


def _clipped(p, eqn, x):
  x = jnp.clip(x, p['clip_input_min'], p['clip_input_max'])
  return jnp.clip(jnp.einsum(eqn, x, p['kernel']), p['clip_output_min'], p['clip_output_max'])


def _conv(x, kernel):
  """3x3 stride-2 convolution with padding 1 over (time, mel): [B, T, F, C]."""
  return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      precision=jax.lax.Precision.HIGHEST)


def _subsample(p, x, valid):
  x = x[..., None]
  for i in range(2):
    x = _conv(x, p[f'subsampling_{i}']['kernel'])
    valid = valid[:, ::2][:, :x.shape[1]]
    x = jax.nn.relu(_layer_norm(x, p[f'norm_{i}']['scale']))
    x = jnp.where(valid[:, :, None, None], x, 0.0)  # as for the clip alone (see docstring)
  return jnp.einsum('BTFC,FCD->BTD', x, p['input_proj']['kernel']), valid


def _sinusoid(positions, channels):
  n = channels // 2
  inv = jnp.exp(jnp.arange(n, dtype=jnp.float32) * -(np.log(1.0e4) / max(n - 1, 1)))
  t = positions.astype(jnp.float32)[:, None] * inv[None, :]
  return jnp.concatenate([jnp.sin(t), jnp.cos(t)], axis=-1)


def _ffn(p, x, gc):
  y = _rms(jnp.clip(x, -gc, gc), p['pre_layer_norm']['scale'])
  y = _clipped(p['ffn_layer2'], '...F,FD->...D', jax.nn.swish(_clipped(p['ffn_layer1'], '...D,DF->...F', y)))
  return x + 0.5 * _rms(jnp.clip(y, -gc, gc), p['post_layer_norm']['scale'])


def _attention(p, x, valid, left):
  """Local attention: frame t sees frames t - left .. t that are valid. [B, T, D]."""
  b, t, d = x.shape
  n, h = p['relative_position_embedding']['pos_proj']['kernel'].shape[1:]
  q = _clipped(p['query'], '...D,DF->...F', x).reshape(b, t, n, h)
  k = _clipped(p['key'], '...D,DF->...F', x).reshape(b, t, n, h)
  v = _clipped(p['value'], '...D,DF->...F', x).reshape(b, t, n, h)
  r_softplus_0 = 1.442695041
  q = q * (r_softplus_0 / np.sqrt(h)) * jax.nn.softplus(p['per_dim_scale'])
  k = k * (r_softplus_0 * jax.nn.softplus(jnp.float32(1.0)))
  # Keys of frame t: frames t - left + j, j = 0..left (distance left - j).
  w = left + 1
  idx = jnp.arange(t)[:, None] - left + jnp.arange(w)[None, :]  # [T, W]
  ok = (idx >= 0)[None] & jnp.take(valid, jnp.clip(idx, 0, t - 1), axis=1)  # [B, T, W]
  kb = jnp.take(k, jnp.clip(idx, 0, t - 1), axis=1)  # [B, T, W, N, H]
  vb = jnp.take(v, jnp.clip(idx, 0, t - 1), axis=1)
  rel = jnp.einsum('FD,DNH->FNH', _sinusoid(jnp.arange(left, -1, -1), d),
                   p['relative_position_embedding']['pos_proj']['kernel'])  # [W, N, H]
  logits = (jnp.einsum('BTNH,BTWNH->BTNW', q, kb, precision=jax.lax.Precision.HIGHEST)
            + jnp.einsum('BTNH,WNH->BTNW', q, rel, precision=jax.lax.Precision.HIGHEST))
  logits = SOFTCAP * jnp.tanh(logits / SOFTCAP)
  logits = jnp.where(ok[:, :, None, :], logits, -1e9)
  probs = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum('BTNW,BTWNH->BTNH', probs, vb, precision=jax.lax.Precision.HIGHEST)


def _lconv(p, x, gc):
  y = _clipped(p['linear_start'], '...D,DF->...F', _rms(x, p['ln']['scale']))
  d = x.shape[-1]
  y = y[..., :d] * jax.nn.sigmoid(y[..., d:])
  kernel = p['depthwise_conv1d']['kernel'][:, 0, :]  # [K, D]
  k = kernel.shape[0]
  padded = jnp.pad(y, ((0, 0), (k - 1, 0), (0, 0)))
  y = sum(padded[:, i:i + y.shape[1]] * kernel[i] for i in range(k))
  y = jax.nn.swish(_rms(jnp.clip(y, -gc, gc), p['conv_norm']['scale']))
  return x + _clipped(p['linear_end'], '...D,DF->...F', y)


def _layer(p, x, valid, a: AudioConfig):
  gc = a.gradient_clipping
  x = _ffn(p['fflayer_start'], x, gc)
  t = p['trans_atten']
  y = _attention(t['self_atten'], _rms(jnp.clip(x, -gc, gc), t['pre_norm']['scale']), valid,
                 max(0, a.atten_left_context - 1))
  y = _clipped(t['post'], '...NH,NHD->...D', y)
  x = x + _rms(jnp.clip(y, -gc, gc), t['post_norm']['scale'])
  x = x * valid[..., None]
  x = _lconv(p['lconv'], x, gc)
  x = _ffn(p['fflayer_end'], x, gc)
  return _rms(jnp.clip(x, -gc, gc), p['final_ln']['scale'])


def encode(params: dict, a: AudioConfig, waveforms: jax.Array, lengths: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
  """[B, S] float32 waveforms and valid samples [B] -> ([B, T2, P] float32, valid [B, T2]);
  rows past a clip's output are zero."""
  if a.atten_right_context != 0 or a.conf_reduction_factor != 1:
    raise NotImplementedError('the audio encoder supports atten_right_context 0 and '
                              'conf_reduction_factor 1 (the presets\' values)')
  x, valid = log_mel(waveforms.astype(jnp.float32), lengths)
  x, valid = _subsample(params['feature'], x, valid)
  for i in range(a.num_layers):
    x = _layer(params['conformer'][f'stacked_layers_{i}'], x, valid, a)
  out = params['output_projection']
  x = jnp.einsum('BTD,DP->BTP', x, out['kernel']) + out['bias']
  return jnp.where(valid[..., None], x, 0.0), valid


def project(x: jax.Array, w: jax.Array) -> jax.Array:
  """Soft tokens in the text width: audio_input_projection, then an RMS norm without
  scale (the official order; HF transformers norms before projecting)."""
  return _rms(jnp.einsum('...TP,PD->...TD', x.astype(jnp.float32), w.astype(jnp.float32)))
