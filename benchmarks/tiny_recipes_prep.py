"""Prepare the tiny-world recipe exploration (benchmarks/tiny_recipes_gpu.py): per-type
token streams, the tokenizer, and every twin item's lm-eval requests, under .gpu/
(add .gpu/ to .git/info/exclude; ~33 MB, carried to the GPU machine).

    PYTHONPATH=. python benchmarks/tiny_recipes_prep.py

Exploration only: what ships is trained on CPU by ``python -m glu_prune.tiny train``.
"""
import json, os, random, time
import torch
from glu_prune.tiny import corpus, world as W, TWIN_TASKS, TASKS_DIR
from glu_prune.tiny.tokenizer import train_tokenizer
from glu_prune.tools.tiny_train import mask_names
from glu_prune.tiny.config import EOS_ID

os.makedirs(".gpu", exist_ok=True)
t0 = time.time()
rng = random.Random(W.SEED + 1)
people = W.make_people()
names = list(corpus.MIXTURE)
by_type = {k: [] for k in names}
N = 240_000
for _ in range(N):  # uniform over types: every type gets plenty; weights applied on device
    k = names[_ % len(names)]
    by_type[k].append(corpus.MIXTURE[k][0](rng, people))
mixed = [d for ds in zip(*by_type.values()) for d in ds]
tok = train_tokenizer(mask_names(mixed[:30_000]))
tok.save_pretrained(".gpu/tok")
streams = {}
for k, docs in by_type.items():
    ids = []
    for enc in tok(docs, add_special_tokens=True)["input_ids"]:
        ids.extend(enc + [EOS_ID])
    streams[k] = torch.tensor(ids[:1_500_000], dtype=torch.int16)  # 1.5 M tokens a type
    print(k, len(docs), len(ids), flush=True)
torch.save(streams, ".gpu/streams.pt")
print("corpus", time.time() - t0)

# twin requests through lm-eval itself (exact contexts/continuations and tokenization)
from lm_eval.tasks import TaskManager, get_task_dict
from lm_eval.models.huggingface import HFLM
from transformers import LlamaForCausalLM, LlamaConfig
from glu_prune.tiny.config import TINY_CONFIG
tm = TaskManager(include_path=str(TASKS_DIR))
twins = ["mmlu", "hellaswag", "winogrande", "boolq", "leaderboard_musr", "arc_challenge",
         "piqa", "truthfulqa_mc1", "lambada_openai"]
lm = HFLM(pretrained=LlamaForCausalLM(LlamaConfig(**TINY_CONFIG)), tokenizer=tok, batch_size=1)
out = {}
for b in twins:
    task = get_task_dict([TWIN_TASKS[b]], tm)[TWIN_TASKS[b]]
    task.build_all_requests(rank=0, world_size=1)
    items = {}
    for inst in task.instances:
        ctx, cont = inst.arguments
        c_ids, x_ids = lm._encode_pair(ctx, cont)
        d = items.setdefault(inst.doc_id, {"gold": task.doc_to_target(inst.doc), "reqs": []})
        d["reqs"].append([c_ids, x_ids, len(cont.encode())])
    if b == "lambada_openai":
        for d in items.values(): d["gold"] = 0
    if b == "winogrande":  # its gold is the option index doc_to_text gives, not the target
        for k, d in items.items(): d["gold"] = task.doc_to_text(task.eval_docs[k])
    out[b] = [items[k] for k in sorted(items)]
    print(b, len(out[b]), flush=True)
json.dump(out, open(".gpu/requests.json", "w"))
print("done", time.time() - t0)
