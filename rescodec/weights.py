"""The weights registry: model name -> file, SHA-256, config, provenance.

`weights/manifest.json` is the single registry.  Loading checks the file's
SHA-256 against it; a .rsc file carries the first 8 bytes of that hash, and
the model's name unless the hash finds it here (name_for_hash), so a decode
with other weights is refused, never silently wrong.
Set RESCODEC_WEIGHTS to use another weights folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from . import atomic_write
from .errors import WeightsError
from .mask import MaskParams
from .settings import SCALES, EncodeSettings

if TYPE_CHECKING:   # torch loads on first use: the Pillow plugin reads names without it
    from .flow import RescaleFlow

MANIFEST = "manifest.json"


def weights_dir() -> Path:
    """RESCODEC_WEIGHTS, or the models installed with the package (rescodec.models,
    the repository's weights/ folder)."""
    env = os.environ.get("RESCODEC_WEIGHTS")
    if env:
        return Path(env)
    from importlib.resources import files
    return Path(str(files("rescodec.models")))


def manifest(folder: Path | None = None) -> dict:
    """The registry's entries (read once per version of the file; do not modify)."""
    path = (folder or weights_dir()) / MANIFEST
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    return _read_manifest(str(path), st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size)


@lru_cache(maxsize=4)
def _read_manifest(path: str, *version) -> dict:
    try:
        entries = json.loads(Path(path).read_text())["models"]
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"weights manifest {path} is unreadable: {e}") from None
    if not isinstance(entries, dict):
        raise WeightsError(f"weights manifest {path} is unreadable: its models are not an object")
    for name, e in entries.items():   # a manifest edited by hand (RESCODEC_WEIGHTS): said here, once
        why = _malformed(e)
        if why:
            raise WeightsError(f"weights manifest {path}: a malformed entry {name!r} ({why})")
    return entries


def _malformed(e) -> str | None:
    """What is wrong with a manifest entry's fields that the code reads, where
    they are given; a missing one is said by what needs it (`models` lists
    the rest)."""
    if not isinstance(e, dict):
        return "not an object"
    if "file" in e and not (isinstance(e["file"], str) and e["file"]):
        return f"file {e['file']!r}"
    if "sha256" in e and not (isinstance(e["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", e["sha256"])):
        return "sha256 is not 64 hex digits"
    if "scale" in e and e["scale"] not in SCALES:
        return f"scale {e['scale']!r}"
    for key in ("train_config", "config", "validation"):
        if e.get(key) is not None and not isinstance(e[key], dict):
            return f"{key} is not an object"
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_model(scale: int, lr_codec: str = "lossless", lr_quality: int | None = None) -> str:
    """The scale's default model for an LR stored that way; else the scale's
    default for the other way (a flow trained for one still works with the other).
    A default entry with `lr_qualities` [lo, hi] is the default for AVIF LR
    qualities lo..hi only (a decoder trained for low rates); the scale's plain
    default covers the rest."""
    if scale not in SCALES:
        raise ValueError(f"unsupported scale {scale}; choose from 1, 2, 4, 8, 16")
    entries = manifest()
    names = [n for n, e in entries.items() if e.get("scale") == scale and e.get("default")]
    if not names:
        raise WeightsError(f"no model for scale x{scale} is installed in {weights_dir()}")
    own = [n for n in names if card(n).defaults.lr_codec == lr_codec] or names
    ranged = [n for n in own if lr_quality is not None and _covers(entries[n], lr_quality)]
    if len(ranged) > 1:
        raise WeightsError(f"the lr_qualities of {' and '.join(ranged)} overlap at {lr_quality}")
    plain = [n for n in own if "lr_qualities" not in entries[n]]
    return (ranged or plain or own)[0]


def _covers(e: dict, lr_quality: int) -> bool:
    r = e.get("lr_qualities")
    try:
        return r is not None and int(r[0]) <= lr_quality <= int(r[1])
    except (TypeError, ValueError, IndexError):
        raise WeightsError(f"bad lr_qualities {r!r} in the manifest (want [lo, hi])") from None


def used_for(problems: list | None = None) -> dict:
    """Model name -> the options that make the encoder pick it, as
    EncodeSettings.resolved() does: the -q ranges, -s N with -q as the small
    picture's AVIF quality, and the lossless picture.  A model that nothing
    picks is not a key.  `problems`: gets each distinct WeightsError that
    those options meet (no model installed, lr_qualities that overlap)."""
    picked: dict = {}   # name -> option -> the -q values that pick it (None: the option alone)

    def pick(option, q=None, **settings):
        try:
            name = EncodeSettings(**settings).resolved().model
        except WeightsError as e:
            said = str(e).split(" overlap at ")[0]   # one overlap, said once, not per quality
            if problems is not None and not any(p.startswith(said) for p in problems):
                problems.append(str(e))
            return
        except ValueError:   # options that do not go together (x1 and a lossless picture)
            return
        picked.setdefault(name, {}).setdefault(option, []).append(q)
    for q in range(101):
        pick("-q", q, quality=q)
    for s in SCALES:
        try:
            lossy = EncodeSettings(scale=s).resolved().lr_codec == "avif"
        except (WeightsError, ValueError):
            continue
        if lossy:
            for q in range(101):
                pick(f"-s {s} -q", q, scale=s, quality=q)
            pick(f"-s {s} --lr-codec lossless", scale=s, lr_codec="lossless")
        else:
            pick(f"-s {s}", scale=s)
    pick("--lr-codec lossless", lr_codec="lossless")
    return {name: [option if qs == [None] else f"{option} {_spans(qs)}" for option, qs in options.items()]
            for name, options in picked.items()}


def _spans(values: list) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    runs = []
    for v in values:
        if runs and runs[-1][1] == v - 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(f"{lo}-{hi}" if hi > lo else f"{lo}" for lo, hi in runs)


def trained_for(scale: int, lr_codec: str) -> bool:
    """Whether the scale's default model was trained for an LR stored that way."""
    return card(default_model(scale, lr_codec)).defaults.lr_codec == lr_codec


def entry(name: str) -> dict:
    entries = manifest()
    if name not in entries and name.startswith("sha256-"):   # container.unpack's stand-in
        raise WeightsError(f"the file needs the model whose weights' SHA-256 starts with {name[7:]}, "
                           f"which is not installed (looked in {weights_dir()})")
    if name not in entries:
        raise WeightsError(f"model {name!r} is not installed (looked in {weights_dir()}; "
                           f"installed: {', '.join(sorted(entries)) or 'none'})")
    return entries[name]


@dataclass(frozen=True)
class ModelCard:
    """A registered model: its file, and the encoder settings it was trained
    for, which are the encoder's defaults for it."""
    name: str
    scale: int
    sha256: str
    defaults: EncodeSettings
    trained_temperature: float    # highest Z scale it was trained at; 0: decode at t = 0 only


def card(name: str) -> ModelCard:
    e = entry(name)
    run = e.get("train_config") or {}   # fields added after a model was trained take their old value
    lossy = run.get("lr_codec", "lossless") == "avif"
    # the entry's own mask_threshold, where measured better than the training value, wins
    threshold = e.get("mask_threshold", run.get("mask_threshold", MaskParams.threshold))
    try:
        t = float(e.get("temperature", 0.0))
        EncodeSettings(temperature=t).validate()
    except (TypeError, ValueError) as err:
        raise WeightsError(f"model {name!r}: bad temperature in the manifest ({err})") from None
    for key in ("scale", "sha256"):
        if key not in e:
            raise WeightsError(f"model {name!r}: no {key} in the manifest")
    try:
        defaults = EncodeSettings(
            scale=e["scale"], model=name, threshold=float(threshold),
            lr_step=int(run.get("lr_step", 1)), lr_space=str(run.get("lr_space", "rgb")),
            lr_codec="avif" if lossy else "lossless",
            temperature=t)   # measured, see README "Texture and temperature"
    except (TypeError, ValueError) as err:
        raise WeightsError(f"model {name!r}: bad training settings in the manifest ({err})") from None
    return ModelCard(name, e["scale"], e["sha256"], defaults, float(run.get("z_temperature", 0.0)))


def has_head(e: dict) -> bool:
    """Whether a manifest entry's model has a restoration head (restore.py)."""
    return bool((e.get("config") or {}).get("head_width"))


def temperature_notice(name: str, t: float) -> str | None:
    """The warning for decoding model `name` at Z temperature t beyond what it was trained for."""
    trained = card(name).trained_temperature
    if t <= trained:
        return None
    trained_for = f"up to Z temperature {trained:g}" if trained else "with Z = 0"
    return (f"model {name} was trained {trained_for}; "
            f"t = {t:g} decodes far worse (README \"Texture and temperature\")")


def hash_prefix(name: str) -> bytes:
    return bytes.fromhex(card(name).sha256)[:8]


def name_for_hash(prefix: bytes) -> str | None:
    """The registered model whose weights' SHA-256 starts with `prefix`: how a
    version 7 file that leaves the name out names its model."""
    try:
        entries = manifest()
    except WeightsError:
        return None
    return next((n for n, e in entries.items()
                 if bytes.fromhex(e.get("sha256", ""))[:8] == prefix), None)


def load_checkpoint(path, weights_only: bool = False) -> tuple[RescaleFlow, dict]:
    """A weights file or training checkpoint -> (network in eval mode, float32; the saved state)."""
    import torch   # here, not at the top: the Pillow plugin reads names without loading torch
    from .flow import FlowConfig, RescaleFlow
    state = torch.load(path, map_location="cpu", weights_only=weights_only)
    with torch.random.fork_rng(devices=[]):   # the modules' random initial weights, overwritten
        model = RescaleFlow(FlowConfig(**state["flow_config"]))   # below, leave the caller's
    model.load_state_dict({k: v.float() for k, v in state["model"].items()})   # random state be
    return model.float().eval(), state   # float32 whatever torch's default dtype is


@lru_cache(maxsize=16)   # -q alone decodes with 8 models, -s and lossless files with 5 more
def _load(name: str, folder: str) -> RescaleFlow:
    e = entry(name)
    if "file" not in e:
        raise WeightsError(f"model {name!r}: no file in the manifest")
    path = Path(folder) / e["file"]
    if not path.exists():
        raise WeightsError(f"weights file {path} for model {name!r} is missing")
    if sha256_file(path) != e["sha256"]:
        raise WeightsError(f"weights file {path} fails its SHA-256 check")
    return load_checkpoint(path, weights_only=True)[0]


def load_model(name: str, expect_hash: bytes | None = None) -> RescaleFlow:
    """Load a registered model; with `expect_hash` (from a .rsc header) refuse
    weights whose SHA-256 does not start with it."""
    if expect_hash is not None and hash_prefix(name) != expect_hash:
        raise WeightsError(f"the file needs model {name!r} with weights {expect_hash.hex()}..., "
                           f"but the installed {name!r} is {hash_prefix(name).hex()}...")
    with _LOADING:   # threads decoding at once load a model once, and fork_rng's restores
        return _load(name, str(weights_dir()))   # of the random state do not cross


_LOADING = threading.Lock()


def read_checkpoint(checkpoint: Path) -> dict:
    """A training checkpoint (training/train.py, head.py) -> its state;
    WeightsError for a file that is not one."""
    import torch
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        state["flow_config"], state["model"], state["train_config"]
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__   # EOFError: an empty file
        raise WeightsError(f"{checkpoint}: not a training checkpoint ({why})") from None
    return state


def export(checkpoint: Path, name: str, folder: Path, info: dict, default: bool = True,
           replace: bool = False) -> dict:
    """Write a trained checkpoint's weights (fp16 to keep them small) and its
    manifest entry.  `info` carries training data, steps, time and val numbers.
    ValueError for a name the encoder would refuse, or one already installed
    (files made with it would no longer decode) unless `replace`."""
    from .settings import NAME_RE
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"invalid model name {name!r}: use 1-64 of a-z, 0-9, '.', '_' and '-'")
    path = folder / MANIFEST
    data = json.loads(path.read_text()) if path.exists() else {"models": {}}
    if not replace and name in data["models"]:
        raise ValueError(f"a model named {name} is installed, and files made with it would no longer "
                         f"decode; choose another name (or --force)")
    state = read_checkpoint(checkpoint)
    folder.mkdir(parents=True, exist_ok=True)
    fname = f"{name}.pt"
    save_torch(folder / fname, {"flow_config": state["flow_config"],
                                "model": {k: v.half() for k, v in state["model"].items()}})
    scale = state["flow_config"]["scale"]
    codec = state["train_config"].get("lr_codec", "lossless")
    if default:     # one default per scale and way of storing the LR
        for e in data["models"].values():
            if e.get("scale") == scale and e.get("train_config", {}).get("lr_codec", "lossless") == codec:
                e["default"] = False
    # process CPU time of the training steps where the checkpoint has it: wall
    # time x threads overstates it when runs share cores
    cpu_s = state.get("cpu_s") or state["elapsed_s"] * state["train_config"]["threads"]
    hours = round(cpu_s / 3600, 3)
    e = {"file": fname, "sha256": sha256_file(folder / fname), "scale": scale,
         "default": default, "config": state["flow_config"],
         "train_config": state["train_config"], "steps": state["step"],
         "cpu_hours": hours, "wall_hours": round(state["elapsed_s"] / 3600, 3), **info}
    # a run started from a registered model also carries that model's cost
    init = Path(state["train_config"].get("init_from") or "").name
    src = next((n for n, m in data["models"].items() if init and m["file"] == init),
               state["train_config"].get("base_model"))   # a head's cost adds to its base model's
    if src in data["models"]:   # a base model another weights folder holds: its cost is not here
        m = data["models"][src]
        e["init_from_model"] = src
        e["cpu_hours_total"] = round(hours + m.get("cpu_hours_total", m["cpu_hours"]), 3)
    data["models"][name] = e
    _write_manifest(path, data)
    return data["models"][name]


def _write_manifest(path: Path, data: dict) -> None:
    atomic_write.write_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(), force=True)
    forget_cached()


def save_torch(path: Path, state: dict) -> None:
    """torch.save, whole or not at all: torch's own writer fails on a full
    disk with a RuntimeError ("unexpected pos ...") and leaves its file."""
    import io
    import torch
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write.write_atomic(path, buf.getvalue(), force=True)


def forget_cached() -> None:
    """After the weights folder changed: read the manifest and models anew."""
    _load.cache_clear()
    _read_manifest.cache_clear()


def update_entry(name: str, **fields) -> None:
    """Add fields (e.g. validation numbers) to a model's manifest entry."""
    path = weights_dir() / MANIFEST
    data = json.loads(path.read_text())
    data["models"][name].update(fields)
    _write_manifest(path, data)
