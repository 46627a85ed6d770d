"""Oracle tests for tdlcourse.curvature: dense Hessians, closed forms and Monte Carlo coverage."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from tdlcourse import curvature as C
from tdlcourse import plots

from conftest import assert_untouched, snapshot

CE = nn.functional.cross_entropy


# ----------------------------------------------------------------------------------- fixtures

class AB(nn.Module):
    """f(x) = a b x: with x = 1, y = 1 and the loss (1/2)(f - y)^2 this is (1/2)(ab - 1)^2."""

    def __init__(self, a=2.0, b=0.5):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float64))

    def forward(self, x):
        return self.a * self.b * x


def half_mse(out, y):
    return 0.5 * ((out - y) ** 2).sum()


AB_BATCH = (torch.ones(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64))


class Logits(nn.Module):
    """The logits themselves are the parameters (uniform when zero)."""

    def __init__(self, c=10):
        super().__init__()
        self.z = nn.Parameter(torch.zeros(c, dtype=torch.float64))

    def forward(self, x):
        return self.z.expand(x.shape[0], -1)


LOGIT_BATCH = (torch.zeros(1, 1, dtype=torch.float64), torch.tensor([3]))


def tiny_mlp(seed=0, d=6, h=8, c=3, bn=False, dropout=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(d, h)]
    if bn:
        layers.append(nn.BatchNorm1d(h))
    layers.append(nn.Tanh())
    if dropout:
        layers.append(nn.Dropout(0.3))
    layers.append(nn.Linear(h, c))
    return nn.Sequential(*layers).double()


def data(seed=0, n=40, d=6, c=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g)


def dense_hessian(model, loss_fn, batches):
    """Oracle: torch.autograd.functional.hessian of the sample-weighted loss, flattened."""
    names = [n for n, p in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    if isinstance(batches, tuple):
        batches = [batches]
    N = sum(len(x) for x, _ in batches)

    def f(t):
        ps = {n: c.reshape(s) for n, c, s in zip(names, torch.split(t, sizes), shapes)}
        return sum(len(x) / N * loss_fn(functional_call(model, ps, (x,)), y) for x, y in batches)

    return torch.autograd.functional.hessian(f, theta)



# ------------------------------------------------------------------ explicit Hessians (course reference values)

def test_ab_hessian_closed_form():
    # H = [[b^2, 2ab - 1], [2ab - 1, a^2]] = [[0.25, 1], [1, 4]]: eigenvalues {0, 4.25}.
    H = C.full_hessian(AB(), half_mse, AB_BATCH)
    assert torch.allclose(H, torch.tensor([[0.25, 1.0], [1.0, 4.0]], dtype=torch.float64), atol=1e-14)
    ev = torch.linalg.eigvalsh(H)
    assert ev[1].item() == pytest.approx(4.25, abs=1e-12) and abs(ev[0].item()) < 1e-12
    top = C.hessian_eigs(AB(), half_mse, AB_BATCH, k=1)
    assert top.converged and top.eigenvalues[0].item() == pytest.approx(4.25, rel=1e-10)
    both = C.hessian_eigs(AB(), half_mse, AB_BATCH, k=1, which="both")
    assert both.eigenvalues[0].item() == pytest.approx(4.25, rel=1e-10)
    assert abs(both.eigenvalues[1].item()) < 1e-10
    # Hutch++ with a sketch spanning R^2 is exact: zero residual variance.
    tr = C.hessian_trace(AB(), half_mse, AB_BATCH, sketch=2)
    assert tr.value == pytest.approx(4.25, rel=1e-10) and tr.stderr < 1e-10 and tr.converged


def test_cross_entropy_hessian_at_uniform_logits():
    # H = diag(p) - p p^T with p = 1/10: eigenvalue 0.1 (multiplicity 9) and 0.
    H = C.full_hessian(Logits(), CE, LOGIT_BATCH)
    ev = torch.linalg.eigvalsh(H)
    assert abs(ev[0].item()) < 1e-14
    assert torch.allclose(ev[1:], torch.full((9,), 0.1, dtype=torch.float64), atol=1e-14)
    assert torch.trace(H).item() == pytest.approx(0.9, rel=1e-12)
    # The multiple eigenvalue is found nine times by breakdown restarts (block size 1) ...
    r = C.hessian_eigs(Logits(), CE, LOGIT_BATCH, k=10, tol=1e-10)
    assert r.converged
    assert torch.allclose(r.eigenvalues[:9], torch.full((9,), 0.1, dtype=torch.float64), atol=1e-12)
    assert abs(r.eigenvalues[9].item()) < 1e-12
    # ... and by a block of size >= the multiplicity.
    r = C.hessian_eigs(Logits(), CE, LOGIT_BATCH, k=3, block_size=9, tol=1e-10)
    assert torch.allclose(r.eigenvalues, torch.full((3,), 0.1, dtype=torch.float64), atol=1e-12)
    assert C.hessian_trace(Logits(), CE, LOGIT_BATCH, sketch=10).value == pytest.approx(0.9, rel=1e-10)


# --------------------------------------------------------------------------- dense oracle, MLP

@pytest.fixture(scope="module")
def mlp_case():
    model, batch = tiny_mlp(), data()
    H = dense_hessian(model, CE, batch)
    return model, batch, H, torch.linalg.eigvalsh(H)


def test_full_hessian_matches_autograd(mlp_case):
    model, batch, H, _ = mlp_case
    assert torch.allclose(C.full_hessian(model, CE, batch, chunk=17), H, atol=1e-13)


@pytest.mark.parametrize("method", C.HVP_METHODS)
def test_hvp_matches_dense(mlp_case, method):
    model, batch, H, _ = mlp_case
    V = torch.randn(3, H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(C.hvp(model, CE, batch, V, method=method), V @ H, atol=1e-13)
    assert torch.allclose(C.hvp(model, CE, batch, V[0], method=method), H @ V[0], atol=1e-13)
    # The vectorised backward pass (the GPU default) gives the same products.
    op = C.HessianOperator(model, CE, batch, method=method, batched_backward=True)
    assert torch.allclose(op(V), V @ H, atol=1e-13) and op.n_hvp == 3


@pytest.mark.parametrize("which", C.WHICH)
@pytest.mark.parametrize("block_size", [1, 3])
def test_eigs_match_eigvalsh(mlp_case, which, block_size):
    model, batch, H, ev = mlp_case
    desc = ev.flip(0)
    want = {"largest": desc[:3], "smallest": desc[-3:], "both": torch.cat([desc[:3], desc[-3:]])}[which]
    r = C.hessian_eigs(model, CE, batch, k=3, which=which, tol=1e-9, block_size=block_size, eigenvectors=True)
    assert r.converged
    scale = ev.abs().max()
    assert ((r.eigenvalues - want).abs() <= r.error_bounds + 1e-12).all()
    assert torch.allclose(r.eigenvalues, want, atol=1e-8 * scale)
    # Ritz vectors: unit norm and their true residual ||H y - theta y|| is the reported one.
    vecs = r.eigenvectors
    assert torch.allclose(vecs.norm(dim=1), torch.ones(len(want), dtype=torch.float64))
    true_res = (vecs @ H - r.eigenvalues[:, None] * vecs).norm(dim=1)
    assert torch.allclose(true_res, r.residuals, atol=1e-9 * scale)


def test_eigs_unconverged_warns(mlp_case):
    model, batch, _, _ = mlp_case
    with pytest.warns(RuntimeWarning, match="did not converge"):
        r = C.hessian_eigs(model, CE, batch, k=2, which="smallest", tol=1e-12, max_steps=4)
    assert not r.converged and r.n_steps == 4 and r.n_hvp == 4


def test_hutchinson_stderr_covers_truth(mlp_case):
    model, batch, H, _ = mlp_case
    truth = torch.trace(H).item()
    op_results = [C.hessian_trace(model, CE, batch, method="hutchinson", tol=0.1, probes_per_pass=32,
                                  seed=s, hvp_method="forward_over_reverse", subsample=None) for s in range(20)]
    z = [(r.value - truth) / r.stderr for r in op_results]
    assert all(r.converged and r.stderr <= 0.1 * abs(r.value) for r in op_results)
    # Nominal 95% intervals: at least 16 of 20 cover the truth, none is off by 4 standard errors.
    assert sum(abs(x) <= 2 for x in z) >= 16 and max(abs(x) for x in z) < 4


def test_hutchpp_beats_hutchinson_on_outliers():
    # A linear least-squares Hessian (2/N) X^T X with a few large directions: Hutch++ takes them
    # exactly, so it needs far fewer products for the same standard error.
    torch.manual_seed(0)
    s = torch.cat([torch.full((3,), 10.0), torch.ones(27)]).double()
    R = torch.linalg.qr(torch.randn(30, 30, dtype=torch.float64))[0]
    X = torch.randn(200, 30, dtype=torch.float64) @ torch.diag(s) @ R
    y = torch.randn(200, 1, dtype=torch.float64)
    model = nn.Linear(30, 1, bias=False).double()
    truth = (2 * X.T @ X / 200).trace().item()
    mse = nn.functional.mse_loss
    hpp = C.hessian_trace(model, mse, (X, y), tol=0.02, sketch=8, subsample=None)
    hut = C.hessian_trace(model, mse, (X, y), tol=0.02, method="hutchinson", probes_per_pass=16, subsample=None)
    assert hpp.converged and hut.converged
    assert abs(hpp.value - truth) < 4 * hpp.stderr and abs(hut.value - truth) < 4 * hut.stderr
    assert hpp.n_hvp < hut.n_hvp / 10


def test_subsampled_probes_are_unbiased_and_only_for_per_sample_means():
    # tanh MLP, 240 samples in chunks of 30: H = sum_k (n_k/N) H_k, so chunk probes are unbiased.
    model = tiny_mlp(3)
    X, y = data(3, n=240)
    truth = torch.trace(dense_hessian(model, CE, (X, y))).item()
    runs = [C.hessian_trace(model, CE, (X, y), tol=0.05, subsample=30, seed=s) for s in range(12)]
    assert all(r.converged and r.n_sub_hvp > 0 for r in runs)
    z = [(r.value - truth) / r.stderr for r in runs]
    assert sum(abs(x) <= 2 for x in z) >= 9 and max(abs(x) for x in z) < 4
    # A summed loss is not the mean of chunk losses: no subsampling, still the right trace.
    def ce_sum(o, t):
        return CE(o, t, reduction="sum")

    r = C.hessian_trace(model, ce_sum, (X, y), tol=0.05, subsample=30)
    assert r.n_sub_hvp == 0 and abs(r.value - 240 * truth) < 4 * r.stderr
    # BatchNorm in train mode couples the samples: no subsampling either.
    r = C.hessian_trace(tiny_mlp(bn=True), CE, (X, y), tol=0.2, subsample=30, mode="train")
    assert r.n_sub_hvp == 0
    assert C.hessian_trace(tiny_mlp(bn=True), CE, (X, y), tol=0.2, subsample=30, mode="eval").n_sub_hvp > 0


def test_probe_helpers_match_dense(mlp_case):
    # The probes are Rademacher (entries exactly +-1, balanced), and the subsampled probe's
    # blockwise quadratic form equals z^T H z with the dense Hessian.
    model, batch, H, _ = mlp_case
    Z = C._rademacher(400, H.shape[0], torch.Generator().manual_seed(0), "cpu", torch.float64)
    assert Z.shape == (400, H.shape[0]) and Z.dtype == torch.float64 and bool((Z.abs() == 1).all())
    assert abs(Z.mean().item()) < 4 / math.sqrt(Z.numel())  # mean of n signs: sd 1/sqrt(n)
    op = C.HessianOperator(model, CE, batch)
    for z in Z[:3]:
        assert op.quad(z) == pytest.approx((z @ H @ z).item(), rel=1e-10)
    assert op.n_hvp == 3


def _spiked_psd(n=40, seed=0):
    """A symmetric PSD matrix with three outlier eigenvalues (100) over a flat bulk (1)."""
    g = torch.Generator().manual_seed(seed)
    R = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    ev = torch.cat([torch.full((3,), 100.0), torch.ones(n - 3)]).double()
    return R @ torch.diag(ev) @ R.T


def test_hutchpp_trace_against_the_exact_trace_of_a_dense_matrix():
    A = _spiked_psd()
    n, truth = A.shape[0], torch.trace(A).item()
    def matvec(V):
        return V @ A.T
    # budget >= 3n: the sketch spans everything and the estimate is the exact trace.
    assert C.hutchpp_trace(matvec, n, 3 * n) == pytest.approx(truth, rel=1e-12)
    B = torch.randn(n, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # not symmetric
    assert C.hutchpp_trace(lambda V: V @ B.T, n, 3 * n) == pytest.approx(torch.trace(B).item(), rel=1e-10, abs=1e-10)
    # Small budget: unbiased (mean of 300 seeds within 4 standard errors of the truth) and far more
    # accurate than Hutchinson with as many products, since the outliers are taken exactly.
    est = torch.tensor([C.hutchpp_trace(matvec, n, 12, seed=s) for s in range(300)])
    assert abs(est.mean().item() - truth) < 4 * est.std().item() / math.sqrt(300)
    gen = torch.Generator().manual_seed(0)
    hutch = torch.stack([(Z * matvec(Z)).sum(1).mean() for Z in (C._rademacher(12, n, gen, "cpu", torch.float64)
                                                                  for _ in range(300))])
    assert (est - truth).pow(2).mean() < 0.05 * (hutch - truth).pow(2).mean()
    # A seed fixes the draw; a budget below 3 has no sketch, probe and product each.
    assert C.hutchpp_trace(matvec, n, 12, seed=5) == C.hutchpp_trace(matvec, n, 12, seed=5)
    with pytest.raises(ValueError, match="budget=2 must be an integer >= 3"):
        C.hutchpp_trace(matvec, n, 2)


def test_hutchpp_trace_on_the_hessian_operator(mlp_case):
    model, batch, H, _ = mlp_case
    op = C.HessianOperator(model, CE, batch)
    assert C.hutchpp_trace(op, op.dim, 3 * op.dim) == pytest.approx(torch.trace(H).item(), rel=1e-9)
    assert op.n_hvp == 2 * op.dim  # the sketch and Q^T H Q; no probes are left to draw


def test_operator_public_state(mlp_case):
    model, batch, _, _ = mlp_case
    op = C.HessianOperator(model, CE, batch)
    assert op.cached and op.loss == pytest.approx(CE(model(batch[0]), batch[1]).item(), rel=1e-12)
    x, y = batch
    assert op.loss_on((x[:5], y[:5])) == pytest.approx(CE(model(x[:5]), y[:5]).item(), rel=1e-12)
    assert not C.HessianOperator(model, CE, batch, method="forward_over_reverse").cached
    with pytest.raises(ValueError, match="cached gradient graph"):
        C.HessianOperator(model, CE, batch, method="forward_over_reverse").quad(torch.ones(op.dim, dtype=torch.float64))


def test_trace_max_probes_warns(mlp_case):
    model, batch, _, _ = mlp_case
    with pytest.warns(RuntimeWarning, match="max_probes"):
        r = C.hessian_trace(model, CE, batch, method="hutchinson", tol=1e-6, max_probes=12)
    assert not r.converged and r.n_probes == 12


def test_density_matches_smoothed_spectrum(mlp_case):
    model, batch, H, ev = mlp_case
    n = H.shape[0]
    # With steps = P each run's quadrature is exact; the runs average to the true smoothed density.
    r = C.hessian_density(model, CE, batch, steps=n, n_runs=64, width=0.02, method="forward_over_reverse")
    exact = C.gaussian_smooth(ev[None], torch.full((1, n), 1 / n, dtype=torch.float64), r.grid, 0.02)[0]
    dx = float(r.grid[1] - r.grid[0])
    assert float(r.density.sum() * dx) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(r.weights.sum(1), torch.ones(64, dtype=torch.float64), atol=1e-10)
    assert ((r.density - exact).abs() <= 4 * r.stderr + 1e-3 * exact.max()).all()
    # Few steps still give a density with the right mass and mean (the trace / P).
    r = C.hessian_density(model, CE, batch, steps=12, n_runs=64, method="forward_over_reverse")
    mean = float((r.grid * r.density).sum() * float(r.grid[1] - r.grid[0]))
    assert mean == pytest.approx(ev.mean().item(), abs=0.2 * ev.abs().mean().item())


def test_list_of_batches_is_the_weighted_mean():
    model = tiny_mlp()
    X, y = data(n=50)
    parts = [(X[:13], y[:13]), (X[13:], y[13:])]
    H_full = dense_hessian(model, CE, (X, y))
    assert torch.allclose(C.full_hessian(model, CE, parts), H_full, atol=1e-13)

    class Loader:  # a re-iterable loader, as DataLoader is
        def __iter__(self):
            return iter(parts)

    v = torch.randn(H_full.shape[0], dtype=torch.float64)
    assert torch.allclose(C.hvp(model, CE, Loader(), v), H_full @ v, atol=1e-13)
    assert torch.allclose(C.hvp(model, CE, Loader(), v, method="forward_over_reverse"), H_full @ v, atol=1e-13)
    with pytest.raises(ValueError, match="one-shot iterator"):
        C.hvp(model, CE, iter(parts), v)


# -------------------------------------------------------------------- modes: BatchNorm, dropout

def manual_bn_loss(model, X, y, train):
    """Oracle forward of Linear -> BatchNorm1d -> Tanh -> Linear written out by hand."""
    lin, bn, _, out = model

    def f(t):
        W1, b1, g, be, W2, b2 = torch.split(t, [p.numel() for p in model.parameters()])
        h = X @ W1.reshape(lin.weight.shape).T + b1
        if train:
            mu, var = h.mean(0), h.var(0, unbiased=False)
        else:
            mu, var = bn.running_mean, bn.running_var
        h = (h - mu) / torch.sqrt(var + bn.eps) * g + be
        return CE(torch.tanh(h) @ W2.reshape(out.weight.shape).T + b2, y)

    return f


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batchnorm_modes_match_manual_forward(mode):
    model = tiny_mlp(bn=True)
    X, y = data()
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    model.train()
    snap = snapshot(model)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    oracle = torch.autograd.functional.hessian(manual_bn_loss(model, X, y, mode == "train"), theta)
    assert torch.allclose(C.full_hessian(model, CE, (X, y), mode=mode), oracle, atol=1e-12)
    C.hessian_eigs(model, CE, (X, y), k=2, mode=mode)
    C.hessian_trace(model, CE, (X, y), mode=mode, tol=0.2)
    C.hessian_density(model, CE, (X, y), mode=mode, steps=5, n_runs=2)
    assert_untouched(model, snap)


def test_dropout_train_mode_is_deterministic_and_model_untouched():
    model = tiny_mlp(dropout=True).eval()
    batch = data()
    snap = snapshot(model)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    h1 = C.hvp(model, CE, batch, v, mode="train")
    h2 = C.hvp(model, CE, batch, v, mode="train", method="forward_over_reverse")
    assert torch.allclose(h1, h2, atol=1e-13)  # the same dropout mask in both
    assert not torch.allclose(h1, C.hvp(model, CE, batch, v, mode="eval"))
    H = C.full_hessian(model, CE, batch, mode="train")
    assert torch.allclose(H @ v, h1, atol=1e-12)
    assert_untouched(model, snap)


def test_mode_required_for_bn_and_dropout():
    with pytest.raises(ValueError, match="mode='train' or mode='eval'"):
        C.hessian_eigs(tiny_mlp(bn=True), CE, data())
    with pytest.raises(ValueError, match="mode="):
        C.hessian_eigs(tiny_mlp(), CE, data(), mode="test")


def test_plain_model_untouched_by_every_call(mlp_case):
    model, batch, _, _ = mlp_case
    snap = snapshot(model)
    C.full_hessian(model, CE, batch)
    C.hessian_eigs(model, CE, batch, k=2, eigenvectors=True)
    C.hessian_trace(model, CE, batch, tol=0.2)
    C.hessian_density(model, CE, batch, steps=4, n_runs=2)
    C.hvp(model, CE, batch, torch.ones(83, dtype=torch.float64), method="forward_over_reverse")
    assert_untouched(model, snap)


# ------------------------------------------------------------------------------------ bad input

def test_bad_inputs():
    model, batch = tiny_mlp(), data()
    P = sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="does not depend on the model"):
        C.hessian_eigs(model, lambda out, y: (y.double() ** 2).mean(), batch)
    with pytest.raises(ValueError, match="does not depend on the model"):
        C.hessian_trace(model, lambda out, y: out.detach().sum(), batch)
    with pytest.raises(ValueError, match=f"larger than the number of parameters \\({P}\\)"):
        C.hessian_eigs(model, CE, batch, k=P + 1)
    with pytest.raises(ValueError, match="2k <= P"):
        C.hessian_eigs(model, CE, batch, k=P // 2 + 1, which="both")
    with pytest.raises(ValueError, match="scalar"):
        C.hessian_eigs(model, lambda o, y: CE(o, y, reduction="none"), batch)
    X, y = batch
    X = X.clone()
    X[3, 2] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        C.hessian_trace(model, CE, (X, y))
    with pytest.raises(ValueError, match="shape"):
        C.hvp(model, CE, batch, torch.ones(P + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="which"):
        C.hessian_eigs(model, CE, batch, which="top")
    with pytest.raises(ValueError, match="tol"):
        C.hessian_trace(model, CE, batch, tol=0)
    with pytest.raises(ValueError, match="method"):
        C.hessian_trace(model, CE, batch, method="exact")
    with pytest.raises(ValueError, match="max_params"):
        C.full_hessian(model, CE, batch, max_params=50)
    with pytest.raises(ValueError, match="pair"):
        C.hessian_eigs(model, CE, [X])


def test_float32_model_tensors_stay_on_its_dtype():
    model = tiny_mlp().float()
    X, y = data()
    r = C.hessian_eigs(model, CE, (X.float(), y), k=1, tol=1e-4, eigenvectors=True)
    assert r.converged and r.eigenvectors.dtype == torch.float32
    ref = torch.linalg.eigvalsh(dense_hessian(tiny_mlp(), CE, data()))[-1]
    assert r.eigenvalues[0].item() == pytest.approx(ref.item(), rel=1e-4)


# --------------------------------------------------------------------------------------- plots

def test_plot_builders(mlp_case):
    model, batch, _, ev = mlp_case
    d = C.hessian_density(model, CE, batch, steps=10, n_runs=3)
    fig = plots.spectral_density(d.grid, d.density, stderr=d.stderr, eigenvalues=ev[-3:])
    assert len(fig.data) >= 2 and fig.layout.yaxis.type == "log"
    r = C.hessian_eigs(model, CE, batch, k=4)
    fig = plots.eigenvalue_bars(r.eigenvalues, errors=r.error_bounds)
    assert list(fig.data[0].y) == pytest.approx(r.eigenvalues.tolist())
    assert "text/html" in plots.mimebundle(fig)


def test_hutchinson_variance_closed_forms_against_enumeration_and_monte_carlo():
    import itertools

    import numpy as np

    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))  # not symmetric: z^T A z only sees its symmetric part
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=6)))  # every Rademacher probe
    vals = np.einsum("bi,ij,bj->b", signs, A, signs)
    assert np.mean(vals) == pytest.approx(np.trace(A), abs=1e-12)
    assert C.hutchinson_variance(A) == pytest.approx(np.var(vals), rel=1e-12)
    z = rng.normal(size=(400_000, 6))
    g = np.einsum("bi,ij,bj->b", z, A, z)
    v = C.hutchinson_variance(A, "gaussian")
    # standard error of a sample variance: sqrt((m4 - var^2) / N)
    se = np.sqrt((np.mean((g - g.mean()) ** 4) - np.var(g) ** 2) / len(g))
    assert abs(np.var(g) - v) < 4 * se
    assert C.hutchinson_variance(np.diag([1.0, 2.0, 3.0])) == 0.0
    assert C.hutchinson_variance(torch.eye(3), "gaussian") == pytest.approx(6.0)
