"""Rerun README's main job the way a new user does, and keep its outcome for the README.

`python .ci/quick_outcome.py` clones the committed checkout into an empty temporary folder, makes a fresh venv
there, runs README.md's first command verbatim in the clone (install, then `genemask run --preset quick` with its
default output folder), samples the memory of the whole process tree while it runs, and writes what README's
table and figure are computed from into nbs/images/quick/: results.csv (every few-shot score), curves.csv (the
learning curves: training loss averaged over blocks of 5 steps, evaluations as logged) and run.json (the
command, the commit, the machine, the wall time and the peak memory). Then run `python .ci/make_readme.py`.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEEP = ROOT / 'nbs' / 'images' / 'quick'


def readme_main_job()->str:
    "README's command that installs genemask and runs the main job."
    return next(l for l in (ROOT / 'README.md').read_text().splitlines() if l.startswith('pip install') and 'genemask run' in l)


def tree_rss(pid:int)->int:
    "Resident memory (bytes) of a process and all its descendants, read from /proc."
    kids, rss = {}, {}
    for d in Path('/proc').iterdir():
        if not d.name.isdigit(): continue
        try:
            stat = (d / 'stat').read_text()
            ppid = int(stat.rsplit(')', 1)[1].split()[1])
            kb = next((int(l.split()[1]) for l in (d / 'status').read_text().splitlines() if l.startswith('VmRSS:')), 0)
        except (OSError, ValueError, IndexError): continue
        kids.setdefault(ppid, []).append(int(d.name)); rss[int(d.name)] = kb * 1024
    total, todo = 0, [pid]
    while todo:
        p = todo.pop(); total += rss.get(p, 0); todo += kids.get(p, [])
    return total


def run_sampled(cmd:str, cwd:Path, env:dict, log:Path)->tuple[int, float, int]:
    "Run `cmd` in bash; its exit code, wall seconds and the peak memory of its process tree."
    peak, t0 = 0, time.time()
    with open(log, 'w') as out:
        proc = subprocess.Popen(['bash', '-c', cmd], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid)); time.sleep(0.5)
    return proc.returncode, time.time() - t0, peak


def curves_table(grid:Path):
    "The learning curves of a grid, training loss averaged over blocks of 5 steps."
    sys.path.insert(0, str(ROOT))
    from genemask.experiments import learning_curves
    c = learning_curves(grid)
    train = c[c['loss'].notna()].assign(step=lambda d: (d.step + 4) // 5 * 5)
    train = train.groupby(['run', 'run_strategy', 'step'], as_index=False)['loss'].mean().round({'loss': 4})
    ev = c[c['val_ppl'].notna()][['run', 'run_strategy', 'step', 'val_ppl', 'switch_step']].round({'val_ppl': 1})
    import pandas as pd
    return pd.concat([ev, train], ignore_index=True).sort_values(['run', 'step', 'loss'], na_position='first', kind='stable')[
        ['run', 'run_strategy', 'step', 'loss', 'val_ppl', 'switch_step']]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--work', type=Path, default=None, help='folder for the clone and its venv (default: a new temporary one)')
    a = ap.parse_args()
    if subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=ROOT, capture_output=True, text=True).stdout.strip():
        sys.exit('commit first: the outcome must come from a commit (run.json records it)')
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    work = a.work or Path(tempfile.mkdtemp(prefix='genemask-quick-'))
    clone = work / 'genemask'
    subprocess.run(['git', 'clone', '-q', str(ROOT), str(clone)], check=True)
    subprocess.run([sys.executable, '-m', 'venv', str(work / 'venv')], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ('GENEMASK_DATA', 'PYTHONPATH', 'VIRTUAL_ENV')}
    env.update(PATH=f"{work / 'venv' / 'bin'}{os.pathsep}{env['PATH']}", PIP_DISABLE_PIP_VERSION_CHECK='1', MPLBACKEND='Agg')
    cmd = readme_main_job()
    install, _, job = cmd.rpartition('&&')
    print(f'+ {cmd}\n  in {clone}', flush=True)
    rc, secs_install, _ = run_sampled(install.strip(), clone, env, work / 'install.log')
    if rc: sys.exit(f'install failed (rc {rc}); see {work / "install.log"}')
    rc, secs, peak = run_sampled(job.strip(), clone, env, work / 'run.log')
    if rc: sys.exit(f'the main job failed (rc {rc}); see {work / "run.log"}')
    grid = clone / 'runs' / 'quick'
    import pandas as pd
    status = pd.read_csv(grid / 'status.csv')
    machine = json.loads(subprocess.run([str(work / 'venv' / 'bin' / 'python'), '-c',
                                         'import json; from genemask.experiments import machine_info; print(json.dumps(machine_info()))'],
                                        cwd=clone, env=env, capture_output=True, text=True, check=True).stdout)
    KEEP.mkdir(parents=True, exist_ok=True)
    shutil.copy2(grid / 'results.csv', KEEP / 'results.csv')
    curves_table(grid).to_csv(KEEP / 'curves.csv', index=False)
    run = dict(preset='quick', command=cmd, where='a fresh git clone in an empty temporary folder, a fresh venv, '
               'default output folder runs/quick', commit=commit, runs=len(status),
               failed=int((status.status == 'failed').sum()), wall_minutes=round(secs / 60, 1),
               install_minutes=round(secs_install / 60, 1), peak_memory_gb=round(peak / 2**30, 2),
               machine=machine, date=time.strftime('%Y-%m-%d'))
    (KEEP / 'run.json').write_text(json.dumps(run, indent=1) + '\n')
    print(json.dumps(run, indent=1))


if __name__ == '__main__':
    main()
