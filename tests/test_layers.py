"""The MLP parser and the activation table of ``tdlcourse.layers``."""

import pytest
import torch
from torch import nn

from tdlcourse import layers
from tdlcourse.layers import Activation, Flatten, Linear, UnsupportedLayer, parse_mlp


def test_parse_nested_mlp_in_forward_order_with_parameter_names():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.GELU(approximate="tanh"),
                          nn.Sequential(nn.Identity(), nn.Linear(3, 2, bias=False)), nn.LeakyReLU(0.2))
    specs = parse_mlp(model)
    assert [type(s) for s in specs] == [Flatten, Linear, Activation, Linear, Activation]
    flat, lin1, gelu, lin2, leaky = specs
    assert (flat.start_dim, flat.end_dim) == (1, -1)
    assert lin1.weight is model[1].weight and lin1.bias is model[1].bias  # the parameters, not copies
    assert (lin1.in_features, lin1.out_features) == (4, 3)
    names = dict(model.named_parameters())
    assert names[lin2.weight_name] is lin2.weight and lin2.bias is None and lin2.bias_name is None
    assert lin2.name == "3.1"
    assert gelu.kind == "gelu" and gelu.kwargs == (("approximate", "tanh"),)
    assert leaky.backward_kwargs == {"self_is_result": False, "negative_slope": 0.2}
    assert [s.name for s in layers.linear_layers(specs)] == ["1", "3.1"]
    # The specs compute what the model computes.
    x = torch.randn(5, 2, 2)
    h = x
    for s in specs:
        if isinstance(s, Flatten):
            h = h.flatten(s.start_dim, s.end_dim)
        elif isinstance(s, Linear):
            h = nn.functional.linear(h, s.weight, s.bias)
        else:
            h = s(h)
    torch.testing.assert_close(h, model(x))


def test_dropout_only_where_the_caller_reads_the_network_at_inference():
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5), nn.ReLU(), nn.Linear(3, 1))
    assert [type(s) for s in parse_mlp(model, dropout=True)] == [Linear, Activation, Linear]
    with pytest.raises(UnsupportedLayer, match=r"Dropout \(layer '1'\)"):
        parse_mlp(model)


def test_errors_name_the_module_its_place_and_what_is_supported():
    with pytest.raises(UnsupportedLayer, match=r"LayerNorm \(layer '1'\); supported: Linear, ReLU, Identity, "
                                               r"Flatten \(regions of ReLU nets\)"):
        parse_mlp(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)), activations=["relu"], why=" (regions of ReLU nets)")
    with pytest.raises(UnsupportedLayer, match=r"Tanh \(layer '0.1'\)"):
        parse_mlp(nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Tanh())), activations=["relu"])
    with pytest.raises(UnsupportedLayer, match="nn.Sequential.*got Linear"):
        parse_mlp(nn.Linear(2, 2))
    with pytest.raises(UnsupportedLayer, match="at least one nn.Linear"):
        parse_mlp(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="erf"):
        parse_mlp(nn.Sequential(nn.Linear(2, 2)), activations=["erf"])
    assert isinstance(UnsupportedLayer("x"), ValueError)


def test_subclasses_that_change_forward_are_refused():
    class Doubled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    class Plain(nn.ReLU):  # same computation: accepted
        pass

    with pytest.raises(UnsupportedLayer, match="Doubled"):
        parse_mlp(nn.Sequential(Doubled(2, 2)))
    assert parse_mlp(nn.Sequential(nn.Linear(2, 2), Plain()))[1].kind == "relu"


def test_activation_lookup():
    assert layers.activation("tanh").module is nn.Tanh
    assert layers.activation("erf").module is None
    with pytest.raises(ValueError, match=r"activation='erf' is unknown; allowed: 'relu', 'tanh'"):
        layers.activation("erf", need_module=True)
    with pytest.raises(ValueError, match="activation='swish'"):
        layers.activation("swish")


@pytest.mark.parametrize("name", list(layers.ACTIVATIONS))
def test_table_rows_agree_with_torch(name):
    """fn equals the module's forward; the ATen backward kernel equals autograd (float64)."""
    row = layers.ACTIVATIONS[name]
    z = torch.randn(7, 3, dtype=torch.float64)
    if row.module is not None:
        torch.testing.assert_close(row.fn(z), row.module()(z), rtol=0, atol=0)
    if row.inplace is not None:
        torch.testing.assert_close(row.inplace(z.clone()), row.fn(z), rtol=0, atol=0)
    if row.backward is None:
        return
    module = row.module()
    spec = parse_mlp(nn.Sequential(nn.Linear(3, 3), module))[1]
    g = torch.randn_like(z)
    leaf = z.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(spec(leaf), leaf, g)
    saved = spec(z) if row.saves == "out" else z
    torch.testing.assert_close(row.backward.default(g, saved, **spec.backward_kwargs), ref)


def test_a_module_used_twice_is_listed_each_time_it_runs():
    """Sequential.forward runs a reused module at each position; named_children() lists it once,
    which once made the parsers describe a shorter network than the one that runs."""
    import torch
    from torch import nn

    from tdlcourse import layers, regions

    torch.manual_seed(0)
    act = nn.ReLU()
    shared = nn.Sequential(nn.Linear(1, 4), act, nn.Linear(4, 4), act, nn.Linear(4, 1))
    fresh = nn.Sequential(shared[0], nn.ReLU(), shared[2], nn.ReLU(), shared[4])
    kinds = [type(s).__name__ for s in layers.parse_mlp(shared)]
    assert kinds == ["Linear", "Activation", "Linear", "Activation", "Linear"]
    a, b = regions.count_regions_1d(shared, -3.0, 3.0), regions.count_regions_1d(fresh, -3.0, 3.0)
    assert getattr(a, "count", a) == getattr(b, "count", b)
