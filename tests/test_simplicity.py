"""tdlcourse.simplicity against independent oracles: Lempel-Ziv parsings done by hand and by a
brute-force parser written from the definition, the function distribution of random networks
against a plain per-network loop, a closed form (orthant probabilities) and a Monte Carlo run of
an independent sampler, and the rank correlation against scipy and an exact permutation test."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from tdlcourse import simplicity
from tdlcourse.simplicity import lz_complexity, lz_words


# ----------------------------------------------------------------------------- Lempel-Ziv

def brute_force_words(s: str) -> int:
    """LZ76 production history from the definition: a new word starts at p and is the shortest
    s[p:p+L] that is NOT a copy of some s[j:j+L] with j < p (the copy may overlap the word);
    if the whole rest is a copy it is the last word."""
    n, p, words = len(s), 0, 0
    while p < n:
        L = 1
        while p + L <= n and any(s[j:j + L] == s[p:p + L] for j in range(p)):
            L += 1
        words += 1
        p += L
    return words


@pytest.mark.parametrize("s,words", [
    ("0001101001000101", 6),  # Lempel & Ziv 1976 / Kaspar & Schuster 1987: 0.001.10.100.1000.101
    ("0101010101", 3),        # 0.1.01010101 (the last word is a copy)
    ("0110", 3),              # 0.1.10
    ("0000", 2),              # 0.000
    ("1", 1), ("01", 2), ("10", 2),
    ("1001111011000010", 6),  # 1.0.01.1110.1100.0010 (hand-parsed)
])
def test_lz_words_hand_parsed(s, words):
    assert lz_words(s) == words == brute_force_words(s)


def test_lz_words_matches_the_brute_force_parser_on_every_short_string():
    for n in range(1, 13):
        for t in itertools.product("01", repeat=n):
            s = "".join(t)
            assert lz_words(s) == brute_force_words(s), s


def test_fast_word_count_equals_kaspar_schuster():
    for n in range(1, 15):
        for t in itertools.product(b"01", repeat=n):
            s = bytes(t)
            assert simplicity._words_fast(s) == lz_words(s.decode()), s
    rng = np.random.default_rng(0)
    for _ in range(300):
        p = rng.uniform(0.02, 0.5)  # biased strings too: long copies
        s = "".join(np.where(rng.random(128) < p, "1", "0"))
        assert simplicity._words_fast(s.encode()) == lz_words(s)


def test_lz_complexity_definition():
    assert lz_complexity("0" * 128) == 7.0 == lz_complexity([1] * 128)  # log2(n) for constant strings
    assert lz_complexity("1") == 0.0
    rng = np.random.default_rng(1)
    for _ in range(50):
        bits = rng.integers(0, 2, int(rng.integers(2, 200)))
        if bits.min() == bits.max():
            continue
        s = "".join(map(str, bits))
        expected = math.log2(len(s)) * (brute_force_words(s) + brute_force_words(s[::-1])) / 2
        assert math.isclose(lz_complexity(bits), expected, rel_tol=1e-15)
        assert lz_complexity(s[::-1]) == lz_complexity(s)                        # symmetric by construction
        assert lz_complexity(s.translate(str.maketrans("01", "10"))) == lz_complexity(s)  # symbol-blind
    # Valle-Perez et al.'s calc_KC: 0^64 1^64 parses as 0.0^63 1.1^63 both ways: 7 * 3 = 21.
    assert lz_complexity("0" * 64 + "1" * 64) == 21.0
    # Constant strings are the simplest of their length.
    assert all(lz_complexity(s) > lz_complexity("0" * 8) for s in
               ("".join(t) for t in itertools.product("01", repeat=8)) if len(set(s)) == 2)


def test_lz_complexities_match_one_at_a_time():
    rng = np.random.default_rng(2)
    rows = rng.integers(0, 2, (200, 64))
    rows[0] = 0
    rows[1] = 1
    rows[2] = np.arange(64) % 2
    assert np.array_equal(simplicity.lz_complexities(rows), [lz_complexity(r) for r in rows])


# ----------------------------------------------------------------------------- random networks

def test_boolean_inputs_order():
    X = simplicity.boolean_inputs(3)
    assert X.shape == (8, 3) and X.dtype == np.float32
    assert X[5].tolist() == [1, 0, 1] and X[1].tolist() == [0, 0, 1]  # binary expansion, MSB first


def test_vectorized_sampler_equals_a_per_network_loop():
    """Network i of the batched float32 pass against the same parameters run alone in float64."""
    dims = (7, 40, 40, 1)
    X = simplicity.boolean_inputs(7)
    blocks = range(3)
    bits = simplicity._pass_bits(X, 11, blocks, dims, 1.0, 1.0)
    assert bits.shape == (3 * 64, 128)
    compared = 0
    for b in blocks:
        params = simplicity._block_params(11, b, dims, 1.0, 1.0)
        for i in range(64):
            Ws = [p[0][i] for p in params]
            bs = [p[1][i, 0] for p in params]
            h = X.astype(np.float64)
            for l, (W, c) in enumerate(zip(Ws, bs)):
                h = h @ W + c
                h = np.maximum(h, 0) if l < 2 else h
            if np.abs(h).min() < 1e-5:  # float32 may round such an output to the other side of 0
                continue
            assert np.array_equal(bits[64 * b + i], simplicity.network_bits(Ws, bs, 7).astype(bool))
            compared += 1
    assert compared >= 185


def test_function_distribution_counts_and_is_independent_of_chunk_and_threads():
    fd = simplicity.function_distribution(samples=1000, chunk=128, seed=3)
    X = simplicity.boolean_inputs(7)
    bits = simplicity._pass_bits(X, 3, range(16), (7, 40, 40, 1), 1.0, 1.0)[:1000]
    loop = Counter("".join(map(str, row.astype(int))) for row in bits)
    assert dict(zip(fd.strings(), fd.counts.tolist())) == dict(loop)
    assert fd.counts.sum() == fd.samples == 1000 and np.all(np.diff(fd.counts) <= 0)
    for other in (simplicity.function_distribution(samples=1000, chunk=64 * 5, seed=3),
                  simplicity.function_distribution(samples=1000, chunk=64, seed=3, threads=2)):
        assert np.array_equal(other.keys, fd.keys) and np.array_equal(other.counts, fd.counts)
    top = fd.strings(1)[0]
    assert fd.probability(top) == fd.counts[0] / 1000 and fd.probability("01" * 64) == 0.0
    assert np.allclose(fd.stderr, np.sqrt(fd.probabilities * (1 - fd.probabilities) / 1000))
    assert np.array_equal(fd.lz, simplicity.lz_complexities(fd.bits))


def test_perceptron_on_one_bit_matches_the_orthant_probabilities():
    """f(0) = [b > 0], f(1) = [w + b > 0] with w ~ N(0, sw^2), b ~ N(0, sb^2): P(11) = P(00) =
    1/4 + arcsin(rho)/(2 pi), P(01) = P(10) = 1/4 - arcsin(rho)/(2 pi), rho = sb / sqrt(sw^2 + sb^2)."""
    sw, sb, N = 1.0, 0.5, 200_000
    fd = simplicity.function_distribution(1, (), samples=N, sigma_w=sw, sigma_b=sb, seed=4)
    rho = sb / math.hypot(sw, sb)
    exact = {"11": 0.25 + math.asin(rho) / (2 * math.pi), "00": 0.25 + math.asin(rho) / (2 * math.pi),
             "01": 0.25 - math.asin(rho) / (2 * math.pi), "10": 0.25 - math.asin(rho) / (2 * math.pi)}
    got = dict(zip(fd.strings(), fd.probabilities))
    assert set(got) == set(exact)
    for f, p in exact.items():
        assert abs(got[f] - p) < 4 * math.sqrt(p * (1 - p) / N), (f, got[f], p)


def test_perceptron_on_two_bits_never_computes_xor():
    fd = simplicity.function_distribution(2, (), samples=20_000, seed=5)
    seen = set(fd.strings())
    assert "0110" not in seen and "1001" not in seen  # XOR, XNOR: not linearly separable
    assert len(seen) == 14


def test_hidden_layer_frequencies_match_an_independent_sampler():
    """n = 2 bits, one hidden layer of 3: our sampler against a plain float64 loop with numpy's
    generator, frequencies within 4 standard errors of their difference."""
    N = 40_000
    fd = simplicity.function_distribution(2, (3,), samples=N, seed=6)
    rng = np.random.default_rng(123)
    loop = Counter()
    for _ in range(N):
        W1, b1 = rng.normal(0, 1 / math.sqrt(2), (2, 3)), rng.normal(0, 1, 3)
        W2, b2 = rng.normal(0, 1 / math.sqrt(3), (3, 1)), rng.normal(0, 1, 1)
        loop["".join(map(str, simplicity.network_bits([W1, W2], [b1, b2], 2)))] += 1
    ours = dict(zip(fd.strings(), fd.counts))
    for f in set(ours) | set(loop):
        p1, p2 = ours.get(f, 0) / N, loop.get(f, 0) / N
        p = (p1 + p2) / 2
        assert abs(p1 - p2) <= 4 * math.sqrt(max(p * (1 - p), 1 / N) * 2 / N) + 1e-12, (f, p1, p2)


def test_simplicity_bias_of_a_small_sample():
    fd = simplicity.function_distribution(samples=20_000, seed=7)
    # The two constant functions are the most frequent, and they are the simplest (LZ = 7).
    assert set(fd.strings(2)) == {"0" * 128, "1" * 128} and np.all(fd.lz[:2] == 7.0)
    rc = simplicity.rank_correlation(np.log(fd.probabilities), fd.lz, permutations=199, alternative="less")
    assert rc.rho < -0.1 and rc.p_value == 1 / 200


# ----------------------------------------------------------------------------- rank correlation

def test_rank_correlation_rho_is_spearmans():
    rng = np.random.default_rng(8)
    x = rng.integers(0, 5, 300).astype(float)  # many ties
    y = x + rng.normal(size=300)
    rc = simplicity.rank_correlation(x, y, permutations=99)
    assert math.isclose(rc.rho, stats.spearmanr(x, y).statistic, rel_tol=1e-12)


def test_permutation_p_value_against_the_exact_permutation_distribution():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 7.0, 5.0, 6.0])
    rho = stats.spearmanr(x, y).statistic
    all_rho = np.array([stats.spearmanr(x, y[list(p)]).statistic for p in itertools.permutations(range(7))])
    B = 20_000
    for alt, exact in (("two-sided", np.mean(np.abs(all_rho) >= abs(rho) - 1e-12)),
                       ("greater", np.mean(all_rho >= rho - 1e-12)), ("less", np.mean(all_rho <= rho + 1e-12))):
        rc = simplicity.rank_correlation(x, y, permutations=B, alternative=alt, seed=1)
        se = math.sqrt(exact * (1 - exact) / B)
        assert abs(rc.p_value - exact) < 4 * se + 1 / B, (alt, rc.p_value, exact)


def test_permutation_p_value_is_uniform_under_independence():
    rng = np.random.default_rng(9)
    ps = [simplicity.rank_correlation(rng.normal(size=30), rng.normal(size=30), permutations=199, seed=s).p_value
          for s in range(200)]
    assert 0.04 < np.mean(np.array(ps) <= 0.1) < 0.17  # about 0.1 (binomial sd 0.021)
    with pytest.raises(ValueError, match="constant"):
        simplicity.rank_correlation(np.ones(5), np.arange(5.0))
