"""Train several tiny-world recipes on one GPU in parallel and score the twins (issue 23).

    PYTHONPATH=. python benchmarks/tiny_recipes_prep.py          # here: .gpu/ inputs
    PYTHONPATH=. LIMIT_S=185 OUT=DIR python3 benchmarks/tiny_recipes_gpu.py   # on the GPU

Exploration only (CPU training is what ships): which mixture, steps, learning rate and
window length learn which twins. Scores are lm-eval's requests (built by the prep script
through lm-eval itself) scored here: acc / acc_norm (per byte) / greedy (lambada).
QUICK=1 DEV=cpu runs two variants for 6 steps on 10 items per twin (a smoke test).
"""
import json
import os
import sys
import time

import torch
import torch.multiprocessing as mp

sys.path.insert(0, ".")
from glu_prune.tiny.config import TINY_CONFIG  # noqa: E402

BASE = {"bio": .16, "qa": .10, "quiz": .12, "story": .08, "math": .09, "rules": .06,
        "activity": .06, "reading": .08, "gifts": .08, "wiki": .07, "instruction": .05,
        "rollcall": .05}
HEAVY = dict(BASE, reading=.14, gifts=.14, quiz=.16, activity=.08, bio=.12, wiki=.04,
             math=.07, rollcall=.03)
QUIZ = dict(HEAVY, quiz=.24, story=.05, qa=.07)
VARIANTS = {
    "A_base_2300": dict(w=BASE, steps=2300, lr=3e-3, seq=256, batch=32, evals=(1400, 2300)),
    "B_heavy_2300": dict(w=HEAVY, steps=2300, lr=3e-3, seq=256, batch=32, evals=(1400, 2300)),
    "C_base_lr5e-3": dict(w=BASE, steps=2300, lr=5e-3, seq=256, batch=32, evals=(2300,)),
    "D_heavy_3500": dict(w=HEAVY, steps=3500, lr=3e-3, seq=256, batch=32, evals=(2300, 3500)),
    "E_base_seq128": dict(w=BASE, steps=2300, lr=3e-3, seq=128, batch=64, evals=(2300,)),
    "F_quiz_2300": dict(w=QUIZ, steps=2300, lr=3e-3, seq=256, batch=32, evals=(1400, 2300)),
}
METRIC = {"mmlu": "acc", "hellaswag": "acc_norm", "winogrande": "acc", "boolq": "acc",
          "leaderboard_musr": "acc_norm", "arc_challenge": "acc_norm", "piqa": "acc",
          "truthfulqa_mc1": "acc", "lambada_openai": "greedy"}
LIMIT_S = float(os.environ.get("LIMIT_S", "230"))


@torch.inference_mode()
def score(model, reqs_by_twin, dev):
    model.eval()
    res = {}
    for twin, items in reqs_by_twin.items():
        flat = [(i, j, c, x, nb) for i, it in enumerate(items) for j, (c, x, nb) in enumerate(it["reqs"])]
        lls = {}
        greedy = {}
        for k in range(0, len(flat), 256):
            chunk = flat[k:k + 256]
            seqs = [(c + x)[-1024:] for _, _, c, x, _ in chunk]
            L = max(len(s) for s in seqs)
            ids = torch.zeros(len(seqs), L, dtype=torch.long)
            for r, s in enumerate(seqs):
                ids[r, :len(s)] = torch.tensor(s)
            logits = model(input_ids=ids.to(dev)).logits.float().log_softmax(-1).cpu()
            for r, (i, j, c, x, nb) in enumerate(chunk):
                n = len(seqs[r]); m = len(x)
                lp = logits[r, n - m - 1:n - 1]
                tgt = torch.tensor(x)
                lls[(i, j)] = (lp.gather(1, tgt[:, None]).sum().item(), nb)
                greedy[(i, j)] = bool((lp.argmax(-1) == tgt).all())
        acc = accn = gr = 0
        for i, it in enumerate(items):
            ll = [lls[(i, j)][0] for j in range(len(it["reqs"]))]
            nl = [lls[(i, j)][0] / lls[(i, j)][1] for j in range(len(it["reqs"]))]
            acc += max(range(len(ll)), key=ll.__getitem__) == it["gold"]
            accn += max(range(len(nl)), key=nl.__getitem__) == it["gold"]
            gr += greedy[(i, 0)]
        n = len(items)
        val = {"acc": acc / n, "acc_norm": accn / n, "greedy": gr / n}[METRIC[twin]]
        res[twin] = round(val, 3)
    model.train()
    return res


def run(name, cfg, reqs, q):
    """Train one recipe with the shipped trainer (``tiny_train.fit``), scoring the twins at
    ``cfg["evals"]`` steps and when LIMIT_S runs out."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from glu_prune.tools.tiny_train import fit
    torch.manual_seed(0)
    dev = os.environ.get("DEV", "cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    streams = torch.load(".gpu/streams.pt")
    keys = list(cfg["w"])
    model = LlamaForCausalLM(LlamaConfig(**TINY_CONFIG)).to(dev)
    t0 = time.time()
    evals = {}

    def on_step(done, loss):
        over = time.time() - t0 > LIMIT_S
        if done in cfg["evals"] or over:
            evals[done] = {"loss": round(loss, 3), "s": round(time.time() - t0, 1),
                           **score(model, reqs, dev)}
            q.put(json.dumps({name: evals[done], "step": done}))
        return over

    fit(model, [streams[k].long().to(dev) for k in keys], [cfg["w"][k] for k in keys],
        cfg["steps"], lr=cfg["lr"], seed=0, seq_len=cfg["seq"], on_step=on_step,
        batch=cfg["batch"], device=dev)
    q.put(json.dumps({"final": name, "evals": evals}))


if __name__ == "__main__":
    mp.set_start_method("spawn")
    reqs = json.load(open(".gpu/requests.json"))
    if os.environ.get("QUICK"):
        reqs = {k: v[:10] for k, v in reqs.items()}
        VARIANTS = {k: dict(v, steps=6, evals=(3, 6)) for k, v in list(VARIANTS.items())[:2]}
    q = mp.Queue()
    procs = [mp.Process(target=run, args=(n, c, reqs, q)) for n, c in VARIANTS.items()]
    for p in procs:
        p.start()
    results = {}
    finals = 0
    while finals < len(procs):
        msg = json.loads(q.get())
        print(json.dumps(msg), flush=True)
        if "final" in msg:
            finals += 1
            results[msg["final"]] = msg["evals"]
    for p in procs:
        p.join()
    out = os.environ.get("OUT", ".")
    json.dump(results, open(os.path.join(out, "explore.json"), "w"), indent=1)
