"""The user's path is the test: README.md's own commands, read from README.md and run verbatim in a fresh clone
of the working tree with nothing beside it (no ../shared, no GENEMASK_DATA), each shrunk only by its own flags.

The clone is imported through PYTHONPATH (which Python searches before the editable install of the checkout
under test), so every process, the papermill kernels included, runs the clone's code and reads the clone's files.
"""
import os, re, shlex, shutil, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()

# Each README command, shrunk by its own flags (appended, so they override the command's own values)
SHRINK = {
    'corpus': ['--max-tokens', '200000'],
    'npmi': [],
    'tasks': ['--tasks', 'prom_core'],
    'pretrain': ['--steps', '4', '--batch-size', '2', '--grad-accum', '1', '--warmup', '1', '--eval-every', '2',
                 '--valid-pieces', '8', '--max-len', '64'],
    'evaluate': ['--shots', '2', '--repeats', '1', '--epochs', '1', '--quiet'],
    'run': ['--set', 'grid.strategy=[random, cm-gems-x2]', '--set', 'grid.steps=[4]', '--set', 'grid.seed=[1]',
            '--set', 'data.max_tokens=200000', '--set', 'pretrain.eval_every=2', '--set', 'pretrain.valid_pieces=8',
            '--set', 'pretrain.max_len=64', '--set', 'pretrain.warmup=1', '--set', 'evaluate.shots=[2, 3]',
            '--set', 'evaluate.repeats=1', '--set', 'evaluate.epochs=1', '--set', 'evaluate.max_test=60'],
}


def main_job_line()->str:
    "The `genemask ...` part of README's first command (the one that installs and runs the main job)."
    line = next(l for l in README.splitlines() if l.startswith('pip install') and 'genemask run' in l)
    job = line.split('&&')[-1].strip()
    assert job.startswith('genemask run'), line
    return job


def command_line_section()->list[str]:
    "The commands of README's 'The command line' section, in order, without their comments."
    section = README.split('## The command line', 1)[1]
    block = re.search(r'```sh\n(.*?)```', section, re.S).group(1)
    return [l.split('#', 1)[0].strip() for l in block.splitlines() if l.split('#', 1)[0].strip()]


def shrunk(command:str)->list[str]:
    "The argv of a README command with its shrinking flags appended."
    argv = shlex.split(command)
    assert argv[0] == 'genemask' and argv[1] in SHRINK, f'no shrinking flags for README command {command!r}'
    return argv + SHRINK[argv[1]]


def working_tree_clone(dest:Path)->Path:
    "A fresh `git clone` of the checkout under test, with the working tree's uncommitted changes laid over it."
    subprocess.run(['git', 'clone', '-q', str(ROOT), str(dest)], check=True)
    changed = subprocess.run(['git', 'ls-files', '-m', '-o', '--exclude-standard', '-z'], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split('\0')
    deleted = set(subprocess.run(['git', 'ls-files', '-d', '-z'], cwd=ROOT, check=True, capture_output=True,
                                 text=True).stdout.split('\0')) - {''}
    for f in filter(None, changed):
        if f in deleted: continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    for f in deleted: (dest / f).unlink(missing_ok=True)
    return dest


@pytest.fixture(scope='module')
def bare_clone(tmp_path_factory):
    "A clone in an empty temporary folder, and the environment that runs its code."
    clone = working_tree_clone(tmp_path_factory.mktemp('bare') / 'genemask')
    env = {k: v for k, v in os.environ.items() if k != 'GENEMASK_DATA'}
    env.update(PYTHONPATH=str(clone), OMP_NUM_THREADS='1', MPLBACKEND='Agg', TOKENIZERS_PARALLELISM='false',
               PATH=f'{Path(sys.executable).parent}{os.pathsep}{env.get("PATH", "")}')
    return clone, env


def run_in(clone:Path, env:dict, argv:list[str], timeout=900)->subprocess.CompletedProcess:
    "Run a README command in the clone (the console script's entry point on the clone's code)."
    r = subprocess.run([sys.executable, '-m', 'genemask.cli', *argv[1:]], cwd=clone, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(argv)} failed (rc {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-4000:]}"
    return r


def test_the_clone_runs_its_own_code(bare_clone):
    clone, env = bare_clone
    r = subprocess.run([sys.executable, '-c', 'import genemask, genemask.genome as g; print(genemask.__file__); '
                        'print(g.published_data_dir())'], cwd=clone, env=env, capture_output=True, text=True, check=True)
    where, data = r.stdout.split()
    assert Path(where).is_relative_to(clone) and Path(data) == clone / 'genemask' / 'data'
    assert not (clone.parent / 'shared').exists()


def test_readme_commands_verbatim_in_a_bare_clone(bare_clone):
    "Every command of 'The command line', in order, then the main job, with relative paths and default outputs."
    clone, env = bare_clone
    commands = command_line_section()
    assert [shlex.split(c)[1] for c in commands] == ['corpus', 'npmi', 'tasks', 'pretrain', 'evaluate', 'run']
    assert commands[-1] == main_job_line()
    for c in commands: run_in(clone, env, shrunk(c))
    # what each command wrote, where a user would look for it (relative to where they typed it)
    assert (clone / 'corpus' / 'manifest.json').exists() and (clone / 'npmi6.tsv').exists()
    assert (clone / 'tasks' / 'prom_core' / 'test.csv').exists() and (clone / 'run' / 'final' / 'config.json').exists()
    few = pd.read_csv(clone / 'run' / 'eval-final' / 'fewshot.csv')
    assert set(few.shots) == {2} and len(few) == 1 and few.task.nunique() == 1
    # the main job: its default output folder, a row for every strategy, columns for the human sets too
    grid = clone / 'runs' / 'quick'
    report = (grid / 'report.md').read_text()
    assert not list(grid.glob('runs/*/failed.json')), report
    table = pd.read_csv(grid / 'table4_tiny_4steps.csv')
    assert list(table.label) == ['random weights', 'random', 'cm-gems-x2']
    tasks = ['tair10_prom_core', 'tair10_splice_40', 'Prom-core', 'Splice-40']       # the preset's order, n ascending
    assert list(table.columns[1:]) == [f'{t} n={n}' for t in tasks for n in (2, 3)], list(table.columns)
    assert table.iloc[:, 1:].notna().all().all()
    for t in ('Prom-core n=2', 'Splice-40 n=3', '| cm-gems-x2 |', '| random weights |'): assert t in report, t
    nested = [p for p in grid.rglob('runs') if p != grid / 'runs']
    assert not nested, f'run folders nested inside runs: {nested[:3]}'
