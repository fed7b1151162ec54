"""Regenerate the operations assets: Prometheus rules and Grafana dashboards.

Run from the repository's root::

    python -m deploy.generate          # rewrite the generated files
    python -m deploy.generate --check  # exit 1 (and name them) when any is stale

Inputs: ``deploy/prometheus/targets.yaml`` (the SRE targets) and
``deploy/dashgen.py`` (the dashboards, described compactly in Python).
Outputs, all committed so that deployments need no Python:

- ``deploy/prometheus/rules/*.rules.yml``: recording and alerting rules;
- ``deploy/k8s/prometheusrule.yaml``: the same rules as a prometheus-operator
  ``PrometheusRule``;
- ``deploy/grafana/dashboards/*.json``: the seven dashboards.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from deploy import dashgen, rulegen

__all__ = ["DEPLOY", "TARGETS", "main", "render_all"]

DEPLOY: Final = Path(__file__).resolve().parent
TARGETS: Final = DEPLOY / "prometheus" / "targets.yaml"
RULES_DIR: Final = DEPLOY / "prometheus" / "rules"
DASHBOARDS_DIR: Final = DEPLOY / "grafana" / "dashboards"
PROMETHEUS_RULE: Final = DEPLOY / "k8s" / "prometheusrule.yaml"


def _prometheus_rule(targets: rulegen.Targets) -> str:
    groups = [g for gs in rulegen.rule_groups(targets).values() for g in gs]
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "rastir-collector",
            "labels": {"app.kubernetes.io/name": "rastir-collector"},
        },
        "spec": {"groups": groups},
    }
    return rulegen.HEADER + rulegen.dump_yaml(doc)


def render_all(targets_path: Path = TARGETS) -> dict[Path, str]:
    """Every generated file's path and its text.

    Raises:
        rulegen.TargetsError: the targets file is invalid.
    """
    targets = rulegen.load_targets(targets_path)
    out: dict[Path, str] = {
        RULES_DIR / name: text for name, text in rulegen.render_rule_files(targets).items()
    }
    out[PROMETHEUS_RULE] = _prometheus_rule(targets)
    for name, text in dashgen.render_dashboards(targets).items():
        out[DASHBOARDS_DIR / name] = text
    return out


def stale(files: dict[Path, str]) -> list[Path]:
    """The generated files whose committed text differs or is missing."""
    return [
        p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text
    ]


def orphans(files: dict[Path, str]) -> list[Path]:
    """Files in the generated folders that the generator no longer writes."""
    found = [*RULES_DIR.glob("*.rules.yml"), *DASHBOARDS_DIR.glob("*.json")]
    return sorted(p for p in found if p not in files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.generate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    parser.add_argument("--targets", type=Path, default=TARGETS, help="the targets file")
    args = parser.parse_args(argv)
    try:
        files = render_all(args.targets)
    except rulegen.TargetsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    changed = stale(files)
    extra = orphans(files)
    if args.check:
        for p in changed:
            print(f"stale: {p.relative_to(DEPLOY.parent)}", file=sys.stderr)
        for p in extra:
            print(f"not generated any more: {p.relative_to(DEPLOY.parent)}", file=sys.stderr)
        if changed or extra:
            print("run: python -m deploy.generate", file=sys.stderr)
            return 1
        return 0
    for p in changed:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(files[p], encoding="utf-8")
        print(f"wrote {p.relative_to(DEPLOY.parent)}")
    for p in extra:
        p.unlink()
        print(f"removed {p.relative_to(DEPLOY.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
