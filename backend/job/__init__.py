"""One edit job's orchestration, apart from the NeRF code: what it reports (``types``), its directory
(``jobdir``) and the run itself (``runner``, which imports torch and nerfstudio)."""
