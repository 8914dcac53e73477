"""The scoring tests' tiny models and in-process scoring apps, for the hardening tests too."""

from tests.scoring.conftest import models, serve  # noqa: F401 (fixtures)
