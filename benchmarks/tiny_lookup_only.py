"""Can the tiny Llama form the content lookup boolq and musr ask for, when nothing else
is trained? (issue 23; TRAINING.md, "Trained on the scenes alone")

A fresh model of the shipped shape learns only the two in-context scenes (``scenes.gifts``
-> musr, ``scenes.reading`` -> boolq, half each, one document a row) with the loss on the
answer tokens alone (after ``Answer:``), optionally after a phase of lists read twice
(full loss) meant to form a copy head first. Every 250 steps it scores 150 held-out scenes
of each kind as the twins do (musr: lm-eval's ``doc_to_text`` and the three names; boolq:
the twin's template, `` no``/`` yes``).

    PYTHONPATH=. python benchmarks/tiny_lookup_only.py --steps 3000 --batch 16 --lr 3e-3
    PYTHONPATH=. python benchmarks/tiny_lookup_only.py --steps 4000 --lr 2e-3 --copy-steps 3000

Exploration only: the shipped models are trained by ``python -m glu_prune.tiny train``.
"""
import argparse, math, random, time
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from glu_prune.tiny import MODEL_DIRS, scenes, world as W
from glu_prune.tiny.config import EOS_ID, TINY_CONFIG
from glu_prune.tiny.probes import _loglik  # lm-eval's choice score, as the probes use it

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=3000)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--lr", type=float, default=3e-3)
ap.add_argument("--copy-steps", type=int, default=0, help="lists read twice first (8 x 256)")
args = ap.parse_args()
torch.manual_seed(0); torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(MODEL_DIRS["tiny-llama"])
ppl = W.make_people(); rng = random.Random(5)


def answer_only(text):
    """Token ids and labels: only tokens of the answers (after 'Answer:' to the line end)."""
    enc = tok(text, return_offsets_mapping=True)
    spans, i = [], 0
    while (j := text.find("Answer:", i)) >= 0:
        s = j + len("Answer:"); e = text.find("\n", s); e = len(text) if e < 0 else e
        spans.append((s, e)); i = e
    lab = [t if any(a <= o[0] < b for a, b in spans) else -100
           for t, o in zip(enc["input_ids"], enc["offset_mapping"])]
    return enc["input_ids"] + [EOS_ID], lab + [-100]


def held_out(n=150):
    """(prompt, choices, gold) for n held-out scenes of each kind, as the twins ask them."""
    erng, out = random.Random(99), {"musr (gifts)": [], "boolq (reading)": []}
    while len(out["musr (gifts)"]) < n:
        if s := scenes.gifts(erng, ppl, True):
            q, i = s["questions"][0]
            out["musr (gifts)"].append((scenes.musr_prompt(s["narrative"], q, s["names"]),
                                        [" " + x for x in s["names"]], i))
    while len(out["boolq (reading)"]) < n:
        r = scenes.reading(erng, ppl, True); q, y = r["questions"][0]
        out["boolq (reading)"].append((r["passage"] + f"\nQuestion: {q}?\nAnswer:", [" no", " yes"], y))
    return out


EVALS = held_out()


@torch.no_grad()
def score(model):
    model.eval(); out = {}
    for k, items in EVALS.items():
        ok = 0
        for ctx, choices, gold in items:
            lls = [_loglik(model, tok, ctx, a) for a in choices]
            ok += max(range(len(choices)), key=lls.__getitem__) == gold
        out[k] = round(ok / len(items), 3)
    model.train(); return out


def step(model, opt, x, y):
    loss = model(input_ids=x, labels=y).loss
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
    return loss.item()


model = LlamaForCausalLM(LlamaConfig(**TINY_CONFIG)); model.train(); t0 = time.time()
words = [t for t in tok.get_vocab() if t.startswith("\u0120") and t[1:].isalpha() and len(t) > 3]
copt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
for s in range(1, args.copy_steps + 1):
    ids = []
    while len(ids) < 8 * 257:  # lists of names or one-token words, read again (same or new order)
        w = ([" " + p.name for p in rng.sample(ppl, rng.randint(4, 10))] if rng.random() < 0.5 else
             [tok.convert_tokens_to_string([x]) for x in rng.sample(words, rng.randint(6, 20))])
        again = w if rng.random() < 0.5 else rng.sample(w, len(w))
        ids += tok("List:" + ",".join(w) + ". Again:" + ",".join(again) + ".")["input_ids"] + [EOS_ID]
    x = torch.tensor(ids[:8 * 257]).view(8, 257)[:, :-1]
    loss = step(model, copt, x, x.clone())
    if s % 500 == 0:
        print("copy", s, f"{time.time() - t0:.0f}s loss {loss:.3f}", flush=True)

decay = [p for p in model.parameters() if p.ndim == 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                         {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                        lr=args.lr, betas=(0.9, 0.95))
warm = max(1, args.steps // 20)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (
    1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
for s in range(1, args.steps + 1):
    rows = [answer_only(scenes.gen_gifts(rng, ppl) if rng.random() < 0.5 else scenes.gen_reading(rng, ppl))
            for _ in range(args.batch)]
    n = max(len(r[0]) for r in rows)
    x = torch.tensor([r[0] + [0] * (n - len(r[0])) for r in rows])
    y = torch.tensor([r[1] + [-100] * (n - len(r[1])) for r in rows])
    loss = step(model, opt, x, y); sched.step()
    if s % 250 == 0 or s == args.steps:
        print(s, f"{time.time() - t0:.0f}s answer loss {loss:.3f}", score(model), flush=True)
