"""One bad argument for every public function: the error names the parameter and the bad value.

The table ``CASES`` maps each public function and class of every student-facing module of
``tdlcourse`` (every module but ``grading`` and the private ``_*`` ones; public = ``__all__`` if the
module has one, else the functions and classes not starting with ``_`` that the module defines) to
one call with one bad argument, the parameter and the text of the bad value the message must
contain, and the exception expected (``ValueError`` unless the documented contract is another).
``EXEMPT`` lists, with a reason, what takes no argument to validate (result records, exceptions,
helpers taking a figure or a path). ``test_every_public_function_has_a_case`` fails, naming them,
for public functions in neither table: whoever adds a function adds its bad-input case here.

Cases marked ``known_gap`` are functions whose current message does not yet name the parameter and
value (or that do not check the argument at all); they are strict xfails, so they turn red once
fixed: then delete the ``known_gap`` to make the case an ordinary one.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

import tdlcourse
from tdlcourse import (approximation, capacity, checkpoint, curvature, data, deeplinear, device, implicit, infotheory, landscape,
                       meanfield, models, ntk, pacbayes, parity, plots, pruning, randmat, randomfeatures, randomization, regions,
                       simplicity, spectral, train, validate, widgets)


# ----------------------------------------------------------------------------- what is public


def student_modules() -> list[str]:
    """Top-level modules and packages of tdlcourse, without ``grading`` and private ``_*`` modules."""
    return sorted(m.name for m in pkgutil.iter_modules(tdlcourse.__path__)
                  if m.name != "grading" and not m.name.startswith("_"))


def _defined_in(obj, module) -> bool:
    home = getattr(obj, "__module__", None) or ""
    return home == module.__name__ or home.startswith(module.__name__ + ".")  # a package's submodules too


def public_api() -> dict[str, object]:
    """``{"module.name": object}`` for every public function and class (constants are left out)."""
    out: dict[str, object] = {}
    for name in student_modules():
        mod = importlib.import_module(f"tdlcourse.{name}")
        if hasattr(mod, "__all__"):
            names = list(mod.__all__)
        else:
            names = [k for k, v in vars(mod).items()
                     if not k.startswith("_") and (inspect.isfunction(v) or inspect.isclass(v)) and _defined_in(v, mod)]
        for k in names:
            obj = getattr(mod, k)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                out[f"{name}.{k}"] = obj
    return out


# ----------------------------------------------------------------------------- small inputs


def _mlp(d_in: int = 2, d_out: int = 1) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d_in, 3), nn.ReLU(), nn.Linear(3, d_out))


def _batch(d_in: int = 2, n: int = 8):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d_in, generator=g), torch.randn(n, 1, generator=g)


def _mse(out, y):
    return ((out - y) ** 2).mean()


def _data() -> data.Data:
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1] * 4)
    return data.Data(x, y, x, y, num_classes=2, name="toy")


def _nparams(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


_TMP = Path(tempfile.gettempdir())  # the bad calls fail before writing anything there


def _layers():
    return importlib.import_module("tdlcourse.layers")  # new (not yet committed): imported when its cases run


def _enter(cm):
    with cm:
        pass


def _curve():
    m = _mlp()
    theta = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    return landscape.BezierCurve(theta, theta.clone(), theta.clone(), torch.zeros(1))


def _posterior():
    """A one-step posterior of a tiny two-output net on the toy data (only bad arguments follow)."""
    d = _data()
    return pacbayes.optimize_posterior(_mlp(2, 2), _mlp(2, 2), d.x_train, d.y_train, steps=1, batch_size=None)


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Bad:
    """``call()`` passes one bad argument ``param``; the message must hold ``param`` (as a word) and
    ``value`` (the bad value as the message writes it: ``-1``, ``'bogus'``, a shape or a type)."""

    call: Callable[[], object]
    param: str
    value: str
    error: type[BaseException] = ValueError
    known_gap: str | None = None  # KNOWN_GAP: why the current message fails (a strict xfail)


CASES: dict[str, Bad] = {
    # ---- approximation
    "approximation.tent_power": Bad(lambda: approximation.tent_power(0.5, 0), "k", "0"),
    "approximation.sawtooth_mlp": Bad(lambda: approximation.sawtooth_mlp(1.5), "k", "1.5"),
    "approximation.tent_pieces": Bad(lambda: approximation.tent_pieces(-2), "k", "-2"),
    "approximation.count_pieces": Bad(lambda: approximation.count_pieces([0.0, 1.0], [0.0]), "values", "(1,)"),
    "approximation.compose": Bad(lambda: approximation.compose([]), "maps", "[]"),
    "approximation.compose_pieces": Bad(lambda: approximation.compose_pieces([([0.0, 1.0], [0.0, 1.0])], tol=-1.0),
                                        "tol", "-1"),
    "approximation.squared_error": Bad(lambda: approximation.squared_error([0.0, 1.0], [0.0, 1.0], [0.0, 2.0],
                                                                           [0.0, 1.0]), "fit_breakpoints", "[0, 2]"),
    "approximation.affine_fit_error": Bad(lambda: approximation.affine_fit_error([0.0, 1.0, 2.0], [0.0, 1.0]),
                                          "values", "(2,)"),
    "approximation.best_affine_error": Bad(lambda: approximation.best_affine_error(0), "k", "0"),
    "approximation.max_pieces": Bad(lambda: approximation.max_pieces(0, 2), "width", "0"),
    "approximation.few_pieces_error_lower_bound": Bad(
        lambda: approximation.few_pieces_error_lower_bound(3, 2, norm="l2"), "norm", "'l2'"),
    "approximation.product_gate": Bad(lambda: approximation.product_gate(0.1, 0.2, 0.1, "tanh"), "activation", "'tanh'"),
    "approximation.product_gate_error_coefficient": Bad(
        lambda: approximation.product_gate_error_coefficient(0.1, 0.2, "relu"), "activation", "'relu'"),
    "approximation.mlp_params": Bad(lambda: approximation.mlp_params((2, 0)), "widths[1]", "0"),
    "approximation.equal_parameter_widths": Bad(lambda: approximation.equal_parameter_widths(0, 3), "depth", "0"),
    "approximation.net_pieces": Bad(lambda: approximation.net_pieces(_mlp(2, 1)), "model", "2"),
    "approximation.fit_sawtooth": Bad(lambda: approximation.fit_sawtooth((2,), (0,)), "ks[0]", "0"),
    # ---- capacity
    "capacity.vc_gap": Bad(lambda: capacity.vc_gap(10, 100, 1.5), "delta", "1.5"),
    "capacity.vc_vacuous_dimension": Bad(lambda: capacity.vc_vacuous_dimension(0, 0.05), "m", "0"),
    "capacity.rademacher_linear": Bad(lambda: capacity.rademacher_linear(np.zeros((0, 2))), "points", "(0, 2)"),
    "capacity.mcallester_bound": Bad(lambda: capacity.mcallester_bound(1.5, 1.0, 100, 0.05), "emp_risk", "1.5"),
    "capacity.kl_bernoulli": Bad(lambda: capacity.kl_bernoulli(1.5, 0.5), "q", "1.5"),
    "capacity.kl_inverse": Bad(lambda: capacity.kl_inverse(1.5, 0.1), "q", "1.5"),
    "capacity.pac_bayes_kl_bound": Bad(lambda: capacity.pac_bayes_kl_bound(0.1, -1.0, 100, 0.05), "kl", "-1"),
    "capacity.path_norm": Bad(lambda: capacity.path_norm(_mlp(), p=0.5), "p", "0.5"),
    "capacity.spectral_complexity": Bad(lambda: capacity.spectral_complexity(nn.Linear(2, 2)), "model", "Linear"),
    "capacity.margins": Bad(lambda: capacity.margins(_mlp(2, 2), torch.zeros(8, 2), torch.zeros(3, dtype=torch.long)),
                            "y", "3"),
    "capacity.measures": Bad(lambda: capacity.measures(_mlp(2, 2), (torch.zeros(8, 2), torch.zeros(8, dtype=torch.long)),
                                                       margin_quantile=1.5), "margin_quantile", "1.5"),
    "capacity.path_norm_arrays": Bad(lambda: capacity.path_norm_arrays([np.eye(2)], p=0.5), "p", "0.5"),
    "capacity.normalized_margins": Bad(lambda: capacity.normalized_margins(_mlp(2, 2), torch.zeros(8, 2),
                                                                           torch.zeros(3, dtype=torch.long)), "y", "3"),
    # ---- checkpoint
    "checkpoint.atomic_write_bytes": Bad(lambda: checkpoint.atomic_write_bytes(_TMP / "bad.bin", "text"),
                                         "payload", "str", TypeError),
    "checkpoint.save": Bad(lambda: checkpoint.save(_TMP / "bad.pt", 3), "model", "int", TypeError),
    # ---- deeplinear
    "deeplinear.saxe_time": Bad(lambda: deeplinear.saxe_time(3.0, 0.01, 3.5), "uf", "3.5"),
    "deeplinear.saxe_trajectory": Bad(lambda: deeplinear.saxe_trajectory(-1.0, 0.01, [0.0]), "s", "-1"),
    "deeplinear.train_deep_linear": Bad(lambda: deeplinear.train_deep_linear(np.eye(2), (3,), lr=0.0), "lr", "0"),
    "deeplinear.learning_times": Bad(lambda: deeplinear.learning_times(
        deeplinear.train_deep_linear(np.eye(2), (3,), steps=1), lo=1.5), "lo", "1.5"),
    # ---- curvature
    "curvature.hutchinson_variance": Bad(lambda: curvature.hutchinson_variance(np.eye(2), "sobol"), "probe", "'sobol'"),
    "curvature.HessianOperator": Bad(lambda: curvature.HessianOperator(_mlp(), _mse, _batch(), method="bogus"),
                                     "method", "'bogus'"),
    "curvature.hvp": Bad(lambda: curvature.hvp(_mlp(), _mse, _batch(), torch.zeros(3)), "v", "(3,)"),
    "curvature.hessian_eigs": Bad(lambda: curvature.hessian_eigs(_mlp(), _mse, _batch(), k=0), "k", "0"),
    "curvature.hessian_trace": Bad(lambda: curvature.hessian_trace(_mlp(), _mse, _batch(), method="bogus"),
                                   "method", "'bogus'"),
    "curvature.hutchpp_trace": Bad(lambda: curvature.hutchpp_trace(lambda v: v, 4, 0), "budget", "0"),
    "curvature.hessian_density": Bad(lambda: curvature.hessian_density(_mlp(), _mse, _batch(), steps=0), "steps", "0"),
    "curvature.gaussian_smooth": Bad(lambda: curvature.gaussian_smooth(torch.zeros(1, 2), torch.ones(1, 2),
                                                                       torch.linspace(-1, 1, 5), 0.0), "width", "0"),
    "curvature.full_hessian": Bad(lambda: curvature.full_hessian(_mlp(), _mse, _batch(), max_params=5),
                                  "max_params", "5"),
    # ---- data
    "data.Data": Bad(lambda: data.Data(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1, 1), torch.zeros(1),
                                       num_classes=0), "num_classes", "0"),
    "data.digits": Bad(lambda: data.digits(test_fraction=1.0), "test_fraction", "1"),
    "data.corrupt_labels": Bad(lambda: data.corrupt_labels(torch.zeros(4, dtype=torch.long), 1.5, 10), "fraction", "1.5"),
    "data.shuffle_labels": Bad(lambda: data.shuffle_labels(torch.zeros(4), seed=1.5), "seed", "1.5"),
    "data.gaussian_like": Bad(lambda: data.gaussian_like(torch.zeros(4, 2), seed="0"), "seed", "'0'"),
    "data.sha256_file": Bad(lambda: data.sha256_file(__file__, chunk=0), "chunk", "0"),
    "data.fetch": Bad(lambda: data.fetch("svhn"), "name", "'svhn'"),
    "data.mnist": Bad(lambda: data.mnist("/nonexistent/tdl", download=False, n_train=0), "n_train", "0"),
    "data.cifar10": Bad(lambda: data.cifar10("/nonexistent/tdl", download=False, n_test=-1), "n_test", "-1"),
    # ---- device
    "device.get_device": Bad(lambda: device.get_device("gpu"), "name", "'gpu'"),
    "device.resolve_scale": Bad(lambda: device.resolve_scale("huge"), "scale", "'huge'"),
    "device.by_scale": Bad(lambda: device.by_scale("huge", ci=1, cpu=2, gpu=3), "scale", "'huge'"),
    "device.seed_everything": Bad(lambda: device.seed_everything(-1), "seed", "-1"),
    "device.resolve_precision": Bad(lambda: device.resolve_precision("fp16", "cpu"), "precision", "'fp16'"),
    "device.matmul_precision": Bad(lambda: _enter(device.matmul_precision("fp16", "cpu")), "precision", "'fp16'"),
    "device.autocast": Bad(lambda: device.autocast("fp16", "cpu"), "precision", "'fp16'"),
    "device.compile_backend": Bad(lambda: device.compile_backend("turbo"), "compile", "'turbo'"),
    # ---- implicit
    "implicit.min_norm_interpolant": Bad(lambda: implicit.min_norm_interpolant(np.ones((2, 3)), np.ones(3)), "y", "(3,)"),
    "implicit.gd_least_squares": Bad(lambda: implicit.gd_least_squares(np.eye(2), np.ones(2), steps=0), "steps", "0"),
    "implicit.max_margin": Bad(lambda: implicit.max_margin([[1.0, 0.0], [-1.0, 0.0]], [1.0, 1.0]), "X",
                               "not linearly separable"),
    "implicit.max_margin_arrays": Bad(lambda: implicit.max_margin_arrays([[1.0], [2.0]], [1.0, 0.5]), "y", "0.5"),
    "implicit.logistic_gd": Bad(lambda: implicit.logistic_gd(np.eye(2), [1.0, -1.0], record=1), "record", "1"),
    "implicit.min_l1_interpolant": Bad(lambda: implicit.min_l1_interpolant(np.ones((2, 2)), [[1.0, 2.0]]), "y", "(1, 2)"),
    "implicit.diagonal_net": Bad(lambda: implicit.diagonal_net(np.eye(2), np.ones(2), -1.0), "alpha", "-1"),
    "implicit.diagonal_net_limit": Bad(lambda: implicit.diagonal_net_limit(np.eye(2), np.ones(2), 0.0), "alpha", "0"),
    "implicit.effective_rank": Bad(lambda: implicit.effective_rank(np.zeros((2, 2))), "M", "zero matrix"),
    "implicit.deep_matrix_completion": Bad(lambda: implicit.deep_matrix_completion(np.ones((2, 2)), np.zeros((2, 2), bool), 2),
                                           "mask", "no observed entry"),
    "implicit.separable_data": Bad(lambda: implicit.separable_data(0, 2), "n", "0"),
    "implicit.sparse_regression": Bad(lambda: implicit.sparse_regression(4, 3, 5), "k", "5"),
    "implicit.low_rank_completion": Bad(lambda: implicit.low_rank_completion(3, 1, 10), "observed", "10"),
    # ---- infotheory
    "infotheory.entropy_discrete": Bad(lambda: infotheory.entropy_discrete([]), "labels", "(0,)"),
    "infotheory.mutual_information_discrete": Bad(lambda: infotheory.mutual_information_discrete([], [0]),
                                                  "x_ids", "(0,)"),
    "infotheory.mutual_information_joint": Bad(lambda: infotheory.mutual_information_joint([[-0.1, 1.1]]),
                                               "p_xy[0, 0]", "-0.1"),
    "infotheory.mutual_information_binned": Bad(lambda: infotheory.mutual_information_binned(np.ones(3), [0, 1, 0],
                                                                                            bins=0), "bins", "0"),
    "infotheory.bin_activations": Bad(lambda: infotheory.bin_activations(np.ones(3), bins=2.5), "bins", "2.5"),
    "infotheory.information_plane": Bad(lambda: infotheory.information_plane([[np.ones((3, 2))]], np.arange(3),
                                                                             [0, 1, 0], bins=-1), "bins", "-1"),
    "infotheory.InformationPlane": Bad(lambda: infotheory.InformationPlane(np.arange(3), [0, 1, 0], bins=0)
                                       .record([np.ones((3, 2))]), "bins", "0"),
    # ---- landscape
    "landscape.random_directions": Bad(lambda: landscape.random_directions(_mlp(), n=0), "n", "0"),
    "landscape.surface_1d": Bad(lambda: landscape.surface_1d(_mlp(), _mse, _batch(), torch.zeros(_nparams(_mlp())),
                                                             steps=4), "steps", "4"),
    "landscape.surface_2d": Bad(lambda: landscape.surface_2d(_mlp(), _mse, _batch(), torch.zeros(2, _nparams(_mlp())),
                                                             span=(1.0, 2.0, 3.0)), "span", "(1.0, 2.0, 3.0)"),
    "landscape.interpolate": Bad(lambda: landscape.interpolate(_mlp(), _mlp(), _mse, _batch(), steps=1), "steps", "1"),
    "landscape.train_bezier": Bad(lambda: landscape.train_bezier(_mlp(), _mlp(), _mse, _batch(), lr=-1.0), "lr", "-1"),
    "landscape.evaluate_curve": Bad(lambda: landscape.evaluate_curve(_mlp(), _curve(), _mse, _batch(), steps=1),
                                    "steps", "1"),
    "landscape.trajectory_pca": Bad(lambda: landscape.trajectory_pca([torch.zeros(4), torch.ones(4), torch.arange(4.0)],
                                                                     n_components=5), "n_components", "5"),
    # ---- layers
    "layers.activation": Bad(lambda: _layers().activation("bogus"), "activation", "'bogus'"),
    "layers.parse_mlp": Bad(lambda: _layers().parse_mlp(nn.Linear(2, 2)), "model", "Linear"),
    # ---- meanfield
    "meanfield.xi_c": Bad(lambda: meanfield.xi_c("tanh", -1.0, 0.0), "sigma_w2", "-1"),
    "meanfield.iterate_maps": Bad(lambda: meanfield.iterate_maps("tanh", 1.0, 0.1, q0=1.0, c0=0.5, depth=0),
                                  "depth", "0"),
    "meanfield.simulate_signal": Bad(lambda: meanfield.simulate_signal("tanh", 1.0, 0.1, q0=1.0, c0=0.5, depth=3,
                                                                       width=1, seeds=(0, 1)), "width", "1"),
    "meanfield.fit_decay_length": Bad(lambda: meanfield.fit_decay_length([[1.0, 0.5, 0.2]] * 3, min_snr=-1.0),
                                      "min_snr", "-1"),
    "meanfield.correlation_decay": Bad(lambda: meanfield.correlation_decay("tanh", 1.2, -0.05, depth=5, width=16,
                                                                           seeds=(0, 1)), "sigma_b2", "-0.05"),
    "meanfield.get_activation": Bad(lambda: meanfield.get_activation("sigmoid"), "activation", "'sigmoid'"),
    "meanfield.pair_expectation": Bad(lambda: meanfield.pair_expectation("tanh", 1.0, -1.0, 0.5), "q2", "-1"),
    "meanfield.qmap": Bad(lambda: meanfield.qmap("tanh", [1.0, -2.0], 1.0, 0.1), "q[1]", "-2"),
    "meanfield.cmap": Bad(lambda: meanfield.cmap("tanh", 1.0, 1.5, 1.0, 0.1), "c", "1.5"),
    "meanfield.qmap_slope": Bad(lambda: meanfield.qmap_slope("tanh", 1.0, math.nan), "sigma_w2", "nan"),
    "meanfield.qstar": Bad(lambda: meanfield.qstar("tanh", 1.5, 0.05, tol=2.0), "tol", "2"),
    "meanfield.chi1": Bad(lambda: meanfield.chi1("tanh", -1.0, 0.1), "sigma_w2", "-1"),
    "meanfield.cstar": Bad(lambda: meanfield.cstar("tanh", 1.0, -0.1), "sigma_b2", "-0.1"),
    "meanfield.depth_scales": Bad(lambda: meanfield.depth_scales("tanh", True, 0.1), "sigma_w2", "True"),
    "meanfield.critical_sigma_w2": Bad(lambda: meanfield.critical_sigma_w2("tanh", math.inf), "sigma_b2", "inf"),
    "meanfield.phase_diagram": Bad(lambda: meanfield.phase_diagram("tanh", [1.0, -1.0], [0.1]),
                                   "sigma_w2_grid[1]", "-1"),
    # ---- models
    "models.orthogonal_matrix": Bad(lambda: models.orthogonal_matrix(3, 5), "semi_orthogonal", "False"),
    "models.mlp": Bad(lambda: models.mlp(0, [4], 1), "d_in", "0"),
    "models.cnn": Bad(lambda: models.cnn(0, 10), "in_channels", "0"),
    "models.Residual": Bad(lambda: models.Residual(nn.Linear(2, 2), alpha=math.nan), "alpha", "nan"),
    "models.resmlp": Bad(lambda: models.resmlp(2, 4, -1, 1), "depth", "-1"),
    # ---- ntk
    "ntk.relu_h_inf": Bad(lambda: ntk.relu_h_inf(np.zeros(3)), "x", "(3,)"),
    "ntk.relu_lambda0": Bad(lambda: ntk.relu_lambda0(np.zeros((0, 2))), "x", "(0, 2)"),
    "ntk.kernel_distance": Bad(lambda: ntk.kernel_distance(np.eye(2), np.eye(3)), "k_ref", "(3, 3)"),
    "ntk.power_law_fit": Bad(lambda: ntk.power_law_fit([64, -1], [1.0, 1.0]), "widths", "[64, -1]"),
    "ntk.linear_dynamics": Bad(lambda: ntk.linear_dynamics(np.eye(2), np.ones(2), lr=-1.0, steps=3), "lr", "-1"),
    "ntk.train_with_linearization": Bad(lambda: ntk.train_with_linearization(ntk.NTKMLP(2, 4, 1), np.zeros((3, 2)),
                                                                            np.zeros(3), lr=0.1, steps=-2),
                                        "steps", "-2"),
    "ntk.linear_loss": Bad(lambda: ntk.linear_loss(np.eye(2), np.ones(2), 0.5, -1), "steps", "-1"),
    "train.cluster_executor": Bad(lambda: train.cluster_executor(8786), "address", "8786"),
    "ntk.empirical_ntk": Bad(lambda: ntk.empirical_ntk(_mlp(), torch.zeros(3, 2), reduce="bogus"), "reduce", "'bogus'"),
    "ntk.analytic_nngp": Bad(lambda: ntk.analytic_nngp(np.zeros((3, 2)), depth=-1), "depth", "-1"),
    "ntk.analytic_ntk": Bad(lambda: ntk.analytic_ntk(np.zeros((3, 2)), sigma_w2=-1.0), "sigma_w2", "-1"),
    "ntk.NTKMLP": Bad(lambda: ntk.NTKMLP(2, 0, 1), "width", "0"),
    "ntk.kernel_solve": Bad(lambda: ntk.kernel_solve(np.eye(2), np.zeros(2), ridge=-1.0), "ridge", "-1"),
    "ntk.kernel_regression": Bad(lambda: ntk.kernel_regression(np.eye(2), np.zeros(2), np.zeros((1, 2)), ridge=math.nan),
                                 "ridge", "nan"),
    # ---- pacbayes
    "pacbayes.kl_diag_gaussians": Bad(lambda: pacbayes.kl_diag_gaussians(torch.zeros(2), torch.tensor([1.0, -1.0]),
                                                                         torch.zeros(2), 1.0), "std_q", "-1"),
    "pacbayes.prior_variance": Bad(lambda: pacbayes.prior_variance(0), "j", "0"),
    "pacbayes.optimize_posterior": Bad(lambda: pacbayes.optimize_posterior(
        _mlp(2, 2), _mlp(2, 2), _data().x_train, _data().y_train, steps=1, delta=1.5), "delta", "1.5"),
    "pacbayes.stochastic_error": Bad(lambda: pacbayes.stochastic_error(_posterior(), _data().x_train, _data().y_train,
                                                                       samples=1), "samples", "1"),
    "pacbayes.final_bound": Bad(lambda: pacbayes.final_bound(_posterior(), _data().x_train, _data().y_train,
                                                             delta=1.5), "delta", "1.5"),
    # ---- parity
    "parity.parity_gradient_variance": Bad(lambda: parity.parity_gradient_variance(_mlp(4), 4, loss="hinge"),
                                           "loss", "'hinge'"),
    "parity.parity_inputs": Bad(lambda: parity.parity_inputs(0), "n", "0"),
    # ---- plots
    "plots.mimebundle": Bad(lambda: plots.mimebundle({"data": []}), "fig", "dict", TypeError),
    "plots.show": Bad(lambda: plots.show("figure"), "fig", "str", TypeError),
    "plots.loss_surface": Bad(lambda: plots.loss_surface([0, 1, 2], [0, 1], np.zeros((2, 2))), "losses", "(2, 2)"),
    "plots.spectral_density": Bad(lambda: plots.spectral_density([0, 1, 2], [1.0, 2.0]), "density", "(2,)"),
    "plots.eigenvalue_bars": Bad(lambda: plots.eigenvalue_bars([3.0, 2.0, 1.0], labels=["a", "b"]), "labels", "2"),
    # ---- randmat
    "randmat.relu_log_norm_moments": Bad(lambda: randmat.relu_log_norm_moments([5, 0, 3]), "widths[1]", "0"),
    "randmat.log_norm_mc": Bad(lambda: randmat.log_norm_mc([4, 4], 10, sigma_w2=-1.0), "sigma_w2", "-1"),
    "randmat.spread": Bad(lambda: randmat.spread([1.0, -1.0]), "sq_singular_values", "-1"),
    "randmat.jacobian_spectra": Bad(lambda: randmat.jacobian_spectra(4, [1], activation="gelu"), "activation", "'gelu'"),
    "randmat.jacobian_spread_limit": Bad(lambda: randmat.jacobian_spread_limit("tanh", 0.1, 0), "depth", "0"),
    "randmat.gaussian_product_m2": Bad(lambda: randmat.gaussian_product_m2(0, 3), "n", "0"),
    "randmat.marchenko_pastur_edges": Bad(lambda: randmat.marchenko_pastur_edges(-0.5), "gamma", "-0.5"),
    "randmat.marchenko_pastur_density": Bad(lambda: randmat.marchenko_pastur_density(1.0, 0.5, sigma2=0.0),
                                            "sigma2", "0"),
    "randmat.jacobian_singular_values": Bad(lambda: randmat.jacobian_singular_values(_mlp(), np.zeros(2)),
                                            "x", "ndarray"),
    "randmat.fuss_catalan": Bad(lambda: randmat.fuss_catalan(2, -1), "k", "-1"),
    "randmat.gaussian_product": Bad(lambda: randmat.gaussian_product(4, 1.5), "depth", "1.5"),
    "randmat.product_moments": Bad(lambda: randmat.product_moments(10, 2, n_samples=1), "n_samples", "1"),
    # ---- randomization
    # ---- randomfeatures
    "randomfeatures.feature_map": Bad(lambda: randomfeatures.feature_map(4, 0), "p", "0"),
    "randomfeatures.FeatureMap": Bad(lambda: randomfeatures.feature_map(3, 4)(np.zeros((2, 5))), "X", "(2, 5)"),
    "randomfeatures.least_squares": Bad(lambda: randomfeatures.least_squares(np.eye(3), np.ones(3), ridge=-1.0),
                                        "ridge", "-1"),
    "randomfeatures.double_descent": Bad(lambda: randomfeatures.double_descent(
        np.zeros((4, 2)), np.zeros(4, dtype=int), np.zeros((2, 2)), np.zeros(2, dtype=int), [3, 2.5]), "ps[1]", "2.5"),
    "randomfeatures.select_ridge": Bad(lambda: randomfeatures.select_ridge(
        np.zeros((4, 2)), np.zeros(4, dtype=int), np.zeros((2, 2)), np.zeros(2, dtype=int), [3], [0.1, -1.0]),
        "ridges[1]", "-1"),
    "randomfeatures.linear_min_norm_risk": Bad(lambda: randomfeatures.linear_min_norm_risk(10, 0, 1.0, 1.0), "p", "0"),
    "randomfeatures.linear_min_norm_simulation": Bad(lambda: randomfeatures.linear_min_norm_simulation(
        10, 5, 1.0, 1.0, trials=1), "trials", "1"),
    "randomization.interpolating_relu_net": Bad(lambda: randomization.interpolating_relu_net(
        [[0.0], [1.0]], [1.0, np.nan], [1.0], [[0.0]]), "y[1]", "nan"),
    "randomization.random_pixels": Bad(lambda: randomization.random_pixels(torch.zeros(2, 3, 4)), "x", "(2, 3, 4)"),
    "randomization.variant": Bad(lambda: randomization.variant(_data(), "noise"), "kind", "'noise'"),
    "randomization.run": Bad(lambda: randomization.run(_data(), "random labels", 1.5, widths=(4,), steps=1),
                             "fraction", "1.5"),
    "randomization.label_noise_sweep": Bad(lambda: randomization.label_noise_sweep(_data(), [0.0, 1.5], widths=(4,),
                                                                                   steps=1), "fractions[1]", "1.5"),
    # ---- regions
    "regions.count_regions_1d_arrays": Bad(lambda: regions.count_regions_1d_arrays([np.ones(3), np.ones((1, 3))],
                                                                                   [np.zeros(3), np.zeros(1)],
                                                                                   [0.0], [1.0]),
                                           "weights[0]", "(3,)"),
    "regions.count_regions_segments": Bad(lambda: regions.count_regions_segments(_mlp(), [0.0, 0.0], [[1.0, 1.0]]),
                                          "A", "(2,)"),
    "regions.plane_through": Bad(lambda: regions.plane_through([0.0, float("nan")], [1.0, 0.0], [0.0, 1.0]),
                                 "p0", "(2,)"),
    "regions.region_map": Bad(lambda: regions.region_map(_mlp(), box=(0.0, 1.0, 1.0, 1.0)),
                              "box", "(0.0, 1.0, 1.0, 1.0)"),
    "regions.region_figure": Bad(lambda: regions.region_figure(np.zeros((2, 2))), "rmap", "ndarray"),
    "regions.zigzag_mlp": Bad(lambda: regions.zigzag_mlp((2, 4)), "widths", "(2, 4)"),
    "regions.montufar_lower_bound": Bad(lambda: regions.montufar_lower_bound(0, (4, 4)), "n0", "0"),
    "regions.montufar2017_upper_bound": Bad(lambda: regions.montufar2017_upper_bound(2, (4, 0)), "widths[1]", "0"),
    "regions.serra_upper_bound": Bad(lambda: regions.serra_upper_bound(2, "44"), "widths", "'44'"),
    "regions.max_regions_1d": Bad(lambda: regions.max_regions_1d((3, -1)), "widths[1]", "-1"),
    "regions.count_regions_1d": Bad(lambda: regions.count_regions_1d(_mlp(), [0.0, 0.0], [1.0, 1.0], tol=-1.0),
                                    "tol", "-1"),
    "regions.count_regions_2d": Bad(lambda: regions.count_regions_2d(_mlp(), box=(1.0, 0.0, 0.0, 1.0)),
                                    "box", "(1.0, 0.0, 0.0, 1.0)"),
    # ---- simplicity
    "simplicity.lz_words": Bad(lambda: simplicity.lz_words("0120"), "bits", "'0120'"),
    "simplicity.lz_complexity": Bad(lambda: simplicity.lz_complexity(""), "bits", "''"),
    "simplicity.lz_complexities": Bad(lambda: simplicity.lz_complexities(np.zeros(5)), "bits", "(5,)"),
    "simplicity.boolean_inputs": Bad(lambda: simplicity.boolean_inputs(11), "n_bits", "11"),
    "simplicity.network_bits": Bad(lambda: simplicity.network_bits([np.ones((3, 1))], [np.zeros(1)], 2), "weights",
                                   "(3, 1)"),
    "simplicity.function_distribution": Bad(lambda: simplicity.function_distribution(samples=0), "samples", "0"),
    "simplicity.rank_correlation": Bad(lambda: simplicity.rank_correlation([1, 2, 3], [3, 2, 1], alternative="bogus"),
                                       "alternative", "'bogus'"),
    # ---- spectral
    "spectral.fourier_features": Bad(lambda: spectral.fourier_features(np.zeros(3), (2, 4)), "features", "[2, 4]"),
    "spectral.grid_eigenvalues": Bad(lambda: spectral.grid_eigenvalues(1), "n", "1"),
    "spectral.mode_decay_rate": Bad(lambda: spectral.mode_decay_rate([0.1], -1.0), "eta", "-1"),
    "spectral.predicted_mode_error": Bad(lambda: spectral.predicted_mode_error([0.1], 1.0, [0, 1], discrete="yes"),
                                         "discrete", "'yes'"),
    "spectral.efold_time": Bad(lambda: spectral.efold_time([0.1], 0.0), "eta", "0"),
    "spectral.fit_decay_rates": Bad(lambda: spectral.fit_decay_rates(
        spectral.FrequencyErrorHistory(np.arange(3), np.array([1]), np.ones((3, 1)), True), floor=2.0), "floor", "2"),
    "spectral.train_circle": Bad(lambda: spectral.train_circle(np.zeros(8), [1], width=0, eta=1.0, steps=1),
                                 "width", "0"),
    "spectral.circle_points": Bad(lambda: spectral.circle_points(0), "n", "0"),
    "spectral.frequency_target": Bad(lambda: spectral.frequency_target(np.zeros(3), [1, 1.5], [1.0, 1.0]),
                                     "freqs[1]", "1.5"),
    "spectral.per_frequency_error": Bad(lambda: spectral.per_frequency_error(np.zeros(5), np.zeros(4)),
                                        "f_values", "(5,)"),
    "spectral.frequency_error_history": Bad(lambda: spectral.frequency_error_history([np.zeros(8)], np.zeros(8),
                                                                                     freqs=[-1]), "freqs[0]", "-1"),
    "spectral.ntk_eigenvalues_circle": Bad(lambda: spectral.ntk_eigenvalues_circle(4, kernel="cntk"),
                                           "kernel", "'cntk'"),
    # ---- train
    "train.schedule_factors": Bad(lambda: train.schedule_factors(0), "steps", "0"),
    "train.evaluate": Bad(lambda: train.evaluate(_mlp(), *_batch(), loss="bogus"), "loss", "'bogus'"),
    "train.fit": Bad(lambda: train.fit(_mlp(), _batch(), steps=1, lr=-1.0, loss="mse"), "lr", "-1"),
    "train.fit_ensemble": Bad(lambda: train.fit_ensemble([_mlp(), _mlp()], _batch(), steps=1, optimizer="bogus",
                                                         loss="mse"), "optimizer", "'bogus'"),
    "train.TrainConfig": Bad(lambda: train.TrainConfig(momentum=1.0), "momentum", "1"),
    "train.fit_sweep": Bad(lambda: train.fit_sweep(lambda **kw: _mlp(), [{}], _batch(), max_group=0, steps=1,
                                                   loss="mse"), "max_group", "0"),
    # ---- validate
    "validate.integer": Bad(lambda: validate.integer("k", 11, lo=0, hi=10), "k", "11"),
    "validate.positive_int": Bad(lambda: validate.positive_int("depth", 0), "depth", "0"),
    "validate.nonnegative_int": Bad(lambda: validate.nonnegative_int("n", -1), "n", "-1"),
    "validate.number": Bad(lambda: validate.number("x", math.inf), "x", "inf"),
    "validate.positive": Bad(lambda: validate.positive("lr", 0.0), "lr", "0"),
    "validate.nonnegative": Bad(lambda: validate.nonnegative("wd", -1.0), "wd", "-1"),
    "validate.in_interval": Bad(lambda: validate.in_interval("x", 2.0, 0.0, 1.0), "x", "2"),
    "validate.probability": Bad(lambda: validate.probability("p", 1.5), "p", "1.5"),
    "validate.one_of": Bad(lambda: validate.one_of("optimizer", "adamw", ("sgd", "adam")), "optimizer", "'adamw'"),
    "validate.boolean": Bad(lambda: validate.boolean("bias", 1), "bias", "1"),
    "validate.int_sequence": Bad(lambda: validate.int_sequence("widths", [4, 0]), "widths[1]", "0"),
    # ---- widgets
    "widgets.label_noise_slider_figure": Bad(lambda: widgets.label_noise_slider_figure([]), "runs", "[]"),
    "widgets.explore_label_noise": Bad(lambda: widgets.explore_label_noise([], static=True), "runs", "[]"),
    "widgets.explore": Bad(lambda: widgets.explore(lambda v: None, [], label="alpha", static=True), "values", "[]"),
    # ---- h11A
    "pruning.frankle_carbin_rates": Bad(lambda: pruning.frankle_carbin_rates(_mlp(), hidden=1.5), "hidden", "1.5"),
    "pruning.magnitude_masks": Bad(lambda: pruning.magnitude_masks(_mlp(), 1.0), "sparsity", "1"),
    "pruning.random_masks": Bad(lambda: pruning.random_masks(_mlp(), -0.5), "sparsity", "-0.5"),
    "pruning.sparsity": Bad(lambda: pruning.sparsity({}), "masks", "{}"),
    "pruning.layer_sparsity": Bad(lambda: pruning.layer_sparsity({"0.weight": 3}), "masks", "3"),
    "pruning.MaskedLinear": Bad(lambda: pruning.MaskedLinear(nn.Linear(2, 3), torch.ones(2, 2)), "mask", "(2, 2)"),
    "pruning.apply_masks": Bad(lambda: pruning.apply_masks(_mlp(), {"0.weight": torch.ones(2, 2)}), "masks", "(2, 2)"),
    "pruning.rewind": Bad(lambda: pruning.rewind(_mlp(), {"0.weight": torch.ones(5)}), "masks", "(5,)"),
    "pruning.reinit": Bad(lambda: pruning.reinit(_mlp(), seed=1.5), "seed", "1.5"),
    "pruning.train_masked": Bad(lambda: pruning.train_masked([_mlp(2, 2)], {}, _data(), steps=0), "steps", "0"),
    "pruning.iterative_magnitude_pruning": Bad(lambda: pruning.iterative_magnitude_pruning(
        [_mlp(2, 2)], _data(), rounds=0, steps=2), "rounds", "0"),
    "pruning.edge_popup": Bad(lambda: pruning.edge_popup([_mlp(2, 2)], _data(), sparsity=1.0, steps=2), "sparsity", "1"),
    # ---- h12L
    "data.ib12": Bad(lambda: data.ib12(train_fraction=0.0), "train_fraction", "0"),
    "infotheory.markov_chain_information": Bad(lambda: infotheory.markov_chain_information(
        [0.5, 0.5], [[1.1, -0.1], [0.1, 0.9]], [[1.0, 0.0], [0.0, 1.0]]), "w_xy[0, 1]", "-0.1"),
    "infotheory.symmetric_channel_information": Bad(lambda: infotheory.symmetric_channel_information(1, 0.1), "k", "1"),
    "infotheory.channel_check": Bad(lambda: infotheory.channel_check(1.5, 100), "q", "1.5"),
    "infotheory.binned_entropy": Bad(lambda: infotheory.binned_entropy(np.ones((3, 2)), bins=1), "bins", "1"),
    "infotheory.record_activations": Bad(lambda: infotheory.record_activations(
        [nn.Sequential(nn.Linear(2, 2))], (torch.zeros(2, 2), torch.zeros(2, dtype=torch.long)), torch.zeros(2, 2),
        [0, -3], steps=1), "record_steps[1]", "-3"),
    "infotheory.information_planes": Bad(lambda: infotheory.information_planes(
        infotheory.ActivationTrace(np.arange(1), (np.zeros((1, 1, 4, 2), np.float32),), ("t",), []),
        np.arange(4), np.zeros(4), bins=(1,)), "bins[0]", "1"),
    "infotheory.compression_fraction": Bad(lambda: infotheory.compression_fraction(np.zeros((2, 0))), "i_xt", "(2, 0)"),
    # ---- h10L
    "deeplinear.product_loss_hessian_eigs": Bad(lambda: deeplinear.product_loss_hessian_eigs(np.ones(1), 1.0), "w", "(1,)"),
    "deeplinear.relu_population_loss": Bad(lambda: deeplinear.relu_population_loss(np.ones((2, 3)), np.ones((2, 4))),
                                           "W", "3"),
    "deeplinear.teacher_student_data": Bad(lambda: deeplinear.teacher_student_data(np.eye(2), 0), "n_train", "0"),
    "deeplinear.relu_student": Bad(lambda: deeplinear.relu_student(0, 3), "d", "0"),
    "deeplinear.student_population_losses": Bad(lambda: deeplinear.student_population_losses([nn.Linear(2, 1)], np.eye(2)),
                                                "students", "Linear"),
    "deeplinear.stuck_fraction": Bad(lambda: deeplinear.stuck_fraction([1.0, 0.0], 0.0), "threshold", "0"),
    # (after the existing "landscape." entries)
    "landscape.path_barrier": Bad(lambda: landscape.path_barrier([1.0]), "losses", "1"),
    "landscape.convexity_map": Bad(lambda: landscape.convexity_map(_mlp(), _mse, _batch(), torch.zeros(2, _nparams(_mlp())),
                                                                   tol=0.0), "tol", "0"),
    # ---- h11L
    "data.k_pattern": Bad(lambda: data.k_pattern(8, 3, n_train=10, n_test=10, location=6), "location", "6"),
    "data.single_relu": Bad(lambda: data.single_relu(3, n_train=10, n_test=10, noise=-1.0), "noise", "-1"),
    "parity.parity_task": Bad(lambda: parity.parity_task(5, 4, n_train=10, n_test=10), "d", "4"),
    "parity.variance_bound": Bad(lambda: parity.variance_bound(-1.0, 3), "g2", "-1"),
    "parity.sq_max_correlated": Bad(lambda: parity.sq_max_correlated(1.0), "tau", "1"),
    "parity.sq_query_lower_bound": Bad(lambda: parity.sq_query_lower_bound(0, 0.5), "n_functions", "0"),
    "parity.Windows": Bad(lambda: parity.Windows(0), "k", "0"),
    "parity.window_cnn": Bad(lambda: parity.window_cnn(5, 6, 2), "k", "6"),
    "parity.tanh_net_parity_variance": Bad(lambda: parity.tanh_net_parity_variance(np.ones((2, 3)), np.ones(3),
                                                                                   np.ones(2)), "b", "(3,)"),
    "parity.tanh_net_parity_bound": Bad(lambda: parity.tanh_net_parity_bound(np.ones(3), np.ones(3), np.ones(3)),
                                        "W", "(3,)"),
    "randomfeatures.relu_hermite_coefficients": Bad(lambda: randomfeatures.relu_hermite_coefficients(-1), "kmax", "-1"),
    "randomfeatures.relu_polynomial_floor": Bad(lambda: randomfeatures.relu_polynomial_floor(1.5), "degree", "1.5"),
}

_RECORD = "a result record (frozen dataclass / named tuple) built by the library, no argument checked"

EXEMPT: dict[str, str] = {
    "capacity.Measure": _RECORD,
    "capacity.MeasureTable": _RECORD,
    "checkpoint.Checkpoint": _RECORD,
    "checkpoint.load": "reads a file: a missing or foreign file raises FileNotFoundError / ValueError naming the path",
    "curvature.GradientGraph": _RECORD,
    "deeplinear.DeepLinearRun": _RECORD,
    "deeplinear.LearningTimes": _RECORD,
    "curvature.EigResult": _RECORD,
    "curvature.TraceResult": _RECORD,
    "curvature.DensityResult": _RECORD,
    "data.DataUnavailableError": "an exception class",
    "data.RemoteFile": _RECORD,
    "data.Source": _RECORD,
    "data.cache_dir": "takes an optional folder path; nothing to validate",
    "data.read_idx": "reads a file: errors describe the file's bytes (bad magic number, short body), naming the path",
    "data.read_cifar_batch": "reads an open file: errors describe its contents",
    "data.read_cifar10": "reads a file: errors describe the archive's members, naming the path",
    "device.describe": "takes no argument",
    "device.synchronize": "takes a device, parsed by torch.device (which reports a bad one)",
    "infotheory.InformationPlaneResult": _RECORD,
    "landscape.Surface1D": _RECORD,
    "implicit.LeastSquaresGD": _RECORD,
    "implicit.MaxMargin": _RECORD,
    "implicit.LinearFit": _RECORD,
    "implicit.LogisticPath": _RECORD,
    "implicit.DiagonalNet": _RECORD,
    "implicit.MatrixCompletion": _RECORD,
    "implicit.Dataset": _RECORD,
    "implicit.CompletionProblem": _RECORD,
    "simplicity.FunctionDistribution": _RECORD,
    "simplicity.RankCorrelation": _RECORD,
    "approximation.PiecewiseLinear": _RECORD,
    "approximation.EqualParameters": _RECORD,
    "approximation.SawtoothFits": _RECORD,
    "landscape.Surface2D": _RECORD,
    "landscape.BezierCurve": _RECORD,
    "landscape.TrajectoryPCA": _RECORD,
    "layers.ActivationKind": "a row of layers.ACTIVATIONS (a frozen dataclass), no argument checked",
    "layers.Linear": "a layer spec built by parse_mlp (a frozen dataclass), no argument checked",
    "layers.Activation": "a layer spec built by parse_mlp (a frozen dataclass), no argument checked",
    "layers.Flatten": "a layer spec built by parse_mlp (a frozen dataclass), no argument checked",
    "layers.UnsupportedLayer": "an exception class",
    "layers.linear_layers": "filters a sequence of layer specs; nothing to validate",
    "meanfield.Activation": "a user-made activation record (callables); get_activation checks its use",
    "meanfield.DepthScales": _RECORD,
    "meanfield.PhaseDiagram": _RECORD,
    "meanfield.MapTrajectory": _RECORD,
    "meanfield.SignalSimulation": _RECORD,
    "meanfield.DecayFit": _RECORD,
    "meanfield.CorrelationDecay": _RECORD,
    "models.num_params": "takes a model; nothing to validate",
    "ntk.KernelSolve": _RECORD,
    "ntk.PowerLawFit": _RECORD,
    "ntk.LinearDynamics": _RECORD,
    "ntk.LinearizedTraining": _RECORD,
    "parity.ParityGradientVariance": _RECORD,
    "plots.curves": "a plotting helper: series and labels go to plotly as they are",
    "plots.BookPlotlyMime": "a myst-nb renderer plugin, called by myst-nb",
    "randomfeatures.DoubleDescent": _RECORD,
    "randomfeatures.RidgeSelection": _RECORD,
    "randomfeatures.MonteCarlo": _RECORD,
    "pacbayes.Posterior": "a posterior record built by optimize_posterior; Posterior.kl checks its prior_var",
    "pacbayes.StochasticError": _RECORD,
    "pacbayes.PacBayesBound": _RECORD,
    "randmat.MPEdges": _RECORD,
    "randmat.MomentEstimate": _RECORD,
    "randmat.LogNormMoments": _RECORD,
    "randmat.LogNormEstimate": _RECORD,
    "randmat.JacobianSpectra": _RECORD,
    "randomization.Run": _RECORD,
    "regions.SegmentCounts": _RECORD,
    "regions.RegionMap": _RECORD,
    "regions.Plane": _RECORD,
    "regions.LineRegions": _RECORD,
    "regions.PlaneRegions": _RECORD,
    "spectral.CirclePoints": _RECORD,
    "spectral.DecayFit": _RECORD,
    "spectral.CircleRun": _RECORD,
    "spectral.FrequencyErrorHistory": _RECORD,
    "spectral.CircleSpectrum": _RECORD,
    "train.DivergenceError": "an exception class",
    "train.History": "a training record filled by fit; History.final's KeyError lists the recorded metrics",
    "train.EnsembleResult": _RECORD,
    "train.Resolved": "a TrainConfig resolved by the library (TrainConfig.resolve); the config was checked",
    "train.SweepResult": _RECORD,
    "widgets.is_static": "takes no argument",
    # ---- h11A
    "pruning.prunable": "takes a model; nothing to validate",
    "pruning.masks_of": "takes a model; nothing to validate",
    "pruning.remove_masks": "takes a model; nothing to validate",
    "pruning.MaskedTraining": _RECORD,
    "pruning.IMPResult": _RECORD,
    "pruning.SubnetworkResult": _RECORD,
    # ---- h12L
    "data.ib12_points": "takes no argument",
    "data.ib12_patterns": "takes no argument",
    "data.ib12_labels": "takes no argument",
    "infotheory.ChannelCheck": _RECORD,
    "infotheory.ActivationTrace": _RECORD,
    "infotheory.PlaneSweep": _RECORD,
    "infotheory.Compression": _RECORD,
    # ---- h10L
    "deeplinear.StuckFraction": _RECORD,
    "landscape.ConvexityMap": _RECORD,
}


# ----------------------------------------------------------------------------- the tests


def test_every_public_function_has_a_case():
    api = public_api()
    missing = sorted(set(api) - CASES.keys() - EXEMPT.keys())
    assert not missing, (
        f"public functions without a bad-input case: {missing}. Add one to CASES in {__file__} "
        "(one call with one bad argument, the parameter and the value its message names), or, if it "
        "takes nothing to validate, to EXEMPT with the reason.")
    stale = sorted((CASES.keys() | EXEMPT.keys()) - set(api))
    assert not stale, f"entries for names that are no longer public (remove them): {stale}"
    assert not CASES.keys() & EXEMPT.keys(), f"both a case and exempt: {sorted(CASES.keys() & EXEMPT.keys())}"
    assert all(reason.strip() for reason in EXEMPT.values())


def test_the_enumeration_sees_the_modules():
    mods = student_modules()
    assert "grading" not in mods and not any(m.startswith("_") for m in mods)
    assert {"meanfield", "train", "validate", "widgets"} <= set(mods)
    api = public_api()
    assert "meanfield.qstar" in api and "parity.MAX_N" not in api  # constants are not functions


def _params() -> list:
    out = []
    for key, case in sorted(CASES.items()):
        marks = [pytest.mark.xfail(strict=True, reason=f"KNOWN_GAP: {case.known_gap}")] if case.known_gap else []
        out.append(pytest.param(case, id=key, marks=marks))
    return out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", _params())
def test_bad_input_names_the_parameter_and_the_value(case: Bad):
    with pytest.raises(case.error) as err:
        case.call()
    msg = str(err.value)
    assert re.search(rf"(?<![\w.]){re.escape(case.param)}(?!\w)", msg), f"{case.param!r} not named in: {msg}"
    assert case.value in msg, f"the bad value {case.value!r} is not in: {msg}"
