"""in2n-blender: edit a 3D scene with a text instruction (Instruct-NeRF2NeRF) from Blender's sidebar.

Layout (glTF-Blender-IO style): ``core/`` is bpy-free logic that imports without Blender; ``bpy_shell/`` is the
only place that talks to bpy. ``register``/``unregister`` import the shell lazily, so importing this package (and
``core``) never needs ``bpy``. The extension zip vendors the ``protocol`` package as ``<this package>/protocol``.
"""

from __future__ import annotations


def register() -> None:
    from . import bpy_shell

    bpy_shell.register()


def unregister() -> None:
    from . import bpy_shell

    bpy_shell.unregister()
