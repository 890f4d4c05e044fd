"""Where the add-on finds the repository packages it shares with the backend: ``protocol`` and ``capture``.

The extension zip vendors the repository's top-level ``protocol/`` and ``capture/`` as subpackages of the same name
(``blender_addon.packaging`` copies them), so an installed extension imports them relatively and never depends on
what else is on Blender's ``sys.path``. In a repository checkout (tests, development) the top-level packages are used.
"""

from __future__ import annotations

try:
    from .. import capture, protocol  # type: ignore[attr-defined]  # vendored copies inside the extension zip
except ImportError:
    import capture  # repository checkout: the top-level packages
    import protocol

__all__ = ["capture", "protocol"]
