r"""Simplicity bias of the parameter-function map: random networks on Boolean inputs.

For chapter 3, implicit and simplicity bias (``book/03_implicit_bias.md``, ``labs/03_implicit_bias.ipynb``).

Valle-Perez, Camargo & Louis (2019, "Deep learning generalizes because the parameter-function map
is biased towards simple functions") sample the parameters of a fully connected ReLU network
7-40-40-1 at random, evaluate it on all 2^7 = 128 inputs of {0, 1}^7 and read the signs of the
output as a Boolean function, a string of 128 bits. The probability P(f) of a function under this
map falls roughly exponentially with its Lempel-Ziv complexity (Dingle, Camargo & Louis 2018,
"Input-output maps are strongly biased towards simple outputs").

Conventions (stated once, used everywhere here):

- Inputs: row j of :func:`boolean_inputs` is the binary expansion of j, most significant bit
  first, so the truth table of f is the string f(x_0) f(x_1) ... f(x_{2^n - 1}).
- Output bit: 1 where the network's output is > 0, else 0.
- Parameters: W ~ N(0, sigma_w^2 / fan_in) entrywise, b ~ N(0, sigma_b^2), with
  sigma_w = sigma_b = 1 by default, as in the sampling scripts of Valle-Perez et al.
- Complexity: :func:`lz_complexity`, the measure of Dingle et al. 2018 (also Valle-Perez et al.).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Sequence

import numpy as np

from . import validate

__all__ = ["lz_words", "lz_complexity", "lz_complexities", "boolean_inputs", "network_bits",
           "FunctionDistribution", "function_distribution", "RankCorrelation", "rank_correlation"]

MAX_BITS = 10    # 2^10 = 1024 inputs: truth tables of 16 machine words
_BLOCK = 64      # networks per random-number block: the sample does not depend on ``chunk``
_MERGE = 1 << 20  # merge the running table of functions after this many new samples


# ============================================================================ Lempel-Ziv complexity

def _bit_string(name: str, bits) -> bytes:
    """``bits`` (a str or bytes of '0'/'1', or a sequence of 0/1 or bools) as bytes of b'0'/b'1'."""
    if isinstance(bits, str):
        s = bits.encode()
    elif isinstance(bits, (bytes, bytearray)):
        s = bytes(bits)
    else:
        try:
            a = np.asarray(bits)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a string of 0/1 or a 1-D sequence of 0/1, "
                             f"got {type(bits).__name__}") from None
        if a.ndim != 1 or not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be a 1-D sequence of 0/1 (or a str of '0'/'1'), got shape {a.shape}")
        s = (a.astype(np.uint8) + 48).tobytes()
    if not s or s.strip(b"01"):
        raise ValueError(f"{name}={bits!r} must be a non-empty string of 0 and 1")
    return s


def lz_words(bits) -> int:
    r"""N_w(x): the number of words of the Lempel-Ziv (1976) parsing of ``x``, computed by the
    algorithm of Kaspar & Schuster (1987, "Easily calculable measure for the complexity of
    spatiotemporal patterns", Phys. Rev. A 36, 842).

    The string is cut into words left to right; each new word is the shortest piece that cannot
    be copied from the text before it (the copy may overlap the word itself), the last word may be
    a copy. Example (Lempel & Ziv 1976): 0001101001000101 = 0 . 001 . 10 . 100 . 1000 . 101, six
    words. ``bits``: a str of '0'/'1' or a 1-D sequence of 0/1.
    """
    s = _bit_string("bits", bits)
    n = len(s)
    if n == 1:
        return 1
    i, k, l, c, k_max = 0, 1, 1, 1, 1  # noqa: E741 (the paper's names)
    while True:
        if s[i + k - 1] == s[l + k - 1]:
            k += 1
            if l + k > n:
                c += 1
                break
        else:
            k_max = max(k_max, k)
            i += 1
            if i == l:
                c += 1
                l += k_max  # noqa: E741
                if l + 1 > n:
                    break
                i, k, k_max = 0, 1, 1
            else:
                k = 1
    return c


def lz_complexity(bits) -> float:
    r"""Lempel-Ziv complexity of a binary string x of length n, as defined by Dingle, Camargo &
    Louis (2018, Methods) and used by Valle-Perez et al. (2019):

    .. math:: C_{LZ}(x) = \begin{cases} \log_2 n & x = 0^n \text{ or } 1^n \\
              \log_2(n)\,\frac{N_w(x_1 \dots x_n) + N_w(x_n \dots x_1)}{2} & \text{otherwise,} \end{cases}

    N_w from :func:`lz_words` (Kaspar & Schuster's algorithm). Averaging the string and its
    reverse makes the measure symmetric; the constant strings get log2(n), below every other
    string (Kaspar & Schuster would count them as 2 words). ``lz_complexity("0" * 128) = 7``.
    """
    s = _bit_string("bits", bits)
    n = len(s)
    if s.count(s[:1]) == n:
        return math.log2(n)
    return math.log2(n) * (lz_words(s) + lz_words(s[::-1])) / 2.0


def _words_fast(s: bytes) -> int:
    """N_w(s) by the definition, with ``bytes.find`` doing the search: a word starting at p is
    extended while it still occurs in s[: end - 1]. Equal to :func:`lz_words` (tested on every
    string up to length 14 and on random strings) and 4x faster in Python."""
    n, p, c = len(s), 0, 0
    find = s.find
    while p < n:
        L = 1
        while p + L <= n and find(s[p:p + L], 0, p + L - 1) != -1:
            L += 1
        c += 1
        p += L
    return c


def lz_complexities(bits) -> np.ndarray:
    """:func:`lz_complexity` of each row of a 2-D 0/1 array [m, n] (truth tables), as a float64
    array [m]; the same numbers, computed with a faster equivalent of the word count."""
    a = np.asarray(bits)
    if a.ndim != 2 or 0 in a.shape or not np.isin(a, (0, 1)).all():
        raise ValueError(f"bits must be a 2-D array of 0/1 with one string per row, got shape {a.shape}")
    n = a.shape[1]
    rows = (a.astype(np.uint8) + 48)
    out = np.empty(a.shape[0])
    log_n = math.log2(n)
    for r in range(a.shape[0]):
        s = rows[r].tobytes()
        if s.count(s[:1]) == n:
            out[r] = log_n
        else:
            out[r] = log_n * (_words_fast(s) + _words_fast(s[::-1])) / 2.0
    return out


# ============================================================================ random networks

def boolean_inputs(n_bits: int) -> np.ndarray:
    """All 2^n inputs {0, 1}^n as a float32 array [2^n, n]; row j is the binary expansion of j,
    most significant bit first (the order of a function's truth table)."""
    n_bits = validate.integer("n_bits", n_bits, lo=1, hi=MAX_BITS)
    j = np.arange(2**n_bits)
    return ((j[:, None] >> np.arange(n_bits - 1, -1, -1)) & 1).astype(np.float32)


def _dims(n_bits, widths) -> tuple[int, ...]:
    n_bits = validate.integer("n_bits", n_bits, lo=1, hi=MAX_BITS)
    widths = () if widths is None else validate.int_sequence("widths", widths, lo=1, min_len=0)
    return (n_bits, *widths, 1)


def _block_params(seed: int, block: int, dims: Sequence[int], sigma_w: float, sigma_b: float):
    """The parameters of the ``_BLOCK`` networks of random-number block ``block``: a list of
    (W [B, fan_in, fan_out], b [B, 1, fan_out]) float32 arrays, drawn by a torch generator seeded
    from (seed, block), layer by layer, W then b."""
    import torch

    state = np.random.SeedSequence([seed, block]).generate_state(2, np.uint32)
    g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    out = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        W = torch.randn((_BLOCK, fan_in, fan_out), generator=g).mul_(sigma_w / math.sqrt(fan_in))
        b = torch.randn((_BLOCK, 1, fan_out), generator=g).mul_(sigma_b)
        out.append((W.numpy(), b.numpy()))
    return out


def _forward_bits(X: np.ndarray, params) -> np.ndarray:
    """Output bits [B, 2^n] (output > 0) of a batch of networks on all inputs X, float32.

    One pass over the activations per layer: relu(z + b) = max(z, -b) + b, and the "+ b" is carried
    into the next layer's bias, b' = b W + b_next (a [B, 1, w] product), so no separate bias add."""
    h = X
    carry = None  # the bias not yet added to h
    last = len(params) - 1
    for l, (W, b) in enumerate(params):  # noqa: E741
        h = np.matmul(h, W)  # X [2^n, n] broadcasts against W [B, n, w]
        if carry is not None:
            b = np.matmul(carry, W) + b
        if l < last:
            np.maximum(h, -b, out=h)
            carry = b
        else:
            h += b
    return h[..., 0] > 0


def _pass_bits(X: np.ndarray, seed: int, blocks: range, dims, sigma_w: float, sigma_b: float) -> np.ndarray:
    """Truth tables [len(blocks) * _BLOCK, 2^n] (bool) of the networks of these random-number blocks."""
    per = [_block_params(seed, b, dims, sigma_w, sigma_b) for b in blocks]
    if len(per) == 1:
        return _forward_bits(X, per[0])
    return _forward_bits(X, [(np.concatenate([p[l][0] for p in per]), np.concatenate([p[l][1] for p in per]))
                             for l in range(len(dims) - 1)])


def network_bits(weights: Sequence, biases: Sequence, n_bits: int) -> np.ndarray:
    """The truth table (uint8 0/1, length 2^n) of ONE ReLU network with these weights (each
    [fan_in, fan_out], acting as x -> x W + b) and biases, on :func:`boolean_inputs`, in float64:
    the plain per-network computation that :func:`function_distribution` vectorizes."""
    x = boolean_inputs(n_bits).astype(np.float64)
    if len(weights) != len(biases) or not weights:
        raise ValueError(f"weights and biases must be non-empty lists of the same length, got {len(weights)} and "
                         f"{len(biases)}")
    h = x
    for l, (W, b) in enumerate(zip(weights, biases)):  # noqa: E741
        W, b = np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64).reshape(-1)
        if W.ndim != 2 or W.shape[0] != h.shape[1] or b.shape != (W.shape[1],):
            raise ValueError(f"weights[{l}] of shape {W.shape} and biases[{l}] of shape {b.shape} do not fit an "
                             f"input of width {h.shape[1]}")
        h = h @ W + b
        if l < len(weights) - 1:
            h = np.maximum(h, 0.0)
    if h.shape[1] != 1:
        raise ValueError(f"the last layer must have one output, got {h.shape[1]}")
    return (h[:, 0] > 0).astype(np.uint8)


def _pack(bits: np.ndarray) -> np.ndarray:
    """Truth tables [B, 2^n] (bool) -> keys [B, words] uint64 (big-endian bit order, zero padded)."""
    packed = np.packbits(bits, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _unique_counts(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``keys`` [N, words] with their summed ``counts``."""
    if keys.shape[0] == 0:
        return keys, counts
    order = np.lexsort(keys.T[::-1])
    k, c = keys[order], counts[order]
    new = np.ones(k.shape[0], bool)
    new[1:] = np.any(k[1:] != k[:-1], axis=1)
    starts = np.flatnonzero(new)
    return k[starts], np.add.reduceat(c, starts)


@dataclass(frozen=True, eq=False)
class FunctionDistribution:
    r"""The distribution of Boolean functions of random networks, from :func:`function_distribution`.

    ``keys`` [m, words] are the m distinct truth tables seen (packed, uint64; ``bits`` unpacks
    them), ``counts`` [m] how often each was sampled, most frequent first; ``samples`` networks in
    all. The frequency counts/samples estimates P(f) with binomial standard error
    sqrt(P (1 - P) / samples) (``stderr``).
    """

    keys: np.ndarray
    counts: np.ndarray
    samples: int
    n_bits: int
    widths: tuple[int, ...]
    sigma_w: float
    sigma_b: float
    seed: int

    @property
    def probabilities(self) -> np.ndarray:
        return self.counts / self.samples

    @property
    def stderr(self) -> np.ndarray:
        p = self.probabilities
        return np.sqrt(p * (1.0 - p) / self.samples)

    @cached_property
    def bits(self) -> np.ndarray:
        """Truth tables [m, 2^n] as uint8 0/1 (row order of ``counts``)."""
        return np.unpackbits(self.keys.view(np.uint8), axis=1)[:, : 2**self.n_bits]

    def strings(self, k: int | None = None) -> list[str]:
        """The truth tables of the ``k`` most frequent functions (all by default) as '0'/'1' strings."""
        rows = self.bits if k is None else self.bits[: validate.positive_int("k", k)]
        return [(r + 48).tobytes().decode() for r in rows]

    @cached_property
    def lz(self) -> np.ndarray:
        """:func:`lz_complexity` of every distinct function [m] (computed once, then cached)."""
        return lz_complexities(self.bits)

    def probability(self, bits) -> float:
        """The sampled frequency of the function with truth table ``bits`` (0 if never seen)."""
        s = _bit_string("bits", bits)
        if len(s) != 2**self.n_bits:
            raise ValueError(f"bits must have length 2^n_bits = {2**self.n_bits}, got {len(s)}")
        key = _pack((np.frombuffer(s, np.uint8) == 49)[None, :])[0]
        hit = np.flatnonzero(np.all(self.keys == key, axis=1))
        return float(self.counts[hit[0]] / self.samples) if hit.size else 0.0


def function_distribution(n_bits: int = 7, widths: Sequence[int] = (40, 40), *, samples: int = 100_000,
                          chunk: int = 128, sigma_w: float = 1.0, sigma_b: float = 1.0, seed: int = 0,
                          threads: int | None = None, progress: bool = False) -> FunctionDistribution:
    r"""Sample ``samples`` random ReLU networks n_bits-widths-1 and count the Boolean functions
    they compute on all 2^n_bits inputs (Valle-Perez et al. 2019, section 4: 7-40-40-1).

    Parameters are drawn as stated in the module docstring (W ~ N(0, sigma_w^2/fan_in),
    b ~ N(0, sigma_b^2)). Vectorized: ``chunk`` networks (a multiple of 64) pass through all inputs
    at once in float32 (one batched matrix product per layer), so memory stays about
    chunk * 2^n_bits * max(widths) * 8 bytes. The random numbers come in blocks of 64 networks,
    each block from a generator seeded by (seed, block index): the sample is the same for every
    ``chunk`` and network i is reproducible on its own (the tests compare it with a plain
    per-network loop). ``threads`` worker threads (default ``torch.get_num_threads()``) run the
    passes in parallel; their results are merged in order, so the sample does not depend on
    ``threads`` either. Chunks of 64-256 networks keep the activations in cache; the rate is
    measured in ``benchmarks/simplicity.py`` (``benchmarks/simplicity.md``).
    """
    dims = _dims(n_bits, widths)
    samples = validate.positive_int("samples", samples)
    chunk = validate.positive_int("chunk", chunk)
    if chunk % _BLOCK:
        raise ValueError(f"chunk={chunk} must be a positive multiple of {_BLOCK} (networks per random-number block)")
    sigma_w, sigma_b = validate.positive("sigma_w", sigma_w), validate.nonnegative("sigma_b", sigma_b)
    seed = validate.nonnegative_int("seed", seed)
    if threads is None:
        import torch
        threads = torch.get_num_threads()
    threads = validate.positive_int("threads", threads)
    X = boolean_inputs(dims[0])
    blocks_per_pass = chunk // _BLOCK
    n_blocks = -(-samples // _BLOCK)
    table_k = np.zeros((0, max(1, -(-(2 ** dims[0]) // 64))), np.uint64)
    table_c = np.zeros(0, np.int64)
    pending, pending_n = [], 0
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=samples, desc="random networks", unit="net", unit_scale=True)
    firsts = range(0, n_blocks, blocks_per_pass)

    def work(blocks: range) -> np.ndarray:
        keep = min(samples - blocks.start * _BLOCK, len(blocks) * _BLOCK)
        return _pack(_pass_bits(X, seed, blocks, dims, sigma_w, sigma_b)[:keep])

    def merge() -> None:
        nonlocal table_k, table_c, pending, pending_n
        new = np.concatenate(pending)
        table_k, table_c = _unique_counts(np.concatenate([table_k, new]),
                                          np.concatenate([table_c, np.ones(new.shape[0], np.int64)]))
        pending, pending_n = [], 0

    # Passes are independent (each block has its own generator): workers run them in waves and the
    # results are taken in order, so the sample does not depend on ``threads`` either.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        wave = 4 * threads
        for start in range(0, len(firsts), wave):
            passes = [range(f, min(f + blocks_per_pass, n_blocks)) for f in firsts[start:start + wave]]
            for keys in pool.map(work, passes):
                pending.append(keys)
                pending_n += keys.shape[0]
                if bar is not None:
                    bar.update(keys.shape[0])
                if pending_n >= _MERGE:
                    merge()
    if pending:
        merge()
    if bar is not None:
        bar.close()
    order = np.argsort(-table_c, kind="stable")
    return FunctionDistribution(keys=table_k[order], counts=table_c[order], samples=samples, n_bits=dims[0],
                                widths=tuple(dims[1:-1]), sigma_w=sigma_w, sigma_b=sigma_b, seed=seed)


# ============================================================================ rank correlation

@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rank correlation ``rho`` of ``n`` pairs and its permutation ``p_value`` from
    ``permutations`` random permutations (``alternative``: 'two-sided', 'less' or 'greater')."""

    rho: float
    p_value: float
    n: int
    permutations: int
    alternative: str


def rank_correlation(x, y, *, permutations: int = 999, alternative: str = "two-sided",
                     seed: int = 0) -> RankCorrelation:
    r"""Spearman's rho (the Pearson correlation of the ranks, ties given their average rank; the
    same number as ``scipy.stats.spearmanr``) with a permutation test of independence.

    The p-value is :math:`(1 + \#\{b : \rho_b \text{ at least as extreme as } \rho\}) / (B + 1)`
    over B = ``permutations`` random permutations of y (Phipson & Smyth 2010: never 0, exact
    under the null). 'less' counts rho_b <= rho, 'greater' rho_b >= rho, 'two-sided'
    |rho_b| >= |rho|. The permutations are drawn in batches that bound memory.
    """
    from scipy import stats

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 3:
        raise ValueError(f"x and y must be 1-D arrays of the same length >= 3, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    permutations = validate.positive_int("permutations", permutations)
    alternative = validate.one_of("alternative", alternative, ("two-sided", "less", "greater"))
    seed = validate.nonnegative_int("seed", seed)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = float(np.linalg.norm(rx) * np.linalg.norm(ry))
    if denom == 0.0:
        raise ValueError("x or y is constant: the rank correlation is undefined")
    rho = float(rx @ ry) / denom
    rng = np.random.default_rng(seed)
    n = x.size
    batch = max(1, min(permutations, (1 << 23) // n))
    hits, done = 0, 0
    tol = 1e-12  # ties in rho_b == rho must count as "as extreme"
    while done < permutations:
        b = min(batch, permutations - done)
        idx = rng.permuted(np.broadcast_to(np.arange(n), (b, n)), axis=1)
        r = (ry[idx] @ rx) / denom
        if alternative == "two-sided":
            hits += int(np.sum(np.abs(r) >= abs(rho) - tol))
        elif alternative == "less":
            hits += int(np.sum(r <= rho + tol))
        else:
            hits += int(np.sum(r >= rho - tol))
        done += b
    return RankCorrelation(rho=rho, p_value=(1 + hits) / (permutations + 1), n=n, permutations=permutations,
                           alternative=alternative)
