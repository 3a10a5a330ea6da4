"""Fixtures the analysis tests share."""

import pytest


@pytest.fixture
def media(settings, tmp_path):
    """Figures and weights go to a temporary folder."""
    settings.MEDIA_ROOT = tmp_path
