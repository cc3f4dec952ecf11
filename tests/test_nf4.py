"""atelier.lora_nf4.nf4 comparé à bitsandbytes 0.50 (CPU)."""

import math

import pytest
import torch

bnb_f = pytest.importorskip("bitsandbytes.functional")

from atelier.lora_nf4 import nf4  # noqa: E402

SHAPES = [(1,), (5,), (64,), (3, 70), (7, 129), (128, 64), (33, 65)]


def test_nf4_table_matches_bitsandbytes():
    table = bnb_f.get_4bit_type("nf4", device="cpu")
    ours = torch.tensor(nf4.NF4_VALUES)
    assert len(nf4.NF4_VALUES) == 16
    assert (ours - table).abs().max() < 1e-6
    assert nf4.NF4_VALUES[7] == 0.0 and nf4.NF4_VALUES[0] == -1.0 and nf4.NF4_VALUES[-1] == 1.0
    # L'offset de QLoRA est le milieu entre 1 - 1/32 et 1 - 1/30.
    assert abs(nf4.NF4_OFFSET - (1 - (1 / 32 + 1 / 30) / 2)) < 1e-7


def test_nf4_table_needs_the_right_offset():
    # Un autre offset donne une autre table : le test précédent ne passe pas par hasard.
    other = torch.tensor(nf4.nf4_values(0.99))
    assert (other - bnb_f.get_4bit_type("nf4", device="cpu")).abs().max() > 1e-3


def test_fp4_table_matches_bitsandbytes():
    table = bnb_f.get_4bit_type("fp4", device="cpu").sort().values
    assert torch.allclose(torch.tensor(nf4.FP4_VALUES), table, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("block_size", [32, 64, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_quantize_nf4_same_bytes_and_values(shape, block_size, dtype):
    torch.manual_seed(sum(shape) + block_size)
    w = (torch.randn(shape) * 0.05).to(dtype)
    packed, state = bnb_f.quantize_4bit(w, blocksize=block_size, quant_type="nf4")
    codes, absmax = nf4.quantize_nf4(w, block_size=block_size)
    n = math.prod(shape)
    assert codes.dtype == torch.uint8 and codes.numel() == math.ceil(n / 2)
    assert absmax.numel() == math.ceil(n / block_size)
    assert torch.equal(codes, packed.reshape(-1))  # mêmes octets, donc même ordre des demi-octets
    assert torch.equal(absmax, state.absmax)
    ours = nf4.dequantize_nf4(codes, absmax, shape, block_size=block_size, dtype=dtype)
    assert ours.shape == torch.Size(shape) and ours.dtype == dtype
    # Implémentation de référence en PyTorch de bitsandbytes : toujours identique.
    ref = _reference_dequantize(packed.reshape(-1), state.absmax, state.code, block_size, shape, dtype)
    assert torch.equal(ours.reshape(-1), ref.reshape(-1))
    if len(shape) == 1 or shape[-1] >= block_size:
        # Noyau C du CPU : identique aussi (voir le test suivant pour l'autre cas).
        theirs = bnb_f.dequantize_4bit(packed, state)
        assert torch.equal(ours.reshape(-1), theirs.reshape(-1))


def _reference_dequantize(*args):
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute

    return getattr(_dequantize_4bit_compute, "__wrapped__", _dequantize_4bit_compute)(*args)


def test_cpu_kernel_rows_shorter_than_block():
    # bitsandbytes 0.50.2 : le noyau C de déquantification CPU se trompe de constante
    # quand la dernière dimension est plus courte que le bloc (ici 64 < 128).
    # Notre version reste égale à la référence PyTorch de bitsandbytes et jamais pire.
    torch.manual_seed(0)
    w = torch.randn(128, 64)
    packed, state = bnb_f.quantize_4bit(w, blocksize=128, quant_type="nf4")
    codes, absmax = nf4.quantize_nf4(w, block_size=128)
    ours = nf4.dequantize_nf4(codes, absmax, w.shape, block_size=128)
    ref = _reference_dequantize(packed.reshape(-1), state.absmax, state.code, 128, w.shape, torch.float32)
    assert torch.equal(ours, ref.reshape(w.shape))
    kernel = bnb_f.dequantize_4bit(packed, state).reshape(w.shape)
    assert (ours - w).abs().max() <= (kernel - w).abs().max()


def test_nibble_order_high_first_and_padding():
    w = torch.tensor([-1.0, 1.0, 0.0])  # codes 0, 15, 7 ; bourrage 7
    codes, absmax = nf4.quantize_nf4(w)
    assert codes.tolist() == [0x0F, 0x77]
    assert nf4.unpack_codes(codes, 3).tolist() == [0, 15, 7]
    packed, _ = bnb_f.quantize_4bit(w, blocksize=64, quant_type="nf4")
    assert packed.reshape(-1).tolist() == [0x0F, 0x77]


def test_zero_block_and_constant_block():
    w = torch.cat([torch.zeros(64), torch.full((64,), 0.3)])
    packed, state = bnb_f.quantize_4bit(w, blocksize=64, quant_type="nf4")
    codes, absmax = nf4.quantize_nf4(w)
    assert torch.equal(codes, packed.reshape(-1)) and torch.equal(absmax, state.absmax)
    back = nf4.dequantize_nf4(codes, absmax, w.shape)
    assert torch.equal(back, w)


def test_roundtrip_error_is_bounded():
    torch.manual_seed(0)
    w = torch.randn(4096)
    codes, absmax = nf4.quantize_nf4(w)
    back = nf4.dequantize_nf4(codes, absmax, w.shape)
    gaps = torch.diff(torch.tensor(nf4.NF4_VALUES)).max() / 2
    assert ((back - w).abs() <= gaps * absmax.repeat_interleave(64)[: w.numel()] + 1e-6).all()


def test_fp4_dequantized_values_match_bitsandbytes():
    torch.manual_seed(1)
    w = torch.randn(33, 65)
    packed, state = bnb_f.quantize_4bit(w, blocksize=64, quant_type="fp4")
    codes, absmax = nf4.quantize_4bit(w, nf4.FP4_VALUES, 64)
    ours = nf4.dequantize_4bit(codes, absmax, w.shape, nf4.FP4_VALUES, 64)
    assert torch.equal(absmax, state.absmax)
    assert torch.allclose(ours, bnb_f.dequantize_4bit(packed, state), atol=1e-7)


def test_dynamic_map_matches_bitsandbytes():
    assert torch.equal(nf4.dynamic_map(), bnb_f.create_dynamic_map())


@pytest.mark.parametrize("n_params", [64 * 256 * 16, 64 * 1000 + 5, 64 * 300])
def test_double_quantization_against_bitsandbytes(n_params):
    torch.manual_seed(n_params % 97)
    w = torch.randn(n_params) * 0.02
    packed, state = bnb_f.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    codes, absmax = nf4.quantize_nf4(w)
    assert torch.equal(codes, packed.reshape(-1))
    qabs, absmax2, offset = nf4.double_quantize_absmax(absmax, block_size=256)
    assert state.state2.blocksize == 256 and qabs.dtype == torch.uint8
    assert abs(offset - float(state.offset)) < 1e-7
    assert torch.equal(absmax2, state.state2.absmax)
    # Le noyau CPU de bitsandbytes cherche le code par une recherche binaire rapide
    # approchée ; nous prenons toujours le plus proche. Les codes coïncident presque
    # partout, et là où ils diffèrent, le nôtre est au moins aussi proche.
    assert (qabs == state.absmax).float().mean() > 0.995
    ours = nf4.dequantize_absmax(qabs, absmax2, offset)
    theirs = bnb_f.dequantize_blockwise(state.absmax, state.state2) + state.offset
    assert ((ours - absmax).abs() <= (theirs - absmax).abs() + 1e-7).all()
    assert (ours - absmax).abs().max() < 0.01 * absmax.max()


def test_bits_per_parameter_exact_and_measured():
    assert nf4.bits_per_parameter(64) == 4.5
    assert nf4.bits_per_parameter(64, double_quant=True) == 4 + 8 / 64 + 32 / (64 * 256)
    assert round(nf4.bits_per_parameter(64, double_quant=True), 3) == 4.127
    n = 64 * 256 * 8
    w = torch.randn(n)
    packed, state = bnb_f.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    stored_bits = packed.numel() * 8 + state.absmax.numel() * 8 + state.state2.absmax.numel() * 32
    assert stored_bits / n == nf4.bits_per_parameter(64, double_quant=True)
    packed, state = bnb_f.quantize_4bit(w, blocksize=64, quant_type="nf4")
    assert (packed.numel() * 8 + state.absmax.numel() * 32) / n == 4.5


def test_nf4_beats_int4_and_fp4_on_normal_data():
    torch.manual_seed(0)
    w = torch.randn(64 * 512)
    err = {k: nf4.quantization_error(w, k)["mse"] for k in ("nf4", "fp4", "int4")}
    assert err["nf4"] < err["int4"] and err["nf4"] < err["fp4"]


@pytest.mark.parametrize("bad", [0, -64])
def test_bad_block_size(bad):
    with pytest.raises(ValueError, match="block_size"):
        nf4.quantize_nf4(torch.randn(10), block_size=bad)
    with pytest.raises(ValueError, match="block_size"):
        nf4.bits_per_parameter(bad)


def test_bad_inputs():
    with pytest.raises(TypeError, match="block_size"):
        nf4.quantize_nf4(torch.randn(10), block_size=64.0)
    with pytest.raises(TypeError, match="entiers"):
        nf4.quantize_nf4(torch.arange(10))
    with pytest.raises(TypeError, match="torch.Tensor"):
        nf4.quantize_nf4([0.1, 0.2])
    with pytest.raises(ValueError, match="vide"):
        nf4.quantize_nf4(torch.empty(0))
    with pytest.raises(ValueError, match="NaN"):
        nf4.quantize_nf4(torch.tensor([1.0, float("nan")]))
    codes, absmax = nf4.quantize_nf4(torch.randn(100))
    with pytest.raises(ValueError, match="octets"):
        nf4.dequantize_nf4(codes, absmax, (101, 2))
    with pytest.raises(ValueError, match="kind"):
        nf4.quantization_error(torch.randn(10), "int3")
