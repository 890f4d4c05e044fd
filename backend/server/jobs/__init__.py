"""The server's job service: scene uploads stored as nerfstudio scenes, a queue that runs one edit job at a time on
the engine, job events for subscribed clients, and results fetched in chunks. It only talks to the transport through
:class:`backend.server.Server` (handlers, ``publish``, ``push``, ``subscribe``); the engine never sees a socket.

Jobs directory layout (``--jobs-dir``)::

    scenes/<scene_id>/transforms.json, images/frame_00000.png, ...   uploaded scenes (nerfstudio format)
    jobs/<job_id>/record.json                                          request, state, error, queue order
    jobs/<job_id>/work/                                                the engine's job directory (resumable)
    server.log                                                         the server's log
"""

from __future__ import annotations

from .config import JobServiceConfig
from .service import JobService, register_job_service

__all__ = ["JobService", "JobServiceConfig", "register_job_service"]
