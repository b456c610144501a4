"""Shared by the pretraining tests: run `genemask pretrain` in a subprocess and kill it midway."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
from genemask.pretrain import latest_checkpoint, pretrain_args

CLI = [sys.executable, '-m', 'genemask.cli', 'pretrain']
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}


def checkpoint_step(out:Path)->int:
    "The step of the newest checkpoint in `out`."
    return int(latest_checkpoint(out).name.split('-')[1])


def kill_midway(run:dict, out:Path, timeout:float=300)->int:
    "Start the run `run` into `out` on the command line, SIGKILL it past a checkpoint and before the next; the step it reached."
    proc = subprocess.Popen(CLI + pretrain_args({**run, 'out_dir': out}), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at, deadline = None, time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if latest_checkpoint(out) is not None:
                rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines() if l.endswith('}')]
                done = max((r['step'] for r in rows if 'loss' in r), default=0)
                if done > checkpoint_step(out):   # midway: past a checkpoint, before the next one
                    os.kill(proc.pid, signal.SIGKILL); killed_at = done; break
            time.sleep(0.01)
    finally:
        proc.wait(timeout=60)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, 'the run was not killed midway'
    return killed_at


def resume(run:dict, out:Path)->subprocess.CompletedProcess:
    "Run `run` into `out` again on the command line (it resumes from the newest checkpoint)."
    return subprocess.run(CLI + pretrain_args({**run, 'out_dir': out}), env=ENV, capture_output=True, text=True)
