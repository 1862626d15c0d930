"""The NumPy/CuPy seam: array modules, devices, moving arrays, and seeded randomness."""
import json

import numpy as np
import pytest

import minillm
from minillm import Device, Tensor, backend


# ------------------------------------------------------------------------------ array modules
def test_get_array_module_of_numpy_arrays_tensors_and_scalars_is_numpy():
    assert minillm.get_array_module(np.ones(2)) is np
    assert minillm.get_array_module(Tensor(np.ones(2))) is np
    assert minillm.get_array_module(3.0, np.ones(1)) is np
    assert minillm.get_array_module() is np


def test_cuda_available_answers_a_bool():
    assert isinstance(minillm.cuda_available(), bool)


# ------------------------------------------------------------------------------ Device
@pytest.mark.parametrize("spec, kind, index, text", [
    ("cpu", "cpu", 0, "cpu"),
    ("cuda", "cuda", 0, "cuda:0"),
    ("cuda:1", "cuda", 1, "cuda:1"),
])
def test_device_parses_its_spec(spec, kind, index, text):
    device = Device(spec)
    assert (device.type, device.index, str(device)) == (kind, index, text)
    assert Device(device) == device
    assert device == spec or spec == "cuda"  # "cuda" is the same device as "cuda:0"


def test_devices_compare_and_hash_by_type_and_index():
    assert Device("cuda") == Device("cuda:0") == "cuda:0"
    assert Device("cuda:0") != Device("cuda:1")
    assert Device("cpu") != "cuda"
    assert len({Device("cuda"), Device("cuda:0"), Device("cpu")}) == 2
    assert repr(Device("cpu")) == "device(cpu)"


@pytest.mark.parametrize("spec, message", [
    ("tpu", "unknown device 'tpu'"),
    ("gpu:0", "unknown device 'gpu:0'"),
    ("cpu:0", "the cpu device takes no index"),
    ("cuda:first", "invalid literal"),
])
def test_device_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        Device(spec)


def test_cpu_device_uses_numpy():
    assert Device("cpu").xp is np


def test_cuda_device_without_a_gpu_says_what_to_install():
    if minillm.cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="needs CuPy and an NVIDIA GPU"):
        Device("cuda").xp


# ------------------------------------------------------------------------------ to_device
def test_to_device_cpu_keeps_a_numpy_array_and_converts_lists():
    a = np.arange(3.0)
    assert minillm.to_device(a, "cpu") is a
    out = minillm.to_device([1.0, 2.0], Device("cpu"))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, [1.0, 2.0])


def test_tensor_to_cpu_is_a_no_op_and_to_dtype_copies():
    t = Tensor(np.arange(3.0), requires_grad=True)
    assert t.to("cpu") is t
    t32 = t.to(dtype=np.float32)
    assert t32.dtype == np.float32 and t32.requires_grad and t32.is_leaf
    assert t.device == "cpu"


# ------------------------------------------------------------------------------ randomness
def test_manual_seed_makes_get_rng_draws_repeat():
    minillm.manual_seed(42)
    first = minillm.get_rng().random(5)
    minillm.manual_seed(42)
    np.testing.assert_array_equal(minillm.get_rng().random(5), first)
    minillm.manual_seed(43)
    assert not np.array_equal(minillm.get_rng().random(5), first)


def test_get_rng_continues_one_stream_between_calls():
    minillm.manual_seed(1)
    a = minillm.get_rng().random(3)
    b = minillm.get_rng().random(3)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(np.concatenate([a, b]), np.random.default_rng(1).random(6))


def test_rng_state_round_trips_through_json():
    minillm.manual_seed(5)
    minillm.get_rng().random(7)  # advance the stream
    state = json.loads(json.dumps(backend.get_rng_state()))
    expected = minillm.get_rng().random(4)
    minillm.manual_seed(999)
    backend.set_rng_state(state)
    np.testing.assert_array_equal(minillm.get_rng().random(4), expected)


# ------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
def test_to_device_round_trip_through_cuda_preserves_values():
    a = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    on_gpu = minillm.to_device(a, "cuda")
    assert backend.is_cupy_array(on_gpu)
    assert minillm.get_array_module(on_gpu).__name__ == "cupy"
    assert backend.device_of(on_gpu) == "cuda:0"
    np.testing.assert_array_equal(minillm.to_device(on_gpu, "cpu"), a)


@pytest.mark.gpu
def test_tensor_to_cuda_keeps_requires_grad_and_numpy_copies_back():
    t = Tensor(np.ones(3, np.float32), requires_grad=True).to("cuda")
    assert t.device == "cuda:0" and t.requires_grad
    np.testing.assert_array_equal(t.numpy(), np.ones(3))


@pytest.mark.gpu
def test_manual_seed_makes_cupy_draws_repeat():
    cp = Device("cuda").xp
    minillm.manual_seed(11)
    first = minillm.get_rng(cp).random(4)
    minillm.manual_seed(11)
    np.testing.assert_array_equal(minillm.get_rng(cp).random(4).get(), first.get())


# ------------------------------------------------------------------------------ erf
def test_erf_has_hand_values_and_keeps_the_dtype():
    # erf(0) = 0, erf(1) = 0.8427007929497149 (Abramowitz & Stegun table 7.1), erf(-x) = -erf(x)
    x = np.array([0.0, 1.0, -1.0, 30.0], dtype=np.float32)
    out = backend.erf(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.8427007929497149, -0.8427007929497149, 1.0], rtol=1e-7)


def test_erf_without_scipy_falls_back_to_math_erf(monkeypatch):
    import sys

    x = np.linspace(-3, 3, 13)
    with_scipy = backend.erf(x)
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # "import scipy.special" now fails
    without = backend.erf(x)
    assert without.dtype == np.float64
    np.testing.assert_allclose(without, with_scipy, rtol=1e-15, atol=1e-16)


# ------------------------------------------------------------------------------ dropout's keep-mask
def _raw_16_bit_draws(seed, size):
    """What keep_mask draws on NumPy, derived from the generator directly: 16 bits per element."""
    return np.random.default_rng(seed).bit_generator.random_raw((size + 3) // 4).view(np.uint16)[:size]


class _Scripted16Bits:
    """A generator whose raw 64-bit draws hold the given 16-bit values, four per draw, in order."""

    def __init__(self, values):
        self.values = np.array(values, dtype=np.uint16)
        self.bit_generator = self

    def random_raw(self, n):
        return np.resize(self.values, 4 * n).view(np.uint64)


BITS = [0, 1, 16383, 16384, 19660, 19661, 65535, 2]


@pytest.mark.parametrize("p, kept", [
    (0.3, [0, 0, 0, 0, 0, 1, 1, 0]),           # 0.3 * 65536 = 19660.8 -> 19661: bits >= 19661 kept
    (0.25, [0, 0, 0, 1, 1, 1, 1, 0]),          # 16384 exactly
    (0.4 / 65536, [1, 1, 1, 1, 1, 1, 1, 1]),   # below half a step: p_16 = 0, nothing dropped
    (0.6 / 65536, [0, 1, 1, 1, 1, 1, 1, 1]),   # above half a step: p_16 = 1/65536, only 0 dropped
])
def test_keep_mask_keeps_16_bit_draws_at_or_above_p_rounded_to_a_65536th(monkeypatch, p, kept):
    monkeypatch.setattr(backend, "get_rng", lambda xp=np: _Scripted16Bits(BITS))
    np.testing.assert_array_equal(backend.keep_mask((2, 4), p), np.array(kept, bool).reshape(2, 4))


def test_keep_mask_takes_its_bits_from_the_seeded_stream_four_per_draw():
    minillm.manual_seed(7)
    np.testing.assert_array_equal(backend.keep_mask((3, 50), 0.3),
                                  (_raw_16_bit_draws(7, 150) >= 19661).reshape(3, 50))


@pytest.mark.parametrize("fast", [False, True])
def test_each_layer_drops_exactly_the_drawn_elements(fast):
    # The reference op and the fast layer's both draw backend.keep_mask: one mask per seed.
    minillm.manual_seed(3)
    with minillm.fast_paths(fast):
        y = minillm.ops.dropout(Tensor(np.ones((40, 64), np.float32)), 0.25).data
    kept = (_raw_16_bit_draws(3, 40 * 64) >= 16384).reshape(40, 64)
    np.testing.assert_array_equal(y, np.where(kept, np.float32(1 / 0.75), np.float32(0)))


def test_keep_mask_on_cupy_rounds_p_as_numpy_does():
    if not minillm.cuda_available():
        pytest.skip("needs CuPy and a CUDA GPU (minillm.cuda_available() is False)")
    import cupy

    minillm.manual_seed(5)
    mask = backend.keep_mask((64, 64), 0.3 + 0.2 / 65536, cupy)  # rounds to 19661 / 65536, as on NumPy
    u = cupy.random.default_rng(5).random((64, 64), dtype=np.float32)
    assert bool((mask == (u >= np.float32(19661 / 65536))).all())
