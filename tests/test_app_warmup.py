"""The demo warm-up under AppTest: once every page's default run is computed (trend_core.service.warmup), opening
each page shows its result, and pressing its run buttons starts nothing new: the warm-up's job keys are the
pages' keys. The defaults are shrunk (fewer images and steps) for speed; pages and warm-up read the same ones."""

from __future__ import annotations

import pytest
from app_support import assert_clean, empty_home, open_app, sync_jobs, texts, zoo_home  # noqa: F401

SMALL = {
    "TRANSFER_IMAGES": 20,
    "ENSEMBLE_IMAGES": 10,
    "ENSEMBLE_STEPS": 3,
    "CURVE_IMAGES": 10,
    "CURVE_STEPS": 3,
    "CURVE_POINTS": 4,
    "AUDIT_IMAGES": 6,
    "POOL_IMAGES": 12,
    "POOL_STEPS": 3,
    "BUILDER_IMAGES": 8,
    "BUILDER_STEPS": 3,
}

# page -> (the heading its result shows, its run buttons in the order a user presses them)
PAGES = {
    "pages/decision_boundary.py": ("Class maps around image", ["db_run"]),
    "pages/tm_curve.py": ("TM(eps) of", ["tc_run"]),
    "pages/ensemble_attacks.py": ("Attack success against", ["ea_run"]),
    "pages/transferability.py": ("Transferability:", ["tr_run"]),
    "pages/audit.py": ("Audit of the", ["au_run"]),
    "pages/trend_builder.py": ("3. Robustness of the vote", ["tb_launch", "tb_eval", "tb_rank", "tb_grow", "tb_audit"]),
}


@pytest.fixture
def small_defaults(monkeypatch):
    from trend_core.service import defaults

    for name, value in SMALL.items():
        # seam: the pages' default run sizes are product constants (no setting); tiny ones keep the test fast
        monkeypatch.setattr(defaults, name, value)


def known_keys() -> set[str]:
    from trend_core.runtime.jobs import get_manager

    return {job.key for job in get_manager().jobs()}


@pytest.mark.slow
def test_after_the_warm_up_every_page_shows_its_default_run_and_starts_nothing(zoo_home, small_defaults):
    from trend_core.models.zoo import Zoo
    from trend_core.runtime.jobs import JobStatus
    from trend_core.service.warmup import submit_warmup
    from trend_core.storage.store import get_store

    warm = submit_warmup(Zoo(zoo_home), get_store(zoo_home), "digits")
    assert warm.status is JobStatus.DONE, warm.error
    assert not warm.result["failed"]
    assert len(warm.result["done"]) == 10  # six pages' runs, then the builder's evaluation, ranking, growth, audit
    keys = known_keys()
    assert set(warm.result["done"]) <= keys
    for page, (heading, buttons) in PAGES.items():
        at = open_app(page)
        assert any(h.startswith(heading) for h in texts(at.subheader)), (page, texts(at.subheader))
        assert at.get("plotly_chart"), f"{page} shows no result"
        if page.endswith("trend_builder.py"):  # the evaluation's bars and the growth curve, not the hint
            assert len(at.get("plotly_chart")) >= 2
            assert not any("Press **Evaluate**" in c for c in texts(at.caption))
        for button in buttons:
            at.button(key=button).click().run()
            assert_clean(at)
            assert not texts(at.error), (page, button, texts(at.error))
        assert known_keys() == keys, f"{page}: a press started a job the warm-up did not compute"


def test_the_overview_build_button_warms_the_pages_up(empty_home, small_defaults, monkeypatch):
    import trend_ui.zoo_actions

    tiny = ("digits/resnet18-w0.25/FP/sgd/s0/e1", "digits/resnet18-w0.25/Q1/sgd/s0/e1")  # two 1-epoch models
    # seam: the demo zoo's models are a product constant (no setting); two 1-epoch models keep the test fast
    monkeypatch.setattr(trend_ui.zoo_actions, "QUICK_DEMO", tiny)
    at = open_app()
    assert at.toggle(key="warm_defaults").value  # on by default
    at.button(key="build_demo_zoo").click().run()
    assert_clean(at)
    assert any(s.startswith("Every page's default run on the digits zoo: done") for s in texts(at.success))
    keys = known_keys()
    at = open_app("pages/decision_boundary.py")
    assert any(h.startswith("Class maps around image") for h in texts(at.subheader))
    at.button(key="db_run").click().run()
    assert known_keys() == keys
