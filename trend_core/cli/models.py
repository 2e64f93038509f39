"""`trend train`, `trend zoo ...`, `trend eval`, `trend data download`: building and inspecting the zoo."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from trend_core.cli.common import (
    add_common,
    add_profile,
    distributed,
    emit_json,
    emit_table,
    parse_model_names,
    parse_names,
    profile_of,
    train_parallel,
    train_with_bar,
    work_bar,
    zoo_from,
)
from trend_core.config.presets import PRESETS
from trend_core.config.specs import ModelSpec
from trend_core.config.user_models import PROGRAM_SUFFIX, is_user_model_name, parse_user_model
from trend_core.errors import TrendError

if TYPE_CHECKING:
    import pandas as pd


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train models (skips those already in the zoo)")
    train.add_argument("names", nargs="+", metavar="NAME", help="model names, e.g. digits/resnet18-w0.25/Q2/sgd/s0")
    train.add_argument("--force", action="store_true", help="retrain even if the zoo has the model")
    add_profile(train)
    add_common(train)
    train.set_defaults(func=cmd_train)

    zoo = sub.add_parser("zoo", help="list, build, import or delete zoo models")
    zsub = zoo.add_subparsers(dest="zoo_command", metavar="ACTION")
    zsub.required = True
    zlist = zsub.add_parser("list", help="models in the zoo with their accuracies")
    zlist.add_argument("--dataset", default=None)
    zlist.add_argument("--json", action="store_true")
    add_common(zlist)
    zlist.set_defaults(func=cmd_zoo_list)
    zpreset = zsub.add_parser("preset", help="train a preset set of models")
    zpreset.add_argument("preset", choices=sorted(PRESETS))
    zpreset.add_argument(
        "--warm",
        action="store_true",
        help="then compute every dashboard page's default run into the store, so a demo's first clicks are instant",
    )
    add_profile(zpreset)
    add_common(zpreset)
    zpreset.set_defaults(func=cmd_zoo_preset)
    zimport = zsub.add_parser(
        "import",
        help="adopt your own state_dict (.safetensors or .pt) for a spec, or your own network (a torch.export "
        ".pt2 program) as user/<dataset>/<name>",
    )
    zimport.add_argument("name", help="a model spec name, or user/<dataset>/<name> for a .pt2 network")
    zimport.add_argument("path", help="the weights (.safetensors, .pt) or the network (.pt2)")
    zimport.add_argument("--force", action="store_true", help="replace the model if the zoo already has it")
    zimport.add_argument(
        "--expects",
        choices=("pixels", "normalized"),
        default=None,
        help="(.pt2) what the network takes: pixels in [0, 1], or normalized (x - mean) / std",
    )
    zimport.add_argument("--mean", nargs="+", type=float, default=None, help="(.pt2, normalized) one per channel")
    zimport.add_argument("--std", nargs="+", type=float, default=None, help="(.pt2, normalized) one per channel")
    zimport.add_argument(
        "--transform",
        default=None,
        help="(.pt2) an input defence the network sits behind, run with its BPDA gradient: quant:1 ... quant:8 "
        "(n-bit input quantization) or halftone",
    )
    add_common(zimport)
    zimport.set_defaults(func=cmd_zoo_import)
    zdel = zsub.add_parser("delete", help="remove models from the zoo")
    zdel.add_argument("names", nargs="+", metavar="NAME")
    add_common(zdel)
    zdel.set_defaults(func=cmd_zoo_delete)
    zclean = zsub.add_parser("clean", help="remove what interrupted saves or damage left in the models folder")
    add_common(zclean)
    zclean.set_defaults(func=cmd_zoo_clean)

    ev = sub.add_parser("eval", help="clean accuracy of models (the paper's Tables IV-VI)")
    ev.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="model names or imported networks (user/digits/my-net); default: every model in the zoo",
    )
    ev.add_argument("--split", choices=("val", "test"), default="test")
    ev.add_argument("--json", action="store_true")
    add_common(ev)
    ev.set_defaults(func=cmd_eval)

    data = sub.add_parser("data", help="datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    dl = dsub.add_parser("download", help="download CIFAR-10/100 or the full MNIST through torchvision into TREND_DATA")
    dl.add_argument("dataset", choices=("cifar10", "cifar100", "mnist"))
    dl.add_argument("--root", default=None)
    dl.set_defaults(func=cmd_data_download)
    imp = dsub.add_parser(
        "import",
        help="your own evaluation data as a dataset: an image folder (one sub-folder per class) or an .npz with x, y",
    )
    imp.add_argument("name", help="the dataset's name in pages and commands (lowercase, e.g. my-cameras)")
    imp.add_argument("path", help="an image folder (ImageFolder layout) or an .npz holding arrays x and y")
    imp.add_argument("--eps", type=float, default=None, help="its default L-inf eps on [0, 1] pixels (default 8/255)")
    imp.add_argument("--replace", action="store_true", help="overwrite a dataset already imported under this name")
    imp.add_argument("--root", default=None, help="the data root (default $TREND_DATA or ~/.cache/trend/data)")
    imp.set_defaults(func=cmd_data_import)
    ls = dsub.add_parser("list", help="the built-in datasets and the ones you imported")
    ls.add_argument("--root", default=None)
    ls.set_defaults(func=cmd_data_list)


def _train_all(args, specs, force: bool = False) -> None:
    zoo = zoo_from(args)
    start = time.perf_counter()
    todo = [spec for spec in specs if force or not zoo.has(spec)]
    for spec in specs:
        problem = None if spec in todo else zoo.problem(spec)
        if problem:  # found before any training: the model asked for is there but would not load
            raise TrendError(
                f"{spec.name} is in the zoo at {zoo.root} but damaged: {problem}; `trend zoo clean` removes it, "
                "--force retrains it."
            )
    for spec in specs:
        if spec not in todo:
            print(f"{spec.name}: already in the zoo", file=sys.stderr)
    if distributed():  # every model to train as its own task, in parallel; the driver swaps each in when complete
        train_parallel(args, todo)
    else:  # a retrain writes the new checkpoint beside the old one and swaps them in when complete
        train_with_bar(args, todo, retrain=force)
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def cmd_train(args) -> int:
    _train_all(args, parse_names(args.names, args.profile), force=args.force)
    return 0


def cmd_zoo_preset(args) -> int:
    _train_all(args, parse_names([f"preset:{args.preset}"], profile_of(args)))
    if args.warm:
        warm_pages(args, args.preset)
    return 0


def warm_pages(args, dataset: str) -> None:
    """Every page's default run on ``dataset`` into the store (``service.warmup``), one after another, with a bar."""
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.runtime.jobs import JobManager, JobStatus
    from trend_core.service.warmup import warm_defaults
    from trend_core.storage.store import get_store

    start = time.perf_counter()
    with work_bar("default runs") as progress:
        jobs = warm_defaults(
            zoo_from(args),
            get_store(args.home),
            dataset,
            device=args.device,
            profile=profile_of(args),
            manager=JobManager(sync=True),
            progress=progress,
        )
    failed = [f"{job.title}: {job.error or job.status.value}" for job in jobs if job.status is not JobStatus.DONE]
    if failed:
        raise TrendError(f"{len(failed)} of {len(jobs)} default runs did not finish: {'; '.join(failed)}")
    print(
        f"the default run of every page ({len(jobs)} runs) is in the store: {time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )


def zoo_frame(rows: list[dict]) -> pd.DataFrame:
    # local: keeps this torch-free module's start-up light
    import pandas as pd

    records = [
        {
            "name": m["name"],
            "label": m.get("short_name", ""),
            "val_acc": m.get("val_acc"),
            "test_acc": m.get("test_acc"),
            "train_seconds": m.get("train_seconds"),
            "source": m.get("source", ""),
        }
        for m in rows
    ]
    return pd.DataFrame(records, columns=["name", "label", "val_acc", "test_acc", "train_seconds", "source"]).set_index(
        "name"
    )


def warn_problems(zoo) -> None:
    """One line on stderr per zoo entry that ``load`` refuses, with the reason (``zoo list``, ``eval``)."""
    for entry in zoo.problems():
        label = f"key {entry['key']}" + (f" ({entry['name']})" if entry["name"] else "")
        action = "`trend zoo clean` removes it" if entry["files"] else "move it out of the models folder"
        print(f"warning: {label} is damaged or incomplete: {entry['problem']}; {action}.", file=sys.stderr)


def cmd_zoo_list(args) -> int:
    zoo = zoo_from(args, write=False)
    rows = zoo.list(args.dataset, imported_networks=True)
    warn_problems(zoo)
    if args.json:
        emit_json(rows)
    elif not rows:
        state = "holds no model that loads, only the damaged entries above" if zoo.problems() else "is empty"
        print(f"The zoo at {zoo.root} {state}; build the default with `trend zoo preset digits`.")
    else:
        emit_table(zoo_frame(rows), False)
    return 0


def cmd_zoo_import(args) -> int:
    if is_user_model_name(args.name) or str(args.path).endswith(PROGRAM_SUFFIX):
        return _import_program(args)
    program_flags = [f for f in ("expects", "mean", "std", "transform") if getattr(args, f) is not None]
    if program_flags:
        raise TrendError(f"--{program_flags[0]} is for a network (.pt2) imported as user/<dataset>/<name>.")
    meta = zoo_from(args).import_state_dict(parse_names([args.name])[0], args.path, replace=args.force)
    acc = meta.get("test_acc")
    print(f"imported {meta['name']}" + (f" (test accuracy {acc:.4f})" if acc is not None else ""))
    return 0


def _import_program(args) -> int:
    """`trend zoo import user/<dataset>/<name> FILE.pt2 --expects ...`: a network defined outside the project."""
    if not is_user_model_name(args.name):
        raise TrendError(
            f"{args.path} is a network (.pt2); import it under a name of its own, user/<dataset>/<name> "
            "(e.g. user/digits/my-net), not under a model spec."
        )
    if not str(args.path).endswith(PROGRAM_SUFFIX):
        raise TrendError(
            f"{args.path} is not a .pt2 file; a network is imported as a torch.export program: "
            "torch.export.save(torch.export.export(net.eval(), (example,)), 'net.pt2')."
        )
    if args.expects is None:
        raise TrendError(
            "Say what the network takes: --expects pixels (images in [0, 1]) or --expects normalized with "
            "--mean and --std (one value per channel)."
        )
    meta = zoo_from(args).import_program(
        args.name, args.path, args.expects, args.mean, args.std, args.transform, replace=args.force
    )
    acc = meta.get("test_acc")
    shown = f" (test accuracy {acc:.4f} on {meta['test_images']} images)" if acc is not None else ""
    print(f"imported {meta['name']} as {meta['short_name']}{shown}")
    return 0


def cmd_zoo_delete(args) -> int:
    zoo = zoo_from(args)
    for spec in parse_model_names(args.names):
        if not zoo.delete(spec):
            raise TrendError(f"Model {spec.name} is not in the zoo at {zoo.root}.")
        print(f"deleted {spec.name}")
    return 0


def cmd_zoo_clean(args) -> int:
    zoo = zoo_from(args)
    removed = zoo.clean()
    for entry in removed:
        print(f"removed {entry['name'] or 'key ' + entry['key']} ({entry['problem']})")
    for entry in zoo.problems():  # what is left: files this project did not write
        print(f"left alone: key {entry['key']}: {entry['problem']}", file=sys.stderr)
    print(f"{len(removed)} damaged or incomplete entr{'y' if len(removed) == 1 else 'ies'} removed", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    zoo = zoo_from(args, write=False)
    if not args.names:
        warn_problems(zoo)  # (each named model is checked as it loads)
    # every model the zoo loads, the imported networks (user/...) too; named ones are loaded, never trained
    specs = parse_model_names(args.names) if args.names else _every_model(zoo)
    if not specs:
        raise TrendError(f"The zoo at {zoo.root} is empty; build the default with `trend zoo preset digits`.")
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.models.evaluate import accuracy_table

    table = accuracy_table(specs, zoo, split=args.split, device=args.device)
    emit_table(table, args.json, float_format="{:.4f}")
    return 0


def _every_model(zoo) -> list:
    """The zoo's models and imported networks that load, in the order ``zoo list`` shows them; an imported network
    whose dataset is no longer imported is left out with a warning (it cannot be measured)."""
    # local: like every command here (torch-free)
    from trend_core.config.datasets import list_datasets

    found, known = [], set(list_datasets())
    for row in zoo.list(imported_networks=True):
        if not is_user_model_name(row["name"]):
            found.append(ModelSpec.from_dict(row["spec"]))
        elif row.get("dataset") in known:
            found.append(parse_user_model(row["name"], known_dataset=False))
        else:
            print(
                f"warning: {row['name']} is left out: its dataset {row.get('dataset')} is not imported.",
                file=sys.stderr,
            )
    return found


def cmd_data_download(args) -> int:
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.data.datasets import load_cifar, load_mnist

    if args.dataset == "mnist":
        bundle = load_mnist(args.root, download=True)
    else:
        bundle = load_cifar(args.dataset, args.root, download=True)
    print(
        f"{args.dataset}: {len(bundle.train)} train / {len(bundle.val)} val / {len(bundle.test)} test images "
        f"({bundle.source})"
    )
    return 0


def cmd_data_import(args) -> int:
    from trend_core.data.user import import_dataset  # local: numpy and Pillow only when importing

    info = import_dataset(args.name, args.path, root=args.root, eps=args.eps, replace=args.replace)
    channels, height, width = info.input_shape
    print(
        f"{info.name}: {info.num_classes} classes, {channels}x{height}x{width} images, default eps {info.default_eps:.4g}; "
        f"use it as --dataset {info.name} (all its images are the test split)"
    )
    return 0


def cmd_data_list(args) -> int:
    # local like every command here (this one is torch-free)
    from trend_core.config.datasets import BUILT_IN, get_info, user_datasets, user_info

    for name in [*BUILT_IN, *user_datasets(args.root)]:
        info = get_info(name) if name in BUILT_IN else user_info(name, args.root)
        kind = "built-in" if name in BUILT_IN else "imported"
        shape = "x".join(str(v) for v in info.input_shape) if info else "?"
        classes = info.num_classes if info else "?"
        print(f"{name:<16} {kind:<9} {shape:<10} {classes} classes")
    return 0
