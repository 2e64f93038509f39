"""Transferability: attack source models, evaluate every target on the adversarial images, read the TM matrix."""

from __future__ import annotations

import streamlit as st

import trend_ui

EXAMPLES_SHOWN = 6


def choose_models(ctx, metas: list[dict]) -> tuple[list[str], list[str]]:
    """Sources and targets (canonical names) from two pickers or from a family preset."""
    from trend_core.config.specs import ModelSpec

    label_of = trend_ui.model_labels(metas)
    names = list(label_of)
    mode = st.radio(
        "Models",
        ["Family preset", "Pick sources and targets"],
        horizontal=True,
        key="tr_mode",
        help="A family holds zoo models that differ in one factor only (seed, architecture, optimizer, "
        "input, weight or activation quantization); each is then both source and target.",
    )
    if mode == "Family preset":
        from trend_core.models.families import families

        specs = (ModelSpec.parse(n) for n in names if not n.startswith("user/"))  # imported networks: no spec
        found = families(specs, imported=excluded_imports(metas, "tr_imported"))
        if not found:
            st.info("No family in this zoo yet (models that differ in one factor only); pick models instead.")
            return [], []
        options = ["all models in the zoo"] + list(found)
        choice = st.selectbox("Family", options, key="tr_family")
        members = names if choice == options[0] else [s.name for s in found[choice]]
        st.caption("Models: " + ", ".join(label_of[n] for n in members))
        return members, members
    from trend_core.service.defaults import TRANSFER_PICKED

    left, right = st.columns(2)
    fmt = label_of.get
    picked = names[: min(TRANSFER_PICKED, len(names))]
    sources = left.multiselect("Sources (attacked)", names, default=picked, format_func=fmt, key="tr_sources")
    targets = right.multiselect("Targets (evaluated)", names, default=picked, format_func=fmt, key="tr_targets")
    return sources, targets


def excluded_imports(metas: list[dict], key: str) -> set[str]:
    """Imported models (canonical names) to keep out of families or seed statistics: all of them, unless the
    user includes them (the toggle is shown only when the zoo holds some)."""
    from trend_core.models.families import imported_names

    imported = imported_names(metas)
    if imported and st.toggle(
        f"Include the {len(imported)} imported model{'s' if len(imported) > 1 else ''} "
        "(their weights were not trained here)",
        key=key,
        help="Imported weights were not trained here from their spec: their seed number says "
        "nothing about training, so they are left out unless you include them.",
    ):
        return set()
    return imported


def choose_attack(ctx) -> tuple[str, dict, int]:
    """The attack name, its parameters (from the engine's ``attack_settings``, as the CLI reads them) and how
    many test images to use."""
    from trend_core.attacks.registry import ATTACK_NAMES
    from trend_core.attacks.settings import attack_settings
    from trend_core.service.defaults import transfer_eps, transfer_limit, transfer_params

    catalog = {name: attack_settings(name, ctx.dataset) for name in ATTACK_NAMES}
    c1, c2, c3, c4 = st.columns([1.3, 1.6, 1, 1])
    attack = c1.selectbox("Attack", list(catalog), format_func=lambda n: catalog[n].label, key="tr_attack")
    settings = catalog[attack]
    default = transfer_eps(attack, ctx.dataset)
    top = float(settings.eps.high)
    eps = c2.slider(
        "eps (perturbation budget)" + (", 0 = no clip" if settings.minimum_norm else ""),
        0.0,
        top,
        default,
        step=float(round(top / 100, 5)),
        key=f"tr_eps_{attack}",
        format="%.4f",
        help=f"Pixel units (images in [0, 1]); the paper's CIFAR value is 8/255; the "
        f"{ctx.dataset} default is {default:.3g}.",
    )
    steps = settings.setting("steps")
    chosen_steps = int(
        c3.number_input("Steps", int(steps.low), int(steps.high), int(steps.default), key=f"tr_steps_{attack}")
    )
    more = {}
    if "kappa" in {p.name for p in settings.params}:
        kappa = settings.setting("kappa")
        more["kappa"] = c4.number_input(
            "kappa (confidence)",
            float(kappa.low),
            float(kappa.high),
            float(kappa.default),
            step=5.0,
            key="tr_kappa",
            help="The paper compares kappa = 0 and 30: higher transfers more.",
        )
    params = transfer_params(attack, ctx.dataset, eps, chosen_steps, **more)  # PGD's eps 0: an error, said so
    total = trend_ui.count_test_images(ctx.dataset)
    if total <= 20:  # a slider needs a range: a small test split is used whole
        st.caption(f"Test images: all {total} of the {ctx.dataset} test split.")
        return attack, params, total
    limit = st.slider(
        "Test images",
        20,
        total,
        transfer_limit(total),
        step=10 if total > 100 else 1,
        key="tr_limit",
        help="The first N test images; more images, steadier TM, longer run.",
    )
    return attack, params, int(limit)


def attack_label(name: str, dataset: str) -> str:
    from trend_core.attacks.registry import ATTACK_NAMES
    from trend_core.attacks.settings import attack_settings

    return attack_settings(name, dataset).label if name in ATTACK_NAMES else name


def show_result(ctx, result) -> None:
    """Heatmap with averages, asymmetry, Table II-style tables, example images and downloads."""
    from trend_core.plots.transfer import asymmetry_heatmap, tm_heatmap

    matrix, pairs = result.matrix(), result.long()
    eps_text = "no eps clip" if result.eps is None else f"eps {result.eps:.4g}"
    attack = result.attack.split("(")[0]
    st.subheader(f"Transferability: {attack_label(attack, ctx.dataset)}, {eps_text}, {result.n_images} images")
    st.caption(f"Attack settings: {result.attack}")
    for warning in result.warnings:
        st.warning(warning)
    heat, asym, tables, examples, downloads = st.tabs(["TM heatmap", "Asymmetry", "Table", "Examples", "Downloads"])
    with heat:
        st.caption(
            "Rows: the source the attack was crafted on; columns: the target evaluated on those images. "
            "TM = transferred / generated on images both classify correctly. Row average: how good a "
            "source is for the attacker; column average: how exposed a target is (lower is safer)."
        )
        st.plotly_chart(tm_heatmap(matrix, pairs), width="stretch", key="tm_heatmap")
    with asym:
        both = [m for m in result.sources if m in result.targets]
        if len(both) < 2:
            st.info("The asymmetry view needs at least two models that are both source and target.")
        else:
            st.caption("TM(a→b) − TM(b→a): red cells mean a's adversarial images fool b more than b's fool a.")
            st.plotly_chart(asymmetry_heatmap(matrix), width="stretch", key="asymmetry")
    with tables:
        show_tables(ctx, result, pairs)
    with examples:
        show_examples(ctx, result)
    with downloads:
        stem = f"tm-{result.attack.split('(')[0]}-{'none' if result.eps is None else f'{result.eps:.4g}'}"
        st.markdown("**Pairs** (one row per source → target)")
        trend_ui.download_frame(pairs, stem + "-pairs", key="dl_pairs")
        st.markdown("**Matrix** (with row and column averages)")
        trend_ui.download_frame(matrix, stem + "-matrix", key="dl_matrix")


def show_tables(ctx, result, pairs) -> None:
    """The paper's Table II: per pair, and mean ± std over seeds of one configuration."""
    from trend_core.errors import TrendError
    from trend_core.experiments.transfer_tables import model_groups, seed_group_table
    from trend_core.models.families import without_imported

    shown = pairs[pairs["source"] != pairs["target"]].copy()
    shown["transfer %"] = 100 * shown["tm"]
    shown = shown.rename(columns={"mean_l2": "L2", "mean_linf": "L-inf", "n_common": "both correct"})
    st.markdown("**Per pair** (off-diagonal): adversarial images generated on the source, transferred to the target")
    st.dataframe(
        shown[["source", "target", "both correct", "generated", "transferred", "transfer %", "L2", "L-inf"]],
        hide_index=True,
        width="stretch",
        column_config={
            "transfer %": st.column_config.NumberColumn(format="%.1f"),
            "L2": st.column_config.NumberColumn(format="%.3f"),
            "L-inf": st.column_config.NumberColumn(format="%.4f"),
        },
    )
    excluded = excluded_imports(ctx.models(), "tr_imported_seeds")
    imported = {label for label, name in result.specs.items() if name in excluded}
    try:
        seeds = seed_group_table(result, without_imported(model_groups(result), imported))
    except TrendError as exc:
        st.info(f"Mean ± std over seeds: {exc}")
        return
    st.markdown(
        "**Mean ± std over seeds** (every source seed against every other seed of the same configuration"
        + ("; imported models left out" if imported else "")
        + ")"
    )
    st.dataframe(trend_ui.tables.readable_columns(trend_ui.tables.mean_std_frame(seeds)), width="stretch")


def show_examples(ctx, result) -> None:
    """Clean / adversarial / perturbation images of one pair: some that transferred, some that did not."""
    from trend_core.config.datasets import get_info
    from trend_core.plots.transfer import pair_examples_figure
    from trend_core.service.transfer import submit_transfer

    pairs = [(s, t) for s in result.sources for t in result.targets if s != t]
    if not pairs:
        st.info("Examples need a pair of two different models.")
        return
    pair = st.selectbox("Pair (source → target)", pairs, format_func=lambda p: f"{p[0]} → {p[1]}", key="tr_pair")
    if result.details is None:  # a result restored from the store: recompute details from the cached attacks
        job = trend_ui.recalled_job("transfer", kind="transfer")
        request = job.meta.get("request") if job is not None else None
        if not request:
            st.info("This result came from the store without its images; launch the run again to see examples.")
            return
        live = trend_ui.job_panel(submit_transfer(ctx.zoo, ctx.store, live=True, device=ctx.device, **request))
        if live is None:
            return
        result = live
    examples = result.examples(*pair)
    names = get_info(ctx.dataset).class_names
    for label, index in (("transferred", examples.transferred), ("did not transfer", ~examples.transferred)):
        picked = index.nonzero().flatten()[:EXAMPLES_SHOWN].tolist()
        st.markdown(f"**{label.capitalize()}**: {int(index.sum())} of {len(index)} adversarial images of {pair[0]}")
        if not picked:
            st.caption("none")
            continue
        st.plotly_chart(
            pair_examples_figure(
                examples.clean[picked],
                examples.adv[picked],
                examples.labels[picked],
                examples.source_pred[picked],
                examples.target_pred[picked],
                names,
                heading="true class → S: source's and T: target's prediction",
            ),
            width="stretch",
            key=f"examples-{label}",
        )


def main() -> None:
    from trend_core.service.transfer import submit_transfer

    trend_ui.page_intro(
        "Transferability",
        "Craft adversarial images on source models and count how many also "
        "fool each target: TM = f_st / f_ss on the images both classify correctly (the TREND paper, Sec. 4).",
    )
    ctx = trend_ui.context()
    if not trend_ui.has_models(ctx, 2, "A transfer run needs at least"):
        return
    metas = ctx.models()
    with st.container(border=True):
        sources, targets = choose_models(ctx, metas)
        attack, params, limit = choose_attack(ctx)
        launch = st.button("Run transfer", type="primary", icon=":material/play_arrow:", key="tr_run")
    if launch:
        with trend_ui.launching("The transfer run", "transfer"):
            if not sources or not targets:
                from trend_core.errors import TrendError

                raise TrendError("Choose at least one source and one target model.")
            request = dict(
                sources=sources, targets=targets, attack=attack, params=params, limit=limit, profile=ctx.profile
            )
            job = submit_transfer(ctx.zoo, ctx.store, device=ctx.device, **request)
            trend_ui.remember_job("transfer", job)
    result = trend_ui.slot_result("transfer", "Choose models and an attack above, then press **Run transfer**.")
    if result is not None:
        show_result(ctx, result)


with trend_ui.guard("The Transferability page"):
    main()
