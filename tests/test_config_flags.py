"""The CLI is generated from ExportConfig: one flag per field, same name, help and choices from the field."""
from dataclasses import fields

import pytest

from edgepack.cli import build_parser
from edgepack.config import ExportConfig

# Command arguments that are data or files, not settings.
NOT_SETTINGS = {"help", "model", "out", "calib", "train", "train_labels", "val", "val_labels", "config",
                "artifacts", "data", "labels", "reference", "json", "fail_on_warn"}


def _actions(command):
    sub = next(a for a in build_parser()._actions if a.choices and command in a.choices)
    return {a.dest: a for a in sub.choices[command]._actions}


@pytest.mark.parametrize("command", ["export", "validate", "lint", "inspect"])
def test_every_field_has_one_flag_of_its_name_and_every_flag_a_field(command):
    actions = _actions(command)
    settings = {f.name: f for f in fields(ExportConfig) if command in f.metadata["commands"]}
    assert set(actions) - NOT_SETTINGS == set(settings)  # both ways
    for name, f in settings.items():
        a = actions[name]
        assert "--" + name.replace("_", "-") in a.option_strings
        assert a.default is None  # a flag not given leaves the --config file's value
        assert tuple(a.choices or ()) == tuple(f.metadata["choices"] or ())
        assert (a.help or "").startswith(f.metadata.get("flag_help", f.metadata["help"]))
    if command == "export":
        assert set(settings) == set(ExportConfig.keys())  # export takes every setting


def test_flags_reach_the_config_with_types_and_negation():
    from edgepack.cli import _config

    args = build_parser().parse_args(["export", "m.onnx", "--calib-limit", "7", "--percentile", "99.5",
                                      "--no-lint", "--val-limit", "12", "--finetune-lr", "0.01", "--opset", "13",
                                      "--qat-epochs", "2", "--mean", "0.5"])
    cfg = _config(args)
    assert (cfg.calib_limit, cfg.percentile, cfg.lint, cfg.val_limit) == (7, 99.5, False, 12)
    assert (cfg.finetune_lr, cfg.opset, cfg.qat_epochs, cfg.mean) == (0.01, 13, 2, (0.5,))
    assert _config(build_parser().parse_args(["export", "m.onnx"])) == ExportConfig()
    v = _config(build_parser().parse_args(["validate", "a.tflite", "--data", "x.npy", "--limit", "5"]))
    assert v.val_limit == 5 and v.target == ExportConfig().target


def test_a_bad_choice_is_one_line_naming_the_allowed_values(capsys):
    from edgepack.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["export", "m.onnx", "--calibration", "best"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "minmax" in err
