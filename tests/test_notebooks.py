"""Run every notebook in nbs/ the way `nbdev_test` does, one pytest test per notebook.

Cells flagged `#| slow` are skipped unless pytest runs with `--slow` (as `nbdev_test --flags slow` would).
"""
import os
from pathlib import Path
import pytest
from nbdev import test as nbdev_test

NBS = Path(__file__).resolve().parents[1] / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb):
    slow = os.environ.get('GENEMASK_SLOW') == '1'
    ok, secs = nbdev_test.test_nb(nb, skip_flags=[] if slow else ['slow'], force_flags=['slow'] if slow else [])
    assert ok, f'{nb.name} failed (see the traceback above)'
