"""The bpy side of the add-on: properties, operators, panel, and the timer that applies backend notices.

Classes are registered in ``CLASSES`` order and unregistered in reverse; ``unregister`` also stops the worker
thread and removes ``Scene.in2n``, so register/unregister cycles leave nothing behind.
"""

from __future__ import annotations

ADDON_ID = __package__.rpartition(".")[0]
"""The extension's module name (``bl_ext.<repo>.in2n_blender`` once installed): preferences and scratch paths."""

import bpy  # noqa: E402  (ADDON_ID must exist before the submodules import it)

from . import ops_backend, ops_edit, ops_scene, ops_snapshots, ops_steering, panel, properties, runtime  # noqa: E402

CLASSES = (*properties.CLASSES, *ops_backend.CLASSES, *ops_scene.CLASSES, *ops_edit.CLASSES, *ops_steering.CLASSES,
           *ops_snapshots.CLASSES, *panel.CLASSES)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register_properties()


def unregister() -> None:
    runtime.shutdown()
    properties.unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
