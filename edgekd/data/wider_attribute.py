"""``data.source: wider_attribute``: WIDER Attribute (Li et al., ECCV 2016) as published.

``root`` holds ``Image/{train,val,test}/...`` and the annotations ``wider_attribute_trainval.json``
and ``wider_attribute_test.json`` (in ``root``, ``Anno/``, ``Annotations/`` or the folder given as
``annotations``). Each JSON has ``images`` (``file_name`` relative to ``Image/``, ``scene_id``,
``targets`` with ``bbox`` [x, y, w, h] and 14 ``attribute`` values in {1, -1, 0}),
``attribute_id_map`` and ``scene_id_map``. The official validation split is the ``val/`` prefix
of the trainval file.

* Label: the event, mapped through ``scene_id_map`` (WIDER's event ids are not 0..29), or the
  study's 16 clusters (``label_map: clusters16``).
* Protected group from attribute 0 (Male: 1 male, -1 female, 0 unspecified): the share of the
  image's people marked male among those marked either way; ``male`` when it exceeds
  ``threshold`` (default 0.5), else ``female``. Images with nobody marked are excluded
  (``unknown: exclude``, counted on the card) or form a group of their own (``as_group``).
* ``protected`` names the attribute (``Male``, the default) or several of the 14 of
  ``attribute_id_map`` (``[Male, longHair]``): each is read as Male is (the share of the
  image's people marked 1 above ``threshold``; unknown when nobody is marked either way) and the
  groups are their intersections, ``Male=1,longHair=0`` (``=unknown`` with ``as_group``); a
  sample with an unknown attribute is excluded under ``unknown: exclude``. One attribute other
  than Male gives the groups ``not <name>`` / ``<name>``.
* ``crop: person`` makes every annotated person's box a sample, with that person's own values.
* ``test_size`` keeps a seeded subset of the test samples stratified over (event, group) cells.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from edgekd.config import resolve_path
from edgekd.data._images import FileSourceConfig, describe_bad, normalisation, read_split
from edgekd.data._subset import kept_test_indices
from edgekd.data.groups import MAX_GROUPS, ProtectedAttributes, attribute_list, check_attribute_list
from edgekd.data.registry import register_source
from edgekd.data.splits import DataSplits
from edgekd.errors import EdgeKDError

__all__ = ["CLUSTERS16", "load_wider_attribute", "read_annotations"]

# The study's 16 clusters of the 30 events (names compared without case and punctuation).
CLUSTERS16: dict[str, list[str]] = {
    "Team Sports": ["Basketball", "Football", "Soccer", "Hockey"],
    "Celebration": ["Funeral", "Ceremony", "Celebration_Or_Party"],
    "Business": ["Handshaking", "Meeting", "Stock_Market"],
    "Law Enforcement": ["Riot", "Soldier_Patrol"],
    "Performance & Entertainment": ["Dancing", "Concerts"],
    "Family": ["Couple", "Family_Group"],
    "Cheering": ["Cheering", "Sports_Fan"],
    "Individual Sports": ["Running", "Ice_Skating", "Aerobics"],
    "Water Activities": ["Row_Boat", "Angler"],
    "Parade": ["Parade"],
    "Picnic": ["Picnic"],
    "Spa": ["Spa"],
    "Surgeons": ["Surgeons"],
    "Waiter": ["Waiter"],
    "Dresses": ["Dresses"],
    "Rescue": ["Rescue"],
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def _find(root: Path, folder: Path | None, name: str) -> Path:
    candidates = (
        [folder / name]
        if folder is not None
        else [root / name, root / "Anno" / name, root / "Annotations" / name]
    )
    for path in candidates:
        if path.is_file():
            return path
    raise EdgeKDError(
        f"data.annotations: {name} not found in " + ", ".join(str(p.parent) for p in candidates)
    )


def read_annotations(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        images, scenes = data["images"], data["scene_id_map"]
        for image in images[:1]:
            image["file_name"], image["scene_id"], image["targets"]  # noqa: B018
        attribute_names = {str(k): v for k, v in (data.get("attribute_id_map") or {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise EdgeKDError(
            f"{path}: not WIDER Attribute annotations (JSON with images[] of "
            "file_name, scene_id, targets and a scene_id_map)"
        ) from None
    return {
        "images": images,
        "scene_id_map": {str(k): v for k, v in scenes.items()},
        "attribute_id_map": attribute_names,
    }


def _marked(targets: list[dict], index: int) -> tuple[int, int]:
    """How many of the people are marked 1 (present) and -1 (absent) for attribute ``index``."""
    present = sum(1 for t in targets if t["attribute"][index] == 1)
    absent = sum(1 for t in targets if t["attribute"][index] == -1)
    return present, absent


def _attribute_indices(protected: list[str], id_map: dict[str, str]) -> list[int]:
    """The position of each protected attribute in a target's ``attribute`` list."""
    by_name = {name: int(i) for i, name in id_map.items()}
    if not by_name and protected == ["Male"]:  # annotations without a map: Male is attribute 0
        by_name = {"Male": 0}
    indices = []
    for name in protected:
        if name not in by_name:
            choices = ", ".join(id_map[k] for k in sorted(id_map, key=int)) or "none listed"
            raise EdgeKDError(
                f"data.protected: {name!r} is not a WIDER Attribute attribute; "
                f"choose from the annotations' attribute_id_map: {choices}"
            )
        indices.append(by_name[name])
    return indices


class WiderAttributeConfig(FileSourceConfig):
    """``data.source: wider_attribute``: WIDER Attribute events with gender as the group."""

    source: Literal["wider_attribute"] = "wider_attribute"
    annotations: Path | None = Field(None, description="folder of the two JSON files")
    label_map: Literal["events30", "clusters16"] = Field(
        "events30", description="classes: the 30 events, or the study's 16 event clusters"
    )
    threshold: float = Field(0.5, ge=0.0, lt=1.0, description="male share above which: male")
    unknown: Literal["exclude", "as_group"] = Field(
        "exclude", description="people of unspecified attribute: left out (counted on the card) or a group"
    )
    crop: Literal["none", "person"] = Field(
        "none", description="none: one sample per image; person: each annotated person's box a sample"
    )
    protected: str | list[str] = Field(
        "Male", description="attribute of attribute_id_map, or a list: groups are intersections"
    )

    @field_validator("protected")
    @classmethod
    def _attribute_list(cls, value: str | list[str]) -> str | list[str]:
        return check_attribute_list(value, "WIDER attribute")

    @field_validator("annotations")
    @classmethod
    def _annotations_exist(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return resolve_path(path, info, folder=True)


def _attributes(protected: list[str], *, as_group: bool) -> ProtectedAttributes:
    unknown = ("unknown",) if as_group else ()
    if len(protected) == 1:
        single = ("female", "male") if protected == ["Male"] else (f"not {protected[0]}", protected[0])
        return ProtectedAttributes(tuple(protected), (("0", "1") + unknown,), single_names=single + unknown)
    total = (2 + len(unknown)) ** len(protected)
    if total > MAX_GROUPS:
        raise EdgeKDError(
            f"data.protected: {len(protected)} attributes make {total} groups; at most "
            f"{MAX_GROUPS} are allowed"
        )
    return ProtectedAttributes(tuple(protected), (("0", "1") + unknown,) * len(protected))


def _codes(people: list[dict], indices: list[int], threshold: float) -> list[int | None]:
    """Per protected attribute: 1 when the share of ``people`` marked present among those marked
    either way exceeds ``threshold``, else 0; ``None`` when nobody is marked."""
    codes: list[int | None] = []
    for index in indices:
        present, absent = _marked(people, index)
        codes.append(None if present + absent == 0 else int(present / (present + absent) > threshold))
    return codes


@register_source(WiderAttributeConfig)
def load_wider_attribute(cfg, *, seed: int) -> DataSplits:
    folder = cfg.annotations
    trainval = read_annotations(_find(cfg.root, folder, "wider_attribute_trainval.json"))
    test = read_annotations(_find(cfg.root, folder, "wider_attribute_test.json"))
    scene_names = {**trainval["scene_id_map"], **test["scene_id_map"]}
    events = [scene_names[k] for k in sorted(scene_names, key=int)]
    if cfg.label_map == "clusters16":
        class_names = list(CLUSTERS16)
        by_event = {}
        for index, members in enumerate(CLUSTERS16.values()):
            for member in members:
                by_event[_norm(member)] = index

        def label_of(event: str) -> int:
            key = _norm(event)
            match = by_event.get(key, next((v for k, v in by_event.items() if key.startswith(k)), None))
            if match is None:
                raise EdgeKDError(f"data.label_map: event {event!r} is in none of the 16 clusters")
            return match
    else:
        class_names = events

        def label_of(event: str) -> int:
            return events.index(event)

    protected = attribute_list(cfg.protected)
    indices = _attribute_indices(protected, {**trainval["attribute_id_map"], **test["attribute_id_map"]})
    attributes = _attributes(protected, as_group=cfg.unknown == "as_group")
    gender = protected == ["Male"]  # the study's setting: the card says gender, as it always did
    excluded = {"train": 0, "val": 0, "test": 0}
    samples: dict[str, list] = {"train": [], "val": [], "test": []}
    for source in (trainval, test):
        for image in source["images"]:
            name = image["file_name"]
            split = name.split("/", 1)[0]
            if split not in samples:
                raise EdgeKDError(f"{name}: file_name must start with train/, val/ or test/")
            label = label_of(scene_names[str(image["scene_id"])])
            people = [[t] for t in image["targets"]] if cfg.crop == "person" else [image["targets"]]
            for group_of in people:
                codes = _codes(group_of, indices, cfg.threshold)
                if None in codes and cfg.unknown == "exclude":
                    excluded[split] += 1
                    continue
                group = int(attributes.combine(np.array([2 if c is None else c for c in codes]))[0])
                box = tuple(group_of[0]["bbox"]) if cfg.crop == "person" else None
                samples[split].append((cfg.root / "Image" / name, box, label, group))
    unknown_of = "gender" if gender else attributes.label
    what = (
        f"gender (male share > {cfg.threshold}) as protected attribute"
        if gender
        else f"{attributes.label} (share marked present > {cfg.threshold}) as protected attribute"
        + ("s, groups their intersections" if attributes.several else "")
    )
    unit = "person crops" if cfg.crop == "person" else "images"
    if samples["test"]:
        keep = kept_test_indices(
            cfg.test_size,
            np.array([i[2] for i in samples["test"]]),
            np.array([i[3] for i in samples["test"]]),
            seed=seed,
            what=f"the WIDER Attribute test split ({unit})",
        )
        samples["test"] = [samples["test"][i] for i in keep]
    splits, bad = {}, {}
    for split, items in samples.items():
        if not items:
            raise EdgeKDError(
                f"data: the WIDER Attribute {split} split is empty after excluding "
                f"{excluded[split]} samples with unknown {unknown_of}"
            )
        splits[split], bad[split] = read_split(
            cfg,
            split,
            [i[0] for i in items],
            np.array([i[2] for i in items]),
            np.array([i[3] for i in items]),
            boxes=[i[1] for i in items],
            listed_in=f"the WIDER Attribute annotations ({split} file_name)",
            named_in=f"{split}/ of the annotations",
        )
    mean, std = normalisation(cfg)
    return DataSplits(
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        class_names=class_names,
        group_names=attributes.group_names(),
        attributes=attributes,
        protected_attribute="gender" if gender else attributes.label,
        mean=mean,
        std=std,
        description={
            "source": "wider_attribute",
            "synthetic": False,
            "root": str(cfg.root),
            "label_map": cfg.label_map,
            "crop": cfg.crop,
            ("excluded_unknown_gender" if gender else "excluded_unknown_attribute"): excluded,
            **describe_bad(bad, cfg),
            "summary": f"WIDER Attribute {unit}, {len(class_names)} "
            f"{'clusters' if cfg.label_map == 'clusters16' else 'events'}, "
            f"{what}, {sum(excluded.values())} {unit} of unknown {unknown_of} "
            f"{'excluded' if cfg.unknown == 'exclude' else 'kept as a group'}, "
            f"{cfg.image_size}px" + (f", test: a stratified {cfg.test_size}" if cfg.test_size else ""),
        },
    )
