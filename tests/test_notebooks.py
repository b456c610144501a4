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


def test_every_figure_cell_keeps_its_picture():
    "A reader on GitHub sees every visual check: the cells that draw keep their pictures (`python .ci/keep_figures.py` writes them)."
    import subprocess, sys
    r = subprocess.run([sys.executable, str(NBS.parent / '.ci' / 'keep_figures.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_chapters_import_forward():
    "Chapter order is import order: no cell of a chapter imports a module that a later chapter defines."
    import json
    cells = {nb.stem: [''.join(c['source']) for c in json.loads(nb.read_text())['cells']] for nb in NOTEBOOKS if nb.stem[0].isdigit()}
    home = {m.group(1): stem for stem, srcs in cells.items() for s in srcs for m in [re.match(r'#\| default_exp (\w+)', s)] if m}
    back = [(stem, mod) for stem, srcs in cells.items() for s in srcs for mod in re.findall(r'(?:from|import) genemask\.(\w+)', s)
            if home.get(mod, '') > stem]
    assert len(home) >= 12 and not back, back
