"""Streaming vs in-memory pruning of a random-weight Llama folder: wall time and peak RSS.

    python benchmarks/streaming_cost.py [--layers 4,8,16] [--runs 3] [--tmp /tmp]
                                        [--method wanda_sp --calib 8x256] [--cold]

For each depth (1B-like layers: hidden 2048, width 8192, vocab 32000, fp32) a sharded
safetensors folder is written under ``--tmp`` (random tensors written straight to shards,
never a whole model in memory), then each of three jobs runs in its own process, rounds
interleaved, ``--runs`` times: ``floor`` (read every source byte once, write as many bytes
as the pruned output once, with the same files), ``memory`` (``from_pretrained`` +
``prune_glu_mlp`` + ``save_pretrained``) and ``stream`` (``stream_prune``); a calibration
``--method`` runs on ``--calib`` sequences x tokens of seeded random ids, in batches of 4
(``collect_stats`` on the loaded model; layer by layer when streamed). Peak RSS is the
child's own ``VmHWM`` (a forked child's ``ru_maxrss`` starts at the parent's) minus that of a child that only imports the same modules. Medians.
Everything written is deleted at the end. Speed does not depend on weight values.

``--cold`` flushes and drops the page cache before every job (``sync``, then
``/proc/sys/vm/drop_caches``: needs root), so each job reads the model from disk, as a model
bigger than memory always is; without it, what the cache holds depends on the job before
(the in-memory job's 1.5x the model evicts part of it), which swings times by 2x here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig

from glu_prune.core.importance import needs_calibration

HIDDEN, WIDTH, VOCAB = 2048, 8192, 32000
CHILD = r"""
import sys, time, os, json
import torch, transformers, glu_prune.core.streaming
from transformers import AutoModelForCausalLM
from glu_prune.core.calibration import collect_stats
from glu_prune.core.prune import prune_glu_mlp
job, src, out, want, method, n, seq = sys.argv[1:8]
g = torch.Generator().manual_seed(0)
batches = None if n == "0" else [torch.randint(0, 32000, (4, int(seq)), generator=g)
                                 for _ in range(0, int(n), 4)]
t = time.perf_counter()
if job == "memory":
    m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    stats = None if batches is None else collect_stats(m, batches, progress=False)
    prune_glu_mlp(m, pct=40, method=method, stats=stats)
    m.save_pretrained(out)
elif job == "stream":
    glu_prune.core.streaming.stream_prune(src, out, pct=40, method=method, batches=batches,
                                          device="cpu")
elif job == "floor":
    want = int(want)
    buf = bytearray(16 << 20)
    for p in sorted(os.listdir(src)):
        if p.endswith(".safetensors"):
            with open(os.path.join(src, p), "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        while want > 0:
            f.write(memoryview(buf)[:min(want, len(buf))]); want -= len(buf)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(time.perf_counter() - t, hwm)  # VmHWM: this process's own peak (not the parent's)
"""


def write_model(folder: Path, layers: int) -> int:
    """A random fp32 Llama of ``layers`` 1B-like layers, one shard per layer; bytes on disk."""
    config = LlamaConfig(hidden_size=HIDDEN, intermediate_size=WIDTH, num_hidden_layers=layers,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=VOCAB,
                         tie_word_embeddings=True)
    config.save_pretrained(folder)
    shapes = {"self_attn.q_proj.weight": (HIDDEN, HIDDEN), "self_attn.k_proj.weight": (512, HIDDEN),
              "self_attn.v_proj.weight": (512, HIDDEN), "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
              "mlp.gate_proj.weight": (WIDTH, HIDDEN), "mlp.up_proj.weight": (WIDTH, HIDDEN),
              "mlp.down_proj.weight": (HIDDEN, WIDTH), "input_layernorm.weight": (HIDDEN,),
              "post_attention_layernorm.weight": (HIDDEN,)}
    files = [f"model-{i:05d}-of-{layers + 1:05d}.safetensors" for i in range(1, layers + 2)]
    weight_map = {}
    tail = {"model.embed_tokens.weight": torch.randn(VOCAB, HIDDEN) * 0.02,
            "model.norm.weight": torch.ones(HIDDEN)}
    save_file(tail, folder / files[0], metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(tail, files[0]))
    for i in range(layers):
        part = {f"model.layers.{i}.{k}": torch.randn(s) * 0.02 for k, s in shapes.items()}
        save_file(part, folder / files[i + 1], metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, files[i + 1]))
    size = sum((folder / f).stat().st_size for f in files)
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": size}, "weight_map": weight_map}))
    return size


COLD = False  # --cold: drop the page cache before every job


def drop_page_cache() -> None:
    """Write back dirty pages, then drop the clean ones (root only)."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("1\n")


def run_child(job: str, src: Path, out: Path, want: int, calib: tuple[str, int, int]
              ) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of one job in a fresh process (``calib``: method, sequences,
    tokens; 0 sequences for a weight-only method)."""
    if COLD:
        drop_page_cache()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, job, str(src), str(out), str(want),
                             *map(str, calib)], stdout=subprocess.PIPE, text=True)
    text, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{job} failed ({proc.returncode})")
    seconds, peak_kib = text.split()[-2:]
    return float(seconds), int(peak_kib) * 1024


def measure(layers: int, runs: int, tmp: Path, calib: tuple[str, int, int]) -> dict:
    """Median time and peak extra RSS of each job for one model size."""
    work = Path(tempfile.mkdtemp(dir=tmp, prefix="glu-stream-"))
    try:
        src = work / "src"
        src.mkdir()
        size = write_model(src, layers)
        kept = size - layers * 3 * HIDDEN * int(0.4 * WIDTH) * 4  # bytes of the pruned output
        base = [run_child("none", src, work, 0, calib)[1] for _ in range(2)]
        rows: dict[str, list[tuple[float, int]]] = {"floor": [], "memory": [], "stream": []}
        for _ in range(runs):
            for job in rows:
                out = work / f"out-{job}"
                out.mkdir()
                rows[job].append(run_child(job, src, out, kept, calib))
                shutil.rmtree(out)
        floor = min(base)
        res = {"layers": layers, "gb": size / 1e9}
        for job, vals in rows.items():
            res[job] = (statistics.median(v[0] for v in vals),
                        statistics.median(v[1] - floor for v in vals) / 1e9)
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="4,8,16")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tmp", default=tempfile.gettempdir())
    ap.add_argument("--method", default="maw")
    ap.add_argument("--calib", default="8x256", help="calibration sequences x tokens")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before every job")
    args = ap.parse_args()
    global COLD
    COLD = args.cold
    n, seq = map(int, args.calib.split("x"))
    calib = (args.method, n if needs_calibration(args.method) else 0, seq)
    print("| GB | in-memory s / peak GB | stream s / peak GB | floor s | stream/floor time "
          "| stream peak / size | memory peak / size |")
    print("|---|---|---|---|---|---|---|")
    for layers in map(int, args.layers.split(",")):
        r = measure(layers, args.runs, Path(args.tmp), calib)
        (mt, mp), (st, sp), (ft, _) = r["memory"], r["stream"], r["floor"]
        print(f"| {r['gb']:.2f} | {mt:.1f} / {mp:.2f} | {st:.1f} / {sp:.2f} | {ft:.1f} "
              f"| {st / ft:.2f} | {sp / r['gb']:.1%} | {mp / r['gb']:.1%} |", flush=True)


if __name__ == "__main__":
    main()
