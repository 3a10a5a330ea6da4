"""Project-wide guarantees: migrations match models, the web process never loads torch."""

import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command


@pytest.mark.django_db
def test_makemigrations_is_clean():
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out)
    except SystemExit:
        pytest.fail(f"models and migrations differ:\n{out.getvalue()}")
    assert "No changes detected" in out.getvalue()


def test_urlconf_views_and_admin_do_not_import_torch():
    code = (
        "import os, sys\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'kb.settings')\n"
        "import django; django.setup()\n"
        "import kb.urls, kb.views, kb.admin, kb.services.insights, kb.demo, analysis.admin\n"
        "import kb.api.urls, kb.study_forms, analysis.studies\n"
        "from django.urls import get_resolver\n"
        "for pattern in get_resolver().url_patterns: pass\n"
        # scikit-learn too: studies plan rounds in the web process and never cluster there;
        # nor numba, which compiles the workers' profiling kernels.
        "print('torch' in sys.modules, 'sklearn' in sys.modules, 'numba' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=settings.BASE_DIR,
    )
    assert result.stdout.strip() == "False False False"
