"""``make promote MODEL=pinn STAGE=prod [REV=HEAD] [VERSION=v1.2.0]``: the promotion gate.

A model version is registered and assigned a stage with GTO (annotated git tags) only if
``metrics/validate.json`` committed at that revision says every gate judging the model
passed, and if that validate.json judged the very model ``dvc.lock`` records there.
Otherwise it refuses with one line naming what failed. The tag message records the
validate summary and the hashes of the model and the data it was trained on.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reprolab.core import paths
from reprolab.core.errors import DependencyError, GateError, ValidationError
from reprolab.release import gates
from reprolab.release.common import cli, read_at, resolve

VALIDATE = paths.VALIDATE.as_posix()


def _hashes(entries: list[Mapping[str, Any]], prefix: str) -> dict[str, str]:
    return {e["path"]: e["md5"] for e in entries if e["path"].startswith(prefix) and "md5" in e}


def lineage(lock: Mapping[str, Any], model: str) -> dict[str, dict[str, str]]:
    """From dvc.lock: the model's hash (``train@<model>``'s output), the hashes of the data
    it trained on, and the hash of the model that ``validate`` judged."""
    stages = lock.get("stages", {})
    train = stages.get(f"train@{model}")
    if train is None or "validate" not in stages:
        raise DependencyError(f"dvc.lock has no train@{model} or validate stage: run dvc repro")
    return {
        "model": _hashes(train.get("outs", []), f"{paths.MODELS.as_posix()}/{model}"),
        "data": _hashes(train.get("deps", []), f"{paths.DATA.as_posix()}/"),
        "judged": _hashes(stages["validate"].get("deps", []), f"models/{model}"),
    }


def check(rev: str, model: str, repo: Path = Path(".")) -> tuple[str, str]:
    """The resolved sha and the tag message, or one clear error if ``model`` at ``rev`` may
    not be promoted (failed gates: GateError, exit 7)."""
    gates.check_model(model)
    sha = resolve(rev, repo)
    artifacts = (read_at(sha, "dvc.yaml", repo) or {}).get("artifacts") or {}
    if model not in artifacts:
        raise ValidationError(f"dvc.yaml at {sha[:7]} declares no artifact {model!r}")
    validate = read_at(sha, VALIDATE, repo)
    if validate is None:
        raise DependencyError(
            f"{VALIDATE} is not committed at {sha[:7]}: run dvc repro and commit it first"
        )
    judged = gates.model_gates(validate, model)
    bad = gates.failed(judged)
    if bad:
        raise GateError(f"{model} at {sha[:7]} not promoted: failed gate(s) {', '.join(bad)}")
    lock = read_at(sha, "dvc.lock", repo)
    if lock is None:
        raise DependencyError(f"dvc.lock is not committed at {sha[:7]}: run dvc repro first")
    hashes = lineage(lock, model)
    out = f"{paths.MODELS.as_posix()}/{model}"
    made, judged_md5 = hashes["model"].get(out), hashes["judged"].get(out)
    if made is None or made != judged_md5:
        raise GateError(
            f"{model} at {sha[:7]} not promoted: {VALIDATE} judged {out} {judged_md5} but "
            f"train@{model} produced {made}: run dvc repro and commit"
        )
    lines = [
        f"{model} at {sha}: {len(judged)}/{len(judged)} gates passed "
        f"({', '.join(dict.fromkeys(g.split('.')[0] for g in judged))})",
        f"validate: {gates.summary(validate)}",
        *(f"model {p} md5 {h}" for p, h in sorted(hashes["model"].items())),
        *(f"data {p} md5 {h}" for p, h in sorted(hashes["data"].items())),
    ]
    return sha, "\n".join(lines)


def promote(
    model: str, stage: str, rev: str = "HEAD", version: str | None = None, repo: Path = Path(".")
) -> list[str]:
    """Register ``model`` at ``rev`` (unless a version is already there) and assign it
    ``stage``; returns the tags created."""
    from gto import api  # imported here: gto is slow to import and only this needs it
    from gto.exceptions import GTOException
    from gto.registry import GitRegistry

    sha, message = check(rev, model, repo)
    try:
        with GitRegistry.from_url(str(repo)) as reg:
            found = reg.find_artifact(model, create_new=True).find_version(commit_hexsha=sha)
        made = []
        if found is None:
            event = api.register(str(repo), model, ref=sha, version=version, message=message)
            made.append(event.ref)
        elif version and found.version != version:
            raise ValidationError(
                f"{model} at {sha[:7]} is already registered as {found.version}, not {version}"
            )
        event = api.assign(str(repo), model, stage, ref=sha, message=f"{stage}: {message}")
        made.append(event.ref)
    except GTOException as exc:
        raise ValidationError(f"gto: {exc.msg}") from None
    return made


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprolab.release.promote")
    parser.add_argument("model", help=f"one of {', '.join(gates.SECTIONS)}")
    parser.add_argument("stage", help="the stage to assign, e.g. prod")
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--version", default=None, help="e.g. v1.0.0 (default: next patch)")
    args = parser.parse_args(argv)
    for tag in promote(args.model, args.stage, args.rev, args.version or None):
        print(f"promote: created tag {tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(main))
