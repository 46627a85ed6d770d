"""Oracle tests for tdlcourse.landscape: closed-form quadratic surfaces, exact grids and norms."""

import copy
import math

import pytest
import torch
from torch import nn

from tdlcourse import landscape as LS
from tdlcourse import plots
from tdlcourse import curvature as C

from conftest import assert_untouched, snapshot

CE = nn.functional.cross_entropy
MSE = nn.functional.mse_loss



def least_squares(seed=0, n=60, d=5):
    """Linear regression at its exact minimiser: L(theta + u) = L0 + u^T (X^T X / n) u exactly."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(X, y).solution.T)
    return model, (X, y), X.T @ X / n


def mlp(seed=0, bn=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)] if bn else \
        [nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)]
    return nn.Sequential(*layers).double()


def cls_data(seed=0, n=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


# ---------------------------------------------------------------------------------- directions

def test_filter_normalised_directions_have_the_weights_filter_norms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 7))
    d = LS.random_directions(model, 2, seed=3)
    assert d.shape == (2, sum(p.numel() for p in model.parameters())) and d.dtype == torch.float32
    params = dict(model.named_parameters())
    for k in range(2):
        parts = dict(zip(params, torch.split(d[k], [p.numel() for p in params.values()])))
        for name, p in params.items():
            dk = parts[name].reshape(p.shape)
            if p.ndim == 1:  # biases and BatchNorm weights ignored by default (Li et al. 'biasbn')
                assert torch.all(dk == 0), name
            else:
                assert torch.allclose(dk.reshape(p.shape[0], -1).norm(dim=1),
                                      p.detach().reshape(p.shape[0], -1).norm(dim=1), rtol=1e-5), name
    # Without ignore every 1-D entry is a filter of size one: |d_i| = |theta_i|.
    d = LS.random_directions(model, 1, ignore=(), seed=3)[0]
    bias = dict(zip(params, torch.split(d, [p.numel() for p in params.values()])))["4.bias"]
    assert torch.allclose(bias.abs(), params["4.bias"].detach().abs(), rtol=1e-5)
    # Same seed -> same directions; different seed -> different.
    assert torch.equal(LS.random_directions(model, 2, seed=3), LS.random_directions(model, 2, seed=3))
    assert not torch.equal(LS.random_directions(model, 2, seed=3), LS.random_directions(model, 2, seed=4))


def test_layer_and_no_normalisation():
    model = mlp()
    params = dict(model.named_parameters())
    d = LS.random_directions(model, 1, normalization="layer", ignore=("bias",))[0]
    parts = dict(zip(params, torch.split(d, [p.numel() for p in params.values()])))
    for name, p in params.items():
        if name.endswith("weight"):
            assert parts[name].norm().item() == pytest.approx(p.norm().item(), rel=1e-12)
    raw = LS.random_directions(model, 1, normalization="none", ignore=(), seed=7)[0]
    g = torch.Generator().manual_seed(7)
    assert torch.allclose(raw, torch.randn(1, raw.numel(), generator=g, dtype=torch.float64)[0])


# ------------------------------------------------------------------------------------ surfaces

def test_surface_2d_is_the_closed_form_quadratic_and_centred():
    model, batch, G = least_squares()
    X, y = batch
    d = LS.random_directions(model, 2, normalization="none", ignore=())
    s = LS.surface_2d(model, MSE, batch, d, span=(0.6, 0.4), steps=(7, 5))
    # Exact grid: odd, antisymmetric, 0 at the centre.
    assert torch.equal(s.alphas, -s.alphas.flip(0)) and torch.equal(s.betas, -s.betas.flip(0))
    assert s.alphas[3] == 0 and s.betas[2] == 0 and s.center == (3, 2)
    assert s.alphas[-1].item() == pytest.approx(0.6) and s.betas[0].item() == pytest.approx(-0.4)
    # The trained point is on the grid: the centre value is the model's own loss, exactly.
    assert s.losses[3, 2].item() == MSE(model(X), y).item()
    # Closed form: L(theta + a d1 + b d2) = L0 + [a b] (D G D^T) [a b]^T.
    L0 = MSE(model(X), y).item()
    M = d @ G @ d.T
    A, B = torch.meshgrid(s.alphas, s.betas, indexing="ij")
    exact = L0 + M[0, 0] * A ** 2 + 2 * M[0, 1] * A * B + M[1, 1] * B ** 2
    assert torch.allclose(s.losses, exact, rtol=1e-12, atol=1e-12)
    # At a minimum the quadratic surface is symmetric under (a, b) -> (-a, -b).
    assert torch.allclose(s.losses, s.losses.flip(0, 1), rtol=1e-12)


def test_surface_chunked_vmap_equals_loop_and_batches_are_weighted():
    model, (X, y) = mlp(), cls_data(n=30)
    d = LS.random_directions(model, 2)
    loop = LS.surface_2d(model, CE, (X, y), d, steps=5, chunk=1)
    vec = LS.surface_2d(model, CE, (X, y), d, steps=5, chunk=7)
    parts = LS.surface_2d(model, CE, [(X[:11], y[:11]), (X[11:], y[11:])], d, steps=5)
    assert torch.allclose(loop.losses, vec.losses, rtol=1e-12)
    assert torch.allclose(loop.losses, parts.losses, rtol=1e-12)


class NotPlainSequential(nn.Sequential):
    """Same layers, but not a plain nn.Sequential: the shared-first-layer shortcut is off."""


def test_shared_first_layer_matches_plain_forward_and_keeps_the_centre_exact():
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)]
    fast_model = nn.Sequential(*layers).double()
    plain_model = NotPlainSequential(*layers).double()
    assert LS._affine_head(fast_model, LS.param_spec(fast_model)) is not None
    assert LS._affine_head(plain_model, LS.param_spec(plain_model)) is None
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(20, 1, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (20,), generator=g)
    d = LS.random_directions(fast_model, 2)
    fast = LS.surface_2d(fast_model, CE, (X, y), d, steps=5, span=2.0)
    plain = LS.surface_2d(plain_model, CE, (X, y), d, steps=5, span=2.0)
    vec = LS.surface_2d(fast_model, CE, (X, y), d, steps=5, span=2.0, chunk=4)
    assert torch.allclose(fast.losses, plain.losses, rtol=1e-12) and torch.allclose(vec.losses, plain.losses, rtol=1e-12)
    assert fast.losses[2, 2].item() == CE(fast_model(X), y).item()
    other = copy.deepcopy(fast_model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    line = LS.interpolate(fast_model, other, CE, (X, y), steps=3)
    assert line.losses[0].item() == CE(fast_model(X), y).item() and line.losses[2].item() == CE(other(X), y).item()
    handle = fast_model.register_forward_hook(lambda m, i, o: o)  # hooks would be skipped: shortcut off
    assert LS._affine_head(fast_model, LS.param_spec(fast_model)) is None
    handle.remove()


def test_surface_1d():
    model, batch, G = least_squares(1)
    d = LS.random_directions(model, 1, normalization="none", ignore=(), seed=2)
    s = LS.surface_1d(model, MSE, batch, d, span=2.0, steps=9)
    L0 = MSE(model(batch[0]), batch[1]).item()
    assert s.losses[4].item() == L0 and s.alphas[4] == 0
    assert torch.allclose(s.losses, L0 + (d[0] @ G @ d[0]) * s.alphas ** 2, rtol=1e-12)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batchnorm_surface_centre_and_model_untouched(mode):
    model = mlp(bn=True)
    X, y = cls_data()
    model.train()
    for _ in range(3):
        model(X)  # non-trivial running statistics
    model.eval()
    other = mlp(1, bn=True)
    snap = snapshot(model)
    d = LS.random_directions(model, 2)
    s = LS.surface_2d(model, CE, (X, y), d, steps=3, mode=mode)
    ref = copy.deepcopy(model).train(mode == "train")
    with torch.no_grad():
        assert s.losses[1, 1].item() == pytest.approx(CE(ref(X), y).item(), rel=1e-14)
    LS.surface_1d(model, CE, (X, y), d[0], steps=3, mode=mode)
    LS.interpolate(model, other, CE, (X, y), steps=3, mode=mode, recalibrate=(X, y))
    curve = LS.train_bezier(model, other, CE, (X, y), steps=3, mode=mode)
    LS.evaluate_curve(model, curve, CE, (X, y), steps=3, mode=mode, recalibrate=(X, y))
    assert_untouched(model, snap)
    with pytest.raises(ValueError, match="mode='train' or mode='eval'"):
        LS.surface_2d(model, CE, (X, y), d, steps=3)


# ------------------------------------------------------------------------ interpolation, curves

def test_interpolate_endpoints_exact_and_quadratic():
    model_a, batch, G = least_squares()
    model_b = copy.deepcopy(model_a)
    with torch.no_grad():
        model_b.weight.add_(torch.tensor([[0.3, -0.2, 0.1, 0.5, -0.4]], dtype=torch.float64))
    r = LS.interpolate(model_a, model_b, MSE, batch, steps=5, lo=-0.5, hi=1.5)
    assert r.alphas.tolist() == [-0.5, 0.0, 0.5, 1.0, 1.5]
    X, y = batch
    assert r.losses[1].item() == MSE(model_a(X), y).item()
    assert r.losses[3].item() == MSE(model_b(X), y).item()
    u = (model_b.weight - model_a.weight).detach()[0]
    assert torch.allclose(r.losses, r.losses[1] + (u @ G @ u) * r.alphas ** 2, rtol=1e-12)


class AB(nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float64))

    def forward(self, x):
        return self.a * self.b * x


def test_bezier_connects_two_minima_of_the_ab_loss():
    # (1/2)(ab - 1)^2 has the hyperbola ab = 1 of minima; the straight line between (2, 1/2) and
    # (1/2, 2) climbs to (1/2)(1.5625 - 1)^2 = 0.158 at its midpoint, a trained Bezier bend stays low.
    def loss(out, y):
        return 0.5 * ((out - y) ** 2).sum()

    batch = (torch.ones(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    a, b = AB(2.0, 0.5), AB(0.5, 2.0)
    line = LS.interpolate(a, b, loss, batch, steps=11)
    assert line.losses.max().item() == pytest.approx(0.5 * 0.5625 ** 2, rel=1e-12)
    curve = LS.train_bezier(a, b, loss, batch, steps=300, lr=0.05)
    assert torch.equal(curve.point(0.0), curve.theta_a) and torch.equal(curve.point(1.0), curve.theta_b)
    on_curve = LS.evaluate_curve(a, curve, loss, batch, steps=11)
    assert on_curve.losses[0] == 0 and on_curve.losses[-1] == 0
    assert on_curve.losses.max().item() < 0.1 * line.losses.max().item()
    assert curve.train_losses[-20:].mean() < curve.train_losses[:20].mean()


def test_batchnorm_recalibration_is_the_data_statistics():
    model = mlp(bn=True).eval()
    X, y = cls_data(n=40)
    parts = [(X[:25], y[:25]), (X[25:], y[25:])]
    spec = LS.param_spec(model)
    bufs = LS._recalibrated_buffers(model, spec, LS.flat_params(model), parts)
    with torch.no_grad():
        h = [model[0](x) for x, _ in parts]
    mean = (25 * h[0].mean(0) + 15 * h[1].mean(0)) / 40
    var = (25 * h[0].var(0) + 15 * h[1].var(0)) / 40  # batch-weighted mean of unbiased variances
    assert torch.allclose(bufs["1.running_mean"], mean, atol=1e-12)
    assert torch.allclose(bufs["1.running_var"], var, atol=1e-12)


# ----------------------------------------------------------------------------------- trajectory

def test_trajectory_pca_recovers_a_plane():
    g = torch.Generator().manual_seed(0)
    P = 50
    U = torch.linalg.qr(torch.randn(P, 2, generator=g, dtype=torch.float64))[0].T
    final = torch.randn(P, generator=g, dtype=torch.float64)
    t = torch.linspace(0, 1, 12, dtype=torch.float64)
    ab = torch.stack([3 * (1 - t), torch.sin(4 * t) * (1 - t)], 1)  # ends at (0, 0)
    pts = [final + c @ U for c in ab]
    r = LS.trajectory_pca(pts)
    assert r.explained_variance_ratio.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(r.directions @ r.directions.T, torch.eye(2, dtype=torch.float64), atol=1e-12)
    # The directions span the plane and the coordinates are the positions in it (up to rotation).
    assert (r.directions @ U.T).det().abs().item() == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(r.coordinates.norm(dim=1), ab.norm(dim=1), atol=1e-12)
    assert torch.equal(r.coordinates[-1], torch.zeros(2, dtype=torch.float64)) and torch.equal(r.center, final)
    models = [nn.Linear(5, 10).double() for _ in range(4)]
    assert LS.trajectory_pca(models, 1).directions.shape == (1, 60)


# ------------------------------------------------------------------------------------ bad input

def test_bad_inputs():
    model, batch = mlp(), cls_data()
    P = sum(p.numel() for p in model.parameters())
    d = LS.random_directions(model, 2)
    with pytest.raises(ValueError, match=f"shape \\(2, {P}\\)"):
        LS.surface_2d(model, CE, batch, d[:, :-1])
    with pytest.raises(ValueError, match=f"shape \\(2, {P}\\)"):
        LS.surface_2d(model, CE, batch, d[0])
    with pytest.raises(ValueError, match="odd"):
        LS.surface_2d(model, CE, batch, d, steps=20)
    with pytest.raises(ValueError, match="span"):
        LS.surface_2d(model, CE, batch, d, span=-1.0)
    with pytest.raises(ValueError, match="normalization"):
        LS.random_directions(model, normalization="batch")
    with pytest.raises(ValueError, match="ignore"):
        LS.random_directions(model, ignore=("weights",))
    with pytest.raises(ValueError, match="same architecture"):
        LS.interpolate(model, nn.Sequential(nn.Linear(4, 3)).double(), CE, batch)
    with pytest.raises(ValueError, match="scalar"):
        LS.surface_1d(model, lambda o, y: CE(o, y, reduction="none"), batch, d[0], steps=3)
    X, y = batch
    Xn = X.clone()
    Xn[0, 0] = math.nan
    with pytest.raises(ValueError, match="trained point"):
        LS.surface_2d(model, CE, (Xn, y), d, steps=3)
    huge = d * 1e200  # overflows away from the centre: kept as inf/NaN, with a warning
    with pytest.warns(RuntimeWarning, match="NaN/inf"):
        s = LS.surface_1d(model, CE, batch, huge[0], steps=3)
    assert math.isfinite(s.losses[1].item())


# --------------------------------------------------------------------------------------- plots

def test_loss_surface_figure():
    model, batch, _ = least_squares()
    d = LS.random_directions(model, 2, normalization="none", ignore=())
    s = LS.surface_2d(model, MSE, batch, d, steps=(5, 3))
    fig = plots.loss_surface(s.alphas, s.betas, s.losses, log=True, path=[[0.5, 0.2], [0.0, 0.0]])
    surf = fig.data[0]
    assert len(surf.z) == 3 and len(surf.z[0]) == 5  # rows follow betas, columns alphas
    assert surf.z[1][2] == pytest.approx(math.log10(s.losses[2, 1].item()))
    assert any(t.name == "trained point" for t in fig.data)
    with pytest.raises(ValueError, match="shape"):
        plots.loss_surface(s.alphas, s.betas, s.losses.T)


# ------------------------------------------------------------ chapter 10: barriers and convexity maps

def test_path_barrier_of_hand_made_profiles_and_of_a_trivial_path():
    assert LS.path_barrier([1.0, 3.0, 2.0]) == pytest.approx(1.0)  # 3 - max(1, 2)
    assert LS.path_barrier(torch.tensor([2.0, 1.0, 0.5])) == 0.0  # never above its higher end
    assert LS.path_barrier(LS.Surface1D(torch.linspace(0, 1, 3), torch.tensor([0.0, -1.0, 0.5]))) == 0.0  # the max is an end
    m = mlp(1)
    line = LS.interpolate(m, copy.deepcopy(m), CE, cls_data(), steps=7)
    assert LS.path_barrier(line) == pytest.approx(0.0, abs=1e-12)  # from a model to itself: flat
    with pytest.raises(ValueError, match="losses"):
        LS.path_barrier([1.0])


def test_convexity_map_matches_the_dense_hessian_at_every_grid_point():
    m = mlp(2)
    data = cls_data(2)
    before = snapshot(m)
    dirs = LS.random_directions(m, 2, seed=3)
    cm = LS.convexity_map(m, CE, data, dirs, span=0.8, steps=(3, 5), tol=1e-6, max_steps=200)
    assert_untouched(m, before)
    assert cm.ratio.shape == (3, 5) and bool(cm.converged.all())
    theta = LS.flat_params(m)
    work = copy.deepcopy(m)
    spec = LS.param_spec(m)
    for i, a in enumerate(cm.alphas.tolist()):
        for j, b in enumerate(cm.betas.tolist()):
            with torch.no_grad():
                for name, v in spec.unflatten(theta + a * dirs[0] + b * dirs[1]).items():
                    work.get_parameter(name).copy_(v)
            ev = torch.linalg.eigvalsh(C.full_hessian(work, CE, data))
            assert float(cm.lambda_max[i, j]) == pytest.approx(float(ev[-1]), rel=1e-5, abs=1e-9)
            assert float(cm.lambda_min[i, j]) == pytest.approx(float(ev[0]), rel=1e-5, abs=1e-9)
            exact = abs(float(ev[0] / ev[-1]))
            assert abs(float(cm.ratio[i, j]) - exact) <= float(cm.ratio_error[i, j]) + 1e-9
    assert cm.mean_ratio == pytest.approx(float(cm.ratio.mean()))


def test_convexity_map_is_zero_for_a_convex_quadratic_and_reports_loose_tolerance():
    model, data, A = least_squares(seed=4)
    dirs = LS.random_directions(model, 2, normalization="none", seed=1)
    cm = LS.convexity_map(model, MSE, data, dirs, steps=3, tol=1e-8)
    ev = torch.linalg.eigvalsh(2 * A)  # MSE's Hessian is 2 X^T X / n everywhere
    torch.testing.assert_close(cm.lambda_max, torch.full((3, 3), float(ev[-1]), dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(cm.ratio, (ev[0] / ev[-1]).abs().expand(3, 3).double(), rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="steps"):
        LS.convexity_map(model, MSE, data, dirs, steps=4)
    with pytest.raises(ValueError, match="tol"):
        LS.convexity_map(model, MSE, data, dirs, tol=0.0)
