"""Run every notebook in nbs/ the way `nbdev_test` does, one pytest test per notebook.

Cells flagged `#| slow` are skipped unless pytest runs with `--slow` (as `nbdev_test --flags slow` would).
Notebooks that read the published data (`published_data(...)`) are skipped where it is not found.
"""
import os, re
from pathlib import Path
import pytest
from nbdev import test as nbdev_test
from genemask.genome import published_data_dir

NBS = Path(__file__).resolve().parents[1] / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb):
    if published_data_dir() is None and re.search(r'(?<!def )published_data\(', nb.read_text()):
        pytest.skip(f'{nb.name} reads the published data: set GENEMASK_DATA (see data_docs/fewshot_human.md)')
    slow = os.environ.get('GENEMASK_SLOW') == '1'
    ok, secs = nbdev_test.test_nb(nb, skip_flags=[] if slow else ['slow'], force_flags=['slow'] if slow else [])
    assert ok, f'{nb.name} failed (see the traceback above)'
