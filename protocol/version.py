"""Protocol version (independent of the package version) and negotiation.

Versions are ``"MAJOR.MINOR"``. A minor bump only adds optional fields or message types (both sides ignore what they
do not know); a major bump breaks compatibility. Two peers talk when their majors match.
"""

from __future__ import annotations

from .errors import VersionMismatch

PROTOCOL_VERSION = "2.4"
"""1.1: optional ``scene_begin_request.aux_images`` (per-view target images of the simulated editor).
2.0: progress phases are job states (``reconstructing``, not ``reconstruct``).
2.1: optional ``scene_begin_request.meshes`` (the selected objects' surfaces, baked onto).
2.2: optional ``edit_start_request.depth_while_editing``.
2.3: routing ids derived from the key; events only to them; unsigned errors to peers that proved no key.
2.4: optional ``hello_reply.limits.max_outgoing_bytes`` and ``heartbeat.dropped_events`` (bounded outgoing queues);
     ``nerf_snapshot_pin_request`` and ``NerfSnapshotInfo.pinned``."""
SUPPORTED_MAJORS: tuple[int, ...] = (2,)


def parse_version(version: object, *, field: str = "protocol_version") -> tuple[int, int]:
    """``"1.2"`` -> ``(1, 2)``; anything else raises :class:`VersionMismatch` naming ``field``."""
    if not isinstance(version, str):
        raise VersionMismatch(f"expected a 'MAJOR.MINOR' string, got {type(version).__name__}", field=field)
    parts = version.split(".")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise VersionMismatch(f"expected 'MAJOR.MINOR', got {version[:40]!r}", field=field)
    return int(parts[0]), int(parts[1])


def is_compatible(version: object) -> bool:
    try:
        return parse_version(version)[0] in SUPPORTED_MAJORS
    except VersionMismatch:
        return False


def check_compatible(version: object, *, field: str = "header.protocol_version") -> None:
    major, _ = parse_version(version, field=field)
    if major not in SUPPORTED_MAJORS:
        raise VersionMismatch(
            f"peer speaks protocol {version}, this side speaks {PROTOCOL_VERSION} (majors {SUPPORTED_MAJORS})",
            field=field,
        )


def negotiate(offered: list[str]) -> str:
    """Pick the version to speak from the peer's offer: ours if any offered major matches, else raise."""
    for version in offered:
        if is_compatible(version):
            return PROTOCOL_VERSION
    raise VersionMismatch(
        f"no common protocol version: peer offers {offered[:8]}, this side speaks {PROTOCOL_VERSION}",
        field="content.protocol_versions",
    )
