"""What makes one AZ group's coordinator objects from another's (packaging/kubernetes/per-az).

The second group's Deployment and Services are the first group's with the group's name
suffix on their names, on the pod label their selectors use, and on the ConfigMap they
mount. tests/packaging checks the checked-in files against this, so the groups cannot
drift apart; `python -m tests.packaging.az_groups SUFFIX` prints them for a new group.
"""

from __future__ import annotations

import copy
import sys

import yaml

from tests.packaging.manifests import ROOT, Obj, build

NAME = "stealbalancer-coordinator"
LABEL = "app.kubernetes.io/name"


def as_group(obj: Obj, suffix: str) -> Obj:
    out = copy.deepcopy(obj)
    out["metadata"]["name"] += suffix
    if out["kind"] == "Service":
        out["spec"]["selector"][LABEL] = NAME + suffix
    if out["kind"] == "Deployment":
        spec = out["spec"]
        spec["selector"]["matchLabels"][LABEL] = NAME + suffix
        pod = spec["template"]
        pod["metadata"]["labels"][LABEL] = NAME + suffix
        for term in pod["spec"]["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]:
            term["labelSelector"]["matchLabels"][LABEL] = NAME + suffix
        for volume in pod["spec"]["volumes"]:
            if "configMap" in volume:
                volume["configMap"]["name"] = NAME + suffix
    return out


def group_objects(suffix: str) -> list[Obj]:
    """The ha overlay's Deployment and Services, as AZ group `suffix`'s."""
    return [
        as_group(o, suffix) for o in build(ROOT / "ha") if o["kind"] in {"Deployment", "Service"}
    ]


if __name__ == "__main__":
    print(yaml.safe_dump_all(group_objects(sys.argv[1]), sort_keys=False), end="")
