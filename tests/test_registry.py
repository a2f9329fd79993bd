import subprocess
import sys

import pytest

from dlrun.errors import ConfigError
from dlrun.registry import Registry


def make():
    reg = Registry("model", context=["input_shape", "num_outputs"])

    @reg.register("tiny")
    def tiny(input_shape, num_outputs, width=4):
        return ("tiny", input_shape, num_outputs, width)

    return reg


def test_build_passes_arguments_and_only_declared_context():
    reg = make()
    assert reg.build({"name": "tiny", "width": 8}, input_shape=(3,), num_outputs=2, unused=1) == ("tiny", (3,), 2, 8)
    assert reg.names() == ["tiny"]


def test_unknown_name_lists_known_ones_with_suggestion():
    with pytest.raises(ConfigError) as err:
        make().build({"name": "tinny"})
    assert "model.name=tinny is not known" in str(err.value)
    assert "Did you mean 'tiny'?" in str(err.value)
    assert "Choose one of: tiny" in str(err.value)


def test_unknown_argument_names_the_builders_arguments():
    with pytest.raises(ConfigError) as err:
        make().check({"name": "tiny", "widht": 3})
    message = str(err.value)
    assert "model.widht is not an argument" in message and "Did you mean 'width'?" in message
    assert "Its arguments: width" in message


def test_target_import_path_builds_users_callable():
    reg = Registry("thing")
    assert reg.build({"_target_": "json.dumps", "obj": [1]}) == "[1]"
    assert reg.build({"_target_": "collections.OrderedDict", "a": 1}) == {"a": 1}
    with pytest.raises(ConfigError, match="cannot be imported"):
        reg.build({"_target_": "no_such_module.thing"})


def test_registering_a_name_twice_is_an_error():
    reg = make()
    with pytest.raises(ValueError):
        reg.register("tiny")(lambda: None)


def test_names_default_to_the_function_name_and_filter_by_pattern():
    reg = Registry("model")

    @reg.register
    def resnet_small(input_shape, num_outputs):
        return "small"

    @reg.register()
    def resnet_big(input_shape, num_outputs):
        return "big"

    @reg.register("mlp")
    def anything(input_shape, num_outputs):
        return "mlp"

    assert reg.names() == ["mlp", "resnet_big", "resnet_small"]
    assert reg.names("*res*") == ["resnet_big", "resnet_small"]
    assert reg.build({"name": "resnet_small"}, input_shape=(1,), num_outputs=2) == "small"


def test_registries_are_complete_right_after_import_in_a_fresh_interpreter():
    code = ("import dlrun\nfrom dlrun.data import DATASETS\n"
            "print(DATASETS.build({'name': 'iris'}).task, dlrun.list_models('*res*'), dlrun.list_optimizers('adam*'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split() == ["multiclass", "['resnet18']", "['adam',", "'adamw']"]


def test_the_api_lists_what_the_command_line_takes(tmp_path):
    import dlrun

    assert {"run", "compose", "list_datasets", "list_models"} <= set(dir(dlrun))
    # dataset= options (a YAML over the synthetic builder) and registered builders alike
    assert dlrun.list_datasets("synthetic*") == ["synthetic", "synthetic_imbalanced"]
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "my_digits.yaml").write_text("name: digits\n")
    assert "my_digits" in dlrun.list_datasets(config_dir=tmp_path) and "my_digits" not in dlrun.list_datasets()
    assert dlrun.compose(["dataset=my_digits"], config_dir=str(tmp_path)).dataset.name == "digits"
