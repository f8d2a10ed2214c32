"""What the Hugging Face Hub accepts in a model card's metadata: license ids and dataset ids.

* ``license``: one of the Hub's license identifiers (:data:`HUB_LICENSES`, from the Hub's
  documentation, "Licenses": https://huggingface.co/docs/hub/repositories-licenses).
  ``card.license`` defaults to ``unknown``: the shipped weights are trained on the recipe's data
  from the recipe's starting weights, and their terms (CelebA and WIDER Attribute are for
  non-commercial research; a CSV folder's are its owner's) are the user's to state, not edgekd's
  to guess. ``other`` needs ``card.license_name`` (the Hub asks for it, with a LICENSE file).
* ``datasets``: a Hub dataset id (``owner/name``) only where the data really is one: the
  recipe's ``card.dataset_id``, else :data:`SOURCE_DATASETS` (a data source whose images are a
  published Hub dataset). Other sources (generated shapes, a local folder) list none, and the
  card's text describes the data.

Torch-free.
"""

from __future__ import annotations

import re

__all__ = [
    "HUB_LICENSES",
    "DEFAULT_LICENSE",
    "SOURCE_DATASETS",
    "check_license",
    "check_dataset_id",
    "dataset_id",
]

HUB_LICENSES = (
    "apache-2.0",
    "mit",
    "openrail",
    "bigscience-openrail-m",
    "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m",
    "afl-3.0",
    "artistic-2.0",
    "bsl-1.0",
    "bsd",
    "bsd-2-clause",
    "bsd-3-clause",
    "bsd-3-clause-clear",
    "c-uda",
    "cc",
    "cc0-1.0",
    "cc-by-2.0",
    "cc-by-2.5",
    "cc-by-3.0",
    "cc-by-4.0",
    "cc-by-sa-3.0",
    "cc-by-sa-4.0",
    "cc-by-nc-2.0",
    "cc-by-nc-3.0",
    "cc-by-nc-4.0",
    "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0",
    "cc-by-nc-sa-2.0",
    "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0",
    "cdla-permissive-1.0",
    "cdla-permissive-2.0",
    "wtfpl",
    "ecl-2.0",
    "epl-1.0",
    "epl-2.0",
    "etalab-2.0",
    "eupl-1.1",
    "agpl-3.0",
    "gfdl",
    "gpl",
    "gpl-2.0",
    "gpl-3.0",
    "lgpl",
    "lgpl-2.1",
    "lgpl-3.0",
    "isc",
    "lppl-1.3c",
    "ms-pl",
    "mpl-2.0",
    "odc-by",
    "odbl",
    "openrail++",
    "osl-3.0",
    "postgresql",
    "ofl-1.1",
    "ncsa",
    "unlicense",
    "zlib",
    "pddl",
    "lgpl-lr",
    "deepfloyd-if-license",
    "llama2",
    "gemma",
    "unknown",
    "other",
)
DEFAULT_LICENSE = "unknown"

# Data sources whose images are a dataset on the Hub (the card names the transformation).
SOURCE_DATASETS = {"fashion_mnist_colored": "zalando-datasets/fashion_mnist"}

_DATASET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


def check_license(value: str) -> str:
    """``value`` if the Hub knows it as a license id, else a ValueError naming what is allowed."""
    if value not in HUB_LICENSES:
        raise ValueError(
            f"not a Hugging Face Hub license id; use one of {', '.join(HUB_LICENSES)} "
            "(https://huggingface.co/docs/hub/repositories-licenses)"
        )
    return value


def check_dataset_id(value: str | None) -> str | None:
    """``value`` if it has the form of a Hub dataset id (``name`` or ``owner/name``)."""
    if value is not None and not _DATASET_ID.match(value):
        raise ValueError(
            "not a Hugging Face Hub dataset id; write owner/name as in "
            "https://huggingface.co/datasets/owner/name, or leave it out"
        )
    return value


def dataset_id(data: dict) -> str | None:
    """The Hub dataset id of a card's ``data``: its ``dataset_id``, else the source's, else None."""
    return data.get("dataset_id") or SOURCE_DATASETS.get(data.get("source", ""))
