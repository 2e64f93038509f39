"""The Model zoo page under AppTest: table and filters, training from pickers, weight upload, delete."""

from __future__ import annotations

import io
import pickle

import torch
from app_support import APP_MODELS, assert_clean, empty_home, open_app, sync_jobs, texts, zoo_home  # noqa: F401
from conftest import FP, Q1

PAGE = "pages/model_zoo.py"


def test_empty_zoo_says_what_to_do(empty_home):
    at = open_app(PAGE)
    assert any("No digits models" in m for m in texts(at.info))


def test_table_filters_and_accuracy_chart_use_model_names(zoo_home):
    at = open_app(PAGE)
    table = at.dataframe[0].value
    assert sorted(table["name"]) == sorted(APP_MODELS) and (table["test acc %"] > 80).all()
    from app_support import figures

    bars = figures(at)[0]
    labels = {y for trace in bars["data"] for y in trace["y"]}
    assert labels == {"FP-s0", "FP-s1", "Q1-s0"}
    at.multiselect(key="zoo_f_input").set_value(["Q1"]).run()
    assert list(at.dataframe[0].value["name"]) == [Q1]
    at.text_input(key="zoo_f_text").set_value("nothing-matches").run()
    assert at.dataframe[0].value.empty


def test_train_from_pickers_adds_the_model(zoo_home):
    from trend_core.models.zoo import Zoo

    at = open_app(PAGE)
    at.number_input(key="zoo_epochs").set_value(1)
    at.multiselect(key="zoo_inputs").set_value(["Q4"])
    at.multiselect(key="zoo_wbits").set_value([2]).run()
    assert any("1 model selected, 1 not yet trained: Q4-W2-s0" in c for c in texts(at.caption))
    at.button(key="zoo_train").click().run()
    assert_clean(at)
    name = "digits/resnet18-w0.25/Q4-W2/sgd/s0/e1"
    assert Zoo(zoo_home).has(name)
    assert any(s.startswith("Training 1 model: done") for s in texts(at.success))
    assert name in list(at.dataframe[0].value["name"])


def test_demo_zoo_next_to_the_preset_gets_unique_labels_and_the_train_tab_keeps_its_own_messages(zoo_home):
    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import Zoo
    from trend_core.service.training import submit_training

    tiny = "digits/resnet18-w0.25/FP/sgd/s0/e1"  # a short FP-s0, as the quick demo zoo's next to the preset's
    build = submit_training(Zoo(zoo_home), [ModelSpec.parse(tiny)], "cpu")
    build.meta["slots"] = ["zoo-build"]  # what the overview's button does (remember_job)
    at = open_app(PAGE)
    assert_clean(at)
    assert not any("Training 1 model" in s for s in texts(at.success))  # the overview's job is not the Train tab's
    from app_support import figures

    labels = {y for trace in figures(at)[0]["data"] for y in trace["y"]}
    assert labels == {"FP-s0-e1", "FP-s0-e20", "FP-s1", "Q1-s0"}  # one bar per model, none stacked
    assert sorted(at.dataframe[0].value["label"]) == ["FP-s0-e1", "FP-s0-e20", "FP-s1", "Q1-s0"]


def _state_dict_bytes(name: str) -> bytes:
    from conftest import TEST_ZOO_DIR

    from trend_core.models.zoo import Zoo

    buffer = io.BytesIO()
    torch.save(Zoo(TEST_ZOO_DIR).load(name).state_dict(), buffer)
    return buffer.getvalue()


class _Boom:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_upload_adopts_a_state_dict_and_refuses_bad_files(zoo_home, capsys):
    from trend_core.models.zoo import Zoo

    at = open_app(PAGE)
    target = "digits/resnet18-w0.25/FP/sgd/s7"  # weights of FP s0 under another seed's name
    at.text_input(key="zoo_up_name").set_value(target)
    at.file_uploader(key="zoo_up_file").set_value(("fp.pt", _state_dict_bytes(FP), "application/octet-stream")).run()
    at.button(key="zoo_up_go").click().run()
    assert_clean(at)
    (message,) = texts(at.success)
    assert message.startswith(f"Imported {target}: test accuracy") and Zoo(zoo_home).has(target)

    at.file_uploader(key="zoo_up_file").set_value(("evil.pt", pickle.dumps({"w": _Boom()}), "application/octet-stream"))
    at.text_input(key="zoo_up_name").set_value("digits/resnet18-w0.25/FP/sgd/s8").run()
    at.button(key="zoo_up_go").click().run()
    assert_clean(at)
    (error,) = texts(at.error)
    assert error.startswith("evil.pt is not a PyTorch state_dict this app can read") and "trend-upload" not in error
    assert "weights_only" not in error  # PyTorch's own text is not shown
    assert "this must never run" not in capsys.readouterr().out
    assert not Zoo(zoo_home).has("digits/resnet18-w0.25/FP/sgd/s8")

    at.file_uploader(key="zoo_up_file").set_value(("q.pt", _state_dict_bytes(FP), "application/octet-stream"))
    at.text_input(key="zoo_up_name").set_value("digits/vgg11_bn-w0.25/FP/sgd/s0").run()
    at.button(key="zoo_up_go").click().run()
    assert_clean(at)
    (error,) = texts(at.error)
    assert error.startswith("q.pt holds weights of another architecture than digits/vgg11_bn-w0.25/FP/sgd/s0"), error

    at.file_uploader(key="zoo_up_file").set_value(("notes.pth", b"just some text", "application/octet-stream"))
    at.text_input(key="zoo_up_name").set_value(FP).run()  # FP is in the zoo: replacing it needs a confirmation
    at.checkbox(key="zoo_up_replace").check().run()
    at.button(key="zoo_up_go").click().run()
    assert_clean(at)
    (error,) = texts(at.error)
    assert error.startswith("notes.pth is not a PyTorch state_dict") and error.count(". ") == 0, error

    at.text_input(key="zoo_up_name").set_value("not a model name").run()
    at.button(key="zoo_up_go").click().run()
    assert_clean(at)
    assert any("too few parts" in e for e in texts(at.error))


def test_delete_removes_checkpoints_after_confirmation(zoo_home):
    from trend_core.models.zoo import Zoo

    at = open_app(PAGE)
    at.multiselect(key="zoo_del_names").set_value([Q1]).run()
    assert at.button(key="zoo_del_go").disabled  # not without the confirmation
    at.checkbox(key="zoo_del_sure").check().run()
    at.button(key="zoo_del_go").click().run()
    assert_clean(at)
    assert not Zoo(zoo_home).has(Q1) and Zoo(zoo_home).has(FP)
    assert "Deleted 1 model." in texts(at.success)
    assert Q1 not in list(at.dataframe[0].value["name"])
