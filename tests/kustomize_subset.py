"""`kustomize build` for the subset deploy/k8s uses, in Python: the kustomize binary cannot be
downloaded here, and no registry package renders kustomizations on this Python.

Supported: `resources` (YAML files, or directories holding a kustomization.yaml); `patches`
given by `path` to strategic-merge patches, each naming its target by kind and metadata.name;
`images` (what `kustomize edit set image` writes: newName, newTag, digest). Patches merge maps
key by key (a null value removes the key), merge the lists Kubernetes merges by name
(containers, env, volumes, ...) item by item, and replace every other list, as kustomize does.
Any other kustomization field fails loudly rather than render differently. Checked once against
kustomize's own library (pykustomize 0.1.4, whose wheel requires Python 3.14): the same objects
for both overlays and for `images` by tag and by digest."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images"}
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
    for image in kustomization.get("images", []):
        for document in objects:
            _set_image(document, image)
    return objects


def _set_image(document: dict, image: dict) -> None:
    """The containers of a pod template whose image is `image["name"]` (any tag or digest) get
    its newName, newTag or digest (a digest wins over a tag)."""
    pod = document.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
        name, tag = _split_image(container["image"])
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if "digest" in image:
            tag = "@" + image["digest"]
        elif "newTag" in image:
            tag = ":" + str(image["newTag"])
        container["image"] = name + tag


def _split_image(reference: str) -> tuple[str, str]:
    """("registry/name", ":tag" or "@sha256:..." or "")."""
    if "@" in reference:
        name, digest = reference.split("@", 1)
        return name, "@" + digest
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon:]
    return reference, ""


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
    """The patch's items first, in its order, each merged into the original item of its name;
    then the original items the patch does not name (the order kustomize prints)."""
    by_name = {item["name"]: item for item in original}
    merged = [merge(by_name[item["name"]], item) if item["name"] in by_name else copy.deepcopy(item)
              for item in patch]
    named = {item["name"] for item in patch}
    return merged + [copy.deepcopy(item) for item in original if item["name"] not in named]


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
