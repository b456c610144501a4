"""Keep the chapters' pictures visible: run each chapter notebook as `nbdev_test` does (cells flagged `#| slow` and
`#| eval: false` skipped) and keep the outputs of the cells that draw a figure, so that a reader on GitHub sees every
visual check; every other output is cleared, so the notebooks' diffs stay readable.

`python .ci/keep_figures.py [NOTEBOOK ...]` (default: every chapter in nbs/); `--check` only reports the figure cells
that have no picture kept (tests/test_notebooks.py runs that check).
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in (ROOT / 'nbs').glob('[0-9]*.ipynb'))
DRAWS = re.compile(r'plt\.show\(\)|plt\.subplots|\bplot_\w+\(|\.plot\(|sns\.')   # a cell that draws a figure


def draws(source:str)->bool:
    "Whether a code cell draws a figure (and so must keep its picture); a cell that only saves one to a file does not."
    if 'save_figure(' in source and 'plt.show()' not in source: return False
    return bool(DRAWS.search(source)) and not source.lstrip().startswith(('#| export', '#| exports', '#| slow', '#| hide'))


def has_picture(cell:dict)->bool:
    return any('image/png' in o.get('data', {}) for o in cell.get('outputs', []))


def missing(nb_path:Path)->list[str]:
    "The ids of the cells that draw a figure but keep no picture."
    cells = json.loads(nb_path.read_text())['cells']
    return [c['id'] for c in cells if c['cell_type'] == 'code' and draws(''.join(c['source'])) and not has_picture(c)]


def run(nb_path:Path):
    "Execute `nb_path` in its folder, slow cells skipped, and write it back with the pictures of its figure cells."
    from nbdev.process import NBProcessor
    from nbdev.frontmatter import FrontmatterProc
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    nb = NBProcessor(nb_path, procs=FrontmatterProc, process=True).nb
    def skip(cell):
        if cell.cell_type != 'code': return True
        d = getattr(cell, 'directives_', {}) or {}
        return d.get('eval:', [''])[0].lower() == 'false' or 'slow' in d
    shell = CaptureShell(nb_path, mpl_format='png')   # 1x pictures: a reader's view, not a print
    with working_directory(nb_path.parent): shell.run_all(nb, exc_stop=True, preproc=skip)
    pictures = {c.id: [json.loads(json.dumps(o)) for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]
                for c in nb.cells if c.cell_type == 'code'}
    raw = json.loads(nb_path.read_text())
    for c in raw['cells']:
        if c['cell_type'] != 'code': continue
        keep = pictures.get(c['id'], []) if draws(''.join(c['source'])) else []
        c['outputs'] = [dict(output_type='display_data', data={'image/png': o['data']['image/png']}, metadata={}) for o in keep]
        c['execution_count'] = None
    nb_path.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + '\n')
    return sum(bool(v) for k, v in pictures.items())


if __name__ == '__main__':
    names = [a for a in sys.argv[1:] if not a.startswith('--')]
    paths = [ROOT / 'nbs' / (n if n.endswith('.ipynb') else n + '.ipynb') for n in names] or CHAPTERS
    if '--check' in sys.argv:
        bad = {p.name: missing(p) for p in paths if missing(p)}
        print('\n'.join(f'{k}: figure cells without a picture: {v}' for k, v in bad.items()) or 'every figure cell keeps its picture')
        sys.exit(1 if bad else 0)
    for p in paths: print(f'{p.name}: {run(p)} figure(s) kept')
