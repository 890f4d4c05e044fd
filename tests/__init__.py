"""Test suites. A package so that ``tests.helpers`` wins over the stray top-level ``tests`` package that the
``torch-fidelity`` wheel (a nerfstudio dependency) installs into site-packages."""
