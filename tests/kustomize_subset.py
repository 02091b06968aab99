"""`kustomize build` for the subset deploy/k8s uses, in Python: the kustomize binary cannot be
downloaded here, and no registry package renders kustomizations on this Python.

Supported: `resources` (YAML files, or directories holding a kustomization.yaml) and `patches`
given by `path` to strategic-merge patches, each naming its target by kind and
metadata.name. Maps merge key by key (a null value removes the key); the lists Kubernetes merges
by name (containers, env, volumes, ...) merge item by item; every other list is replaced, as
kustomize does. Any other kustomization field fails loudly rather than render differently.
(Checked once against kustomize's own library, pykustomize 0.1.4: the same objects for both
overlays.)"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches"}
# Lists that Kubernetes' strategic merge patches merge by a key (the `patchMergeKey` of the
# PodSpec fields this project patches); every other list is replaced.
MERGE_BY_NAME = {"containers", "initContainers", "env", "volumes", "volumeMounts"}


class Unsupported(Exception):
    pass


def build(directory: Path) -> list[dict]:
    """The objects `kustomize build directory` would print (not in its order)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise Unsupported(f"{directory}: kustomization fields this renderer does not know: {sorted(unknown)}")
    objects: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        objects.extend(build(path) if path.is_dir() else _documents(path))
    _refuse_duplicates(objects, directory)
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise Unsupported(f"{directory}: only patches given by `path` are supported, not {patch}")
        for document in _documents(directory / patch["path"]):
            target = _find(objects, document, directory / patch["path"])
            target.update(merge(target, document))
    return objects


def merge(original: dict, patch: dict) -> dict:
    result = copy.deepcopy(original)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        elif key in MERGE_BY_NAME and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_named(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_named(original: list[dict], patch: list[dict]) -> list[dict]:
    merged = [copy.deepcopy(item) for item in original]
    for item in patch:
        for index, existing in enumerate(merged):
            if existing.get("name") == item["name"]:
                merged[index] = merge(existing, item)
                break
        else:
            merged.append(copy.deepcopy(item))
    return merged


def _documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _key(document: dict) -> tuple[str, str, str]:
    return document["kind"], document["metadata"].get("namespace", ""), document["metadata"]["name"]


def _refuse_duplicates(objects: list[dict], directory: Path) -> None:
    keys = [_key(document) for document in objects]
    duplicates = {key for key in keys if keys.count(key) > 1}
    if duplicates:
        raise Unsupported(f"{directory}: objects defined twice: {sorted(duplicates)}")


def _find(objects: list[dict], patch: dict, source: Path) -> dict:
    for document in objects:
        if _key(document) == _key(patch) and document["apiVersion"] == patch["apiVersion"]:
            return document
    raise Unsupported(f"{source}: patches {_key(patch)}, which no resource defines")
