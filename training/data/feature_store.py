"""A resumable on-disk store of per-utterance feature sequences.

Layout of a store folder::

    manifest.json            what produced the features: extractor profile description (versions,
                             configs), dims per modality, frame rates, corpus
    index.json               utt_id -> {shard, lengths, meta}; rewritten atomically after each shard
    shards/shard-00000.safetensors
                             "<utt_id>/<modality>" float32 [L, D] and "<utt_id>/<modality>.present"
                             bool [L] for every utterance in the shard

A modality missing for an utterance is stored as an empty [0, D] array (and an empty [0] presence
vector), so every utterance has every modality key. Utterances are buffered and written a shard at a
time; an interrupted run loses at most the unflushed shard, and reopening the store resumes: ``has()``
reports what is already there and ``add()`` refuses duplicates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

MANIFEST = "manifest.json"
INDEX = "index.json"
SHARDS = "shards"
FORMAT = "cmarr-feature-store"
VERSION = 1


def _atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    # JSON round trip: tuples -> lists, numpy scalars rejected early with a clear error.
    return json.loads(json.dumps(data, sort_keys=True))


@dataclass
class StoredUtterance:
    id: str
    features: dict[str, np.ndarray]  # modality -> float32 [L, D] (L may be 0: modality missing)
    presence: dict[str, np.ndarray]  # modality -> bool [L] (False: e.g. no face found in that frame)
    meta: dict[str, Any] = field(default_factory=dict)  # label (str|None), speaker, group, ...

    @property
    def label(self) -> str | None:
        return self.meta.get("label")


class FeatureStoreWriter:
    """Append utterances to a store; reopening an existing store keeps and resumes it.

    ``manifest`` must equal the stored one when the store exists (apart from keys listed in
    ``volatile_manifest_keys``), so features from two different extractor setups never mix. A
    ``corpora`` list in the manifest is merged instead: one store can hold several corpora.
    """

    def __init__(
        self,
        root: str | Path,
        manifest: dict[str, Any],
        shard_size: int = 32,
        volatile_manifest_keys: tuple[str, ...] = ("created", "command", "corpora"),
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.root = Path(root)
        self.shard_size = shard_size
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / SHARDS).mkdir(exist_ok=True)
        manifest = _normalise({**manifest, "format": FORMAT, "version": VERSION})
        mpath = self.root / MANIFEST
        if mpath.is_file():
            old = json.loads(mpath.read_text())
            a = {k: v for k, v in old.items() if k not in volatile_manifest_keys}
            b = {k: v for k, v in manifest.items() if k not in volatile_manifest_keys}
            if a != b:
                diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                raise ValueError(
                    f"{self.root}: existing feature store was written with a different manifest "
                    f"(differing keys: {diff}); use a new --out folder or delete the old store"
                )
            def key(c: dict[str, Any]) -> tuple:
                return tuple(sorted((k, str(v)) for k, v in c.items() if k not in volatile_manifest_keys))

            known = {key(c) for c in old.get("corpora", [])}
            added = [c for c in manifest.get("corpora", []) if key(c) not in known]
            if added:
                old["corpora"] = [*old.get("corpora", []), *added]
                _atomic_write_json(mpath, old)
            self.manifest = old
        else:
            self.manifest = manifest
            _atomic_write_json(mpath, manifest)
        ipath = self.root / INDEX
        self._index: dict[str, dict[str, Any]] = json.loads(ipath.read_text()) if ipath.is_file() else {}
        self._dims: dict[str, int] = {k: int(v) for k, v in (self.manifest.get("dims") or {}).items()}
        self._pending: dict[str, dict[str, np.ndarray]] = {}
        self._pending_index: dict[str, dict[str, Any]] = {}
        shards = sorted((self.root / SHARDS).glob("shard-*.safetensors"))
        # A shard file not referenced by the index is the leftover of an interrupted flush: overwrite it.
        used = {e["shard"] for e in self._index.values()}
        self._next_shard = 1 + max((int(p.stem.split("-")[1]) for p in shards if p.name in used), default=-1)
        self._closed = False

    def __enter__(self) -> FeatureStoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._index) + len(self._pending_index)

    def has(self, utt_id: str) -> bool:
        return utt_id in self._index or utt_id in self._pending_index

    def add(  # noqa: C901 - one check per array written
        self,
        utt_id: str,
        features: dict[str, np.ndarray],
        presence: dict[str, np.ndarray],
        meta: dict[str, Any],
    ) -> None:
        """Add one utterance. features: modality -> [L, D] float32; presence: modality -> [L] bool."""
        if self._closed:
            raise RuntimeError("feature store writer is closed")
        if "/" in utt_id or not utt_id:
            raise ValueError(f"utterance id must be non-empty and contain no '/': {utt_id!r}")
        if self.has(utt_id):
            raise ValueError(f"utterance {utt_id!r} is already in the store")
        for key in ("label", "speaker", "group"):
            if key not in meta:
                raise ValueError(f"meta for {utt_id!r} lacks {key!r} (label may be None)")
        modalities = sorted(set(features) | set(self._dims))
        tensors: dict[str, np.ndarray] = {}
        lengths: dict[str, int] = {}
        for m in modalities:
            x = features.get(m)
            dim = self._dims.get(m)
            if x is None:
                if dim is None:
                    raise ValueError(f"{utt_id}: modality {m!r} missing and its dim is not in the manifest")
                x = np.zeros((0, dim), np.float32)
            x = np.ascontiguousarray(x, dtype=np.float32)
            if x.ndim != 2:
                raise ValueError(f"{utt_id}/{m}: features must be [L, D], got shape {x.shape}")
            if dim is not None and x.shape[1] != dim:
                raise ValueError(f"{utt_id}/{m}: feature dim {x.shape[1]} != manifest dim {dim}")
            p = presence.get(m)
            p = np.ones(len(x), bool) if p is None else np.ascontiguousarray(p, dtype=bool)
            if p.shape != (len(x),):
                raise ValueError(f"{utt_id}/{m}: presence shape {p.shape} != ({len(x)},)")
            tensors[f"{utt_id}/{m}"] = x
            tensors[f"{utt_id}/{m}.present"] = p
            lengths[m] = int(len(x))
        self._pending[utt_id] = tensors
        self._pending_index[utt_id] = {"lengths": lengths, "meta": _normalise(meta)}
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write buffered utterances as one shard, then update the index (atomic rename)."""
        if not self._pending:
            return
        name = f"shard-{self._next_shard:05d}.safetensors"
        tensors = {k: v for t in self._pending.values() for k, v in t.items()}
        save_file(tensors, str(self.root / SHARDS / name))
        for uid, entry in self._pending_index.items():
            self._index[uid] = {**entry, "shard": name}
        _atomic_write_json(self.root / INDEX, self._index)
        self._next_shard += 1
        self._pending.clear()
        self._pending_index.clear()

    def close(self) -> None:
        if not self._closed:
            self.flush()
            self._closed = True


class FeatureStore:
    """Read-only view of a store written by :class:`FeatureStoreWriter`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        mpath = self.root / MANIFEST
        if not mpath.is_file():
            raise FileNotFoundError(f"{self.root} is not a feature store (no {MANIFEST})")
        self.manifest: dict[str, Any] = json.loads(mpath.read_text())
        ipath = self.root / INDEX
        self._index: dict[str, dict[str, Any]] = json.loads(ipath.read_text()) if ipath.is_file() else {}
        self._ids = sorted(self._index)
        self._handles: dict[str, Any] = {}

    @property
    def dims(self) -> dict[str, int]:
        return {k: int(v) for k, v in (self.manifest.get("dims") or {}).items()}

    def ids(self) -> list[str]:
        return list(self._ids)

    def meta(self, utt_id: str) -> dict[str, Any]:
        """Metadata only (label, speaker, group, ...), without reading any tensor."""
        return dict(self._index[utt_id]["meta"])

    def lengths(self, utt_id: str) -> dict[str, int]:
        return dict(self._index[utt_id]["lengths"])

    def _shard(self, name: str) -> Any:
        h = self._handles.get(name)
        if h is None:
            h = safe_open(str(self.root / SHARDS / name), framework="numpy")
            self._handles[name] = h
        return h

    def get(self, utt_id: str) -> StoredUtterance:
        entry = self._index.get(utt_id)
        if entry is None:
            raise KeyError(f"utterance {utt_id!r} is not in the store {self.root}")
        h = self._shard(entry["shard"])
        feats = {m: h.get_tensor(f"{utt_id}/{m}") for m in entry["lengths"]}
        pres = {m: h.get_tensor(f"{utt_id}/{m}.present").astype(bool) for m in entry["lengths"]}
        return StoredUtterance(utt_id, feats, pres, dict(entry["meta"]))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._index

    def __iter__(self) -> Iterator[StoredUtterance]:
        for uid in self._ids:
            yield self.get(uid)
