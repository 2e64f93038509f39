"""Training that ends at chance accuracy is a failure with one sentence, never a silent model (issue #19): in the
engine (nothing saved, other models of the run still trained), the CLI (exit 2), a training job and the Model zoo
page."""

from __future__ import annotations

import pytest
from app_support import assert_clean, empty_home, open_app, sync_jobs, texts  # noqa: F401

from trend_core.cli import main
from trend_core.config.specs import ModelSpec
from trend_core.models.zoo import Zoo
from trend_core.runtime.jobs import JobManager, JobStatus
from trend_core.service.training import submit_training
from trend_core.training.train import CHANCE_MARGIN, TrainingFailed, check_learned

# At learning rate 9 the BatchNorm-free VGG's weights overflow in its first steps: every logit is NaN, every image
# gets class 0 and the validation accuracy is class 0's share of the stratified split, 14 of 143 (chance: 10%).
CANNOT_LEARN = "digits/vgg11-w0.125/FP/sgd/s0/e1/lr9"
LEARNS = "digits/smallcnn-w0.25/FP/sgd/s0/e1"
SENTENCE = f"Training {CANNOT_LEARN} failed: its best validation accuracy, 9.8%, is at the chance level of 10 classes"


def test_chance_is_judged_with_a_margin_on_a_large_enough_validation_split():
    spec = ModelSpec.parse(LEARNS)
    check_learned(spec, 0.1 + CHANCE_MARGIN, 10, 143)  # 15% on ten classes: learned something
    check_learned(spec, 0.02, 10, 99)  # 99 validation images say too little to judge
    check_learned(spec, 0.061, 100, 5000)  # CIFAR-100: chance is 1%
    with pytest.raises(TrainingFailed) as info:
        check_learned(spec, 0.149, 10, 143)
    message = str(info.value)
    assert message.startswith(f"Training {LEARNS} failed: its best validation accuracy, 14.9%, is at the chance")
    assert "(10%)" in message and "was not kept" in message and "\n" not in message
    with pytest.raises(TrainingFailed, match=r"4.0%, is at the chance level of 100 classes \(1%\)"):
        check_learned(spec, 0.04, 100, 5000)


def test_a_model_at_chance_is_refused_and_not_saved(tmp_path):
    zoo = Zoo(tmp_path)
    with pytest.raises(TrainingFailed) as info:
        zoo.get_or_train(CANNOT_LEARN, device="cpu")
    assert str(info.value).startswith(SENTENCE)
    assert not zoo.has(CANNOT_LEARN) and zoo.list() == [] and zoo.problems() == []


@pytest.mark.parametrize("cores", [1, 2])
def test_a_model_at_chance_stops_no_other_model_of_the_run(tmp_path, monkeypatch, cores):
    """One at a time or side by side, the model after the failed one is still trained and saved."""
    monkeypatch.setenv("TREND_CORES", str(cores))
    zoo = Zoo(tmp_path)
    with pytest.raises(TrainingFailed) as info:
        zoo.train_many([CANNOT_LEARN, LEARNS], device="cpu")
    assert str(info.value).startswith(SENTENCE)
    assert zoo.has(LEARNS) and not zoo.has(CANNOT_LEARN)


def test_several_models_at_chance_are_named_in_one_sentence(tmp_path):
    other = CANNOT_LEARN.replace("/s0/", "/s1/")
    with pytest.raises(TrainingFailed) as info:
        Zoo(tmp_path).train_many([CANNOT_LEARN, other], device="cpu")
    message = str(info.value)
    assert message.startswith(SENTENCE) and f"(nor were 1 more at chance: {other})" in message


def test_cli_train_at_chance_exits_2_with_one_line(tmp_path, capsys):
    code = main(["train", CANNOT_LEARN, "--home", str(tmp_path), "--device", "cpu"])
    _, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("trend: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert errors[0].removeprefix("trend: error: ").startswith(SENTENCE)
    assert not Zoo(tmp_path).has(CANNOT_LEARN)


def test_training_job_at_chance_fails_with_the_sentence(tmp_path):
    zoo = Zoo(tmp_path)
    job = submit_training(zoo, [ModelSpec.parse(CANNOT_LEARN)], device="cpu", manager=JobManager(sync=True))
    assert job.status is JobStatus.FAILED and job.error.startswith(SENTENCE)
    assert not zoo.has(CANNOT_LEARN)


def test_model_zoo_page_shows_the_sentence(empty_home):
    """The Train tab's job panel shows a training job that ended at chance as the failure sentence."""
    job = submit_training(Zoo(empty_home), [ModelSpec.parse(CANNOT_LEARN)], "cpu")
    job.meta["slots"] = ["zoo-train"]  # launched from the Train tab (remember_job)
    at = open_app("pages/model_zoo.py")
    assert_clean(at)
    assert any(message.startswith(SENTENCE) for message in texts(at.error)), texts(at.error)
    assert any("No digits models" in message for message in texts(at.info))
