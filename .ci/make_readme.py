"""Write README.md from nbs/index.ipynb without Quarto: nbdev's cell processing, then nbconvert's Markdown.

`python .ci/make_readme.py` rewrites README.md; `python .ci/make_readme.py --check` exits 1 if it is stale.
"""
import sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter
from nbdev.process import NBProcessor
from nbdev.processors import hide_, hide_line, filter_stream_, clean_magics, rm_header_dash, rm_export, strip_ansi, FrontmatterProc

ROOT = Path(__file__).resolve().parents[1]

def render(nb_path=ROOT / 'nbs' / 'index.ipynb') -> str:
    proc = NBProcessor(nb_path, procs=[FrontmatterProc, hide_, hide_line, filter_stream_, clean_magics,
                                        rm_header_dash, rm_export, strip_ansi])
    proc.process()
    nb = proc.nb
    cells = []
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw': continue   # the front matter FrontmatterProc leaves behind
        src = ''.join(c.source) if isinstance(c.source, list) else c.source
        if c.cell_type == 'code':
            src = '\n'.join(l for l in src.splitlines() if not l.lstrip().startswith('#|')).strip()
            if not src: continue
        cell = {'id': f'c{i}', 'cell_type': c.cell_type, 'source': src, 'metadata': {}}
        if c.cell_type == 'code': cell.update(outputs=list(c.get('outputs', [])), execution_count=None)
        cells.append(cell)
    fm = getattr(nb, 'frontmatter_', {}) or {}
    head = f"# {fm['title']}\n\n" if fm.get('title') else ''
    if fm.get('description'): head += f"> {fm['description']}\n\n"
    nbj = nbformat.from_dict({'nbformat': 4, 'nbformat_minor': 5, 'metadata': {'language_info': {'name': 'python'}},
                              'cells': cells})
    body, _ = MarkdownExporter().from_notebook_node(nbj)
    warn = '<!-- WARNING: generated from nbs/index.ipynb by .ci/make_readme.py; edit the notebook, not this file. -->\n\n'
    return warn + head + body.strip() + '\n'

if __name__ == '__main__':
    text = render()
    readme = ROOT / 'README.md'
    if '--check' in sys.argv:
        ok = readme.exists() and readme.read_text() == text
        print('README.md is up to date' if ok else 'README.md is stale: run python .ci/make_readme.py')
        sys.exit(0 if ok else 1)
    readme.write_text(text)
    print(f'wrote {readme}')
