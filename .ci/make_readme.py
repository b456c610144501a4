"""Write README.md from nbs/index.ipynb without Quarto: nbdev's cell processing, then nbconvert's Markdown.

Figures the notebook's cells output are written to nbs/images/readme/ and linked from README.md.
`python .ci/make_readme.py` rewrites README.md (and those figures); `python .ci/make_readme.py --check` exits 1
if either is stale.
"""
import re, sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter
from traitlets.config import Config
from nbdev.process import NBProcessor
from nbformat.v4.rwbase import rejoin_lines
from nbdev.processors import hide_, hide_line, filter_stream_, clean_magics, rm_header_dash, rm_export, strip_ansi, FrontmatterProc

ROOT = Path(__file__).resolve().parents[1]
FIGURES = 'nbs/images/readme'   # relative to ROOT, where README.md is

def render(nb_path=ROOT / 'nbs' / 'index.ipynb') -> tuple[str, dict]:
    "README.md's text and its figures (path relative to ROOT -> bytes)."
    proc = NBProcessor(nb_path, procs=[FrontmatterProc, hide_, hide_line, filter_stream_, clean_magics,
                                        rm_header_dash, rm_export, strip_ansi])
    proc.process()
    nb = proc.nb
    cells = []
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw': continue   # the front matter FrontmatterProc leaves behind
        src = ''.join(c.source) if isinstance(c.source, list) else c.source
        cell = {'id': f'c{i}', 'cell_type': c.cell_type, 'source': src, 'metadata': {}}
        if c.cell_type == 'code':
            lines = src.splitlines()
            opts = dict(l.lstrip()[2:].partition(':')[::2] for l in lines if l.lstrip().startswith('#|'))
            opts = {k.strip(): v.strip() for k, v in opts.items()}
            cell.update(source='\n'.join(l for l in lines if not l.lstrip().startswith('#|')).strip(),
                        outputs=list(c.get('outputs', [])), execution_count=None)
            if opts.get('echo') == 'false': cell['metadata']['tags'] = ['remove_input']   # Quarto's `#| echo: false`
            if not cell['source'] or (opts.get('echo') == 'false' and not cell['outputs']): continue
        cells.append(cell)
        if c.cell_type == 'code' and opts.get('fig-cap'):                               # Quarto's `#| fig-cap: ...`
            cells.append({'id': f'c{i}cap', 'cell_type': 'markdown', 'source': f"*{opts['fig-cap']}*", 'metadata': {}})
    fm = getattr(nb, 'frontmatter_', {}) or {}
    head = f"# {fm['title']}\n\n" if fm.get('title') else ''
    if fm.get('description'): head += f"> {fm['description']}\n\n"
    nbj = nbformat.from_dict({'nbformat': 4, 'nbformat_minor': 5, 'metadata': {'language_info': {'name': 'python'}},
                              'cells': cells})
    rejoin_lines(nbj)   # outputs read by nbdev keep multi-line strings as lists; nbconvert wants strings
    config = Config({'TagRemovePreprocessor': {'enabled': True, 'remove_input_tags': ['remove_input']}})
    body, res = MarkdownExporter(config=config).from_notebook_node(nbj, resources={'unique_key': 'readme', 'output_files_dir': FIGURES})
    warn = '<!-- WARNING: generated from nbs/index.ipynb by .ci/make_readme.py; edit the notebook, not this file. -->\n\n'
    body = re.sub(r'\n\s*\n(\s*\n)+', '\n\n', body)   # the blank lines nbconvert leaves around outputs
    return warn + head + body.strip() + '\n', dict(res.get('outputs', {}))

if __name__ == '__main__':
    text, figures = render()
    readme, fig_dir = ROOT / 'README.md', ROOT / FIGURES
    if '--check' in sys.argv:
        ok = readme.exists() and readme.read_text() == text
        ok = ok and all((ROOT / f).exists() and (ROOT / f).read_bytes() == b for f, b in figures.items())
        ok = ok and sorted(fig_dir.glob('*')) == sorted(ROOT / f for f in figures)
        print('README.md is up to date' if ok else 'README.md is stale: run python .ci/make_readme.py')
        sys.exit(0 if ok else 1)
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in fig_dir.glob('*'):
        if str(old.relative_to(ROOT)) not in figures: old.unlink()
    for f, b in figures.items(): (ROOT / f).write_bytes(b)
    readme.write_text(text)
    print(f'wrote {readme} and {len(figures)} figure(s) in {FIGURES}')
