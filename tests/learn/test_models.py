import pytest
import torch

from samprivacy.errors import ConfigError
from samprivacy.learn.models import build_model


def test_paper_fc_has_the_papers_layer_sizes():
    model = build_model("fc", (600,), 100)
    sizes = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert sizes == [1024, 512, 256, 100]
    assert any(isinstance(m, torch.nn.Tanh) for m in model.modules())


def test_hidden_sizes_are_a_parameter():
    model = build_model("fc", (600,), 100, hidden=(1024, 512, 256, 128))
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [1024, 512, 256, 128, 100]


def test_wrn16_8_shapes_and_size():
    model = build_model("wrn16-8", (3, 32, 32), 100)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    n_params = sum(p.numel() for p in model.parameters())
    assert 10e6 < n_params < 12e6  # WRN-16-8 has about 11M parameters


def test_dataset_default_models():
    assert isinstance(build_model(None, (3, 32, 32), 10, dataset="cifar10").blocks, torch.nn.Sequential)
    assert build_model(None, (64,), 10, dataset="digits")(torch.zeros(3, 64)).shape == (3, 10)


@pytest.mark.parametrize("name,hidden", [("resnet50", None), ("fc", (0, 10))])
def test_bad_model_configuration(name, hidden):
    with pytest.raises(ConfigError):
        build_model(name, (8,), 2, hidden=hidden)


@pytest.mark.parametrize("hidden", [(16,), (16, 32, 64)])
def test_cnn_hidden_must_be_two_channel_counts(hidden):
    with pytest.raises(ConfigError, match=r"model 'cnn' takes `hidden` as 2 positive channel counts.*hidden = \[16, 32\]"):
        build_model("cnn", (3, 8, 8), 2, hidden=hidden)
    assert build_model("cnn", (3, 8, 8), 2, hidden=(4, 8))(torch.zeros(2, 3, 8, 8)).shape == (2, 2)


@pytest.mark.parametrize("name", ["cnn", "wrn16-8"])
def test_image_models_need_image_input(name):
    with pytest.raises(ConfigError, match=rf"model '{name}' needs image input \(C, H, W\), got \(64,\); use fc or mlp"):
        build_model(name, (64,), 10)
