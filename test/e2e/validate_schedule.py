#!/usr/bin/env python3
"""Check a pippyc schedule.json: the JSON Schema, then the cross-references a schema cannot express.

usage: validate_schedule.py OUT/schedule.json [--schema FILE] [-q]

1. Validates against schemas/schedule.schema.json (jsonschema, draft 2020-12).
2. Then (only when the schema holds) checks that
   - config agrees with the arrays (stages, ranks = stages x dp, batch = microbatches x microbatch_size,
     one peak_memory_bytes entry per stage);
   - stages[k].index == k, edges[k].id == k, ranks[r].rank == r, ranks[r].program is its stage's program;
   - every edge's producer and consumers are valid stages, each consumer after the producer;
   - each stage input with from=k has a matching output in stage k (same edge, same name), the edge's
     producer is k and its consumers include the stage; each output's `to` equals its edge's consumers;
     passthrough points at an input of the same name;
   - every action's mb is in 0..M-1 and its peer a valid stage other than its own; each rank runs F(m)
     exactly once for every microbatch m; it receives (RECV_F) each microbatch exactly once from every
     stage it has inputs from, before F(m), and sends (SEND_F) it exactly once to every stage that
     consumes its outputs, after F(m); an inference schedule has no training actions;
   - the ranks do not deadlock: simulating every rank's list in order (sends never block; a RECV waits
     for the matching SEND on the peer) runs every action.
Prints "ok", or one line per problem (where: what), and exits 0 when ok, 1 otherwise (2 on bad usage).
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.join(os.path.dirname(os.path.dirname(HERE)), "schemas", "schedule.schema.json")

FORWARD_OPS = {"RECV_F", "F", "SEND_F"}
TRAINING_OPS = {"B", "I", "W", "SEND_B", "RECV_B", "LOSS", "ALLREDUCE", "STEP"}
PEER_OPS = {"RECV_F", "SEND_F", "RECV_B", "SEND_B"}
MATCHING_SEND = {"RECV_F": "SEND_F", "RECV_B": "SEND_B"}


def json_path(parts):
    return "/" + "/".join(str(p) for p in parts) if parts else "/"


def schema_problems(doc, schema):
    try:
        import jsonschema
    except ImportError:
        return ["jsonschema is not installed (pip install jsonschema)"]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    v = cls(schema)
    out = []
    for e in sorted(v.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        msg = e.message
        if e.validator == "not" and isinstance(e.instance, dict) and "op" in e.instance:
            msg = f"'peer' is only for RECV_F/SEND_F/RECV_B/SEND_B, not for {e.instance.get('op')}"
        out.append(f"{json_path(list(e.absolute_path))}: {msg}")
    return out


def cross_problems(d):
    P = []

    def bad(where, msg):
        P.append(f"{where}: {msg}")

    cfg = d["config"]
    stages, edges, ranks = d["stages"], d["edges"], d["ranks"]
    S, E, R = len(stages), len(edges), len(ranks)
    M = cfg["microbatches"]
    training = cfg["mode"] == "training"

    # ---- config against the arrays
    if cfg["stages"] != S:
        bad("/config/stages", f"{cfg['stages']}, but stages[] has {S} entries")
    if cfg["ranks"] != R:
        bad("/config/ranks", f"{cfg['ranks']}, but ranks[] has {R} entries")
    if cfg["ranks"] != cfg["stages"] * cfg["dp"]:
        bad("/config/ranks", f"{cfg['ranks']} is not stages x dp = {cfg['stages']} x {cfg['dp']}")
    if cfg["batch"] and cfg["microbatch_size"] and cfg["batch"] != M * cfg["microbatch_size"]:
        bad("/config/batch", f"{cfg['batch']} is not microbatches x microbatch_size = {M} x {cfg['microbatch_size']}")
    peak = d["prediction"]["peak_memory_bytes"]
    if len(peak) != S:
        bad("/prediction/peak_memory_bytes", f"{len(peak)} entries for {S} stages")

    def valid_stage(k):
        return isinstance(k, int) and not isinstance(k, bool) and 0 <= k < S

    def valid_edge(e):
        return 0 <= e < E

    # ---- stages
    for s, st in enumerate(stages):
        if st["index"] != s:
            bad(f"/stages/{s}/index", f"{st['index']}, expected {s} (its position)")
        if not 0 <= st["rank"] < R:
            bad(f"/stages/{s}/rank", f"{st['rank']} is not a rank (0..{R - 1})")

    # ---- edges
    for k, ed in enumerate(edges):
        w = f"/edges/{k}"
        if ed["id"] != k:
            bad(f"{w}/id", f"{ed['id']}, expected {k} (its position)")
        if not valid_stage(ed["producer"]):
            bad(f"{w}/producer", f"{ed['producer']} is not a stage (0..{S - 1})")
        if len(set(ed["consumers"])) != len(ed["consumers"]):
            bad(f"{w}/consumers", f"repeats a stage: {ed['consumers']}")
        for c in ed["consumers"]:
            if not valid_stage(c):
                bad(f"{w}/consumers", f"{c} is not a stage (0..{S - 1})")
            elif valid_stage(ed["producer"]) and c <= ed["producer"]:
                bad(f"{w}/consumers", f"stage {c} does not come after the producer, stage {ed['producer']}")

    # ---- stage inputs and outputs
    for s, st in enumerate(stages):
        for q, inp in enumerate(st["inputs"]):
            w = f"/stages/{s}/inputs/{q} ({inp['name']})"
            src, e = inp["from"], inp["edge"]
            if src == "input":
                if e != -1:
                    bad(w, f"a graph input (from \"input\") but edge {e}, expected -1")
                continue
            if not valid_stage(src):
                bad(w, f"from {src}: not a stage (0..{S - 1})")
                continue
            if src == s:
                bad(w, f"from {src}: its own stage")
                continue
            if not valid_edge(e):
                bad(w, f"from stage {src} but edge {e} is not an edge (0..{E - 1})")
                continue
            ed = edges[e]
            if ed["producer"] != src:
                bad(w, f"from stage {src}, but edge {e}'s producer is stage {ed['producer']}")
            if s not in ed["consumers"]:
                bad(w, f"edge {e}'s consumers {ed['consumers']} do not include stage {s}")
            if ed["value"] != inp["name"]:
                bad(w, f"edge {e} carries '{ed['value']}', not '{inp['name']}'")
            match = [o for o in stages[src]["outputs"] if o["edge"] == e]
            if not match:
                bad(w, f"stage {src} has no output on edge {e}")
            else:
                o = match[0]
                if o["name"] != inp["name"]:
                    bad(w, f"stage {src}'s output on edge {e} is '{o['name']}'")
                if o["shape"] != inp["shape"] or o["dtype"] != inp["dtype"]:
                    bad(w, f"{inp['dtype']}{inp['shape']}, but stage {src} sends {o['dtype']}{o['shape']}")
        for q, out in enumerate(st["outputs"]):
            w = f"/stages/{s}/outputs/{q} ({out['name']})"
            e = out["edge"]
            if e == -1:
                if out["to"]:
                    bad(w, f"edge -1 but to {out['to']}")
                if not out["graph_output"]:
                    bad(w, "neither sent (edge -1) nor a graph output")
            elif not valid_edge(e):
                bad(w, f"edge {e} is not an edge (0..{E - 1})")
            else:
                ed = edges[e]
                if ed["producer"] != s:
                    bad(w, f"edge {e}'s producer is stage {ed['producer']}, not {s}")
                if ed["value"] != out["name"]:
                    bad(w, f"edge {e} carries '{ed['value']}'")
                if sorted(out["to"]) != sorted(ed["consumers"]):
                    bad(w, f"to {out['to']}, but edge {e}'s consumers are {ed['consumers']}")
            p = out["passthrough"]
            if p != -1:
                if not 0 <= p < len(st["inputs"]):
                    bad(w, f"passthrough {p} is not an input index (0..{len(st['inputs']) - 1})")
                elif st["inputs"][p]["name"] != out["name"]:
                    bad(w, f"passthrough {p} is input '{st['inputs'][p]['name']}'")
    # every consumer of an edge reads it
    for k, ed in enumerate(edges):
        for c in ed["consumers"]:
            if valid_stage(c) and not any(i["edge"] == k for i in stages[c]["inputs"]):
                bad(f"/edges/{k}", f"consumer stage {c} has no input on edge {k}")
        if valid_stage(ed["producer"]) and not any(o["edge"] == k for o in stages[ed["producer"]]["outputs"]):
            bad(f"/edges/{k}", f"producer stage {ed['producer']} has no output on edge {k}")

    # ---- tied
    for t, ti in enumerate(d["tied"]):
        for s in ti["stages"]:
            if not valid_stage(s):
                bad(f"/tied/{t}/stages", f"{s} is not a stage (0..{S - 1})")
        if len(set(ti["stages"])) != len(ti["stages"]):
            bad(f"/tied/{t}/stages", f"repeats a stage: {ti['stages']}")

    # ---- ranks and their actions
    stage_ranks = {}
    for r, rk in enumerate(ranks):
        w = f"/ranks/{r}"
        if rk["rank"] != r:
            bad(f"{w}/rank", f"{rk['rank']}, expected {r} (its position)")
        s = rk["stage"]
        if not valid_stage(s):
            bad(f"{w}/stage", f"{s} is not a stage (0..{S - 1})")
            continue
        stage_ranks.setdefault(s, []).append(r)
        if rk["program"] != stages[s]["program"]:
            bad(f"{w}/program", f"'{rk['program']}', but stage {s}'s program is '{stages[s]['program']}'")
        if cfg["dp"] == 1 and stages[s]["rank"] != r:
            bad(f"{w}/stage", f"runs stage {s}, whose rank is {stages[s]['rank']}")

        producers = sorted({i["from"] for i in stages[s]["inputs"] if i["from"] != "input" and valid_stage(i["from"])})
        consumers = sorted({c for o in stages[s]["outputs"] for c in o["to"] if valid_stage(c)})
        seen = {}   # (op, mb, peer) -> [action indices]
        for a, act in enumerate(rk["actions"]):
            aw = f"{w}/actions/{a} ({act['op']} mb {act['mb']})"
            op, mb = act["op"], act["mb"]
            if not 0 <= mb < M:
                bad(aw, f"microbatch {mb} is not in 0..{M - 1}")
            if op in TRAINING_OPS and not training:
                bad(aw, f"{op} in an inference schedule (config.mode is \"inference\")")
            peer = act.get("peer")
            if op in PEER_OPS:
                if not valid_stage(peer):
                    bad(aw, f"peer {peer} is not a stage (0..{S - 1})")
                    continue
                if peer == s:
                    bad(aw, f"peer {peer} is this rank's own stage")
                    continue
                if op in ("RECV_F", "SEND_B") and peer not in producers:
                    bad(aw, f"peer {peer}: stage {s} has no input from stage {peer} (it reads from {producers or 'none'})")
                if op in ("SEND_F", "RECV_B") and peer not in consumers:
                    bad(aw, f"peer {peer}: no output of stage {s} goes to stage {peer} (they go to {consumers or 'none'})")
            seen.setdefault((op, mb, peer), []).append(a)

        def once(op, mb, peer, what):
            idx = seen.get((op, mb, peer), [])
            if len(idx) != 1:
                bad(f"{w}/actions", f"{what} appears {len(idx)} times" + (f" (at {idx})" if idx else "") + ", expected once")
            return idx[0] if len(idx) == 1 else None

        for m in range(M):
            f = once("F", m, None, f"F mb {m}")
            for p in producers:
                rv = once("RECV_F", m, p, f"RECV_F mb {m} from stage {p}")
                if f is not None and rv is not None and rv > f:
                    bad(f"{w}/actions/{rv}", f"RECV_F mb {m} from stage {p} comes after F mb {m} (action {f})")
            for c in consumers:
                sd = once("SEND_F", m, c, f"SEND_F mb {m} to stage {c}")
                if f is not None and sd is not None and sd < f:
                    bad(f"{w}/actions/{sd}", f"SEND_F mb {m} to stage {c} comes before F mb {m} (action {f})")
        if training:
            for (op, mb, peer), idx in seen.items():
                if op in ("B", "I", "W", "LOSS", "RECV_B", "SEND_B") and len(idx) > 1:
                    bad(f"{w}/actions", f"{op} mb {mb}" + (f" peer {peer}" if peer is not None else "") +
                        f" appears {len(idx)} times (at {idx})")
    for s in range(S):
        if s not in stage_ranks:
            bad("/ranks", f"no rank runs stage {s}")

    # ---- deadlock: only meaningful with one rank per stage (dp = 1)
    if not P and all(len(v) == 1 for v in stage_ranks.values()):
        P.extend(deadlock_problems(ranks, {s: v[0] for s, v in stage_ranks.items()}))
    return P


def deadlock_problems(ranks, rank_of_stage):
    """Runs every action list in order: a send never blocks; RECV_x(mb) from stage p waits until the
    rank of p has executed SEND_x(mb) to this rank's stage."""
    pos = [0] * len(ranks)
    sent = set()  # (op, mb, from_stage, to_stage)
    progress = True
    while progress:
        progress = False
        for r, rk in enumerate(ranks):
            acts, s = rk["actions"], rk["stage"]
            while pos[r] < len(acts):
                a = acts[pos[r]]
                if a["op"] in MATCHING_SEND and (MATCHING_SEND[a["op"]], a["mb"], a["peer"], s) not in sent:
                    break
                if a["op"] in ("SEND_F", "SEND_B"):
                    sent.add((a["op"], a["mb"], s, a["peer"]))
                pos[r] += 1
                progress = True
    stuck = [r for r, rk in enumerate(ranks) if pos[r] < len(rk["actions"])]
    out = []
    for r in stuck:
        a = ranks[r]["actions"][pos[r]]
        peer_rank = rank_of_stage.get(a.get("peer"))
        out.append(f"/ranks/{r}/actions/{pos[r]} ({a['op']} mb {a['mb']}): deadlock: waits forever for "
                   f"{MATCHING_SEND.get(a['op'], '?')} mb {a['mb']} from stage {a.get('peer')}"
                   + (f" (rank {peer_rank}, itself stuck at action {pos[peer_rank]})"
                      if peer_rank is not None and peer_rank in stuck else ""))
    return out


def main():
    ap = argparse.ArgumentParser(description="Validate a pippyc schedule.json.")
    ap.add_argument("file", help="OUT/schedule.json")
    ap.add_argument("--schema", default=DEFAULT_SCHEMA, help="the JSON Schema (default: schemas/schedule.schema.json)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print nothing when ok")
    args = ap.parse_args()
    try:
        with open(args.schema) as f:
            schema = json.load(f)
    except (OSError, ValueError) as e:
        print(f"validate_schedule.py: error: cannot read the schema {args.schema}: {e}", file=sys.stderr)
        return 2
    try:
        with open(args.file) as f:
            doc = json.load(f)
    except OSError as e:
        print(f"{args.file}: cannot read: {e}")
        return 1
    except ValueError as e:
        print(f"{args.file}: not JSON: {e}")
        return 1
    problems = schema_problems(doc, schema)
    if problems:
        problems = [f"schema: {p}" for p in problems]
        problems.append("(cross-references not checked until the schema errors are fixed)")
    else:
        problems = cross_problems(doc)
    if problems:
        for p in problems:
            print(f"{args.file}: {p}")
        print(f"{len([p for p in problems if not p.startswith('(')])} problem(s)")
        return 1
    if not args.quiet:
        print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
