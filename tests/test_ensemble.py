"""The ensemble's doors: every member's training range checked against the data, whatever their order; flip_average a
bool; members as a list or a dict of MLPs, anything else refused with a sentence."""

import numpy as np
import pytest

from modules import MLP
from study.ensemble import Ensemble


@pytest.fixture(scope="module")
def members(data):
    """Two tiny trained models: one on the data as it is, one on the same data scaled by 255."""
    X, y, X_val, y_val = data
    plain, scaled = (MLP([20, 6, 3], seed=seed, max_epoch=1, batch_size=50, print_log=False) for seed in (1, 2))
    plain.train(X, y, X_val, y_val)
    scaled.train(X * 255, y, X_val * 255, y_val)
    return plain, scaled


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_every_member_s_training_range_is_checked_whatever_their_order(data, members, order):
    X, y = data[2] * 255, data[3]
    ensemble = Ensemble([members[i] for i in order])
    plain_at = order.index(0) + 1
    refused = (rf"ensemble member {plain_at} of 2 cannot take this data: (prediction|evaluation) data spans .*, far "
               r"outside the range .* of the data the model was trained on")
    for call in (ensemble.predict, ensemble.probabilities, ensemble.growing_probabilities):
        with pytest.raises(ValueError, match=refused):
            call(X)
    with pytest.raises(ValueError, match=refused.replace("(prediction|evaluation)", "evaluation")):
        ensemble.evaluate(X, y)
    assert Ensemble([members[1]]).predict(X).shape == (len(X),)  # the member trained on this scale takes it


@pytest.mark.parametrize("flip", ["no", "False", 1, 0, None, 1.0])
def test_flip_average_must_be_a_bool(members, flip):
    with pytest.raises(ValueError, match=f"flip_average must be True or False, got {flip!r}"):
        Ensemble([members[0]], flip_average=flip)


def test_flip_average_takes_python_and_numpy_bools():
    square = MLP([16, 4, 2], print_log=False)
    X = np.random.default_rng(0).random((5, 16)).astype(np.float32)
    for flip in (True, np.True_):
        assert Ensemble([square], flip_average=flip).flip_average is True
    np.testing.assert_array_equal(Ensemble([square], flip_average=np.False_).probabilities(X),
                                  square.forward(X.astype(np.float64)))


def test_members_given_as_a_dict_are_its_models_in_its_order(data, members):
    named = {"b": members[1], "a": members[0]}
    ensemble = Ensemble(named)
    assert ensemble.members == [members[1], members[0]]
    X = data[2]
    np.testing.assert_array_equal(ensemble.probabilities(X), Ensemble([members[1], members[0]]).probabilities(X))
    with pytest.raises(ValueError, match=r"ensemble member 'b' of 2 cannot take this data"):
        Ensemble({"a": members[1], "b": members[0]}).predict(X * 255)  # "b" was trained on the unscaled data


@pytest.mark.parametrize("given, message", [
    (["model.npz"], r"member 1 is 'model.npz', not an MLP: .*Ensemble.from_files"),
    ([None], "member 1 is None, not an MLP"),
    ({"a": "model.npz"}, "member 'a' is 'model.npz', not an MLP"),
    ("model.npz", r"members must be a list or a dict of MLPs, got 'model.npz': .*Ensemble.from_files"),
    (5, "members must be a list or a dict of MLPs, got 5"),
    (None, "members must be a list or a dict of MLPs, got None"),
])
def test_members_that_are_not_mlps_are_refused_with_a_sentence(members, given, message):
    if isinstance(given, list):
        given = [members[0], *given]
        message = message.replace("member 1", "member 2")
    with pytest.raises(ValueError, match=message):
        Ensemble(given)


def test_a_single_mlp_is_refused_with_the_list_to_give_instead(members):
    with pytest.raises(ValueError, match=r"members must be a list or a dict of MLPs, got a single MLP: pass \[model\]"):
        Ensemble(members[0])


def test_members_of_other_input_or_output_sizes_are_named():
    with pytest.raises(ValueError, match=r"members must share their input and output sizes, but member 2 maps 784 "
                                         r"inputs to 5 classes and member 1 maps 784 inputs to 10 classes"):
        Ensemble([MLP([784, 10]), MLP([784, 5])])
    with pytest.raises(ValueError, match=r"member 'wide' maps 20 inputs to 3 classes and member 'small' maps 16"):
        Ensemble({"small": MLP([16, 3]), "wide": MLP([20, 3])})


def test_from_files_takes_a_list_of_paths_not_one_path(members, tmp_path):
    members[0].save_param(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"paths must list the members' files, got the single path .*m.npz"):
        Ensemble.from_files(str(tmp_path / "m.npz"))
    assert len(Ensemble.from_files([tmp_path / "m.npz"]).members) == 1
