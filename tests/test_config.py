"""ComparisonConfig (keras_egf/config.py): the regularisers' two spellings
and egf_points's default."""

import pytest

from keras_egf import config as config_lib
from keras_egf.config import ComparisonConfig


@pytest.mark.parametrize("given, expected", [
    (("BN",), ("bn",)),                          # --regularizers=BN
    (("bn",), ("bn",)),
    (("SC_BN",), ("sc", "bn")),                  # a grid label
    (("NR",), ()),
    (("l2", "BN"), ("l2", "bn")),                # --regularizers=l2,BN
    (("DA_L2", "sc"), ("da", "l2", "sc")),
    ("DA_L2_SC_BN", ("da", "l2", "sc", "bn")),   # a grid's string
    ("l2,bn", ("l2", "bn")),                     # a comma list in a grid
    ((), ()),
    (("",), ()),
])
def test_regularizers_accept_both_spellings(given, expected):
    assert ComparisonConfig(regularizers=given).validate().regularizers == expected


def test_regularizer_labels_round_trip():
    for label in ("NR", "L2", "BN", "SC_BN", "DA_L2_SC_BN"):
        names = config_lib.parse_regularizers(label)
        assert config_lib.regularizer_label(names) == label
        assert config_lib.parse_regularizers(",".join(names).lower()) == names


@pytest.mark.parametrize("given, named", [
    (("dropout",), r"^`regularizers` must be .*\(unknown regularizer 'dropout'\)\. "
     "Received: regularizers='dropout'$"),
    (("BN_X",), r"\(unknown regularizer 'x'\)\. Received: regularizers='BN_X'$"),
    ("l2,bogus", r"\(unknown regularizer 'bogus'\)\. Received: regularizers='l2,bogus'$"),
])
def test_unknown_regularizer_is_named(given, named):
    with pytest.raises(ValueError, match=named):
        ComparisonConfig(regularizers=given).validate()


@pytest.mark.parametrize("epochs, points", [(1, 1), (3, 3), (5, 5), (40, 5)])
def test_egf_points_default_to_at_most_the_epochs(epochs, points):
    config = ComparisonConfig(epochs=epochs).validate()
    assert config.egf_points == points
    assert config.to_dict()["egf_points"] == points  # results.json's config


def test_explicit_egf_points_are_still_checked():
    assert ComparisonConfig(epochs=10, egf_points=10).validate().egf_points == 10
    with pytest.raises(ValueError, match="^`egf_points` must be <= epochs=2. "
                       "Received: egf_points=9$"):
        ComparisonConfig(epochs=2, egf_points=9).validate()
    with pytest.raises(ValueError, match="epochs=0"):
        ComparisonConfig(epochs=0).validate()


def test_a_results_config_of_the_wrong_types_is_named():
    """Issue 27.6: a results.json config with "optimizer": 3 and
    "dense_width": "sixteen" was read as a trial (and plotted as width_3)."""
    from keras_egf import results

    good = {"optimizer": "adam", "regularizers": ["bn"], "activation": "relu",
            "dense_width": 8}
    assert config_lib.recorded_problems(good) == []
    assert config_lib.recorded_problems({"optimizer": 3, "dense_width": "sixteen"}) == [
        "config.optimizer: expected str, got int 3",
        "config.dense_width: expected int, got str 'sixteen'"]
    assert config_lib.recorded_problems({**good, "optimizer": "adamax"}) == [
        "config.optimizer: `optimizer` must be one of ['sgd', 'momentum', "
        "'adagrad', 'rmsprop', 'adam', 'adamw'] (or one registered with "
        "keras_egf.optimizers.register_optimizer). Received: optimizer='adamax'"]
    assert config_lib.recorded_problems({"optimizer": "adam"}, required=(
        "dense_width",)) == ["config.dense_width: missing"]
    model = {"diverged": False, "test_accuracy": 0.5, "test_loss": 1.0}
    found = results.problems({"config": {**good, "optimizer": 3},
                              "models": {"sparse": model, "dense": model}})
    assert found == ["config.optimizer: expected str, got int 3"]


def test_a_regulariser_named_twice_is_refused():
    with pytest.raises(ValueError, match=r"\(bn named twice\)\. "
                       "Received: regularizers='BN_BN'$"):
        ComparisonConfig(regularizers="BN_BN").validate()
    with pytest.raises(ValueError, match=r"\(l2 named twice\)\. "
                       "Received: regularizers='l2,L2_BN'$"):
        ComparisonConfig(regularizers=("l2", "L2_BN")).validate()


def test_names_registered_after_import_are_valid_settings():
    """Issue 23: the config read its choices at import, so a pruning method,
    architecture or optimizer registered later was refused."""
    import keras

    from keras_egf import architectures, optimizers, pruning

    settings = {"pruning": "first_entries", "arch": "mlp_copy",
                "optimizer": "sgd_copy"}
    for name, value in settings.items():
        with pytest.raises(ValueError, match=f"Received: {name}={value!r}"):
            ComparisonConfig(**{name: value}).validate()
    pruning.register_pruning_method(
        "first_entries", lambda model, batches=None, seed=None: {})
    architectures.register_architecture(
        architectures.get_architecture("mlp")._replace(name="mlp_copy"))
    optimizers.register_optimizer(
        "sgd_copy", lambda lr, weight_decay: keras.optimizers.SGD(lr))
    try:
        config = ComparisonConfig(**settings).validate()
        assert (config.pruning, config.arch, config.optimizer) == (
            "first_entries", "mlp_copy", "sgd_copy")
        assert config.dense_widths() == [308]  # the registered mlp's
        assert config_lib.recorded_problems(config.to_dict()) == []
        assert isinstance(optimizers.make_optimizer("sgd_copy", 0.1),
                          keras.optimizers.SGD)
    finally:
        pruning.PRUNING_METHODS.unregister("first_entries")
        architectures.ARCHITECTURES.unregister("mlp_copy")
        optimizers.OPTIMIZERS.unregister("sgd_copy")
    with pytest.raises(ValueError, match="Received: optimizer='sgd_copy'"):
        ComparisonConfig(optimizer="sgd_copy").validate()


@pytest.mark.parametrize("regularizers, derived", [
    ("NR", dict(batch_norm=False, skip_connections=False, augmentation=False,
                l2_factor=0.0)),
    ("DA_L2_SC_BN", dict(batch_norm=True, skip_connections=True,
                         augmentation=True, l2_factor=5e-4)),
    ("l2", dict(batch_norm=False, skip_connections=False, augmentation=False,
                l2_factor=5e-4)),
])
def test_the_config_answers_what_its_regularisers_imply(regularizers, derived):
    for config in (ComparisonConfig(regularizers=regularizers),
                   ComparisonConfig(regularizers=regularizers).validate()):
        assert {k: getattr(config, k) for k in derived} == derived


def test_model_names_and_skip_without_effect():
    assert ComparisonConfig().model_names == ("sparse", "dense")
    assert ComparisonConfig(models="dense").model_names == ("dense",)
    assert ComparisonConfig(regularizers="SC", depth=1).skip_without_effect
    assert not ComparisonConfig(regularizers="SC", depth=2).skip_without_effect
    assert not ComparisonConfig(regularizers="BN", depth=1).skip_without_effect


def test_each_rule_is_declared_beside_its_setting():
    """The flag help and the check read the same rule."""
    from keras_egf import settings

    fields = {f.name: f for f in config_lib.fields()}
    assert settings.flag_help(fields["depth"]).endswith(
        "Must be a positive integer.")
    with pytest.raises(ValueError, match=r"^`depth` must be a positive integer\. "
                       "Received: depth=0$"):
        ComparisonConfig(depth=0).validate()
    assert "adamw" in settings.flag_help(fields["optimizer"])
    assert settings.choices(fields["egf_data"]) == ("train", "test")
    assert not settings.is_registered(fields["egf_data"])
    assert settings.is_registered(fields["pruning"])
    assert config_lib.COMBINED_CHECKS == (
        "regularizers", "arch", "sparse_width", "dense_width", "wrn_depth",
        "egf_points", "epochs")
