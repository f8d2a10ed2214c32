"""Where a network's first weights come from: timm's pretrained weights or a local file.

* ``pretrained: true``: timm's weights for ``arch`` (its default tag, or the one in
  ``arch: efficientnet_b3.ra2_in1k``), from the Hugging Face hub or, offline, from the hub's
  local cache (``HF_HOME``, ``HF_HUB_CACHE``). Neither reachable: one line saying how to get them.
* ``checkpoint: FILE``: a ``.safetensors`` file (timm's and the hub's format) or a torch file
  holding a state dict, bare or under ``model`` / ``state_dict`` (timm's and most training
  scripts' checkpoints), read with ``weights_only=True``; a ``module.`` prefix
  (DistributedDataParallel) is dropped.

When only the classifier does not fit (another class count, or no classifier at all) the
network keeps its new classifier and everything else is loaded, as timm does for pretrained
weights; any other difference is an error naming the first tensor that does not fit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from edgekd.errors import EdgeKDError

__all__ = [
    "load_weights",
    "read_state_dict",
    "pretrained_source",
    "fetch_pretrained",
    "hub_unreachable",
    "weights_record",
    "classifier_keys",
]

# The hub's cache keeps a repo's files under models--<owner>--<name>/{snapshots,blobs}/...
_HUB_CACHE_PATH = re.compile(r"models--([^/]+?)--([^/]+)/(?:snapshots|blobs)/")


def pretrained_source(arch: str) -> dict:
    """timm's pretrained weights for ``arch`` (tagged or not): the hub repo and the exact tag.

    >>> pretrained_source("efficientnet_b3")
    {'hub_id': 'timm/efficientnet_b3.ra2_in1k', 'tag': 'efficientnet_b3.ra2_in1k', 'num_classes': 1000}
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    tag = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
    return {"hub_id": cfg.hf_hub_id or tag, "tag": tag, "num_classes": cfg.num_classes}


def hub_unreachable(arch: str, key: str) -> EdgeKDError:
    """The one line for pretrained weights that are neither on a reachable hub nor cached."""
    from huggingface_hub import constants

    hub_id = pretrained_source(arch)["hub_id"]
    why = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
    return EdgeKDError(
        f"{key}: timm's weights {hub_id} (for {arch}) are not in the Hugging Face cache "
        f"{constants.HF_HUB_CACHE} and the hub is not reachable{why}; on a connected machine run "
        f"`hf download {hub_id}` and copy its hub cache (~/.cache/huggingface/hub) to that "
        f"folder, or set {key.rsplit('.', 1)[0]}.checkpoint to the model.safetensors file"
    )


def fetch_pretrained(arch: str, *, key: str) -> None:
    """Have timm's weights for ``arch`` in the Hugging Face cache (downloading them when the hub
    is reachable), or raise the one line of :func:`hub_unreachable`. A build calls this before
    it reads any data, so missing weights stop it in seconds rather than after the decode."""
    import timm

    try:
        timm.create_model(arch, pretrained=True)
    except OSError:  # huggingface_hub: offline and not cached, unreachable, HTTP errors
        raise hub_unreachable(arch, key) from None


def weights_record(cfg) -> dict:
    """What the card says a network started from: ``scratch``, timm's ``pretrained`` weights
    (the hub repo and exact tag), or a ``checkpoint`` file (name, sha256, and its hub repo when
    the file sits in the Hugging Face cache)."""
    if cfg.pretrained:
        source = pretrained_source(cfg.arch)
        return {"source": "pretrained", "hub_id": source["hub_id"], "tag": source["tag"]}
    if cfg.checkpoint is not None:
        from edgekd.files import sha256_file

        record = {
            "source": "checkpoint",
            "file": Path(cfg.checkpoint).name,
            "sha256": sha256_file(cfg.checkpoint),
        }
        match = _HUB_CACHE_PATH.search(Path(cfg.checkpoint).as_posix())
        if match:
            record["hub_id"] = f"{match.group(1)}/{match.group(2)}"
        return record
    return {"source": "scratch"}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then the JSON header."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def read_state_dict(path: Path, *, key: str) -> dict:
    """The tensors of a weights file (see the module doc), or one line saying why not."""
    import pickle

    import torch

    path = Path(path)
    if _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise EdgeKDError(
                f"{key}: {path} is not a readable safetensors file ({_first_line(err)})"
            ) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
            raise EdgeKDError(
                f"{key}: {path} is neither a safetensors nor a loadable torch "
                f"weights file ({_first_line(err)})"
            ) from None
        for wrapper in ("model", "state_dict"):
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__ if not isinstance(state, dict) else "dict of other things"
        raise EdgeKDError(
            f"{key}: {path} holds a {kind}, not a state dict (tensors by name, bare "
            "or under 'model' / 'state_dict')"
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def classifier_keys(model) -> set[str]:
    """State-dict keys of the model's classifier (``classifier.weight``, ``classifier.bias``)."""
    head = model.get_classifier()
    for name, module in model.named_modules():
        if module is head:
            return {f"{name}.{k}" for k in head.state_dict()}
    return set()


def load_weights(model, path: Path, *, key: str, log: Callable[[str], None] | None = None) -> bool:
    """Load a weights file (see the module doc) into ``model``.

    Returns True when the file's classifier did not fit the model's class count (or the file
    has none): then the model keeps its new classifier, everything else is loaded, and ``log``
    says so. Any other difference raises :class:`EdgeKDError` naming the first tensor.
    """
    state = read_state_dict(path, key=key)
    own = model.state_dict()
    head = classifier_keys(model)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    new_head = bool(head) and bool(set(missing) | set(wrong)) and set(missing) | set(wrong) <= head
    if new_head:
        missing, wrong = [], []
    if missing or unexpected or wrong:
        detail = (
            f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, model has {tuple(own[wrong[0]].shape)}"
            if wrong
            else f"missing {missing[0]}"
            if missing
            else f"unexpected {unexpected[0]}"
        )
        raise EdgeKDError(
            f"{key}: weights in {path} do not fit {type(model).__name__} with "
            f"{model.num_classes} classes ({detail})"
        )
    if new_head:
        weight = next((state[k] for k in sorted(head) if k.endswith("weight") and k in state), None)
        held = f"a classifier for {weight.shape[0]} classes" if weight is not None else "no classifier"
        state = {k: v for k, v in state.items() if k not in head}
        if log is not None:
            log(
                f"{key}: {Path(path).name} holds {held}; the recipe has {model.num_classes}: "
                "loaded everything else, the classifier starts new"
            )
    model.load_state_dict(state, strict=not new_head)
    return new_head
