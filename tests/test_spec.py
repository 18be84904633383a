"""The spec alone: shapes, minimum size and parameter counts, with no framework imported."""

import numpy as np
import pytest

from nin import spec as S
from nin.resources import conv_macs, num_params

CHAPTER_224 = [
    (96, 54, 54),
    (96, 26, 26),
    (256, 26, 26),
    (256, 12, 12),
    (384, 12, 12),
    (384, 5, 5),
    (384, 5, 5),
    (10, 5, 5),
    (10, 1, 1),
    (10,),
]


def test_chapter_shapes_at_224():
    assert [row.shape for row in S.output_shapes(S.chapter_spec(), 224)] == CHAPTER_224


def test_chapter_counts():
    assert num_params(S.chapter_spec()) == 1_992_166
    assert conv_macs(S.chapter_spec(), 224) == 762_297_352


def test_five_classes_change_only_the_last_block():
    shapes = [row.shape for row in S.output_shapes(S.chapter_spec(5), 224)]
    assert shapes[-3:] == [(5, 5, 5), (5, 1, 1), (5,)]

    def block4(k):  # a 3x3 conv from 384 channels to k, then two 1x1 convs k -> k, with biases
        return (384 * 9 * k + k) + 2 * (k * k + k)

    assert num_params(S.chapter_spec(5)) == 1_992_166 - block4(10) + block4(5)


def test_minimum_input_is_67():
    spec = S.chapter_spec()
    assert S.min_input_size(spec) == 67
    assert S.output_shapes(spec, 67)[5].shape == (384, 1, 1)


@pytest.mark.parametrize("size", [1, 30, 66])
def test_too_small_names_size_and_minimum(size):
    with pytest.raises(S.InputTooSmallError, match=rf"{size}x{size}.*67x67"):
        S.output_shapes(S.chapter_spec(), size)


def test_non_square_checks_both_sides():
    with pytest.raises(S.InputTooSmallError, match="224x60"):
        S.check_input_size(S.chapter_spec(), 224, 60)
    from nin.variants import variant

    # a dense head: no GAP after the empty map to be refused at, pool3 is the one
    with pytest.raises(S.InputTooSmallError, match="60x224 .* layer pool3 would output 0x5"):
        S.check_input_size(variant("dense-head"), 60, 224)


def test_spec_round_trips_through_dict():
    spec = S.with_class_block_relu(S.chapter_spec(7), "hidden")
    assert S.spec_from_dict(S.spec_to_dict(spec)) == spec


@pytest.mark.parametrize(
    "relu, expected", [("all", [True] * 3), ("hidden", [True, True, False]), ("none", [False] * 3)]
)
def test_class_block_relu_touches_only_the_last_block(relu, expected):
    spec = S.with_class_block_relu(S.chapter_spec(), relu)
    assert [c.relu for c in spec.layers[7].convs] == expected
    assert all(c.relu for block in spec.layers[:5:2] for c in block.convs)


def test_bad_relu_mode():
    with pytest.raises(ValueError, match="'all', 'hidden' or 'none'"):
        S.NiNBlock(10, 3, relu="some")


def test_spec_imports_no_framework():
    from conftest import run_python

    out = run_python(
        "import sys, nin.spec, nin.resources, nin.data, nin.training; "
        "print(sorted({'torch','mxnet','tensorflow'} & set(sys.modules)))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- one table: each layer kind declares everything; one walk and one build use it --------


@pytest.mark.parametrize("kind", sorted(S._KINDS))
def test_every_layer_kind_declares_shape_cost_weights_and_build(kind):
    cls = S._KINDS[kind]
    for method in ("output_shape", "cost", "build"):  # LayerKind's raise: each kind has its own
        assert getattr(cls, method) is not getattr(S.LayerKind, method), f"{kind}: {method}"
    assert callable(cls.weights)


class _Recorder:
    """Primitives that record what `spec.build` asks for, with no framework."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if name not in S.PRIMITIVES:
            raise AttributeError(name)

        def primitive(*args):
            self.calls.append((name, *args))
            return [name] if name == "conv" else name

        return primitive


def test_one_build_asks_the_backend_for_the_chapters_layers():
    ops = _Recorder()
    S.build(S.chapter_spec(), ops)
    convs = [c[1:] for c in ops.calls if c[0] == "conv"]
    # (out, kernel, stride, padding, relu, in_channels): the chapter's twelve convs, chained
    assert convs[:3] == [(96, 11, 4, 0, True, 1), (96, 1, 1, 0, True, 96), (96, 1, 1, 0, True, 96)]
    assert [c[-1] for c in convs] == [1, 96, 96, 96, 256, 256, 256, 384, 384, 384, 10, 10]
    assert [c[0] for c in ops.calls if c[0] != "conv"] == [
        "sequential",
        "max_pool",
        "sequential",
        "max_pool",
        "sequential",
        "max_pool",
        "dropout",
        "sequential",
        "global_avg_pool",
        "flatten",
        "sequential",
    ]


def test_weight_table_names_shapes_and_layouts():
    table = S.weight_table(S.chapter_spec())
    assert len(table) == 24 and sum(np.prod(w.shape) for w in table) == 1_992_166
    assert table[:2] == [
        S.Weight("block1.conv1.weight", (96, 1, 11, 11), "conv"),
        S.Weight("block1.conv1.bias", (96,), "bias"),
    ]
    head = S.NetSpec((S.NiNBlock(8, 3), S.Flatten(), S.Dense(16), S.Dense(10, relu=False)))
    dense = [w for w in S.weight_table(head, 9) if w.kind == "dense"]
    assert dense == [
        S.Weight("dense1.weight", (16, 8 * 7 * 7), "dense", (8, 7, 7)),
        S.Weight("dense2.weight", (10, 16), "dense", None),
    ]


def test_each_layers_weights_hold_what_its_cost_counts():
    """A kind with parameters that forgot `weights` would export nothing: caught here, over
    every variant of the exercises."""
    from nin.variants import variant, variant_names

    for name in variant_names():
        spec = variant(name)
        size = max(96, S.min_input_size(spec))
        for step in S.walk(spec, size):
            held = sum(int(np.prod(w.shape)) for w in step.layer.weights(step.name, step.in_shape))
            assert held == step.layer.cost(step.in_shape).params, (name, step.name)


# --- what the helpers around a spec say and change ------------------------------------------


def test_spec_diff_names_each_difference_and_nothing_else():
    """The phrases a refused weight file shows: every field that differs, a layer of another
    kind without stopping there, a layer count; nothing for equal specs."""
    spec = S.chapter_spec()
    assert S.spec_diff(spec, spec) == []
    assert S.spec_diff(spec, S.chapter_spec(5)) == [
        "num_classes 10 vs 5",
        "block4 out_channels 10 vs 5",
    ]
    assert S.spec_diff(spec, spec.replace(layers=spec.layers[:-1])) == ["10 layers vs 9"]
    other = spec.layers[1:7] + (S.with_class_block_relu(spec, "none").layers[7],)
    assert S.spec_diff(spec, spec.replace(layers=(S.MaxPool(),) + other + spec.layers[8:])) == [
        "block1 NiNBlock vs MaxPool",
        "block4 relu 'all' vs 'none'",
    ]


@pytest.mark.parametrize("relu", ["all", "hidden", "none"])
def test_class_block_relu_reads_what_with_class_block_relu_set(relu):
    """What a checkpoint records as the recipe's class block: the block before GAP, not the
    first block after which something follows (block1 keeps 'all' here)."""
    from nin.variants import variant

    assert S.class_block_relu(S.with_class_block_relu(S.chapter_spec(), relu)) == relu
    assert S.class_block_relu(variant("dense-head")) is None


def test_with_dropout_sets_every_dropout_and_refuses_rates_out_of_range():
    """`nin train --dropout`: every Dropout at the new rate, nothing else changed; 0 turns it
    off, 1 or more (nothing kept) and negative rates are refused by name."""
    spec = S.chapter_spec().replace(layers=S.chapter_spec().layers + (S.Dropout(0.3),))
    assert S.spec_diff(spec, S.with_dropout(spec, 0.0)) == [
        "dropout1 rate 0.5 vs 0.0",
        "dropout2 rate 0.3 vs 0.0",
    ]
    for rate in (1.0, -0.1):
        with pytest.raises(ValueError, match=rf"a dropout rate is >= 0 and < 1, got {rate}"):
            S.with_dropout(spec, rate)


def test_non_square_shapes_follow_each_side_with_names_and_kinds():
    """224 high, 96 wide: the heights are the chapter's, the widths floor((w + 2p - k) / s)
    + 1 layer by layer (96 -> 22 -> 10 -> 10 -> 4 -> 4 -> 1); each row named as the layer
    tables show it. A width the network cannot take is refused, as a height is."""
    rows = S.output_shapes(S.chapter_spec(), 224, 96)
    widths = [22, 10, 10, 4, 4, 1, 1, 1, 1]
    assert [row.shape for row in rows] == [
        (*shape[:2], w) for shape, w in zip(CHAPTER_224, widths)
    ] + [(10,)]
    assert rows[0] == S.LayerShape("block1", "NiNBlock", (96, 54, 22))
    assert [(row.name, row.kind) for row in rows[-2:]] == [
        ("gap1", "GlobalAvgPool"),
        ("flatten1", "Flatten"),
    ]
    with pytest.raises(S.InputTooSmallError, match="224x60"):
        S.output_shapes(S.chapter_spec(), 224, 60)


def test_a_dense_head_is_built_with_its_relus_and_its_bias_is_a_bias():
    """A hidden dense layer keeps its ReLU and the last one has none, as the spec says; the
    bias rows of the weight table say 'bias', the layout that no backend transposes."""
    head = S.NetSpec((S.NiNBlock(8, 3), S.Flatten(), S.Dense(16), S.Dense(10, relu=False)))
    ops = _Recorder()
    S.build(head, ops)
    assert [c[1:] for c in ops.calls if c[0] == "dense"] == [(16, True), (10, False)]
    assert [w for w in S.weight_table(head, 9) if w.kind == "bias"][-2:] == [
        S.Weight("dense1.bias", (16,), "bias"),
        S.Weight("dense2.bias", (10,), "bias"),
    ]


def test_spec_round_trips_every_field_through_dict():
    """What a weight file stores: a spec that is not the defaults' (3 channels, its own
    name, a dense head) comes back equal."""
    spec = S.NetSpec(
        (S.NiNBlock(8, 3, relu="hidden"), S.MaxPool(2, 1), S.Flatten(), S.Dense(4, relu=False)),
        num_classes=4,
        in_channels=3,
        name="rgb-head",
    )
    assert S.spec_from_dict(S.spec_to_dict(spec)) == spec


def test_a_block_without_some_relus_costs_no_relu_for_them():
    """'hidden' (the `nin` recipe's class block is 'none'): three convs to 4 x 3 x 3 = 36
    outputs each from a 2 x 5 x 5 input, a ReLU after the first two only, so two ReLU
    outputs among the ops and 2 x 36 ReLU evaluations."""
    cost = S.NiNBlock(4, 3, num_1x1=2, relu="hidden").cost((2, 5, 5))
    assert cost == S.Cost(
        params=4 * (2 * 9 + 1) + 2 * 4 * (4 + 1),
        macs=36 * 2 * 9 + 2 * 36 * 4,
        pool_ops=0,
        relu_ops=2 * 36,
        op_outputs=(36,) * 5,  # conv, ReLU, conv, ReLU, conv
        kept=3 * 36,
    )


def test_the_chapters_lazy_block_leaves_every_input_width_to_the_framework():
    """`nin_block` as the chapter writes it knows no input channels: built from no shape,
    each of its convs is asked for with in_channels None."""
    ops = _Recorder()
    S.NiNBlock(96, kernel=11, stride=4).build(ops, None)
    assert [c[1:] for c in ops.calls if c[0] == "conv"] == [
        (96, 11, 4, 0, True, None),
        (96, 1, 1, 0, True, None),
        (96, 1, 1, 0, True, None),
    ]


def test_a_spec_needs_at_least_one_class_and_one_channel():
    layers = S.chapter_spec().layers
    assert S.NetSpec(layers, num_classes=1, in_channels=1).num_classes == 1
    for bad in ({"num_classes": 0}, {"in_channels": 0}, {"num_classes": 0, "in_channels": 0}):
        with pytest.raises(ValueError, match="num_classes and in_channels must be >= 1"):
            S.NetSpec(layers, **bad)


def test_the_chapters_spec_takes_the_input_channels_it_is_given():
    spec = S.chapter_spec(in_channels=3)
    assert spec.in_channels == 3
    assert S.weight_table(spec)[0].shape == (96, 3, 11, 11)


def test_walk_yields_sizes_below_one_as_computed():
    """30 x 30 is too small for the chapter's NiN; the walk goes on all the same, floor
    division taking the sides to 0 and below and GAP keeping what it is given, so that a
    caller sees where it went wrong (check_input_size is what raises)."""
    shapes = [step.out_shape for step in S.walk(S.chapter_spec(), 30)]
    assert shapes[3:] == [
        (256, 0, 0),
        (384, 0, 0),
        (384, -1, -1),
        (384, -1, -1),
        (10, -1, -1),
        (10, -1, -1),
        (10,),
    ]


def test_a_network_of_1x1_convs_takes_a_single_pixel():
    spec = S.NetSpec((S.NiNBlock(4, 1, num_1x1=0), S.GlobalAvgPool(), S.Flatten()), 4)
    assert S.min_input_size(spec) == 1
