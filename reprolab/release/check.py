"""``make check-repro [REV=HEAD]``: after a rerun of the pipeline, do the committed results
say what the committed code produces?

Fails (exit 4, a line per difference) if any non-timing metric differs from ``REV``'s, or any
hash in ``dvc.lock`` differs other than those of time and memory files (which change every
run by design, and are never hashed inputs of a result).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from reprolab.core.errors import DataQualityError, DependencyError
from reprolab.release.common import cli, dvc, read_at, resolve
from reprolab.release.report import split_metrics
from reprolab.release.timing import is_timing


def _entries(stage: Mapping[str, Any]) -> dict[str, str]:
    """``{"deps path": hash, "outs path": hash, "params file": values}`` of a lock stage,
    timing files left out."""
    out: dict[str, str] = {}
    for kind in ("deps", "outs"):
        for e in stage.get(kind, []):
            if not is_timing(e["path"]):
                out[f"{kind} {e['path']}"] = str(e.get("md5") or e.get("hash"))
    for file, values in (stage.get("params") or {}).items():
        out[f"params {file}"] = json.dumps(values, sort_keys=True)
    out["cmd"] = json.dumps(stage.get("cmd"))
    return out


def lock_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """A line per stage or non-timing dep/out/params entry that differs, sorted."""
    a, b = old.get("stages", {}), new.get("stages", {})
    lines = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            lines.append(f"dvc.lock: stage {name} only in the {'rerun' if name in b else 'commit'}")
            continue
        ea, eb = _entries(a[name]), _entries(b[name])
        for key in sorted(set(ea) | set(eb)):
            if ea.get(key) != eb.get(key):
                lines.append(f"dvc.lock: {name} {key}: {ea.get(key)} -> {eb.get(key)}")
    return lines


def differences(rev: str) -> list[str]:
    """Every difference between ``rev``'s committed results and the workspace's."""
    sha = resolve(rev)
    committed = read_at(sha, "dvc.lock")
    rerun = read_at(None, "dvc.lock")
    if committed is None or rerun is None:
        raise DependencyError(f"dvc.lock missing at {sha[:7]} or in the workspace: run dvc repro")
    results, _timing = split_metrics(json.loads(dvc(["metrics", "diff", sha, "--json"]) or "{}"))
    lines = [f"metric {p} {k}: {old} -> {new}" for p, k, old, new in results]
    return lines + lock_differences(committed, rerun)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprolab.release.check")
    parser.add_argument("--rev", default="HEAD", help="the commit whose results to check")
    args = parser.parse_args(argv)
    lines = differences(args.rev)
    for line in lines:
        print(line)
    if lines:
        raise DataQualityError(
            f"{len(lines)} result(s) differ from {args.rev}'s: the committed metrics or "
            "dvc.lock are not what the committed code produces (lines above)"
        )
    print(f"check-repro: every non-timing metric and dvc.lock hash matches {args.rev}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(main))
