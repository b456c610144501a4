"""Shared pytest options: `--slow` also runs notebook cells and tests marked slow."""
import os, pytest

def pytest_addoption(parser):
    parser.addoption('--slow', action='store_true', default=False,
                     help='also run notebook cells flagged `#| slow` and tests marked slow')

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long test, run only with --slow')
    if config.getoption('--slow'): os.environ['GENEMASK_SLOW'] = '1'

def pytest_collection_modifyitems(config, items):
    if config.getoption('--slow'): return
    skip = pytest.mark.skip(reason='slow: run with --slow')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)
