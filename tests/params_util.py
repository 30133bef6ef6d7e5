"""Comparing parameter trees that may hold int8 QTensors."""

import numpy as np

from gemma4 import quant
from gemma4.params import flatten


def assert_same_params(a, b) -> None:
  """The two trees have the same paths and, leaf by leaf, equal arrays (QTensors: the
  same layout, shape, int8 values and scales)."""
  fa, fb = flatten(a), flatten(b)
  assert fa.keys() == fb.keys()
  for k in fa:
    x, y = fa[k], fb[k]
    assert quant.is_quantized(x) == quant.is_quantized(y), k
    if quant.is_quantized(x):
      assert x.layout == y.layout and x.shape == y.shape, k
      np.testing.assert_array_equal(np.asarray(x.values), np.asarray(y.values), err_msg=k)
      np.testing.assert_array_equal(np.asarray(x.scale), np.asarray(y.scale), err_msg=k)
    else:
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=k)
