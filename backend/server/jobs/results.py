"""A finished job's files as protocol artifacts, and chunked reads of them."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Literal

from protocol import ValidationError
from protocol import messages as m

from .store import camera_index_of

ArtifactKind = Literal["mesh", "pointcloud", "image", "transforms", "other"]
MEDIA_TYPES = {".png": "image/png", ".ply": "application/x-ply", ".obj": "model/obj"}


class ArtifactIndex:
    """Artifact name -> file, with SHA-256 computed once per file (results never change once a job is done)."""

    def __init__(self) -> None:
        self._digests: dict[Path, tuple[int, float, str]] = {}
        self._listings: dict[Path, tuple[int, dict[str, tuple[Path, ArtifactKind, dict[str, object]]]]] = {}
        self._lock = threading.Lock()

    def sha256(self, path: Path) -> str:
        stat = path.stat()
        with self._lock:
            cached = self._digests.get(path)
        if cached is not None and cached[:2] == (stat.st_size, stat.st_mtime):
            return cached[2]
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        with self._lock:
            self._digests[path] = (stat.st_size, stat.st_mtime, digest.hexdigest())
        return digest.hexdigest()

    def files(self, work_dir: Path) -> dict[str, tuple[Path, ArtifactKind, dict[str, object]]]:
        """Artifact name -> (path, kind, metadata) from the engine's manifest; empty until the job is done.

        Listed once per manifest version: every chunk of a download looks its artifact up here."""
        manifest_path = work_dir / "manifest.json"
        try:
            version = manifest_path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        with self._lock:
            cached = self._listings.get(work_dir)
        if cached is not None and cached[0] == version:
            return cached[1]
        listing = self._list(work_dir, manifest_path)
        with self._lock:
            self._listings[work_dir] = (version, listing)
        return listing

    @staticmethod
    def _list(work_dir: Path, manifest_path: Path) -> dict[str, tuple[Path, ArtifactKind, dict[str, object]]]:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, tuple[Path, ArtifactKind, dict[str, object]]] = {}
        if manifest.get("mesh"):
            path = work_dir / manifest["mesh"]
            files[f"mesh{path.suffix}"] = (path, "mesh", {"frame": "input"})
        if manifest.get("point_cloud"):
            files["point_cloud.ply"] = (work_dir / manifest["point_cloud"], "pointcloud", {"frame": "input"})
        for image_name, relative in sorted(manifest.get("edited_images", {}).items()):
            index = camera_index_of(image_name)
            metadata: dict[str, object] = {} if index is None else {"camera_index": index}
            files[image_name] = (work_dir / relative, "image", metadata)
        for folder in manifest.get("history", []):
            step = Path(folder).name
            for path in sorted((work_dir / folder).rglob("*.png")):
                relative_image = path.relative_to(work_dir / folder).as_posix()
                metadata = {"history_step": int(step.split("-")[-1]) if step.split("-")[-1].isdigit() else step,
                            "view": relative_image}
                index = camera_index_of(relative_image)
                if index is not None:
                    metadata["view_camera_index"] = index  # not camera_index: not an edited training image
                files[f"history/{step}/{relative_image}"] = (path, "other", metadata)
        return {name: entry for name, entry in files.items() if entry[0].is_file()}

    def artifacts(self, work_dir: Path) -> list[m.ArtifactInfo]:
        return [m.ArtifactInfo(name=name, kind=kind, size=path.stat().st_size, sha256=self.sha256(path),
                               media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"), metadata=metadata)
                for name, (path, kind, metadata) in self.files(work_dir).items()]

    def read(self, work_dir: Path, request: m.ResultFetchRequest) -> tuple[m.ResultFetchReply, list[bytes]]:
        entry = self.files(work_dir).get(request.name)
        if entry is None:
            raise ValidationError(f"job {request.job_id} has no artifact {request.name!r} (see result_list_reply)",
                                  field="content.name")
        path = entry[0]
        size = path.stat().st_size
        if request.offset > size:
            raise ValidationError(f"offset {request.offset} beyond the artifact's {size} bytes", field="content.offset")
        with open(path, "rb") as handle:
            handle.seek(request.offset)
            data = handle.read(request.length)
        end = request.offset + len(data)
        return (m.ResultFetchReply(job_id=request.job_id, name=request.name, offset=request.offset, length=len(data),
                                   size=size, sha256=self.sha256(path), eof=end >= size), [data])
