"""README.md is generated from nbs/index.ipynb and must not drift from it."""
import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def test_readme_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / '.ci' / 'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

def test_readme_gives_the_two_commands():
    text = (ROOT / 'README.md').read_text()
    assert 'genemask run --preset quick' in text
    assert 'python -m pytest tests -n 2' in text
