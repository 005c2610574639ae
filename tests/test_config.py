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
    (("dropout",), "regularizers='dropout': unknown regularizer 'dropout'"),
    (("BN_X",), "regularizers='BN_X': unknown regularizer 'x'"),
    ("l2,bogus", "regularizers='l2,bogus': unknown regularizer 'bogus'"),
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
    with pytest.raises(ValueError, match="egf_points=9: must be <= epochs=2"):
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
        "config.optimizer='adamax': must be one of ['sgd', 'momentum', "
        "'adagrad', 'rmsprop', 'adam', 'adamw']"]
    assert config_lib.recorded_problems({"optimizer": "adam"}, required=(
        "dense_width",)) == ["config.dense_width: missing"]
    model = {"diverged": False, "test_accuracy": 0.5, "test_loss": 1.0}
    found = results.problems({"config": {**good, "optimizer": 3},
                              "models": {"sparse": model, "dense": model}})
    assert found == ["config.optimizer: expected str, got int 3"]


def test_a_regulariser_named_twice_is_refused():
    with pytest.raises(ValueError, match="regularizers='BN_BN': bn named twice"):
        ComparisonConfig(regularizers="BN_BN").validate()
    with pytest.raises(ValueError, match="regularizers='l2,L2_BN': l2 named twice"):
        ComparisonConfig(regularizers=("l2", "L2_BN")).validate()
