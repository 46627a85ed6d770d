"""The shared argument checks: messages name the parameter, the value and what is allowed."""

import math

import numpy as np
import pytest

from tdlcourse import validate as v


def test_accepts_and_normalizes():
    assert v.positive_int("n", np.int64(3)) == 3 and type(v.positive_int("n", np.int64(3))) is int
    assert v.nonnegative_int("k", 0) == 0
    assert v.number("x", np.float32(0.5)) == 0.5
    assert v.in_interval("p", 1.0, 0, 1) == 1.0 and v.probability("q", 0.0) == 0.0
    assert v.positive("s", 1e-300) == 1e-300
    assert v.one_of("mode", "a", ("a", "b")) == "a"
    assert v.int_sequence("widths", [4, 4]) == (4, 4)
    assert v.boolean("bias", np.bool_(True)) is True


@pytest.mark.parametrize("call, message", [
    (lambda: v.positive_int("depth", 0), "depth=0 must be an integer >= 1"),
    (lambda: v.positive_int("depth", True), "depth=True must be an integer >= 1"),
    (lambda: v.positive_int("depth", 2.0), "depth=2.0 must be an integer >= 1"),
    (lambda: v.integer("k", 11, lo=0, hi=10), "k=11 must be an integer in [0, 10]"),
    (lambda: v.number("x", "1"), "x='1' must be a finite real number"),
    (lambda: v.number("x", math.nan), "x=nan must be a finite real number"),
    (lambda: v.in_interval("delta", 1.0, 0, 1, closed="neither"), "delta=1 must lie in (0, 1)"),
    (lambda: v.probability("p", 1.5), "p=1.5 must lie in [0, 1]"),
    (lambda: v.probability("p", 0.0, open_=True), "p=0 must lie in (0, 1)"),
    (lambda: v.positive("lr", 0), "lr=0 must lie in (0, inf)"),
    (lambda: v.nonnegative("wd", -1), "wd=-1 must lie in [0, inf)"),
    (lambda: v.one_of("optimizer", "adamw", ("sgd", "adam")), "optimizer='adamw' is not allowed; allowed: 'sgd', 'adam'"),
    (lambda: v.one_of("optimizer", True, (1, 2)), "optimizer=True is not allowed"),
    (lambda: v.int_sequence("widths", [4, 0]), "widths[1]=0 must be an integer >= 1"),
    (lambda: v.int_sequence("widths", "44"), "widths='44' must be a sequence"),
    (lambda: v.int_sequence("widths", []), "at least 1"),
    (lambda: v.boolean("bias", 1), "bias=1 must be True or False"),
    (lambda: v.in_interval("x", 0.5, closed="half"), "closed='half' is not allowed"),
])
def test_messages_name_parameter_value_and_allowed(call, message):
    with pytest.raises(ValueError) as e:
        call()
    assert message in str(e.value), str(e.value)
