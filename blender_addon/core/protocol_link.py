"""Where the add-on finds the ``protocol`` package.

The extension zip vendors the repository's top-level ``protocol/`` as the subpackage ``<extension>/protocol``
(``blender_addon.packaging`` copies it), so an installed extension imports it relatively and never depends on
what else is on Blender's ``sys.path``. In a repository checkout (tests, development) the top-level package is used.
"""

from __future__ import annotations

try:
    from .. import protocol  # type: ignore[attr-defined]  # vendored copy inside the extension zip
except ImportError:
    import protocol  # repository checkout: the top-level package

__all__ = ["protocol"]
