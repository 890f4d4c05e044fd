"""A job's files as protocol artifacts (its results, its snapshots' renders and exports), and chunked reads."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Literal

from backend.job.jobdir import JobDir
from backend.job.snapshots import BakedRecord, SnapshotStore
from protocol import ValidationError
from protocol import messages as m

from .store import camera_index_of

ArtifactKind = Literal["mesh", "pointcloud", "image", "transforms", "other"]
Listing = dict[str, tuple[Path, ArtifactKind, dict[str, object]]]
MEDIA_TYPES = {".png": "image/png", ".ply": "application/x-ply", ".obj": "model/obj", ".mtl": "model/mtl"}


class ArtifactIndex:
    """Artifact name -> file, with SHA-256 computed once per file (results never change once a job is done)."""

    def __init__(self) -> None:
        self._digests: dict[Path, tuple[int, float, str]] = {}
        self._listings: dict[Path, tuple[tuple[int, ...], Listing]] = {}
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

    def files(self, work_dir: Path) -> Listing:
        """Artifact name -> (path, kind, metadata): a finished job's results (from its manifest) and every
        snapshot's renders and exported geometry (while the job runs, too).

        Listed once per version of the folders they live in: every chunk of a download looks its artifact up here."""
        version = _version(work_dir)
        with self._lock:
            cached = self._listings.get(work_dir)
        if cached is not None and cached[0] == version:
            return cached[1]
        listing = {**_final_results(work_dir), **_snapshot_files(work_dir)}
        listing = {name: entry for name, entry in listing.items() if entry[0].is_file()}
        with self._lock:
            self._listings[work_dir] = (version, listing)
        return listing

    def snapshot_artifacts(self, work_dir: Path, step: int) -> tuple[list[m.ArtifactInfo], list[m.ArtifactInfo]]:
        """``(views, geometry)`` of one snapshot."""
        prefix = f"{SnapshotStore(JobDir(work_dir).snapshots).folder(step).relative_to(work_dir).as_posix()}/"
        infos = [info for info in self.artifacts(work_dir) if info.name.startswith(prefix)]
        return ([info for info in infos if info.metadata.get("view_camera_index") is not None],
                [info for info in infos if info.kind in ("mesh", "pointcloud") or "baked_surface" in info.metadata])

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


def _version(work_dir: Path) -> tuple[int, ...]:
    """Changes whenever a listed file can have appeared or gone: the manifest, a snapshot folder, an export."""
    store = SnapshotStore(JobDir(work_dir).snapshots)
    paths = [work_dir / "manifest.json", store.root]
    for step in store.steps():
        paths += [store.folder(step), store.export_dir(step)]
    stamps = []
    for path in paths:
        try:
            stamps.append(path.stat().st_mtime_ns)
        except FileNotFoundError:
            stamps.append(0)
    return tuple(stamps)


def _final_results(work_dir: Path) -> Listing:
    """A finished job's mesh, point cloud (the final snapshot's export) and edited images; empty until it is done."""
    try:
        manifest = json.loads((work_dir / "manifest.json").read_text())
    except FileNotFoundError:
        return {}
    files: Listing = {}
    if manifest.get("mesh"):
        path = work_dir / manifest["mesh"]
        files[f"mesh{path.suffix}"] = (path, "mesh", {"frame": "input"})
    if manifest.get("textured_mesh"):
        files["textured/mesh.obj"] = (work_dir / manifest["textured_mesh"], "mesh", {"frame": "input", "textured": True})
        for extra in manifest.get("textured_mesh_files", []):
            files[f"textured/{Path(extra).name}"] = (work_dir / extra, "other", {"part_of": "textured/mesh.obj"})
    if manifest.get("point_cloud"):
        files["point_cloud.ply"] = (work_dir / manifest["point_cloud"], "pointcloud", {"frame": "input"})
    for number, record in enumerate(manifest.get("baked", [])):
        files[f"baked/{number:03d}.png"] = (work_dir / record["texture"], "image", baked_metadata(record))
    for image_name, relative in sorted(manifest.get("edited_images", {}).items()):
        index = camera_index_of(image_name)
        metadata: dict[str, object] = {} if index is None else {"camera_index": index}
        files[image_name] = (work_dir / relative, "image", metadata)
    return files


def _snapshot_files(work_dir: Path) -> Listing:
    """Every snapshot's renders (``metadata.view_camera_index``) and exported geometry, by their path in the job."""
    store = SnapshotStore(JobDir(work_dir).snapshots)
    files: Listing = {}
    for record in store.records():
        folder = store.folder(record.step)
        prefix = folder.relative_to(work_dir).as_posix()
        for image_name, relative in sorted(record.views.items()):
            metadata: dict[str, object] = {"snapshot_step": record.step, "view": image_name}
            index = camera_index_of(image_name)
            if index is not None:
                metadata["view_camera_index"] = index  # not camera_index: not an edited training image
            files[f"{prefix}/{relative}"] = (folder / relative, "other", metadata)
        export = store.read_export(record.step)
        if export is None:
            continue
        if export.mesh:
            files[f"{prefix}/{export.mesh}"] = (folder / export.mesh, "mesh",
                                                {"snapshot_step": record.step, "frame": "input"})
        if export.textured_mesh:
            textured = f"{prefix}/{export.textured_mesh}"
            files[textured] = (folder / export.textured_mesh, "mesh",
                               {"snapshot_step": record.step, "frame": "input", "textured": True})
            for extra in export.extra_files:
                files[f"{prefix}/{extra}"] = (folder / extra, "other", {"snapshot_step": record.step,
                                                                        "part_of": textured})
        if export.point_cloud:
            files[f"{prefix}/{export.point_cloud}"] = (folder / export.point_cloud, "pointcloud",
                                                       {"snapshot_step": record.step, "frame": "input"})
        for baked in export.baked:
            files[f"{prefix}/{baked['texture']}"] = (folder / baked["texture"], "image",
                                                     {"snapshot_step": record.step, **baked_metadata(baked)})
    return files


def baked_metadata(record: BakedRecord) -> dict[str, object]:
    """What a client needs to put a baked texture on its object: the surface it was baked onto (the name the
    client uploaded it under), the object's name, and how much of it the cameras saw."""
    return {"baked_surface": record["name"], "object_name": record["object_name"], "coverage": record["coverage"]}
